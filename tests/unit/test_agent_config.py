"""The agent's config parsing: what it accepts, and errors that name the spec field."""
from __future__ import annotations

import ipaddress

import pytest

from netshift.agent.config import ConfigError, parse_spec, parse_text


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


def test_full_object_and_bare_spec_parse_the_same() -> None:
    obj = er([rule(targetPort=8080)], fallback="198.51.100.12")
    assert parse_spec(obj) == parse_spec(obj["spec"])


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
    cfg = parse_spec(er([rule(port=80), rule(dest="198.51.100.11", port=81), rule(port=82)],
                        fallback="198.51.100.10"))
    assert [str(d) for d in cfg.destinations()] == ["198.51.100.10", "198.51.100.11"]


@pytest.mark.parametrize("doc, field, words", [
    (er([rule()], mode="Proxy"), "spec.mode", "only Redirect"),
    (er([rule()], addresses=[]), "spec.addresses", "at least one"),
    (er([rule()], addresses=[{"ip": "10.250.2.10"}]), "spec.addresses[0].ip", "must be a CIDR"),
    (er([rule()], addresses=[{"ip": "10.250.2.300/24"}]), "spec.addresses[0].ip", "not a valid CIDR"),
    (er([rule()], addresses=[{"ip": "10.250.2.0/24"}]), "spec.addresses[0].ip", "network address"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "2001:db8::1"}]),
     "spec.addresses[0].gateway", "IPv6 gateway"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.10"}]),
     "spec.addresses[0].gateway", "own address"),
    (er([rule()], addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"}, {"ip": "10.250.2.10/25"}]),
     "spec.addresses[1].ip", "listed twice"),
    ({"spec": {"addresses": [{"ip": "10.250.2.10/24"}]}}, "spec.redirect", "required"),
    (er([]), "spec.redirect", "redirectRules or a fallbackIP"),
    (er([rule(), rule(dest="10.0.0.300")]), "spec.redirect.redirectRules[1].destinationIP", "not an IPv4"),
    (er([rule(dest="2001:db8:d::10")]), "spec.redirect.redirectRules[0].destinationIP", "no IPv6 address"),
    (er([rule(dest="10.250.2.10")]), "spec.redirect.redirectRules[0].destinationIP", "own address"),
    (er([rule(dest="127.0.0.1")]), "spec.redirect.redirectRules[0].destinationIP", "cannot be"),
    (er([rule(dest="198.51.100.10")], addresses=[{"ip": "10.250.2.10/24"}]),
     "spec.redirect.redirectRules[0].destinationIP", "no gateway"),
    (er([rule(port=0)]), "spec.redirect.redirectRules[0].port", "outside 1-65535"),
    (er([rule(port=True)]), "spec.redirect.redirectRules[0].port", "port number"),
    (er([rule(targetPort=70000)]), "spec.redirect.redirectRules[0].targetPort", "outside 1-65535"),
    (er([rule(proto="ICMP")]), "spec.redirect.redirectRules[0].protocol", "TCP, UDP, SCTP"),
    (er([rule(), rule(dest="198.51.100.11", proto="tcp")]), "spec.redirect.redirectRules[1].port",
     "already redirected by redirectRules[0]"),
    (er([rule()], fallback="2001:db8::1"), "spec.redirect.fallbackIP", "no IPv6 address"),
    (er([rule()], fallback="nope"), "spec.redirect.fallbackIP", "not an IPv4 or IPv6"),
])
def test_errors_name_the_field(doc: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_spec(doc)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")
    assert words in str(exc.value)


def test_same_port_on_other_protocol_or_family_is_fine() -> None:
    cfg = parse_spec(er([rule(), rule(proto="UDP"), rule(dest="2001:db8:d::10")],
                        addresses=[{"ip": "10.250.2.10/24", "gateway": "10.250.2.1"},
                                   {"ip": "2001:db8:a::10/64", "gateway": "2001:db8:a::1"}]))
    assert [r.key for r in cfg.rules] == ["tcp_80", "udp_80", "tcp_80"]


def test_on_link_destination_needs_no_gateway() -> None:
    cfg = parse_spec(er([rule(dest="10.250.2.20")], addresses=[{"ip": "10.250.2.10/24"}]))
    assert cfg.gateway(4) is None


def test_broken_documents() -> None:
    with pytest.raises(ConfigError, match=r"^config: invalid JSON"):
        parse_text("{nope")
    with pytest.raises(ConfigError, match=r"^config: invalid YAML"):
        parse_text("a: [")
    with pytest.raises(ConfigError, match=r"^spec: must be a mapping"):
        parse_text("- 1")
