"""The one EgressRouter spec parser: the typed config it yields, and problems that name the field."""
from __future__ import annotations

import ipaddress

import pytest

from netshift.agent.config import parse_text
from netshift.egressrouter.spec import ConfigError, Problem, RouterConfig, load, parse
from tests.support.egressrouters import router_obj

MASTER = "spec.networkInterface.macvlan.master"


def problems(name: str = "egress", **changes) -> list[tuple[str, str]]:
    obj = router_obj(**changes)
    obj["metadata"]["name"] = name
    result = parse(obj)
    return [] if isinstance(result, RouterConfig) else [(p.reason, p.field) for p in result]


def messages(**changes) -> list[str]:
    result = parse(router_obj(**changes))
    return [] if isinstance(result, RouterConfig) else [p.message for p in result]


def er(rules=None, fallback=None, addresses=None, **spec_extra) -> dict:
    redirect: dict = {}
    if rules is not None:
        redirect["redirectRules"] = rules
    if fallback is not None:
        redirect["fallbackIP"] = fallback
    return {"spec": {"addresses": addresses if addresses is not None else
                     [{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"}],
                     "redirect": redirect, **spec_extra}}


def rule(dest="198.51.100.10", port=80, proto="TCP", **kw) -> dict:
    return {"destinationIP": dest, "port": port, "protocol": proto, **kw}


# --- the typed configuration ------------------------------------------------------------------

def test_valid_router_has_no_problems():
    assert problems() == []


def test_full_object_and_bare_spec_parse_the_same() -> None:
    obj = er([rule(targetPort=8080)], fallback="198.51.100.12")
    assert load(obj) == load(obj["spec"])


def test_yaml_document_with_defaults() -> None:
    cfg = parse_text("""
apiVersion: network.operator.openshift.io/v1
kind: EgressRouter
metadata: {name: egress-1}
spec:
  addresses:
  - {ip: 10.250.2.10/24, gateway: 10.250.2.1}
  - {ip: "2001:db8:a::10/64", gateway: "2001:db8:a::1"}
  redirect:
    redirectRules:
    - {destinationIP: 198.51.100.10, port: 80, protocol: TCP}
    - {destinationIP: "2001:db8:d::10", port: 53, protocol: udp, targetPort: 5353}
""")
    assert cfg.versions == (4, 6)
    assert cfg.addresses[0].interface == ipaddress.ip_interface("10.250.2.10/24")
    first, second = cfg.rules
    assert (first.protocol, first.port, first.target_port) == ("tcp", 80, 80)  # targetPort defaults to port
    assert (second.protocol, second.target_port, second.version) == ("udp", 5353, 6)
    assert cfg.fallback is None
    assert cfg.source(6).interface.ip == ipaddress.ip_address("2001:db8:a::10")
    assert cfg.gateway(4) == ipaddress.ip_address("10.250.2.1")


def test_json_document() -> None:
    cfg = parse_text('{"spec": {"addresses": [{"ip": "10.250.2.10/24"}], "redirect": {"fallbackIP": "10.250.2.20"}}}')
    assert cfg.rules == () and str(cfg.fallback) == "10.250.2.20"
    assert cfg.destinations() == (ipaddress.ip_address("10.250.2.20"),)


def test_destinations_are_unique_in_spec_order() -> None:
    cfg = load(er([rule(port=80), rule(dest="198.51.100.11", port=81), rule(port=82)], fallback="198.51.100.10"))
    assert [str(d) for d in cfg.destinations()] == ["198.51.100.10", "198.51.100.11"]


def test_same_port_on_other_protocol_or_family_is_fine() -> None:
    cfg = load(er([rule(), rule(proto="UDP"), rule(dest="2001:db8:d::10")],
                  addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"},
                             {"ip": "2001:db8:a::10/64", "gateway": "2001:db8:a::1"}]))
    assert [r.key for r in cfg.rules] == ["tcp_80", "udp_80", "tcp_80"]


def test_on_link_destination_needs_no_gateway() -> None:
    assert load(er([rule(dest="10.250.2.20")], addresses=[{"ip": "10.250.2.10/24"}])).gateway(4) is None


def test_a_host_route_source_may_use_any_gateway() -> None:
    """A /32 source uses its gateway on-link (the agent adds the route), as upstream allows."""
    assert problems(addresses=[{"ip": "192.168.12.99/32", "gateway": "192.168.12.1"}]) == []


# --- problems -----------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, reason, field, words", [
    (er([rule()], mode="Proxy"), "UnsupportedMode", "spec.mode", "only Redirect"),
    (er([rule()], addresses=[]), "NoAddresses", "spec.addresses", "at least one"),
    (er([rule()], addresses=[{"ip": "10.250.2.10"}]), "InvalidAddress", "spec.addresses[0].ip",
     '"10.250.2.10" is not a CIDR (expected address/prefix'),
    (er([rule()], addresses=[{"ip": "10.250.2.300/24"}]), "InvalidAddress", "spec.addresses[0].ip",
     "not a valid CIDR"),
    (er([rule()], addresses=[{"ip": "10.250.2.0/24"}]), "InvalidAddress", "spec.addresses[0].ip", "network address"),
    (er([rule()], addresses=[{"ip": "10.250.2.255/24"}]), "InvalidAddress", "spec.addresses[0].ip", "broadcast"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/33"}]), "InvalidAddress", "spec.addresses[0].ip", "not a valid CIDR"),
    # ipaddress takes a netmask, CNI's static IPAM does not
    (er([rule()], addresses=[{"ip": "10.250.2.10/255.255.255.0"}]), "InvalidAddress", "spec.addresses[0].ip",
     "prefix length in digits"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/٢٤"}]), "InvalidAddress", "spec.addresses[0].ip",
     "prefix length in digits"),
    (er([rule(dest="2001:db8::1")], addresses=[{"ip": "fe80::1%eth0/64", "gateway": "fe80::2"}]),
     "InvalidAddress", "spec.addresses[0].ip", "has a zone (%eth0)"),
    (er([rule()], addresses=[{"ip": "::ffff:10.250.2.10/120"}]), "InvalidAddress", "spec.addresses[0].ip",
     "write 10.250.2.10 instead"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "2001:db8::1"}]), "GatewayFamilyMismatch",
     "spec.addresses[0].gateway", "IPv6 gateway"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.10"}]), "InvalidGateway",
     "spec.addresses[0].gateway", "own address"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.3.1"}]), "GatewayNotInSubnet",
     "spec.addresses[0].gateway", "must be on-link"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"},
                             {"ip": "10.250.2.11/24", "gateway": "10.250.2.2"}]),
     "ConflictingGateways", "spec.addresses[1].gateway", "one gateway per family"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"}, {"ip": "10.250.2.10/25"}]),
     "DuplicateAddress", "spec.addresses[1].ip", "listed twice"),
    ({"spec": {"addresses": [{"ip": "10.250.2.10/24"}]}}, "RedirectMissing", "spec.redirect", "required"),
    (er([]), "NoRedirectTarget", "spec.redirect", "redirectRules or a fallbackIP"),
    (er([rule(), rule(dest="10.0.0.300")]), "InvalidDestinationIP",
     "spec.redirect.redirectRules[1].destinationIP", "not an IPv4"),
    (er([rule(dest="2001:db8:d::10")]), "DestinationFamilyMismatch",
     "spec.redirect.redirectRules[0].destinationIP", "no IPv6 address"),
    (er([rule(dest="10.250.2.10")]), "InvalidDestinationIP", "spec.redirect.redirectRules[0].destinationIP",
     "own address"),
    (er([rule(dest="198.51.100.10")], addresses=[{"ip": "10.250.2.10/24"}]), "NoGatewayForDestination",
     "spec.redirect.redirectRules[0].destinationIP", "no gateway"),
    (er([rule(port=0)]), "InvalidPort", "spec.redirect.redirectRules[0].port", "outside 1-65535"),
    (er([rule(port=True)]), "InvalidPort", "spec.redirect.redirectRules[0].port", "port number"),
    (er([rule(port="80")]), "InvalidPort", "spec.redirect.redirectRules[0].port", "port number"),
    (er([rule(targetPort=70000)]), "InvalidPort", "spec.redirect.redirectRules[0].targetPort", "outside 1-65535"),
    (er([rule(proto="ICMP")]), "InvalidProtocol", "spec.redirect.redirectRules[0].protocol", "TCP, UDP, SCTP"),
    (er([rule(), rule(dest="198.51.100.11", proto="tcp")]), "DuplicateRedirectRule",
     "spec.redirect.redirectRules[1].port", "already redirected by redirectRules[0]"),
    (er([rule()], fallback="2001:db8::1"), "DestinationFamilyMismatch", "spec.redirect.fallbackIP", "no IPv6 address"),
    (er([rule()], fallback="nope"), "InvalidFallbackIP", "spec.redirect.fallbackIP", "not an IPv4 or IPv6"),
    (er([rule()], fallback="10.250.2.10"), "InvalidDestinationIP", "spec.redirect.fallbackIP", "own address"),
    (er([rule()], networkInterface={"macvlan": {"mode": "Trunk"}}), "InvalidMacvlanMode",
     "spec.networkInterface.macvlan.mode", "Bridge, Private, VEPA, Passthru"),
    ({"metadata": {"name": "egress.router"}, **er([rule()])}, "InvalidName", "metadata.name", "DNS-1035"),
    ({"metadata": {"name": "1router"}, **er([rule()])}, "InvalidName", "metadata.name", "DNS-1035"),
    ({"metadata": {"name": "a" * 64}, **er([rule()])}, "InvalidName", "metadata.name", "DNS-1035"),
    ({"spec": {"addresses": "10.250.2.10/24", "redirect": {"fallbackIP": "10.250.2.20"}}}, "InvalidSpec",
     "spec.addresses", "must be a list"),
])
def test_problems_name_the_field(doc: dict, reason: str, field: str, words: str) -> None:
    result = parse(doc)
    assert not isinstance(result, RouterConfig), result
    assert (result[0].reason, result[0].field) == (reason, field), result
    assert result[0].message.startswith(f"{field}: ") and words in result[0].message, result[0].message
    with pytest.raises(ConfigError) as exc:
        load(doc)
    assert exc.value.field == field and str(exc.value).startswith(f"{field}: ")


