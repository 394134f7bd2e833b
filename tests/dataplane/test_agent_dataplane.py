"""The redirect agent with real packets: client -> router (eth0, DNAT) -> net1 (macvlan, SNAT) ->
gateway -> destinations, all in network namespaces created and removed by each test."""
from __future__ import annotations

import json
import re
import subprocess
import time

from netshift.agent import ruleset
from netshift.egressrouter import spec as router_spec
from tests.dataplane.agent_runner import HEALTH_PORT, AgentRunner, spec
from tests.support.metrics import metric_value
from tests.support.topology import (
    DEST2_V4,
    DEST_V4,
    DEST_V6,
    EGRESS_V4,
    EGRESS_V6,
    FALLBACK_V4,
    FALLBACK_V6,
    GATEWAY_V4,
    NETTOOLS,
    PYTHON,
    ROUTER_V4,
    ROUTER_V6,
    Topology,
    read_line,
)
from tests.support.wait import wait_for


def tcp(topo: Topology, host: str, port: int, msg: str = "hello") -> dict:
    return topo.tool(topo.client, "tcp", host, str(port), msg)


def udp(topo: Topology, host: str, port: int, msg: str = "hello") -> dict:
    return topo.tool(topo.client, "udp", host, str(port), msg)


def routes(topo: Topology, ns: str, *args: str) -> str:
    return topo.ip(ns, *args, "route", "show")


def ruleset_json(topo: Topology) -> list:
    return json.loads(topo.exec(topo.router, "nft", "-j", "list", "ruleset").stdout)["nftables"]


def test_tcp_and_udp_redirect_with_and_without_target_port(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.once(spec((DEST_V4, 80, "TCP", 8080), (DEST_V4, 81, "TCP"),
                    (DEST_V4, 53, "UDP", 5353), (DEST_V4, 5353, "UDP")))
    # The destination sees the router's egress address, not the client's.
    assert tcp(topo, ROUTER_V4, 80) == {"reply": f"dest-a {EGRESS_V4} hello"}
    assert tcp(topo, ROUTER_V4, 81) == {"reply": f"dest-a {EGRESS_V4} hello"}
    assert udp(topo, ROUTER_V4, 53) == {"reply": f"dest-a {EGRESS_V4} hello"}
    assert udp(topo, ROUTER_V4, 5353) == {"reply": f"dest-a {EGRESS_V4} hello"}

    # Address with the spec's prefix; host route via the gateway on net1; eth0's default untouched.
    assert "inet 10.250.2.10/24" in topo.ip(topo.router, "addr", "show", "dev", "net1")
    v4 = routes(topo, topo.router)
    assert "default via 203.0.113.2 dev eth0" in v4
    assert re.search(rf"^{DEST_V4} via {GATEWAY_V4} dev net1 proto 158", v4, re.M), v4
    assert topo.nft_tables(topo.router) == [("ip", "netshift_egress")]


def test_unmatched_ports_are_rejected_without_fallback(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080)))
    assert tcp(topo, ROUTER_V4, 80) == {"reply": f"dest-a {EGRESS_V4} hello"}
    t0 = time.monotonic()
    assert tcp(topo, ROUTER_V4, 82) == {"error": "ECONNREFUSED"}
    assert udp(topo, ROUTER_V4, 54) == {"error": "ECONNREFUSED"}
    assert time.monotonic() - t0 < 2.5, "a reject must be immediate, not a timeout"
    # The agent's own port stays reachable from the pod network (kubelet probes).
    ready = topo.tool(topo.client, "http", f"http://{ROUTER_V4}:{HEALTH_PORT}/readyz")
    assert ready["status"] == 200
    assert metric_value(agent.metrics(), "netshift_agent_rejected_packets_total", family="ipv4") >= 2


