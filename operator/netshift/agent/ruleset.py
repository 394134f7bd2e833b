"""The nftables ruleset of a router configuration: pure rendering, no I/O.

One table per address family that has an address on the egress interface, both named
`netshift_egress` (`ip netshift_egress`, `ip6 netshift_egress`). Each table holds:

- `prerouting` (nat, dstnat): traffic arriving on the pod interface for the router itself
  (`fib daddr type local`) is DNATed per rule in spec order, then to the fallback when one is set
  (the agent's own TCP ports are exempted first, so probes and scrapes are not redirected).
- `forward` (filter): per-rule traffic counters for every packet of a redirected flow, both
  directions (`ct original proto-dst` identifies the rule; NAT chains only see a flow's first packet).
- `input` (filter): without a fallback of that family, new TCP/UDP/SCTP flows from the pod interface
  that no rule took are rejected (TCP reset, ICMP port unreachable), except the agent's own ports.
- `postrouting` (nat, srcnat): everything leaving the egress interface gets the router's address of
  that family as source.

Named counters: `c_<proto>_<port>` / `c_fallback` count redirected connections (the DNAT rule sees
one packet per flow), `t_<proto>_<port>` / `t_fallback` count packets and bytes of those flows,
`rejected` counts rejected packets.

The JSON objects are written in the exact form `nft -j list table` prints them (nft 1.0.x), so the
live table can be compared with the desired one after stripping handles and counter values.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from netshift.egressrouter.spec import FAMILIES, IPAddress, RouterConfig, Rule

TABLE = "netshift_egress"
CHAINS = (  # name, type, hook, priority (dstnat=-100, filter=0, srcnat=100)
    ("prerouting", "nat", "prerouting", -100),
    ("forward", "filter", "forward", 0),
    ("input", "filter", "input", 0),
    ("postrouting", "nat", "postrouting", 100),
)
REJECTED = "rejected"
FALLBACK = "fallback"


@dataclasses.dataclass(frozen=True)
class CounterInfo:
    """What a named counter measures, for the metrics endpoint."""
    family: str
    name: str
    kind: str                    # "connections", "traffic" or "rejected"
    labels: tuple[tuple[str, str], ...]


def families(cfg: RouterConfig) -> tuple[str, ...]:
    return tuple(FAMILIES[v] for v in cfg.versions)


def _version(family: str) -> int:
    return 4 if family == "ip" else 6


def _rules_of(cfg: RouterConfig, version: int) -> list[Rule]:
    return [r for r in cfg.rules if r.version == version]


def _fallback_of(cfg: RouterConfig, version: int) -> IPAddress | None:
    return cfg.fallback if cfg.fallback is not None and cfg.fallback.version == version else None


# --- JSON expressions, in nft's listing form -------------------------------------------------

def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _set_or_value(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else {"set": values}


def _from_pod(pod_if: str) -> list[dict[str, Any]]:
    return [_match(_meta("iifname"), pod_if),
            _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")]


def _dport(proto: str, port: Any, op: str = "==") -> dict[str, Any]:
    return _match({"payload": {"protocol": proto, "field": "dport"}}, port, op)


def counters(cfg: RouterConfig) -> list[CounterInfo]:
    """Every named counter of the desired tables with the labels the metrics carry."""
    out: list[CounterInfo] = []
    for family in families(cfg):
        version = _version(family)
        for r in _rules_of(cfg, version):
            labels = (("protocol", r.protocol), ("port", str(r.port)),
                      ("destination", str(r.destination)), ("target_port", str(r.target_port)))
            out.append(CounterInfo(family, f"c_{r.key}", "connections", labels))
            out.append(CounterInfo(family, f"t_{r.key}", "traffic", labels))
        fb = _fallback_of(cfg, version)
        if fb is not None:
            labels = (("protocol", "any"), ("port", "any"), ("destination", str(fb)), ("target_port", "any"))
            out.append(CounterInfo(family, f"c_{FALLBACK}", "connections", labels))
            out.append(CounterInfo(family, f"t_{FALLBACK}", "traffic", labels))
        else:
            out.append(CounterInfo(family, REJECTED, "rejected", ()))
    return out


def table_objects(cfg: RouterConfig, family: str, *, pod_if: str, egress_if: str,
                  exempt_ports: Iterable[int] = ()) -> list[dict[str, Any]]:
    """The desired content of one family's table: table, counters, chains, rules (listing order)."""
    version = _version(family)
    exempt = sorted(set(exempt_ports))
    rules = _rules_of(cfg, version)
    fallback = _fallback_of(cfg, version)
    base = {"family": family, "table": TABLE}

    objs: list[dict[str, Any]] = [{"table": {"family": family, "name": TABLE}}]
    objs += [{"counter": {"family": family, "name": c.name, "table": TABLE}}
             for c in counters(cfg) if c.family == family]
    for name, ctype, hook, prio in CHAINS:
        objs.append({"chain": {**base, "name": name, "type": ctype, "hook": hook, "prio": prio,
                               "policy": "accept"}})

    def rule(chain: str, expr: list[dict[str, Any]]) -> None:
        objs.append({"rule": {**base, "chain": chain, "expr": expr}})

    # prerouting: DNAT in spec order; fallback last.
    for r in rules:
        rule("prerouting", [*_from_pod(pod_if), _dport(r.protocol, r.port), {"counter": f"c_{r.key}"},
                            {"dnat": {"addr": str(r.destination), "port": r.target_port}}])
    if fallback is not None:
        if exempt:
            rule("prerouting", [*_from_pod(pod_if), _dport("tcp", _set_or_value(exempt)), {"return": None}])
        rule("prerouting", [*_from_pod(pod_if), {"counter": f"c_{FALLBACK}"},
                            {"dnat": {"addr": str(fallback)}}])

    # forward: count every packet of redirected flows by the rule that redirected them.
    dnat_status = _match({"ct": {"key": "status"}}, "dnat", "in")
    for r in rules:
        rule("forward", [dnat_status, _match(_meta("l4proto"), r.protocol),
                         _match({"ct": {"key": "proto-dst", "dir": "original"}}, r.port),
                         {"counter": f"t_{r.key}"}, {"accept": None}])
    if fallback is not None:
        rule("forward", [dnat_status, {"counter": f"t_{FALLBACK}"}, {"accept": None}])

    # input: without a fallback, what no rule took is refused cleanly instead of reaching the pod.
    if fallback is None:
        new_from_pod = [_match(_meta("iifname"), pod_if), _match({"ct": {"key": "state"}}, "new", "in")]
        tcp = [_dport("tcp", _set_or_value(exempt), "!=")] if exempt else [_match(_meta("l4proto"), "tcp")]
        rule("input", [*new_from_pod, *tcp, {"counter": REJECTED}, {"reject": {"type": "tcp reset"}}])
        icmp = ({"type": "icmp", "expr": "port-unreachable"} if family == "ip"
                else {"type": "icmpv6", "expr": "port-unreachable"})
        rule("input", [*new_from_pod, _match(_meta("l4proto"), {"set": ["udp", "sctp"]}),
                       {"counter": REJECTED}, {"reject": icmp}])

    # postrouting: the outside world sees the router's address of this family.
    rule("postrouting", [_match(_meta("oifname"), egress_if),
                         {"snat": {"addr": str(cfg.source(version).interface.ip)}}])
    return objs


