"""The EgressRouter spec as the agent's typed configuration.

Pure: `parse_spec` takes the decoded document and returns a `RouterConfig` or raises `ConfigError`
whose message starts with the spec path of the offending field, e.g.
`spec.redirect.redirectRules[1].destinationIP: "10.0.0.300" is not an IPv4 or IPv6 address`.

The CRD accepts what OpenShift accepts; this is where "accepted but cannot work" is caught, with the
same wording the operator uses for the Degraded condition.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

import yaml

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

PROTOCOLS = ("tcp", "udp", "sctp")
FAMILIES = {4: "ip", 6: "ip6"}  # IP version -> nftables family


class ConfigError(ValueError):
    """A spec the agent cannot apply; str() names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclasses.dataclass(frozen=True)
class Address:
    interface: IPInterface          # address with the prefix of its network, e.g. 192.0.2.10/24
    gateway: IPAddress | None

    @property
    def version(self) -> int:
        return self.interface.version


@dataclasses.dataclass(frozen=True)
class Rule:
    destination: IPAddress
    port: int
    protocol: str                   # lower case: tcp, udp or sctp
    target_port: int                # defaults to port

    @property
    def version(self) -> int:
        return self.destination.version

    @property
    def key(self) -> str:
        """Stable identity inside a family's table (ports are unique per protocol)."""
        return f"{self.protocol}_{self.port}"


@dataclasses.dataclass(frozen=True)
class RouterConfig:
    addresses: tuple[Address, ...]
    rules: tuple[Rule, ...]
    fallback: IPAddress | None

    @property
    def versions(self) -> tuple[int, ...]:
        """IP versions that have an address on the egress interface, in order 4, 6."""
        return tuple(v for v in (4, 6) if any(a.version == v for a in self.addresses))

    def source(self, version: int) -> Address:
        """The address whose IP is the SNAT source for a family (the first one of that family)."""
        return next(a for a in self.addresses if a.version == version)

    def gateway(self, version: int) -> IPAddress | None:
        """The first gateway given for a family; host routes of that family go through it."""
        return next((a.gateway for a in self.addresses if a.version == version and a.gateway), None)

    def destinations(self) -> tuple[IPAddress, ...]:
        """Every address traffic is redirected to, without duplicates, in spec order."""
        seen: dict[IPAddress, None] = {}
        for r in self.rules:
            seen.setdefault(r.destination, None)
        if self.fallback is not None:
            seen.setdefault(self.fallback, None)
        return tuple(seen)


