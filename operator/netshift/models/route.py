"""Typed models of ``route.openshift.io/v1`` Route (spec and status).

Field names follow the API (snake_case in Python, camelCase on the wire). The CRD is the validator:
these models accept everything the CRD accepts. See ``_base`` for the shared rules (no defaults
filled in, unknown fields kept, frozen).
"""
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import Field

from ._base import ApiModel, KubeObject

GROUP = "route.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Route"
PLURAL = "routes"
DEFAULT_WEIGHT = 100
ADMITTED = "Admitted"  # the condition type routers write in status.ingress[].conditions


class TLSTermination(StrEnum):
    EDGE = "edge"
    REENCRYPT = "reencrypt"
    PASSTHROUGH = "passthrough"


class InsecureEdgeTerminationPolicy(StrEnum):
    ALLOW = "Allow"
    NONE = "None"
    REDIRECT = "Redirect"


class WildcardPolicy(StrEnum):
    NONE = "None"
    SUBDOMAIN = "Subdomain"


class HeaderActionType(StrEnum):
    SET = "Set"
    DELETE = "Delete"


class RouteTargetReference(ApiModel):
    """``spec.to`` / ``spec.alternateBackends[]``: a Service and its relative weight (0-256)."""

    kind: str | None = None  # "Service" or "" (the CRD defaults it to "Service")
    name: str
    weight: int | None = None  # the CRD defaults it to 100


class RoutePort(ApiModel):
    """``spec.port``: the endpoint (pod) port, by number or by name."""

    target_port: int | str


class LocalObjectReference(ApiModel):
    name: str | None = None


class TLSConfig(ApiModel):
    """``spec.tls``."""

    termination: str  # edge | reencrypt | passthrough
    certificate: str | None = None
    key: str | None = None
    ca_certificate: str | None = Field(default=None, alias="caCertificate")
    destination_ca_certificate: str | None = Field(default=None, alias="destinationCACertificate")
    insecure_edge_termination_policy: str | None = None  # Allow | None | Redirect | ""
    external_certificate: LocalObjectReference | None = None


class RouteSetHTTPHeader(ApiModel):
    value: str | None = None  # required by the CRD


class RouteHTTPHeaderActionUnion(ApiModel):
    type: str | None = None  # Set | Delete (required by the CRD)
    set: RouteSetHTTPHeader | None = None


class RouteHTTPHeader(ApiModel):
    name: str
    action: RouteHTTPHeaderActionUnion


class RouteHTTPHeaderActions(ApiModel):
    request: list[RouteHTTPHeader] | None = None
    response: list[RouteHTTPHeader] | None = None


class RouteHTTPHeaders(ApiModel):
    actions: RouteHTTPHeaderActions | None = None


class RouteSpec(ApiModel):
    host: str | None = None
    subdomain: str | None = None
    path: str | None = None
    to: RouteTargetReference
    alternate_backends: list[RouteTargetReference] | None = None
    port: RoutePort | None = None
    tls: TLSConfig | None = None
    wildcard_policy: str | None = None  # None | Subdomain | "" (the CRD defaults it to "None")
    http_headers: RouteHTTPHeaders | None = None

    @property
    def backends(self) -> list[RouteTargetReference]:
        """``to`` followed by the alternate backends."""
        return [self.to, *(self.alternate_backends or [])]

    @property
    def effective_wildcard_policy(self) -> str:
        """``Subdomain`` or ``None`` (an empty or missing policy means ``None``)."""
        return self.wildcard_policy or WildcardPolicy.NONE.value

    @property
    def termination(self) -> str | None:
        return self.tls.termination if self.tls else None


class RouteIngressCondition(ApiModel):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class RouteIngress(ApiModel):
    """One router's view of the route (``status.ingress[]``)."""

    host: str | None = None
    router_name: str | None = None
    wildcard_policy: str | None = None
    router_canonical_hostname: str | None = None
    conditions: list[RouteIngressCondition] | None = None

    def condition(self, type_: str = ADMITTED) -> RouteIngressCondition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)


class RouteStatus(ApiModel):
    ingress: list[RouteIngress] | None = None

    def for_router(self, router_name: str) -> RouteIngress | None:
        return next((i for i in self.ingress or [] if i.router_name == router_name), None)


class Route(KubeObject):
    spec: RouteSpec
    status: RouteStatus | None = None


def admitted_condition(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The Admitted condition of a ``status.ingress[]`` entry in wire form (a dict), if any."""
    return next((c for c in (entry or {}).get("conditions") or [] if c.get("type") == ADMITTED), None)
