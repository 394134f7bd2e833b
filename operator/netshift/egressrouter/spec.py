"""The one parser of an EgressRouter spec: what the CRD accepts, checked for what can actually work.

Pure. `parse` turns a spec (or a whole EgressRouter object) into the frozen `RouterConfig` the agent
runs, or returns every `Problem` at once so a user fixes a spec in one round. A problem carries a
CamelCase reason (the operator's Degraded reason) and a message that starts with the field path, e.g.
`spec.addresses[0].ip: "10.0.0.5" is not a CIDR (expected address/prefix, like 192.168.12.99/24)`.
The operator refuses a spec with problems before applying anything; the agent refuses it too.

Beyond the CRD, the rules follow what the data path accepts: Linux interface names (the macvlan
master), Go's `net.ParseCIDR`/`ParseIP` used by CNI's static IPAM (no netmask form, no zones, no
IPv4-mapped IPv6), and nftables (the destinations).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from netshift.models.egressrouter import DEFAULT_MACVLAN_MODE, EgressRouterMode, MacvlanMode, Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

FAMILIES = {4: "ip", 6: "ip6"}  # IP version -> nftables family
MASTER_FIELD = "spec.networkInterface.macvlan.master"
# Children are named like the router; a Service name must be a DNS-1035 label.
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Bytes the kernel's dev_valid_name() refuses: '/', ':' and its isspace() (which includes 0xA0, a
# byte of many UTF-8 characters); '%' makes the name a template ("eth%d" creates eth0).
_IFNAME_BAD_BYTES = frozenset(b"/:% \t\n\v\f\r\xa0\0")
_IFNAME_RESERVED = (".", "..", "all", "default")  # "all", "default": taken by /proc/sys/net/*/conf
_IFNAMSIZ = 16  # including the terminating NUL
_CIDR = re.compile(r"[^/]+/[0-9]+")  # [0-9]: ASCII digits only
_NOT_A_HOST = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("240.0.0.0/4"))  # Linux martians


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str  # CamelCase, becomes the Degraded reason
    field: str   # path of the field, e.g. spec.addresses[0].ip
    detail: str  # what is wrong, without the field

    @property
    def message(self) -> str:
        return f"{self.field}: {self.detail}"


class ConfigError(ValueError):
    """A spec (or config file) that cannot work; str() lists the problems, each naming its field."""

    def __init__(self, *problems: Problem) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems
        self.field = problems[0].field


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
        fallback = [] if self.fallback is None else [self.fallback]
        return tuple(dict.fromkeys([*(r.destination for r in self.rules), *fallback]))


Add = Callable[[str, str, str], None]


def _q(value: object) -> str:
    """A value quoted as in YAML/JSON ("10.0.0.5"), for messages."""
    return json.dumps(value, ensure_ascii=False, default=str)


def load(doc: Any, *, agent_ports: Iterable[int] = ()) -> RouterConfig:
    """`parse` for the agent, raising ConfigError with every problem instead of returning them."""
    result = parse(doc, agent_ports=agent_ports)
    if isinstance(result, RouterConfig):
        return result
    raise ConfigError(*result)


def parse(doc: Any, *, default_master: str | None = None,
          agent_ports: Iterable[int] = ()) -> RouterConfig | tuple[Problem, ...]:
    """A spec, or a whole EgressRouter object (then its metadata.name is checked too).

    `default_master` is the operator's master for a spec without one (it must be a valid name too);
    `agent_ports` are the agent's own TCP ports (health, metrics), which no rule may redirect.
    """
    problems: list[Problem] = []

    def add(reason: str, field: str, detail: str) -> None:
        problems.append(Problem(reason, field, detail))

    if not isinstance(doc, dict):
        return (Problem("InvalidSpec", "spec", "must be a mapping (the EgressRouter spec)"),)
    if isinstance(doc.get("spec"), dict):  # a bare spec has no `spec` key
        name = (doc.get("metadata") or {}).get("name")
        if name is not None:
            _check_name(name, add)
        doc = doc["spec"]

    mode = doc.get("mode") or EgressRouterMode.REDIRECT.value
    if mode not in {m.value for m in EgressRouterMode}:
        add("UnsupportedMode", "spec.mode", f"{_q(mode)} is not supported (only {EgressRouterMode.REDIRECT.value})")
    _check_macvlan(doc.get("networkInterface"), default_master, add)
    addresses = _addresses(doc.get("addresses"), add)

    redirect = doc.get("redirect")
    if not isinstance(redirect, dict):
        add("RedirectMissing", "spec.redirect", "is required in mode Redirect")
        return tuple(problems)
    rules = _rules(redirect.get("redirectRules"), addresses, set(agent_ports), add)
    fallback = None
    if redirect.get("fallbackIP") not in (None, ""):
        field = "spec.redirect.fallbackIP"
        fallback = _ip(redirect["fallbackIP"], field, "InvalidFallbackIP", add)
        if fallback is not None:
            _check_destination(fallback, field, addresses, add)
    elif not redirect.get("redirectRules"):
        add("NoRedirectTarget", "spec.redirect",
            "needs redirectRules or a fallbackIP: as written the router would redirect nothing")
    if problems:
        return tuple(problems)
    return RouterConfig(addresses=tuple(addresses), rules=tuple(rules), fallback=fallback)


def _check_name(name: Any, add: Add) -> None:
    if not isinstance(name, str) or len(name) > 63 or not _DNS1035_LABEL.match(name):
        add("InvalidName", "metadata.name",
            f"{_q(name)} cannot name the router's Service: it must be a DNS-1035 label "
            "(lower case letters, digits and '-', starting with a letter, at most 63 characters)")


def interface_name_problem(name: Any) -> str | None:
    """Why Linux would refuse `name` as an interface name (dev_valid_name), or None."""
    if not isinstance(name, str) or not name:
        return "is not a network interface name (empty)"
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) >= _IFNAMSIZ:
        return (f"{_q(name)} is not a network interface name: {len(raw)} bytes in UTF-8, "
                f"Linux allows at most {_IFNAMSIZ - 1}")
    if name in _IFNAME_RESERVED or _IFNAME_BAD_BYTES.intersection(raw) or any(c.isspace() for c in name):
        return (f"{_q(name)} is not a network interface name (not \".\", \"..\", \"all\" or \"default\"; "
                "no '/', ':', '%' or white space)")
    return None


def _check_macvlan(interface: Any, default_master: str | None, add: Add) -> None:
    macvlan = interface.get("macvlan") if isinstance(interface, dict) else None
    macvlan = macvlan if isinstance(macvlan, dict) else {}
    mode = macvlan.get("mode") or DEFAULT_MACVLAN_MODE
    if mode not in {m.value for m in MacvlanMode}:
        add("InvalidMacvlanMode", "spec.networkInterface.macvlan.mode",
            f"{_q(mode)} must be one of Bridge, Private, VEPA, Passthru")
    master = macvlan.get("master")
    if master not in (None, ""):
        why = "the loopback interface cannot be a macvlan master" if master == "lo" else interface_name_problem(master)
        if why:
            add("InvalidMacvlanMaster", MASTER_FIELD, why)
    elif default_master and (why := interface_name_problem(default_master)):
        add("InvalidMacvlanMaster", MASTER_FIELD, f"is not set and the operator's default master {why}")


def _addresses(raw: Any, add: Add) -> list[Address]:
    out: list[Address] = []
    if not raw:
        add("NoAddresses", "spec.addresses",
            "needs at least one address (a CIDR like 192.168.12.99/24) for the macvlan interface")
        return out
    if not isinstance(raw, list):
        add("InvalidSpec", "spec.addresses", "must be a list")
        return out
    gateways: dict[int, tuple[IPAddress, int]] = {}
    for i, item in enumerate(raw):
        field = f"spec.addresses[{i}]"
        if not isinstance(item, dict):
            add("InvalidSpec", field, "must be a mapping with ip and gateway")
            continue
        iface = _parse_interface(item.get("ip"))
        if isinstance(iface, str):
            add("InvalidAddress", f"{field}.ip", f"{_q(item.get('ip'))} {iface}")
            continue
        if any(other.interface.ip == iface.ip for other in out):
            add("DuplicateAddress", f"{field}.ip", f"{iface.ip} is listed twice")
            continue
        gateway = None
        if item.get("gateway") not in (None, ""):
            gateway = _gateway(item["gateway"], f"{field}.gateway", iface, add)
            if gateway is not None:
                first = gateways.setdefault(gateway.version, (gateway, i))
                if first[0] != gateway:
                    add("ConflictingGateways", f"{field}.gateway",
                        f"{gateway} differs from IPv{gateway.version} gateway {first[0]} of "
                        f"spec.addresses[{first[1]}]: one gateway per family")
        out.append(Address(iface, gateway))
    return out


def _parse_interface(raw: Any) -> IPInterface | str:
    """The interface of a CIDR, or what is wrong with it."""
    text = raw.strip() if isinstance(raw, str) else ""
    if "/" not in text:
        return "is not a CIDR (expected address/prefix, like 192.168.12.99/24)"
    if not _CIDR.fullmatch(text):
        # ipaddress also takes a netmask (/255.255.255.0), which CNI's static IPAM refuses.
        return "is not a valid CIDR (expected address/prefix length in digits, like 192.168.12.99/24)"
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return "is not a valid CIDR"
    net = iface.network
    if why := _unusable(iface):  # an interface is an address too (iface.ip loses the zone)
        return why
    if _special(iface.ip):
        return "cannot be the router's address (loopback, multicast, unspecified or reserved)"
    if net.prefixlen < iface.max_prefixlen - 1 and iface.ip == net.network_address:
        return "is the network address, not a host address"
    if iface.version == 4 and net.prefixlen < 31 and iface.ip == net.broadcast_address:
        return "is the broadcast address"
    return iface


def _gateway(raw: Any, field: str, iface: IPInterface, add: Add) -> IPAddress | None:
    gateway = _ip(raw, field, "InvalidGateway", add)
    net = iface.network
    if gateway is None:
        return None
    if gateway.version != iface.version:
        add("GatewayFamilyMismatch", field,
            f"IPv{gateway.version} gateway {gateway} for IPv{iface.version} address {iface}")
    elif gateway == iface.ip:
        add("InvalidGateway", field, f"{gateway} is the router's own address")
    elif net.prefixlen < iface.max_prefixlen and gateway not in net:
        add("GatewayNotInSubnet", field,
            f"{gateway} is outside {net}, the subnet of {iface}: the gateway must be on-link")
    else:
        return gateway
    return None


def _rules(raw: Any, addresses: list[Address], agent_ports: set[int], add: Add) -> list[Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        add("InvalidSpec", "spec.redirect.redirectRules", "must be a list")
        return []
    out: list[Rule] = []
    seen: dict[tuple[int, str, int], int] = {}
    for i, item in enumerate(raw):
        field = f"spec.redirect.redirectRules[{i}]"
        if not isinstance(item, dict):
            add("InvalidSpec", field, "must be a mapping")
            continue
        dest = _ip(item.get("destinationIP"), f"{field}.destinationIP", "InvalidDestinationIP", add)
        if dest is not None:
            _check_destination(dest, f"{field}.destinationIP", addresses, add)
        protocol = item.get("protocol")
        # The CRD says TCP|UDP|SCTP; lower case is a known field mistake and unambiguous, so accept it.
        if not isinstance(protocol, str) or protocol.upper() not in {p.value for p in Protocol}:
            add("InvalidProtocol", f"{field}.protocol", f"{_q(protocol)} must be one of TCP, UDP, SCTP")
            protocol = None
        port = _port(item.get("port"), f"{field}.port", add)
        target = item.get("targetPort")
        target_port = port if target is None else _port(target, f"{field}.targetPort", add)
        if dest is None or protocol is None or port is None or target_port is None:
            continue
        if protocol.upper() == "TCP" and port in agent_ports:  # it would redirect the agent's probes
            add("InvalidPort", f"{field}.port", f"TCP port {port} is the agent's own health/metrics port")
            continue
        key = (dest.version, protocol.lower(), port)
        if key in seen:
            add("DuplicateRedirectRule", f"{field}.port",
                f"{protocol.upper()} port {port} (IPv{dest.version}) is already redirected by "
                f"redirectRules[{seen[key]}]")
            continue
        seen[key] = i
        out.append(Rule(dest, port, protocol.lower(), target_port))
    return out


def _check_destination(dest: IPAddress, field: str, addresses: list[Address], add: Add) -> None:
    if not addresses:
        return  # already reported as NoAddresses / InvalidAddress
    same_family = [a for a in addresses if a.version == dest.version]
    if not same_family:
        add("DestinationFamilyMismatch", field,
            f"IPv{dest.version} destination {dest} but spec.addresses has no IPv{dest.version} "
            "address to send it from")
    elif any(dest == a.interface.ip for a in addresses):
        add("InvalidDestinationIP", field, f"{dest} is the router's own address")
    elif _special(dest) or dest.is_link_local:
        add("InvalidDestinationIP", field, f"{dest} cannot be a redirect destination")
    elif not any(dest in a.interface.network for a in same_family) and not any(a.gateway for a in same_family):
        add("NoGatewayForDestination", field,
            f"{dest} is outside every IPv{dest.version} subnet of spec.addresses and no gateway of "
            "that family is given")


def _special(ip: IPAddress) -> bool:
    """Not the address of a host on a link (Linux refuses or drops it as a martian)."""
    return (ip.is_loopback or ip.is_multicast or ip.is_unspecified
            or any(ip in net for net in _NOT_A_HOST if net.version == ip.version))


def _unusable(ip: IPAddress) -> str | None:
    """Why Go's net.ParseIP (CNI) or nftables would not take an address ipaddress accepts."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return f"has a zone (%{ip.scope_id}): give the address without it"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # Go treats it as IPv4 while nftables and routes treat it as IPv6: refuse the ambiguity
        # (and with it every mapped form of a refused address, like ::ffff:127.0.0.1).
        return f"is an IPv4-mapped IPv6 address: write {ip.ipv4_mapped} instead"
    return None


def _ip(raw: Any, field: str, reason: str, add: Add) -> IPAddress | None:
    if not isinstance(raw, str) or not raw.strip():
        add(reason, field, "is required (an IPv4 or IPv6 address)")
        return None
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        add(reason, field, f"{_q(raw)} is not an IPv4 or IPv6 address")
        return None
    if why := _unusable(ip):
        add(reason, field, f"{_q(raw)} {why}")
        return None
    return ip


def _port(raw: Any, field: str, add: Add) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int):
        add("InvalidPort", field, f"{_q(raw)} must be a port number 1-65535")
        return None
    if not 1 <= raw <= 65535:
        add("InvalidPort", field, f"{raw} is outside 1-65535")
        return None
    return raw
