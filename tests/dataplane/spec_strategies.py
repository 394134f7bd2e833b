"""Hypothesis strategies: EgressRouter specs the CRD's schema accepts (crds/egressrouters...yaml).

Enumerations, required fields and integer limits are read from the schema. Formats (`ipv4`/`ipv6`:
what Go's net.ParseIP takes, including IPv4-mapped IPv6) and the free strings (`addresses[].ip`,
`macvlan.master`) are drawn so that most specs are plausible (addresses, gateways and destinations
that share subnets) and some carry the forms that broke real pods: netmask CIDRs, zones, multi-byte
interface names, `.`/`..`.
"""
from __future__ import annotations

import ipaddress
import pathlib
from typing import Any

import yaml
from hypothesis import strategies as st

CRD = pathlib.Path(__file__).parents[2] / "crds" / "egressrouters.network.operator.openshift.io.yaml"
SPEC_SCHEMA = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
    "properties"]["spec"]
_PROPS = SPEC_SCHEMA["properties"]
_RULE = _PROPS["redirect"]["properties"]["redirectRules"]["items"]
_MACVLAN = _PROPS["networkInterface"]["properties"]["macvlan"]


def _mostly(usual: st.SearchStrategy, odd: st.SearchStrategy, percent: int = 85) -> st.SearchStrategy:
    """`usual` in about `percent`% of the draws: most specs should get past the parser."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else odd)


def _integers(schema: dict) -> st.SearchStrategy[int]:
    return st.integers(schema["minimum"], schema["maximum"])


def _optional(schema: dict, name: str, value: st.SearchStrategy) -> st.SearchStrategy:
    """The value, or (when the schema does not require the field) absent, as `None`."""
    return value if name in schema.get("required", []) else st.none() | value


_UNICAST = {4: ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "198.51.100.0/24",
                 "203.0.113.0/24", "1.0.0.0/8", "200.0.0.0/8"],
            6: ["2000::/3", "2001:db8::/32", "fd00::/8"]}


@st.composite
def _subnet(draw: st.DrawFn, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Mostly unicast ranges: ip_addresses() alone favours special-purpose ones.
    ordinary = st.sampled_from(_UNICAST[version]).flatmap(lambda net: st.ip_addresses(network=net))
    ip = draw(_mostly(ordinary, st.ip_addresses(v=version), 80))
    bits = ip.max_prefixlen
    prefix = draw(st.sampled_from([bits - 8, bits - 1, bits]) | st.integers(1, bits))
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def _host_in(net: Any, avoid: Any = ()) -> st.SearchStrategy:
    """Mostly a host address of `net` other than `avoid` (any address when the subnet has no other)."""
    def skip_avoided(i: int) -> Any:
        while net.network_address + i in avoid and i < net.num_addresses - 2:
            i += 1
        return net.network_address + i

    hosts = st.integers(1, net.num_addresses - 2).map(skip_avoided)
    anywhere = st.integers(0, net.num_addresses - 1).map(lambda i: net.network_address + i)
    return _mostly(hosts, anywhere, 90) if net.num_addresses > 4 else anywhere


def _ip_text(ip: Any) -> st.SearchStrategy[str]:
    """An address as the CRD's ipv4/ipv6 formats accept it (an IPv4 also in IPv4-mapped form)."""
    return _mostly(st.just(str(ip)), st.just(f"::ffff:{ip}")) if ip.version == 4 else st.just(str(ip))


@st.composite
def _address(draw: st.DrawFn, net: Any) -> tuple[dict[str, Any], Any]:
    """An `addresses[]` item in `net`, and its host address."""
    host = draw(_host_in(net))
    ip = draw(_mostly(st.just(f"{host}/{net.prefixlen}"), st.sampled_from([
        f"{host}/{net.netmask}",                                   # netmask form
        f"{host}",                                                  # no prefix
        f" {host}/{net.prefixlen} ",                                # white space around
        f"{host}/0{net.prefixlen}",                                 # leading zero in the prefix
        f"{host}%eth0/{net.prefixlen}" if host.version == 6 else f"::ffff:{host}/{96 + net.prefixlen}",
    ]), 90))
    gateway = draw(_mostly(st.none() | _host_in(net, avoid=(host,)).flatmap(_ip_text), st.ip_addresses().map(str)))
    return ({"ip": ip} if gateway is None else {"ip": ip, "gateway": gateway}), host


_MASTERS = _mostly(
    st.none() | st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=15),
    st.sampled_from(["a-very-long-if0", "a-very-long-ifc0", ".", "..", "lo", "all", "ééééééé", "éééééééé",
                     "ethà", "eth 0", "eth%d", "eth:1", "a/b"])
    | st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=16),
    70,
)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """One EgressRouter spec (the CRD's defaults for mode and networkInterface applied)."""
    versions = draw(st.sampled_from([(4,), (6,), (4, 6), (4, 4), (6, 4)]))
    nets = [draw(_subnet(v)) for v in versions]
    addresses, own = zip(*(draw(_address(net)) for net in nets), strict=True)

    def destination() -> st.SearchStrategy[str]:
        near = st.sampled_from(nets).flatmap(lambda net: _host_in(net, avoid=own)).flatmap(_ip_text)
        return _mostly(near, st.ip_addresses().map(str), 70)

    rule_values = {
        "destinationIP": destination(),
        "port": _integers(_RULE["properties"]["port"]) | st.sampled_from([80, 443, 9180, 9181]),
        "protocol": st.sampled_from(_RULE["properties"]["protocol"]["enum"]),
        "targetPort": _integers(_RULE["properties"]["targetPort"]),
    }
    rule = st.fixed_dictionaries({k: _optional(_RULE, k, v) for k, v in rule_values.items()}).map(
        lambda r: {k: v for k, v in r.items() if v is not None})
    redirect: dict[str, Any] = {}
    rules = draw(_mostly(st.lists(rule, min_size=1, max_size=4), st.just([])))
    if rules:
        redirect["redirectRules"] = rules
    fallback = draw(st.none() | destination())
    if fallback is not None:
        redirect["fallbackIP"] = fallback
    macvlan = {"mode": draw(st.sampled_from(_MACVLAN["properties"]["mode"]["enum"]))}
    master = draw(_MASTERS)
    if master is not None:
        macvlan["master"] = master
    return {
        "mode": draw(st.sampled_from(_PROPS["mode"]["enum"])),
        "networkInterface": {"macvlan": macvlan},
        "addresses": list(addresses),
        "redirect": redirect,
    }