def desired(cfg: RouterConfig, *, pod_if: str, egress_if: str,
            exempt_ports: Iterable[int] = ()) -> dict[str, list[dict[str, Any]]]:
    """Desired tables by family ("ip", "ip6"); a family absent here must have no table."""
    return {f: table_objects(cfg, f, pod_if=pod_if, egress_if=egress_if, exempt_ports=exempt_ports)
            for f in families(cfg)}


def transaction(tables: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One atomic nft batch replacing our tables (and only ours) by the desired ones.

    `add table; delete table` first makes the delete valid whether or not the table exists; the
    kernel commits the whole batch or nothing, so no half-applied ruleset is ever visible.
    Conntrack entries are not touched: established flows keep their NAT bindings.
    """
    cmds: list[dict[str, Any]] = []
    for family in FAMILIES.values():
        ident = {"family": family, "name": TABLE}
        cmds += [{"add": {"table": dict(ident)}}, {"delete": {"table": dict(ident)}}]
        cmds += [{"add": obj} for obj in tables.get(family, [])]
    return {"nftables": cmds}


def removal() -> dict[str, Any]:
    """Batch deleting our tables (valid whether they exist or not)."""
    return transaction({})


def normalize(listing: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of a `nft -j list table` output without metainfo, handles and counter values."""
    out: list[dict[str, Any]] = []
    for obj in listing:
        (kind, body), = obj.items()
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k not in ("handle", "packets", "bytes")}
        out.append({kind: body})
    return out


