"""Pure rendering of the agent's nftables ruleset and host routes."""
from __future__ import annotations

import json

from netshift import cli
from netshift.agent import ruleset
from netshift.agent.routes import RouteSpec, desired_routes
from netshift.egressrouter.spec import load

V4 = {"ip": "10.250.2.10/24", "gateway": "10.250.2.1"}
V6 = {"ip": "2001:db8:a::10/64", "gateway": "2001:db8:a::1"}
KW = {"pod_if": "eth0", "egress_if": "net1", "exempt_ports": (9180, 9181)}


def cfg(rules=(), fallback=None, addresses=(V4,)):
    redirect = {"redirectRules": [dict(zip(("destinationIP", "port", "protocol", "targetPort"), r, strict=False))
                                  for r in rules]}
    if fallback:
        redirect["fallbackIP"] = fallback
    return load({"addresses": list(addresses), "redirect": redirect})


def rules_of(tables: dict, family: str, chain: str) -> list[list[dict]]:
    return [o["rule"]["expr"] for o in tables[family] if "rule" in o and o["rule"]["chain"] == chain]


def test_one_table_per_family_with_an_address() -> None:
    assert list(ruleset.desired(cfg([("198.51.100.10", 80, "TCP")]), **KW)) == ["ip"]
    both = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")], addresses=(V4, V6)), **KW)
    assert list(both) == ["ip", "ip6"]
    for family, objs in both.items():
        assert objs[0] == {"table": {"family": family, "name": "netshift_egress"}}
        chains = [(o["chain"]["name"], o["chain"]["hook"], o["chain"]["prio"]) for o in objs if "chain" in o]
        assert chains == [("prerouting", "prerouting", -100), ("forward", "forward", 0),
                          ("input", "input", 0), ("postrouting", "postrouting", 100)]


def test_dnat_per_rule_in_order_with_target_port_default() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP", 8080), ("198.51.100.11", 53, "UDP"),
                             ("198.51.100.12", 9, "SCTP", 99)]), **KW)
    pre = rules_of(t, "ip", "prerouting")
    assert [e[-1]["dnat"] for e in pre] == [{"addr": "198.51.100.10", "port": 8080},
                                            {"addr": "198.51.100.11", "port": 53},
                                            {"addr": "198.51.100.12", "port": 99}]
    assert [e[2]["match"]["left"]["payload"]["protocol"] for e in pre] == ["tcp", "udp", "sctp"]
    assert [e[2]["match"]["right"] for e in pre] == [80, 53, 9]
    assert [e[3] for e in pre] == [{"counter": "c_tcp_80"}, {"counter": "c_udp_53"}, {"counter": "c_sctp_9"}]
    # only traffic entering on the pod interface and addressed to the router itself
    assert pre[0][:2] == [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
                          {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                                     "right": "local"}}]


def test_snat_to_the_address_of_the_family() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP"), ("2001:db8:d::10", 80, "TCP")],
                            addresses=(V4, V6)), **KW)
    assert rules_of(t, "ip", "postrouting") == [[
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "net1"}},
        {"snat": {"addr": "10.250.2.10"}}]]
    assert rules_of(t, "ip6", "postrouting")[0][1] == {"snat": {"addr": "2001:db8:a::10"}}
    assert rules_of(t, "ip6", "prerouting")[0][-1] == {"dnat": {"addr": "2001:db8:d::10", "port": 80}}


def test_without_fallback_unmatched_traffic_is_rejected_except_agent_ports() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")]), **KW)
    tcp, other = rules_of(t, "ip", "input")
    assert tcp[2] == {"match": {"op": "!=", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                "right": {"set": [9180, 9181]}}}
    assert tcp[-1] == {"reject": {"type": "tcp reset"}}
    assert other[2]["match"]["right"] == {"set": ["udp", "sctp"]}
    assert other[-1] == {"reject": {"type": "icmp", "expr": "port-unreachable"}}
    six = ruleset.desired(cfg([("2001:db8:d::10", 80, "TCP")], addresses=(V6,)), **KW)
    assert rules_of(six, "ip6", "input")[1][-1] == {"reject": {"type": "icmpv6", "expr": "port-unreachable"}}
    # no agent ports: plain protocol match, a single port: no anonymous set
    t0 = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")]), pod_if="eth0", egress_if="net1")
    assert rules_of(t0, "ip", "input")[0][2] == {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                                                           "right": "tcp"}}
    t1 = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")]), pod_if="eth0", egress_if="net1", exempt_ports=[7])
    assert rules_of(t1, "ip", "input")[0][2]["match"]["right"] == 7


def test_fallback_comes_last_after_the_agent_port_exemption() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")], fallback="198.51.100.12"), **KW)
    pre = rules_of(t, "ip", "prerouting")
    assert pre[1][-1] == {"return": None}
    assert pre[2][-2:] == [{"counter": "c_fallback"}, {"dnat": {"addr": "198.51.100.12"}}]
    assert rules_of(t, "ip", "input") == []
    assert rules_of(t, "ip", "forward")[-1][1:] == [{"counter": "t_fallback"}, {"accept": None}]


def test_fallback_of_one_family_leaves_the_other_rejecting() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")], fallback="2001:db8:d::12", addresses=(V4, V6)), **KW)
    assert rules_of(t, "ip", "input") and not rules_of(t, "ip6", "input")
    assert rules_of(t, "ip6", "prerouting")[-1][-1] == {"dnat": {"addr": "2001:db8:d::12"}}