def test_fallback_takes_other_ports_and_fallback_only_takes_all(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080), fallback=FALLBACK_V4))
    assert tcp(topo, ROUTER_V4, 80) == {"reply": f"dest-a {EGRESS_V4} hello"}
    assert tcp(topo, ROUTER_V4, 7000) == {"reply": f"fallback {EGRESS_V4} hello"}
    assert udp(topo, ROUTER_V4, 7002) == {"reply": f"fallback {EGRESS_V4} hello"}
    # Probes to the agent are exempt from the catch-all fallback.
    assert topo.tool(topo.client, "http", f"http://{ROUTER_V4}:{HEALTH_PORT}/readyz")["status"] == 200

    agent.write(spec(fallback=FALLBACK_V4))
    wait_for("rule 80 to be gone", lambda: tcp(topo, ROUTER_V4, 80).get("error"), timeout=10)
    assert tcp(topo, ROUTER_V4, 7001) == {"reply": f"fallback {EGRESS_V4} hello"}


def test_ipv6_end_to_end(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.once(spec((DEST_V6, 80, "TCP", 8080), (DEST_V6, 53, "UDP", 5353), (DEST_V6, 81, "tcp"),
                    v4=False, v6=True))
    assert tcp(topo, ROUTER_V6, 80) == {"reply": f"dest-a {EGRESS_V6} hello"}
    assert tcp(topo, ROUTER_V6, 81) == {"reply": f"dest-a {EGRESS_V6} hello"}
    assert udp(topo, ROUTER_V6, 53) == {"reply": f"dest-a {EGRESS_V6} hello"}
    assert tcp(topo, ROUTER_V6, 82) == {"error": "ECONNREFUSED"}
    assert topo.nft_tables(topo.router) == [("ip6", "netshift_egress")]
    assert "inet6 2001:db8:a::10/64" in topo.ip(topo.router, "addr", "show", "dev", "net1")
    v6 = routes(topo, topo.router, "-6")
    assert "default via 2001:db8:c::2 dev eth0" in v6
    assert f"{DEST_V6} via 2001:db8:a::1 dev net1 proto 158" in v6

    agent.once(spec((DEST_V6, 80, "TCP", 8080), fallback=FALLBACK_V6, v4=False, v6=True))
    assert tcp(topo, ROUTER_V6, 7000) == {"reply": f"fallback {EGRESS_V6} hello"}
    assert tcp(topo, ROUTER_V6, 80) == {"reply": f"dest-a {EGRESS_V6} hello"}


def test_ipv4_and_ipv6_addresses_at_once(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.once(spec((DEST_V4, 80, "TCP", 8080), (DEST_V6, 80, "TCP", 8080), (DEST_V6, 81, "TCP"),
                    fallback=FALLBACK_V4, v6=True))
    assert sorted(topo.nft_tables(topo.router)) == [("ip", "netshift_egress"), ("ip6", "netshift_egress")]
    assert tcp(topo, ROUTER_V4, 80) == {"reply": f"dest-a {EGRESS_V4} hello"}
    assert tcp(topo, ROUTER_V6, 80) == {"reply": f"dest-a {EGRESS_V6} hello"}
    assert tcp(topo, ROUTER_V6, 81) == {"reply": f"dest-a {EGRESS_V6} hello"}
    # The fallback is IPv4: other IPv4 ports go there, other IPv6 ports are refused.
    assert tcp(topo, ROUTER_V4, 7000) == {"reply": f"fallback {EGRESS_V4} hello"}
    assert tcp(topo, ROUTER_V6, 7000) == {"error": "ECONNREFUSED"}


def test_destination_on_the_egress_subnet_and_equal_to_the_gateway(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.once(spec((GATEWAY_V4, 90, "TCP", 9000), (DEST2_V4, 91, "TCP", 9000)))
    assert tcp(topo, ROUTER_V4, 90) == {"reply": f"gateway {EGRESS_V4} hello"}
    v4 = routes(topo, topo.router)
    assert f"{GATEWAY_V4} via" not in v4  # on-link: no host route (upstream failed with "File exists")
    assert f"{DEST2_V4} via {GATEWAY_V4} dev net1" in v4


def test_hot_reload_keeps_established_connection_on_unchanged_rule(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080)))
    pipe = topo.spawn(topo.client, PYTHON, NETTOOLS, "pipe", ROUTER_V4, "80", stdin=subprocess.PIPE)
    assert read_line(pipe, 10) == "CONNECTED"

    def ask(msg: str) -> dict:
        pipe.stdin.write(msg + "\n")
        pipe.stdin.flush()
        return json.loads(read_line(pipe, 10) or '{"error": "no answer"}')

    assert ask("one") == {"reply": f"dest-a {EGRESS_V4} one"}
    handle_before = _table_handle(topo)

    agent.write(spec((DEST_V4, 80, "TCP", 8080), (DEST_V4, 81, "TCP"), fallback=FALLBACK_V4))
    wait_for("port 81 to answer", lambda: tcp(topo, ROUTER_V4, 81).get("reply"), timeout=10, explain=agent.logs)
    assert _table_handle(topo) != handle_before, "the table should have been replaced"
    assert ask("two") == {"reply": f"dest-a {EGRESS_V4} two"}

    # A config that cannot be applied keeps the last good rules (and says so).
    agent.write(spec((DEST_V4, 80, "TCP", 8080), ("not-an-ip", 82, "TCP")))
    wait_for("netshift_agent_config_valid 0", lambda: metric_value(agent.metrics(), "netshift_agent_config_valid") == 0,
             timeout=10, explain=agent.logs)
    assert "redirectRules[1].destinationIP" in agent.logs()
    assert ask("three") == {"reply": f"dest-a {EGRESS_V4} three"}
    assert tcp(topo, ROUTER_V4, 81) == {"reply": f"dest-a {EGRESS_V4} hello"}


def _table_handle(topo: Topology) -> int:
    return next(o["table"]["handle"] for o in ruleset_json(topo) if "table" in o)


def test_sigterm_removes_table_and_routes(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080), (DEST_V6, 80, "TCP", 8080), v6=True))
    assert len(topo.nft_tables(topo.router)) == 2
    assert agent.terminate() == 0
    assert topo.nft_tables(topo.router) == []
    assert "proto 158" not in routes(topo, topo.router) + routes(topo, topo.router, "-6")
    assert "default via 203.0.113.2 dev eth0" in routes(topo, topo.router)
    assert tcp(topo, ROUTER_V4, 80).get("error")


