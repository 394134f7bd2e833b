"""Validation of a Route beyond the CRD schema: the host (router's InvalidHost) and the spec rules
OpenShift's API server enforces (library-go), which a CRD without a webhook cannot.

Pure functions. Messages follow Kubernetes' field errors (``spec.host: Invalid value: "x": ...``)
so that they read like OpenShift's.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from netshift.models.route import InsecureEdgeTerminationPolicy as Insecure
from netshift.models.route import Route, TLSTermination, WildcardPolicy

ALLOW_NON_DNS_COMPLIANT_HOST_ANNOTATION = "route.openshift.io/allow-non-dns-compliant-host"

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + r")*"
_LABEL_RE = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN_FMT}$")

_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
              "and must start and end with an alphanumeric character (e.g. 'my-name',  or "
              f"'123-abc', regex used for validation is '{_LABEL_FMT}')")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                  "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                  f"'example.com', regex used for validation is '{_SUBDOMAIN_FMT}')")


def _quote(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def invalid(path: str, value: object, detail: str) -> str:
    """A Kubernetes ``field.Invalid`` error message."""
    return f"{path}: Invalid value: {_quote(value)}: {detail}"


def required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def not_supported(path: str, value: object, supported: list[str]) -> str:
    return (f"{path}: Unsupported value: {_quote(value)}: supported values: "
            + ", ".join(_quote(s) for s in supported))


def forbidden(path: str, detail: str) -> str:
    return f"{path}: Forbidden: {detail}"


# OpenShift (library-go ValidateTLSExternalCertificate) checks these verbs in this order.
EXTERNAL_CERTIFICATE_VERBS = ("get", "watch", "list")


def external_certificate_access_errors(missing: Iterable[str]) -> list[str]:
    """OpenShift's errors for the verbs on its Secret the router's ServiceAccount is not granted."""
    missing = set(missing)
    return [forbidden("spec.tls.externalCertificate",
                      f"router serviceaccount does not have permission to {verb} this secret")
            for verb in EXTERNAL_CERTIFICATE_VERBS if verb in missing]


def aggregate(errors: list[str]) -> str:
    """Like Go's ``ErrorList.ToAggregate().Error()``: one message alone, several in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def dns1123_label_errors(label: str) -> list[str]:
    errs = []
    if len(label) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _LABEL_RE.match(label):
        errs.append(_LABEL_MSG)
    return errs


def dns1123_subdomain_errors(name: str) -> list[str]:
    errs = []
    if len(name) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN_RE.match(name):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def _fqdn_errors(path: str, name: str) -> list[str]:
    # Kubernetes' IsFullyQualifiedDomainName: a trailing dot is fine, at least two labels,
    # each a DNS-1123 label (so at most 63 characters).
    name = name.removesuffix(".")
    if errs := dns1123_subdomain_errors(name):
        return [invalid(path, name, e) for e in errs]
    labels = name.split(".")
    if len(labels) < 2:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    return [invalid(path, label, e) for label in labels for e in dns1123_label_errors(label)]


def host_errors(host: str, allow_non_dns_compliant: bool = False, path: str = "spec.host") -> list[str]:
    """Errors of a non-empty host, as the router checks it before admitting (``InvalidHost``).

    Without the allow-non-dns-compliant-host annotation the host must be a fully qualified domain
    name with labels of at most 63 characters; with it, only a DNS-1123 subdomain (253 characters).
    """
    if allow_non_dns_compliant:
        if errs := dns1123_subdomain_errors(host):
            return [invalid(path, host, "host must conform to DNS naming conventions: ["
                            + " ".join(errs) + "]")]
        return []
    if errs := _fqdn_errors(path, host):
        return [invalid(path, host, "host must conform to DNS 1123 naming conventions: ["
                        + " ".join(errs) + "]")]
    return []


def invalid_host_message(errors: list[str]) -> str:
    return "host name validation errors: " + ", ".join(errors)


def allows_non_dns_compliant_host(annotations: dict[str, str] | None) -> bool:
    return (annotations or {}).get(ALLOW_NON_DNS_COMPLIANT_HOST_ANNOTATION) == "true"


_TERMINATIONS = [t.value for t in (TLSTermination.EDGE, TLSTermination.PASSTHROUGH,
                                    TLSTermination.REENCRYPT)]


