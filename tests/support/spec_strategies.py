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


def _integers(schema: dict) -> st.SearchStrategy[int]:
    return st.integers(schema["minimum"], schema["maximum"])


def _optional(schema: dict, name: str, value: st.SearchStrategy) -> st.SearchStrategy:
    """The value, or (when the schema does not require the field) absent, as `None`."""
    return value if name in schema.get("required", []) else st.none() | value


# The machine's uplink subnet: never drawn, although the namespaces are isolated (docs/cluster.md).
_UPLINK = ipaddress.ip_network("192.0.2.0/24")


def _any_ip(**kwargs: Any) -> st.SearchStrategy[Any]:
    return st.ip_addresses(**kwargs).filter(lambda ip: ip not in _UPLINK)


_UNICAST = {4: ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "198.51.100.0/24",
                 "203.0.113.0/24", "1.0.0.0/8", "200.0.0.0/8"],
            6: ["2000::/3", "2001:db8::/32", "fd00::/8"]}


@st.composite
def _subnet(draw: st.DrawFn, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Mostly unicast ranges: ip_addresses() alone favours special-purpose ones.
    ordinary = st.sampled_from(_UNICAST[version]).flatmap(lambda net: st.ip_addresses(network=net))
    ip = draw(st.one_of(ordinary, ordinary, ordinary, _any_ip(v=version)))
    bits = ip.max_prefixlen
    prefix = draw(st.sampled_from([bits - 8, bits - 8, bits - 16, bits - 4, bits - 1, bits]) | st.integers(1, bits))
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return ipaddress.ip_network(f"{ip}/{max(prefix, 25)}", strict=False) if net.overlaps(_UPLINK) else net


def _host_in(net: Any, avoid: Any = ()) -> st.SearchStrategy:
    """A host address of `net` other than `avoid` (any address of a subnet of 4 or fewer)."""
    def skip_avoided(i: int) -> Any:
        while net.network_address + i in avoid and i < net.num_addresses - 2:
            i += 1
        return net.network_address + i

    hosts = st.integers(1, net.num_addresses - 2).map(skip_avoided)
    anywhere = st.integers(0, net.num_addresses - 1).map(lambda i: net.network_address + i)
    return hosts if net.num_addresses > 4 else anywhere


def _odd_cidrs(host: Any, net: Any) -> st.SearchStrategy[str]:
    """`addresses[].ip` forms that ipaddress takes or that look right, and CNI's static IPAM may not."""
    return st.sampled_from([
        f"{host}/{net.netmask}",                                    # netmask form
        f"{host}",                                                  # no prefix
        f" {host}/{net.prefixlen} ",                                # white space around
        f"{host}/0{net.prefixlen}",                                 # leading zero in the prefix
        f"{host}/{net.prefixlen}\n",
        f"{host}%eth0/{net.prefixlen}" if host.version == 6 else f"::ffff:{host}/{96 + net.prefixlen}",
        f"{host}/{host.max_prefixlen + 1}",
    ])


# Names Linux takes (the usual case) and names that broke pods or look like they might.
_MASTERS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=15)
_ODD_MASTERS = st.one_of(
    st.sampled_from([".", "..", "lo", "all", "default", "a-very-long-ifc0", "ethà", "eth 0", "eth%d",
                     "eth:1", "a/b", "eth\t0", "-x", "bonding_masters"]),
    st.text(st.characters(min_codepoint=0x80, codec="utf-8"), min_size=5, max_size=15),  # multi-byte
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=16),
)
_ODD_DESTINATIONS = st.one_of(
    _any_ip().map(str),                                             # special-purpose ranges included
    st.sampled_from(["::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:0.0.0.0", "::ffff:224.0.0.1", "::127.0.0.1",
                     "0.1.2.3", "240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "ff02::1"]),
)
ODDITIES = ("address", "gateway", "master", "destination", "port")


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """One EgressRouter spec (the CRD's defaults for mode and networkInterface applied).

    Most draws are plausible (addresses, gateways and destinations that share subnets), with at most
    one oddity, so that an odd value meets an otherwise valid spec and really reaches the plugins.
    """
    # The two oddities that broke real pods (CIDR forms, master names) come twice as often.
    odd = draw(st.sampled_from((None,) * 5 + ODDITIES + ("address", "master")))
    versions = draw(st.sampled_from([(4,), (6,), (4, 6), (4, 4), (6, 4)]))
    nets = [draw(_subnet(v)) for v in versions]
    hosts = [draw(_host_in(net)) for net in nets]
    odd_index = draw(st.integers(0, len(nets) - 1))
    addresses = []
    for i, (net, host) in enumerate(zip(nets, hosts, strict=True)):
        address = {"ip": draw(_odd_cidrs(host, net)) if odd == "address" and i == odd_index
                   else f"{host}/{net.prefixlen}"}
        if odd == "gateway" and i == odd_index:
            address["gateway"] = draw(_any_ip().map(str) | _host_in(net).map(lambda ip: f"::ffff:{ip}"))
        elif draw(st.booleans()):
            address["gateway"] = str(draw(_host_in(net, avoid=hosts)))
        addresses.append(address)

    near = st.sampled_from(nets).flatmap(lambda net: _host_in(net, avoid=hosts)).map(str)
    destination = _ODD_DESTINATIONS if odd == "destination" else st.one_of(near, near, near, _any_ip().map(str))
    port = _RULE["properties"]["port"]
    rule_values = {
        "destinationIP": destination,
        "port": st.sampled_from([80, 443, 9180, 9181, port["minimum"], port["maximum"]]) if odd == "port"
        else _integers(port),
        "protocol": st.sampled_from(_RULE["properties"]["protocol"]["enum"]),
        "targetPort": _integers(_RULE["properties"]["targetPort"]),
    }
    rule = st.fixed_dictionaries({k: _optional(_RULE, k, v) for k, v in rule_values.items()}).map(
        lambda r: {k: v for k, v in r.items() if v is not None})
    redirect: dict[str, Any] = {}
    rules = draw(st.lists(rule, max_size=4))
    if rules:
        redirect["redirectRules"] = rules
    if not rules or draw(st.booleans()):
        redirect["fallbackIP"] = draw(destination)
    macvlan = {"mode": draw(st.sampled_from(_MACVLAN["properties"]["mode"]["enum"]))}
    master = draw(_ODD_MASTERS if odd == "master" else st.none() | _MASTERS)
    if master is not None:
        macvlan["master"] = master
    return {
        "mode": draw(st.sampled_from(_PROPS["mode"]["enum"])),
        "networkInterface": {"macvlan": macvlan},
        "addresses": addresses,
        "redirect": redirect,
    }