def test_applying_twice_changes_nothing(agent: AgentRunner) -> None:
    topo = agent.topo
    cfg = spec((DEST_V4, 80, "TCP", 8080), (DEST_V6, 80, "TCP"), fallback=FALLBACK_V4, v6=True)
    agent.once(cfg)
    tcp(topo, ROUTER_V4, 80)

    def state() -> tuple:
        return (ruleset_json(topo), topo.ip(topo.router, "-j", "addr"),
                routes(topo, topo.router), routes(topo, topo.router, "-6"))

    before = state()
    second = agent.once(cfg)
    assert "nothing to change" in second.stderr
    assert state() == before  # same handles, same counter values, same routes


def test_drift_is_repaired(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080)), "--resync-seconds", "1")
    topo.exec(topo.router, "nft", "delete", "table", "ip", "netshift_egress")
    topo.ip(topo.router, "route", "del", DEST_V4)
    assert tcp(topo, ROUTER_V4, 80).get("error")
    wait_for("port 80 to answer", lambda: tcp(topo, ROUTER_V4, 80).get("reply"), timeout=10, explain=agent.logs)
    assert metric_value(agent.metrics(), "netshift_agent_syncs_total", result="changed") >= 2


def test_metrics_count_packets_and_bytes_per_rule(agent: AgentRunner) -> None:
    topo = agent.topo
    agent.start(spec((DEST_V4, 80, "TCP", 8080), fallback=FALLBACK_V4))
    for _ in range(3):
        tcp(topo, ROUTER_V4, 80)
    tcp(topo, ROUTER_V4, 7000)
    metrics = agent.metrics()
    rule = {"family": "ipv4", "protocol": "tcp", "port": "80", "destination": DEST_V4, "target_port": "8080"}
    fb = {"family": "ipv4", "protocol": "any", "port": "any", "destination": FALLBACK_V4, "target_port": "any"}
    assert metric_value(metrics, "netshift_agent_redirect_connections_total", **rule) == 3
    # handshake, request, reply and teardown, both directions: at least 8 packets per connection
    assert metric_value(metrics, "netshift_agent_redirect_packets_total", **rule) >= 3 * 8
    assert metric_value(metrics, "netshift_agent_redirect_bytes_total", **rule) > 3 * 8 * 52
    assert metric_value(metrics, "netshift_agent_redirect_connections_total", **fb) == 1
    assert metric_value(metrics, "netshift_agent_redirect_bytes_total", **fb) > 0
    assert metric_value(metrics, "netshift_agent_ready") == 1

    # A reload replaces the table; exported counters carry on instead of dropping to zero.
    agent.write(spec((DEST_V4, 80, "TCP", 8080), (DEST_V4, 81, "TCP"), fallback=FALLBACK_V4))
    wait_for("port 81 to answer", lambda: tcp(topo, ROUTER_V4, 81).get("reply"), timeout=10)
    tcp(topo, ROUTER_V4, 80)
    assert metric_value(agent.metrics(), "netshift_agent_redirect_connections_total", **rule) == 4


