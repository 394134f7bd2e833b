"""Semantic validation of an EgressRouter: what the CRD accepts but cannot work.

Pure. Every problem carries a CamelCase reason (used as the Degraded reason) and a message that
starts with the path of the offending field, e.g.
`spec.addresses[0].ip: "10.0.0.5" is not a CIDR (expected address/prefix, like 192.168.12.99/24)`.
Problems are collected, not raised: the Degraded message lists all of them, so a user fixes a spec
in one round. The rules agree with the redirect agent's parser (`netshift.agent.config`), so that
whatever the operator applies, the agent accepts.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re

from netshift.models.egressrouter import EgressRouterSpec, MacvlanMode, Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# Children are named like the router; a Service name must be a DNS-1035 label.
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Linux interface names: at most 15 bytes, no '/', ':' or whitespace.
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str  # CamelCase, becomes the Degraded reason
    field: str   # path of the field, e.g. spec.addresses[0].ip
    detail: str  # what is wrong, without the field

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"

    def __str__(self) -> str:
        return self.message


def _q(value: object) -> str:
    """A value quoted as in YAML/JSON ("10.0.0.5"), for messages."""
    return json.dumps(value)


def validate(name: str, spec: EgressRouterSpec) -> tuple[Problem, ...]:
    """All semantic problems of an EgressRouter named `name`; empty when it can work."""
    problems: list[Problem] = []
    add = lambda reason, field, detail: problems.append(Problem(reason, field, detail))

    if len(name) > 63 or not _DNS1035_LABEL.match(name):
        add("InvalidName", "metadata.name",
            f"{_q(name)} cannot name the router's Service: it must be a DNS-1035 label "
            "(lower case letters, digits and '-', starting with a letter, at most 63 characters)")

    mode = spec.mode or "Redirect"
    if mode != "Redirect":
        add("UnsupportedMode", "spec.mode", f"{_q(mode)} is not supported (only Redirect)")

    macvlan = spec.macvlan
    if macvlan.effective_mode not in {m.value for m in MacvlanMode}:
        add("InvalidMacvlanMode", "spec.networkInterface.macvlan.mode",
            f"{_q(macvlan.effective_mode)} must be one of Bridge, Private, VEPA, Passthru")
    if macvlan.master and not _IFNAME.match(macvlan.master):
        add("InvalidMacvlanMaster", "spec.networkInterface.macvlan.master",
            f"{_q(macvlan.master)} is not a network interface name (at most 15 characters, "
            "no '/', ':' or spaces)")

    addresses = _addresses(spec, add)

    if spec.redirect is None:
        add("RedirectMissing", "spec.redirect", "is required in mode Redirect")
        return tuple(problems)

    seen: dict[tuple[int, str, int], int] = {}
    for i, rule in enumerate(spec.redirect_rules):
        field = f"spec.redirect.redirectRules[{i}]"
        dest = _ip(rule.destination_ip, f"{field}.destinationIP", "InvalidDestinationIP", add)
        if dest is not None:
            _destination(dest, f"{field}.destinationIP", addresses, add)
        if rule.protocol.upper() not in {p.value for p in Protocol}:
            add("InvalidProtocol", f"{field}.protocol", f"{_q(rule.protocol)} must be one of TCP, UDP, SCTP")
        if not 1 <= rule.port <= 65535:
            add("InvalidPort", f"{field}.port", f"{rule.port} is outside 1-65535")
        if rule.target_port is not None and not 1 <= rule.target_port <= 65535:
            add("InvalidPort", f"{field}.targetPort", f"{rule.target_port} is outside 1-65535")
        if dest is not None:
            key = (dest.version, rule.protocol.upper(), rule.port)
            if key in seen:
                add("DuplicateRedirectRule", f"{field}.port",
                    f"{key[1]} port {rule.port} (IPv{dest.version}) is already redirected by "
                    f"redirectRules[{seen[key]}]")
            else:
                seen[key] = i

    fallback_raw = spec.fallback_ip
    if fallback_raw not in (None, ""):
        fallback = _ip(fallback_raw, "spec.redirect.fallbackIP", "InvalidFallbackIP", add)
        if fallback is not None:
            _destination(fallback, "spec.redirect.fallbackIP", addresses, add)
    elif not spec.redirect_rules:
        add("NoRedirectTarget", "spec.redirect",
            "needs redirectRules or a fallbackIP: as written the router would redirect nothing")
    return tuple(problems)


def _addresses(spec: EgressRouterSpec, add) -> list[tuple[IPInterface, IPAddress | None]]:
    out: list[tuple[IPInterface, IPAddress | None]] = []
    if not spec.addresses:
        add("NoAddresses", "spec.addresses",
            "needs at least one address (a CIDR like 192.168.12.99/24) for the macvlan interface")
        return out
    gateways: dict[int, tuple[IPAddress, int]] = {}
    for i, addr in enumerate(spec.addresses):
        field = f"spec.addresses[{i}]"
        raw = addr.ip.strip()
        if "/" not in raw:
            add("InvalidAddress", f"{field}.ip",
                f"{_q(addr.ip)} is not a CIDR (expected address/prefix, like 192.168.12.99/24)")
            continue
        try:
            iface = ipaddress.ip_interface(raw)
        except ValueError:
            add("InvalidAddress", f"{field}.ip", f"{_q(addr.ip)} is not a valid CIDR")
            continue
        net = iface.network
        if net.prefixlen < iface.max_prefixlen - 1 and iface.ip == net.network_address:
            add("InvalidAddress", f"{field}.ip", f"{_q(addr.ip)} is the network address, not a host address")
            continue
        if iface.version == 4 and net.prefixlen < 31 and iface.ip == net.broadcast_address:
            add("InvalidAddress", f"{field}.ip", f"{_q(addr.ip)} is the broadcast address")
            continue
        if any(other.ip == iface.ip for other, _ in out):
            add("DuplicateAddress", f"{field}.ip", f"{iface.ip} is listed twice")
            continue
        gateway = None
        if addr.gateway not in (None, ""):
            gateway = _ip(addr.gateway, f"{field}.gateway", "InvalidGateway", add)
            if gateway is not None and gateway.version != iface.version:
                add("GatewayFamilyMismatch", f"{field}.gateway",
                    f"IPv{gateway.version} gateway {gateway} for IPv{iface.version} address {iface}")
                gateway = None
            elif gateway is not None and gateway == iface.ip:
                add("InvalidGateway", f"{field}.gateway", f"{gateway} is the router's own address")
                gateway = None
            elif gateway is not None and net.prefixlen < iface.max_prefixlen and gateway not in net:
                add("GatewayNotInSubnet", f"{field}.gateway",
                    f"{gateway} is outside {net}, the subnet of {iface}: the gateway must be on-link")
                gateway = None
            elif gateway is not None:
                first = gateways.setdefault(gateway.version, (gateway, i))
                if first[0] != gateway:
                    add("ConflictingGateways", f"{field}.gateway",
                        f"{gateway} differs from IPv{gateway.version} gateway {first[0]} of "
                        f"spec.addresses[{first[1]}]: one gateway per family")
        out.append((iface, gateway))
    return out


def _ip(raw: str | None, field: str, reason: str, add) -> IPAddress | None:
    if raw is None or not raw.strip():
        add(reason, field, "is required (an IPv4 or IPv6 address)")
        return None
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        add(reason, field, f"{_q(raw)} is not an IPv4 or IPv6 address")
        return None


def _destination(dest: IPAddress, field: str, addresses: list[tuple[IPInterface, IPAddress | None]],
                 add) -> None:
    same_family = [(iface, gw) for iface, gw in addresses if iface.version == dest.version]
    if not addresses:
        return  # already reported as NoAddresses / InvalidAddress
    if not same_family:
        add("DestinationFamilyMismatch", field,
            f"IPv{dest.version} destination {dest} but spec.addresses has no IPv{dest.version} "
            "address to send it from")
        return
    if any(dest == iface.ip for iface, _ in addresses):
        add("InvalidDestinationIP", field, f"{dest} is the router's own address")
    elif dest.is_loopback or dest.is_multicast or dest.is_unspecified or dest.is_link_local:
        add("InvalidDestinationIP", field, f"{dest} cannot be a redirect destination")
    elif not any(dest in iface.network for iface, _ in same_family) and not any(gw for _, gw in same_family):
        add("NoGatewayForDestination", field,
            f"{dest} is outside every IPv{dest.version} subnet of spec.addresses and no gateway of "
            "that family is given")