@pytest.mark.parametrize("dest", [
    "127.0.0.1", "::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::", "169.254.1.1", "fe80::1", "0.1.2.3",
    "240.0.0.1", "255.255.255.255",
    # IPv4-mapped IPv6 forms of refused addresses (and of any address: Go reads them as IPv4)
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:0.0.0.0", "::ffff:224.0.0.1", "::ffff:10.250.2.10",
    "::ffff:198.51.100.10",
    "fe80::1%eth0",
])
def test_unusable_destinations_are_refused(dest: str) -> None:
    doc = er([rule(dest=dest)], fallback=dest, addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"},
                                                          {"ip": "2001:db8::10/64", "gateway": "2001:db8::1"}])
    found = parse(doc)
    assert [p.field for p in found] == ["spec.redirect.redirectRules[0].destinationIP", "spec.redirect.fallbackIP"]
    assert found[0].reason == "InvalidDestinationIP"
    assert found[1].reason in ("InvalidDestinationIP", "InvalidFallbackIP")  # refused / unparsable


@pytest.mark.parametrize("master, words", [
    (".", "not \".\""), ("..", "not \".\""), ("a/b", "'/'"), ("eth0:1", "':'"), ("eth 0", "white space"),
    ("eth\u20030", "white space"), ("all", '"all"'), ("default", '"default"'), ("eth%d", "'%'"),
    ("lo", "loopback"),
    ("a-very-long-if0", None),                                 # 15 bytes: the longest name Linux takes
    ("a-very-long-ifc0", "16 bytes in UTF-8, Linux allows at most 15"),
    ("ééééééé", None),                                         # 14 bytes
    ("éééééééé", "16 bytes"),                                  # 8 characters, 16 bytes
    ("ethà", "white space"),                                   # à is C3 A0: the kernel's isspace(0xA0)
])
def test_macvlan_master_names_linux_refuses(master: str, words: str | None) -> None:
    found = parse(router_obj(networkInterface={"macvlan": {"mode": "Bridge", "master": master}}))
    if words is None:
        assert isinstance(found, RouterConfig), found
    else:
        assert [(p.reason, p.field) for p in found] == [("InvalidMacvlanMaster", MASTER)]
        assert words in found[0].message, found[0].message