def test_traffic_counters_follow_the_original_port() -> None:
    t = ruleset.desired(cfg([("198.51.100.10", 80, "TCP", 8080)]), **KW)
    fwd = rules_of(t, "ip", "forward")
    assert fwd == [[{"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                    {"match": {"op": "==", "left": {"ct": {"key": "proto-dst", "dir": "original"}}, "right": 80}},
                    {"counter": "t_tcp_80"}, {"accept": None}]]
    names = [o["counter"]["name"] for o in t["ip"] if "counter" in o]
    assert names == ["c_tcp_80", "t_tcp_80", "rejected"]
    infos = ruleset.counters(cfg([("198.51.100.10", 80, "TCP", 8080)]))
    assert infos[0].labels == (("protocol", "tcp"), ("port", "80"), ("destination", "198.51.100.10"),
                               ("target_port", "8080"))


def test_transaction_replaces_only_our_tables_atomically() -> None:
    tables = ruleset.desired(cfg([("198.51.100.10", 80, "TCP")]), **KW)
    cmds = ruleset.transaction(tables)["nftables"]
    assert cmds[:3] == [{"add": {"table": {"family": "ip", "name": "netshift_egress"}}},
                        {"delete": {"table": {"family": "ip", "name": "netshift_egress"}}},
                        {"add": {"table": {"family": "ip", "name": "netshift_egress"}}}]
    # the family without addresses is made absent in the same batch
    assert cmds[-2:] == [{"add": {"table": {"family": "ip6", "name": "netshift_egress"}}},
                         {"delete": {"table": {"family": "ip6", "name": "netshift_egress"}}}]
    assert all(list(c) in (["add"], ["delete"]) for c in cmds)
    assert ruleset.removal()["nftables"] == [
        {"add": {"table": {"family": f, "name": "netshift_egress"}}} if i % 2 == 0 else
        {"delete": {"table": {"family": f, "name": "netshift_egress"}}}
        for f in ("ip", "ip6") for i in range(2)]


def test_normalize_strips_handles_counter_values_and_metainfo() -> None:
    listing = [{"metainfo": {"version": "1.0.6"}},
               {"table": {"family": "ip", "name": "netshift_egress", "handle": 3}},
               {"counter": {"family": "ip", "name": "c", "table": "netshift_egress", "handle": 4,
                            "packets": 9, "bytes": 900}}]
    assert ruleset.normalize(listing) == [{"table": {"family": "ip", "name": "netshift_egress"}},
                                          {"counter": {"family": "ip", "name": "c", "table": "netshift_egress"}}]


def test_script_uses_bracketed_ipv6_with_ports() -> None:
    c = cfg([("198.51.100.10", 80, "TCP", 8080), ("2001:db8:d::10", 80, "TCP", 8080),
             ("2001:db8:d::10", 9, "SCTP")], fallback="2001:db8:d::12", addresses=(V4, V6))
    script = ruleset.render_script(c, **KW)
    assert 'tcp dport 80 counter name "c_tcp_80" dnat to 198.51.100.10:8080' in script
    assert 'tcp dport 80 counter name "c_tcp_80" dnat to [2001:db8:d::10]:8080' in script
    assert 'sctp dport 9 counter name "c_sctp_9" dnat to [2001:db8:d::10]:9' in script
    assert 'counter name "c_fallback" dnat to 2001:db8:d::12\n' in script  # no port: no brackets
    assert 'tcp dport { 9180, 9181 } return' in script
    assert 'oifname "net1" snat to 2001:db8:a::10' in script
    assert "reject with icmp port-unreachable" in script  # IPv4 has no fallback
    assert script.startswith("add table ip netshift_egress\ndelete table ip netshift_egress\n")


def test_host_routes_via_gateway_unless_on_link() -> None:
    c = cfg([("198.51.100.10", 80, "TCP"), ("10.250.2.1", 81, "TCP"), ("10.250.2.20", 82, "TCP"),
             ("198.51.100.10", 83, "UDP"), ("2001:db8:d::10", 80, "TCP")], fallback="198.51.100.12",
            addresses=(V4, V6))
    assert desired_routes(c) == [RouteSpec("198.51.100.10", 32, "10.250.2.1"),
                                 RouteSpec("2001:db8:d::10", 128, "2001:db8:a::1"),
                                 RouteSpec("198.51.100.12", 32, "10.250.2.1")]


def test_gateway_outside_the_subnet_gets_an_on_link_route() -> None:
    c = cfg([("198.51.100.10", 80, "TCP")], addresses=({"ip": "10.250.2.10/32", "gateway": "10.250.2.1"},))
    assert desired_routes(c) == [RouteSpec("10.250.2.1", 32, None), RouteSpec("198.51.100.10", 32, "10.250.2.1")]


def test_cli_dry_run_prints_script_and_routes(tmp_path, capsys) -> None:
    path = tmp_path / "er.json"
    path.write_text(json.dumps({"spec": {"addresses": [V4], "redirect": {"redirectRules": [
        {"destinationIP": "198.51.100.10", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}}))
    assert cli.main(["agent", "--config", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dnat to 198.51.100.10:8080" in out
    assert "# route 198.51.100.10/32 via 10.250.2.1 dev net1" in out


def test_cli_reports_the_field_of_a_bad_config(tmp_path, capsys) -> None:
    path = tmp_path / "er.yaml"
    path.write_text("spec:\n  addresses: [{ip: 10.250.2.10/24}]\n  redirect:\n    redirectRules:\n"
                    "    - {destinationIP: 198.51.100.10, port: 80, protocol: TCP}\n")
    assert cli.main(["agent", "--config", str(path), "--dry-run"]) == 2
    assert "spec.redirect.redirectRules[0].destinationIP" in capsys.readouterr().err