def test_sctp_rules_are_accepted_by_the_kernel(agent: AgentRunner) -> None:
    """No SCTP sockets on this kernel: prove SCTP at the ruleset level, installed for real."""
    topo = agent.topo
    agent.once(spec((DEST_V4, 9, "SCTP", 9999), (DEST_V6, 9, "SCTP"), v6=True))
    listing = topo.exec(topo.router, "nft", "list", "ruleset").stdout
    assert f"sctp dport 9 counter name \"c_sctp_9\" dnat to {DEST_V4}:9999" in listing
    assert f"sctp dport 9 counter name \"c_sctp_9\" dnat to [{DEST_V6}]:9" in listing
    assert "meta l4proto sctp ct original proto-dst 9" in listing


def test_script_form_installs_the_same_tables_as_json(topo: Topology) -> None:
    """`--dry-run` prints an nft script; it must mean exactly what the agent applies as JSON."""
    cfg = router_spec.load(spec((DEST_V4, 80, "TCP", 8080), (DEST_V6, 53, "UDP"), (DEST_V4, 9, "SCTP"),
                                       fallback=FALLBACK_V6, v6=True))
    kw = {"pod_if": "eth0", "egress_if": "net1", "exempt_ports": (9180, 9181)}
    script = ruleset.render_script(cfg, **kw)
    subprocess.run(["ip", "netns", "exec", topo.router, "nft", "-f", "-"], input=script, text=True, check=True)
    for family, objs in ruleset.desired(cfg, **kw).items():
        live = json.loads(topo.exec(topo.router, "nft", "-j", "list", "table", family, ruleset.TABLE).stdout)
        assert ruleset.normalize(live["nftables"]) == objs


def test_invalid_config_fails_naming_the_field_and_installs_nothing(agent: AgentRunner) -> None:
    topo = agent.topo
    bad = spec((DEST_V4, 80, "TCP", 8080), (DEST_V6, 80, "TCP"))  # IPv6 rule, no IPv6 address
    proc = agent.once(bad, check=False)
    assert proc.returncode == 2
    assert "spec.redirect.redirectRules[1].destinationIP" in proc.stderr
    assert "no IPv6 address" in proc.stderr
    assert topo.nft_tables(topo.router) == []
    proc = agent.once(spec((DEST_V4, HEALTH_PORT, "TCP")), check=False)
    assert proc.returncode == 2 and "redirectRules[0].port" in proc.stderr
