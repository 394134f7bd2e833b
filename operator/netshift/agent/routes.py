"""Addresses, host routes and forwarding sysctls of the router's network namespace (pyroute2).

`desired_routes` is pure. The rest is a thin edge that only ever touches the egress interface's
addresses and routes tagged with our route protocol; the pod interface and its default route are
never modified (cluster traffic and replies to clients stay on the pod network).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import pathlib
from collections.abc import Iterable
from typing import Any

from netshift.egressrouter.spec import Address, IPAddress, RouterConfig

log = logging.getLogger("netshift.agent")

# Route protocol number marking the routes this agent owns (ip route ... proto 158), so that stale
# ones can be removed without touching anybody else's.
RTPROT_NETSHIFT = 158
MAIN_TABLE = 254
IFA_F_NODAD = 0x02
AF = {4: 2, 6: 10}  # socket.AF_INET, AF_INET6


# pyroute2.IPRoute and its messages: the library ships no annotations.
IPRoute = Any
RouteMsg = Any


class NetError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True, order=True)
class RouteSpec:
    dst: str                 # host address
    prefixlen: int           # 32 or 128
    gateway: str | None      # None: on-link route (scope link) on the egress interface

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.dst).version


def _on_link(ip: IPAddress, addresses: Iterable[Address]) -> bool:
    return any(a.version == ip.version and ip in a.interface.network for a in addresses)


def desired_routes(cfg: RouterConfig) -> list[RouteSpec]:
    """Host routes on the egress interface: destinations via the gateway of their family unless
    on-link (the connected route of the address already covers them; adding one fails with "File
    exists" upstream), plus an on-link route to a gateway outside the address's subnet."""
    out: dict[RouteSpec, None] = {}
    for version in cfg.versions:
        gw = cfg.gateway(version)
        if gw is not None and not _on_link(gw, cfg.addresses):
            out.setdefault(RouteSpec(str(gw), gw.max_prefixlen, None), None)
    for dest in cfg.destinations():
        if _on_link(dest, cfg.addresses):
            continue
        gw = cfg.gateway(dest.version)
        if gw is None or dest == gw:
            continue  # config validation guarantees a gateway when not on-link
        out.setdefault(RouteSpec(str(dest), dest.max_prefixlen, str(gw)), None)
    return list(out)


# --- edges ---------------------------------------------------------------------------------------

def link_index(ipr: IPRoute, name: str) -> int:
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        raise NetError(f"interface {name!r} not found in the pod's network namespace")
    return int(idx[0])


def ensure_link_up(ipr: IPRoute, index: int) -> bool:
    link = ipr.get_links(index)[0]
    if link["flags"] & 1:  # IFF_UP
        return False
    ipr.link("set", index=index, state="up")
    return True


def ensure_addresses(ipr: IPRoute, index: int, addresses: Iterable[Address]) -> list[str]:
    """Add the spec's addresses that are missing, keeping their prefix; returns what was added."""
    present = {msg.get_attr("IFA_ADDRESS"): msg["prefixlen"] for msg in ipr.get_addr(index=index)}
    added = []
    for a in addresses:
        ip = str(a.interface.ip)
        if ip in present:
            if present[ip] != a.interface.network.prefixlen:
                log.warning("address %s has prefix /%s on the egress interface, spec says /%s; leaving it",
                            ip, present[ip], a.interface.network.prefixlen)
            continue
        # No DAD for v6: the address is assigned by IPAM and must be usable immediately.
        flags = IFA_F_NODAD if a.version == 6 else 0
        ipr.addr("add", index=index, address=ip, prefixlen=a.interface.network.prefixlen, flags=flags)
        added.append(str(a.interface))
    return added


def _main_routes(ipr: IPRoute, version: int) -> list[RouteMsg]:
    return [r for r in ipr.get_routes(family=AF[version])
            if (r.get_attr("RTA_TABLE") or r["table"]) == MAIN_TABLE]


def ensure_routes(ipr: IPRoute, index: int, wanted: Iterable[RouteSpec]) -> list[str]:
    """Make the host routes exist (tolerating identical ones from anybody); drop stale ones of ours."""
    wanted = list(wanted)
    changes = []
    for version in (4, 6):
        existing = _main_routes(ipr, version)
        for spec in (w for w in wanted if w.version == version):
            same_dst = [r for r in existing if r.get_attr("RTA_DST") == spec.dst and r["dst_len"] == spec.prefixlen]
            if any(r.get_attr("RTA_OIF") == index and r.get_attr("RTA_GATEWAY") == spec.gateway for r in same_dst):
                continue
            kwargs = {"dst": spec.dst, "dst_len": spec.prefixlen, "oif": index, "proto": RTPROT_NETSHIFT,
                          "family": AF[version], "table": MAIN_TABLE}
            if spec.gateway:
                kwargs["gateway"] = spec.gateway
            else:
                kwargs["scope"] = 253  # RT_SCOPE_LINK
            ipr.route("replace", **kwargs)
            changes.append(f"route {spec.dst}/{spec.prefixlen} via {spec.gateway or 'link'}")
        keep = {(w.dst, w.prefixlen) for w in wanted if w.version == version}
        for r in existing:
            if r["proto"] == RTPROT_NETSHIFT and (r.get_attr("RTA_DST"), r["dst_len"]) not in keep:
                _delete(ipr, r, version)
                changes.append(f"removed route {r.get_attr('RTA_DST')}/{r['dst_len']}")
    return changes


def remove_routes(ipr: IPRoute) -> None:
    for version in (4, 6):
        for r in _main_routes(ipr, version):
            if r["proto"] == RTPROT_NETSHIFT:
                _delete(ipr, r, version)


def _delete(ipr: IPRoute, r: RouteMsg, version: int) -> None:
    kwargs = {"dst": r.get_attr("RTA_DST"), "dst_len": r["dst_len"], "family": AF[version], "table": MAIN_TABLE,
                  "proto": RTPROT_NETSHIFT}
    if r.get_attr("RTA_OIF"):
        kwargs["oif"] = r.get_attr("RTA_OIF")
    try:
        ipr.route("del", **kwargs)
    except Exception as exc:
        log.debug("route delete %s: %s", kwargs, exc)


SYSCTLS = {4: "/proc/sys/net/ipv4/ip_forward", 6: "/proc/sys/net/ipv6/conf/all/forwarding"}


def ensure_forwarding(versions: Iterable[int]) -> list[str]:
    """Forwarding must be on for the families in use. In a pod the NAD's `tuning` plugin sets it; we
    set it ourselves when we may (tests, privileged runs) and otherwise say exactly what is missing."""
    changed = []
    for v in versions:
        path = SYSCTLS[v]
        name = path.removeprefix("/proc/sys/").replace("/", ".")
        if pathlib.Path(path).read_text().strip() == "1":
            continue
        try:
            pathlib.Path(path).write_text("1")
        except OSError as exc:
            raise NetError(f"{name} is 0 and cannot be set ({exc.strerror}); the router pod's "
                           "NetworkAttachmentDefinition must set it with the tuning plugin") from None
        changed.append(f"{name}=1")
    return changed