def test_the_operators_default_master_is_checked_when_the_spec_has_none() -> None:
    obj = router_obj(networkInterface={"macvlan": {"mode": "Bridge"}})
    assert isinstance(parse(obj, default_master="ens4"), RouterConfig)
    found = parse(obj, default_master="a-very-long-ifc0")
    assert [(p.reason, p.field) for p in found] == [("InvalidMacvlanMaster", MASTER)]
    assert "the operator's default master" in found[0].message


def test_every_problem_is_reported_at_once() -> None:
    found = problems(addresses=[{"ip": "10.0.0.5"}, {"ip": "fd00::5/64", "gateway": "10.0.0.1"}])
    assert ("InvalidAddress", "spec.addresses[0].ip") in found
    assert ("GatewayFamilyMismatch", "spec.addresses[1].gateway") in found
    assert messages(addresses=[{"ip": "10.0.0.5", "gateway": "10.0.0.1"}])[0].startswith(
        'spec.addresses[0].ip: "10.0.0.5" is not a CIDR')


def test_duplicates_are_per_family_and_protocol() -> None:
    found = problems(redirect={"redirectRules": [
        {"destinationIP": "fd00::1", "port": 80, "protocol": "TCP"},
        {"destinationIP": "10.0.0.1", "port": 53, "protocol": "UDP"},
        {"destinationIP": "10.0.0.2", "port": 53, "protocol": "UDP"},
        {"destinationIP": "10.0.0.3", "port": 53, "protocol": "TCP"},
    ]})
    assert found == [("DestinationFamilyMismatch", "spec.redirect.redirectRules[0].destinationIP"),
                     ("DuplicateRedirectRule", "spec.redirect.redirectRules[2].port")]


