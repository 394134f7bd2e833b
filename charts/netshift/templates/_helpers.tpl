{{/* Name of the chart, overridable. */}}
{{- define "netshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: the release name, prefixed with the chart name unless it contains it. */}}
{{- define "netshift.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "netshift.operatorName" -}}
{{- printf "%s-operator" (include "netshift.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "netshift.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "netshift.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "netshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: netshift
{{- end -}}

{{/* Selector labels of the operator pod (never app.kubernetes.io/managed-by=netshift: that marks children). */}}
{{- define "netshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator image reference; the redirect agents use the same one unless overridden. */}}
{{- define "netshift.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "netshift.agentImage" -}}
{{- default (include "netshift.image" .) .Values.egressRouter.agentImage -}}
{{- end -}}

{{/* The router (Route data plane): names and labels. */}}
{{- define "netshift.routerName" -}}
{{- printf "%s-router" (include "netshift.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netshift.routerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "netshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: router
{{- end -}}

{{- define "netshift.routerLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "netshift.routerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: netshift
{{- end -}}

{{/* Whether the router is deployed: Route support on and the router wanted. */}}
{{- define "netshift.routerEnabled" -}}
{{- if and .Values.routes.enabled .Values.router.enabled -}}true{{- end -}}
{{- end -}}