# --- the same ruleset as an nft script, for --dry-run and humans --------------------------------

def _addr_port(addr: str, port: int | None, family: str) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if family == "ip6" else f"{addr}:{port}"


def render_script(cfg: RouterConfig, *, pod_if: str, egress_if: str,
                  exempt_ports: Iterable[int] = ()) -> str:
    """The ruleset as `nft -f` input; equivalent to `desired()` (a data-plane test checks it)."""
    exempt = sorted(set(exempt_ports))
    lines: list[str] = []
    for family in FAMILIES.values():
        lines += [f"add table {family} {TABLE}", f"delete table {family} {TABLE}"]
    for family in families(cfg):
        version = _version(family)
        rules = _rules_of(cfg, version)
        fallback = _fallback_of(cfg, version)
        from_pod = f'iifname "{pod_if}" fib daddr type local'
        ports = "{ " + ", ".join(map(str, exempt)) + " }" if len(exempt) > 1 else "".join(map(str, exempt))
        lines.append(f"table {family} {TABLE} {{")
        lines += [f"  counter {c.name} {{ }}" for c in counters(cfg) if c.family == family]
        body: dict[str, list[str]] = {name: [] for name, *_ in CHAINS}
        for r in rules:
            body["prerouting"].append(f"{from_pod} {r.protocol} dport {r.port} counter name \"c_{r.key}\" "
                                      f"dnat to {_addr_port(str(r.destination), r.target_port, family)}")
            body["forward"].append(f"ct status dnat meta l4proto {r.protocol} ct original proto-dst "
                                   f"{r.port} counter name \"t_{r.key}\" accept")
        if fallback is not None:
            if exempt:
                body["prerouting"].append(f"{from_pod} tcp dport {ports} return")
            body["prerouting"].append(f"{from_pod} counter name \"c_{FALLBACK}\" dnat to {fallback}")
            body["forward"].append(f"ct status dnat counter name \"t_{FALLBACK}\" accept")
        else:
            new = f'iifname "{pod_if}" ct state new'
            tcp = f"tcp dport != {ports}" if exempt else "meta l4proto tcp"
            icmp = "icmp" if family == "ip" else "icmpv6"
            body["input"] += [f"{new} {tcp} counter name \"{REJECTED}\" reject with tcp reset",
                              f"{new} meta l4proto {{ udp, sctp }} counter name \"{REJECTED}\" "
                              f"reject with {icmp} port-unreachable"]
        body["postrouting"].append(f'oifname "{egress_if}" snat to {cfg.source(version).interface.ip}')
        for name, ctype, hook, prio in CHAINS:
            lines.append(f"  chain {name} {{")
            lines.append(f"    type {ctype} hook {hook} priority {prio}; policy accept;")
            lines += [f"    {line}" for line in body[name]]
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"