def test_broken_documents() -> None:
    with pytest.raises(ConfigError, match=r"^config: invalid JSON"):
        parse_text("{nope")
    with pytest.raises(ConfigError, match=r"^config: invalid YAML"):
        parse_text("a: [")
    with pytest.raises(ConfigError, match=r"^spec: must be a mapping"):
        parse_text("- 1")


def test_problem_message_is_field_then_detail() -> None:
    assert Problem("InvalidPort", "spec.x", "is bad").message == "spec.x: is bad"


def test_a_tcp_rule_on_an_agent_port_is_refused() -> None:
    doc = er([rule(port=80), rule(port=9181), rule(port=9181, proto="UDP")])
    assert [(p.reason, p.field) for p in parse(doc, agent_ports=(9180, 9181))] == [
        ("InvalidPort", "spec.redirect.redirectRules[1].port")]
    with pytest.raises(ConfigError, match=r"^spec.redirect.redirectRules\[1\].port: TCP port 9181 is the agent"):
        load(doc, agent_ports=(9180, 9181))


@pytest.mark.parametrize("ip", ["127.0.0.5/8", "224.0.0.5/24", "ff02::5/64", "::/0", "0.1.2.3/8", "::1/128",
                                "240.0.0.1/4"])
def test_addresses_a_host_cannot_have_are_refused(ip: str) -> None:
    usable = {"ip": "10.250.2.10/24", "gateway": "10.250.2.1"}
    found = parse(er(fallback="198.51.100.10", addresses=[{"ip": ip}, usable]))
    assert [(p.reason, p.field) for p in found] == [("InvalidAddress", "spec.addresses[0].ip")], found