def tls_errors(route: Route) -> list[str]:
    """library-go's ``validateTLS``: which fields each termination may carry."""
    tls = route.spec.tls
    if tls is None:
        return []
    errs: list[str] = []
    p = "spec.tls"
    if tls.termination == TLSTermination.PASSTHROUGH:
        msg = "passthrough termination does not support certificates"
        for fld, val, redacted in (("certificate", tls.certificate, "redacted certificate data"),
                                   ("key", tls.key, "redacted key data"),
                                   ("caCertificate", tls.ca_certificate, "redacted ca certificate data"),
                                   ("destinationCACertificate", tls.destination_ca_certificate,
                                    "redacted destination ca certificate data")):
            if val:
                errs.append(invalid(f"{p}.{fld}", redacted, msg))
        if tls.external_certificate is not None and tls.external_certificate.name:
            errs.append(invalid(f"{p}.externalCertificate", tls.external_certificate.name, msg))
        if tls.insecure_edge_termination_policy not in (None, "", Insecure.NONE, Insecure.REDIRECT):
            errs.append(invalid(f"{p}.insecureEdgeTerminationPolicy", tls.insecure_edge_termination_policy,
                                "invalid value for InsecureEdgeTerminationPolicy option, acceptable "
                                "values are None, Redirect, or empty"))
    elif tls.termination == TLSTermination.EDGE:
        if tls.destination_ca_certificate:
            errs.append(invalid(f"{p}.destinationCACertificate", "redacted destination ca certificate data",
                                "edge termination does not support destination certificates"))
    elif tls.termination != TLSTermination.REENCRYPT:  # reencrypt may carry every field
        errs.append(not_supported(f"{p}.termination", tls.termination, _TERMINATIONS))
    if (tls.termination in (TLSTermination.EDGE, TLSTermination.REENCRYPT)
            and tls.insecure_edge_termination_policy not in (None, "", *Insecure)):
        errs.append(invalid(f"{p}.insecureEdgeTerminationPolicy", tls.insecure_edge_termination_policy,
                            "invalid value for InsecureEdgeTerminationPolicy option, acceptable values "
                            "are None, Allow, Redirect, or empty"))
    return errs


def spec_errors(route: Route) -> list[str]:
    """Spec rules OpenShift's API server enforces and the CRD cannot (or might not, on an older
    CRD): subdomain labels, path, backend kinds, target port, TLS field combinations.

    The host is checked separately (``host_errors``) because it has its own reason.
    """
    spec = route.spec
    errs: list[str] = []
    if spec.subdomain:
        if len(spec.subdomain) > DNS1123_SUBDOMAIN_MAX:
            errs.append(invalid("spec.subdomain", spec.subdomain,
                                f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters"))
        for label in spec.subdomain.split("."):
            if label_errs := dns1123_label_errors(label):
                errs.append(invalid("spec.subdomain", label, ", ".join(label_errs)))
    if spec.wildcard_policy == WildcardPolicy.SUBDOMAIN and not spec.host:
        errs.append(invalid("spec.wildcardPolicy", spec.wildcard_policy,
                            "host name not specified for wildcard policy"))
    if spec.path:
        if not spec.path.startswith("/"):
            errs.append(invalid("spec.path", spec.path, "path must begin with /"))
        if any(ch.isspace() for ch in spec.path) or "#" in spec.path:
            # The router's configuration has no quoting for these; OpenShift forbids them too.
            errs.append(invalid("spec.path", spec.path, "path must not contain spaces or '#'"))
        if spec.termination == TLSTermination.PASSTHROUGH:
            errs.append(invalid("spec.path", spec.path, "passthrough termination does not support paths"))
    if not spec.to.name:
        errs.append(required("spec.to.name"))
    if spec.to.kind not in (None, "", "Service"):
        errs.append(invalid("spec.to.kind", spec.to.kind, "must reference a Service"))
    for i, backend in enumerate(spec.alternate_backends or []):
        if not backend.name:
            errs.append(required(f"spec.alternateBackends[{i}].name"))
        if backend.kind not in (None, "", "Service"):
            errs.append(invalid(f"spec.alternateBackends[{i}].kind", backend.kind, "must reference a Service"))
    for i, backend in enumerate(spec.backends):
        if backend.weight is not None and not 0 <= backend.weight <= 256:
            path = "spec.to.weight" if i == 0 else f"spec.alternateBackends[{i - 1}].weight"
            errs.append(invalid(path, backend.weight, "weight must be an integer between 0 and 256"))
    if spec.port is not None and spec.port.target_port in (0, ""):
        errs.append(required("spec.port.targetPort"))
    errs.extend(tls_errors(route))
    return errs
