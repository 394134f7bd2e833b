"""Typed models of ``network.operator.openshift.io/v1`` EgressRouter (spec and status).

Field names follow the API (snake_case in Python, camelCase on the wire). The CRD is the validator:
these models accept everything the CRD accepts (for example ``addresses[].ip`` is any string; a value
that is not a CIDR is the controller's business, reported through the ``Degraded`` condition). See
``_base`` for the shared rules (no defaults filled in, unknown fields kept, frozen).
"""
from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ._base import ApiModel, KubeObject

GROUP = "network.operator.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "EgressRouter"
PLURAL = "egressrouters"
# The child that gives a router pod its macvlan interface (Multus' NetworkAttachmentDefinition).
NAD_GROUP = "k8s.cni.cncf.io"
NAD_VERSION = "v1"
NAD_KIND = "NetworkAttachmentDefinition"
NAD_PLURAL = "network-attachment-definitions"


class EgressRouterMode(StrEnum):
    REDIRECT = "Redirect"


class MacvlanMode(StrEnum):
    BRIDGE = "Bridge"
    PRIVATE = "Private"
    VEPA = "VEPA"
    PASSTHRU = "Passthru"


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


DEFAULT_MACVLAN_MODE = MacvlanMode.BRIDGE.value


class EgressRouterAddress(ApiModel):
    """``spec.addresses[]``: ``ip`` is meant to be a CIDR (``192.168.12.99/24``)."""

    ip: str
    gateway: str | None = None


class MacvlanConfig(ApiModel):
    mode: str | None = None  # Bridge | Private | VEPA | Passthru (the CRD defaults it to Bridge)
    master: str | None = None

    @property
    def effective_mode(self) -> str:
        return self.mode or DEFAULT_MACVLAN_MODE


class EgressRouterInterface(ApiModel):
    macvlan: MacvlanConfig | None = None  # required by the CRD (defaulted to {mode: Bridge})


class L4RedirectRule(ApiModel):
    """``spec.redirect.redirectRules[]``."""

    destination_ip: str = Field(alias="destinationIP")
    port: int
    protocol: str  # TCP | UDP | SCTP
    target_port: int | None = None  # defaults to port (egressrouter.spec parses it)


class RedirectConfig(ApiModel):
    redirect_rules: list[L4RedirectRule] | None = None
    fallback_ip: str | None = Field(default=None, alias="fallbackIP")


class EgressRouterSpec(ApiModel):
    mode: str | None = None  # Redirect (the CRD defaults it)
    redirect: RedirectConfig | None = None
    network_interface: EgressRouterInterface | None = None  # defaulted by the CRD
    addresses: list[EgressRouterAddress] = Field(default_factory=list)

    @property
    def macvlan(self) -> MacvlanConfig:
        """The macvlan settings, with the schema default when absent."""
        if self.network_interface and self.network_interface.macvlan:
            return self.network_interface.macvlan
        return MacvlanConfig(mode=DEFAULT_MACVLAN_MODE)

    @property
    def redirect_rules(self) -> list[L4RedirectRule]:
        return list(self.redirect.redirect_rules or []) if self.redirect else []

    @property
    def fallback_ip(self) -> str | None:
        return self.redirect.fallback_ip if self.redirect else None


class EgressRouterStatusCondition(ApiModel):
    type: str  # Available | Progressing | Degraded
    status: str  # True | False | Unknown
    last_transition_time: str | None = None  # required (nullable) in the CRD
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None  # netshift superset field


class EgressRouterStatus(ApiModel):
    conditions: list[EgressRouterStatusCondition] | None = None
    observed_generation: int | None = None  # netshift superset field

    def condition(self, type_: str) -> EgressRouterStatusCondition | None:
        return next((c for c in self.conditions or [] if c.type == type_), None)


class EgressRouter(KubeObject):
    spec: EgressRouterSpec
    status: EgressRouterStatus | None = None