def load_document(text: str) -> Any:
    """JSON or YAML (JSON is YAML, but json gives better errors for JSON files)."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"invalid JSON: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"invalid YAML: {exc}") from None


def parse_text(text: str) -> RouterConfig:
    return parse_spec(load_document(text))


def parse_spec(doc: Any) -> RouterConfig:
    """Accept a whole EgressRouter object (with `spec`) or its bare spec."""
    if not isinstance(doc, dict):
        raise ConfigError("spec", "must be a mapping (the EgressRouter spec)")
    if isinstance(doc.get("spec"), dict):  # a bare spec has no `spec` key
        doc = doc["spec"]

    mode = doc.get("mode", "Redirect")
    if mode != "Redirect":
        raise ConfigError("spec.mode", f"{mode!r} is not supported (only Redirect)")

    addresses = _addresses(doc.get("addresses"))
    versions = {a.version for a in addresses}

    redirect = doc.get("redirect")
    if not isinstance(redirect, dict):
        raise ConfigError("spec.redirect", "is required in mode Redirect")
    rules = _rules(redirect.get("redirectRules"), addresses)

    fallback = None
    if redirect.get("fallbackIP") not in (None, ""):
        field = "spec.redirect.fallbackIP"
        fallback = _ip(redirect["fallbackIP"], field)
        _check_destination(fallback, field, addresses, versions)

    if not rules and fallback is None:
        raise ConfigError("spec.redirect", "needs redirectRules or a fallbackIP (nothing to redirect)")
    return RouterConfig(addresses=tuple(addresses), rules=tuple(rules), fallback=fallback)


def _addresses(raw: Any) -> list[Address]:
    if raw is None or raw == []:
        raise ConfigError("spec.addresses", "needs at least one address (a CIDR like 192.168.12.99/24)")
    if not isinstance(raw, list):
        raise ConfigError("spec.addresses", "must be a list")
    out: list[Address] = []
    for i, item in enumerate(raw):
        field = f"spec.addresses[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(field, "must be a mapping with ip and gateway")
        ip = item.get("ip")
        if not isinstance(ip, str) or "/" not in ip:
            raise ConfigError(f"{field}.ip", f"{ip!r} must be a CIDR like 192.168.12.99/24 "
                                             "(the prefix is kept on the interface)")
        try:
            iface = ipaddress.ip_interface(ip.strip())
        except ValueError:
            raise ConfigError(f"{field}.ip", f"{ip!r} is not a valid CIDR") from None
        if iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1:
            raise ConfigError(f"{field}.ip", f"{ip!r} is a network address, not a host address")
        gateway = None
        if item.get("gateway") not in (None, ""):
            gateway = _ip(item["gateway"], f"{field}.gateway")
            if gateway.version != iface.version:
                raise ConfigError(f"{field}.gateway", f"IPv{gateway.version} gateway {gateway} for "
                                                      f"IPv{iface.version} address {iface}")
            if gateway == iface.ip:
                raise ConfigError(f"{field}.gateway", f"{gateway} is the router's own address")
        if any(a.interface.ip == iface.ip for a in out):
            raise ConfigError(f"{field}.ip", f"{iface.ip} is listed twice")
        out.append(Address(iface, gateway))
    return out


def _rules(raw: Any, addresses: list[Address]) -> list[Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("spec.redirect.redirectRules", "must be a list")
    versions = {a.version for a in addresses}
    out: list[Rule] = []
    seen: dict[tuple[int, str, int], int] = {}
    for i, item in enumerate(raw):
        field = f"spec.redirect.redirectRules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(field, "must be a mapping")
        dest = _ip(item.get("destinationIP"), f"{field}.destinationIP")
        _check_destination(dest, f"{field}.destinationIP", addresses, versions)
        port = _port(item.get("port"), f"{field}.port")
        proto = item.get("protocol")
        # The CRD says TCP|UDP|SCTP; lower case is a known field mistake and unambiguous, so accept it.
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise ConfigError(f"{field}.protocol", f"{proto!r} must be one of TCP, UDP, SCTP")
        proto = proto.lower()
        target = item.get("targetPort")
        target = port if target in (None, 0) else _port(target, f"{field}.targetPort")
        key = (dest.version, proto, port)
        if key in seen:
            raise ConfigError(f"{field}.port", f"{proto.upper()} port {port} (IPv{dest.version}) is "
                                               f"already redirected by redirectRules[{seen[key]}]")
        seen[key] = i
        out.append(Rule(dest, port, proto, target))
    return out


def _check_destination(dest: IPAddress, field: str, addresses: list[Address], versions: set[int]) -> None:
    if dest.version not in versions:
        raise ConfigError(field, f"IPv{dest.version} destination {dest} but spec.addresses has no "
                                 f"IPv{dest.version} address to send it from")
    if any(dest == a.interface.ip for a in addresses):
        raise ConfigError(field, f"{dest} is the router's own address")
    if dest.is_loopback or dest.is_multicast or dest.is_unspecified or dest.is_link_local:
        raise ConfigError(field, f"{dest} cannot be a redirect destination")
    on_link = any(dest in a.interface.network for a in addresses if a.version == dest.version)
    has_gateway = any(a.gateway for a in addresses if a.version == dest.version)
    if not on_link and not has_gateway:
        raise ConfigError(field, f"{dest} is outside every IPv{dest.version} subnet of spec.addresses "
                                 "and no gateway of that family is given")


def _ip(raw: Any, field: str) -> IPAddress:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(field, "is required (an IPv4 or IPv6 address)")
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        raise ConfigError(field, f"{raw!r} is not an IPv4 or IPv6 address") from None


def _port(raw: Any, field: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ConfigError(field, f"{raw!r} must be a port number 1-65535")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(field, f"{raw!r} must be a port number 1-65535") from None
    if not 1 <= value <= 65535:
        raise ConfigError(field, f"{value} is outside 1-65535")
    return value
