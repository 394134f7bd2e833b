"""Active/standby failover with real packets: two agents (two router namespaces on one egress segment)
elect the active one on a real Lease of the test cluster's API server (hack/cluster, or
NETSHIFT_TEST_KUBECONFIG), reachable inside the namespaces through tests/support/nsforward.py.

The external side (the gateway's interface) asks for the router's address every 20 ms and records
every ARP frame about it: when the standby's interface is attached (the CNI plugin's gratuitous ARP
from the new MAC) the active announces itself again at once; after a takeover it sees a gratuitous
ARP from the new MAC; and never replies from two MACs to one request. After SIGKILL, the killed
agent is restarted at once, as the kubelet restarts a pod's container: the restarted agent silences
its interface before anything else, well within the lease duration (the standby takes over only
after it).
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.dataplane.agent_runner import AgentRunner, spec
from tests.support.cluster import Cluster, failed, scratch_namespace, started_cluster
from tests.support.nsforward import forward
from tests.support.topology import (
    DEST_V4,
    EGRESS_V4,
    GATEWAY_V4,
    NETTOOLS,
    PYTHON,
    ROUTER2_V4,
    ROUTER_V4,
    Topology,
    read_line,
)
from tests.support.wait import wait_for

# The targets of issue 12 (docs/egressrouter.md, "Active/standby"), agent side.
GRACEFUL_SECONDS, KILL_SECONDS = 1.0, 5.0
RULE = (DEST_V4, 80, "TCP", 8080)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return started_cluster()


@pytest.fixture
def lease_ns(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, f"dp-failover-{uuid.uuid4().hex[:6]}") as ns:
        # As the operator renders it: no holder yet (the agents need no `create`).
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "egress"}}))
        yield ns


def holder(cluster: Cluster, ns: str) -> str:
    return cluster.kubectl_json("get", "lease", "egress", "-n", ns).get("spec", {}).get("holderIdentity") or ""


def link_up(topo: Topology, ns: str) -> bool:
    return "UP" in topo.ip(ns, "-br", "link", "show", "net1").split()[1].split(",")


def mac_of(topo: Topology, ns: str) -> str:
    return topo.ip(ns, "-br", "link", "show", "net1").split()[2].replace(":", "")


def spawn_tool(topo: Topology, ns: str, *args: str) -> subprocess.Popen:
    p = topo.spawn(ns, PYTHON, NETTOOLS, *args, stdin=subprocess.DEVNULL)
    assert read_line(p, 10) == "READY", p.stderr.read() if p.poll() is not None else "no READY"
    return p


def two_macs_at_once(frames: list[dict]) -> list[tuple[int, set[str]]]:
    """Probes (requests) answered by more than one MAC."""
    by_probe: dict[int, set[str]] = {}
    for f in frames:
        if f["op"] == 2:
            by_probe.setdefault(f["probe"], set()).add(f["mac"])
    return [(p, macs) for p, macs in sorted(by_probe.items()) if len(macs) > 1]


@pytest.mark.parametrize("fault", ["sigterm", "sigkill"])
def test_standby_takes_over_and_only_one_mac_ever_answers(
        fault: str, servers: Topology, tmp_path: pathlib.Path, cluster: Cluster, lease_ns: str,
        request: pytest.FixtureRequest) -> None:
    topo = servers
    rtr2 = topo.add_router()
    server = urllib.parse.urlsplit(yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
                                   ["clusters"][0]["cluster"]["server"])
    host, port = server.hostname or "127.0.0.1", server.port or 443
    ha = ("--lease-name", "egress", "--lease-namespace", lease_ns)
    agents = {}
    for name, ns in (("a", topo.router), ("b", rtr2)):
        (tmp_path / name).mkdir()
        agents[name] = AgentRunner(topo, tmp_path / name, ns=ns, env={"KUBECONFIG": cluster.kubeconfig})
    a, b = agents["a"], agents["b"]
    try:
        with forward(topo.router, host, port), forward(rtr2, host, port):
            a.start(spec(RULE), *ha, "--identity", "rtr-a")
            watch = spawn_tool(topo, topo.ext, "arpwatch", "gw0", GATEWAY_V4, EGRESS_V4)
            # A new pod's CNI plugin announces the router's address from the new pod's MAC when it
            # attaches net1: the active answers with its own announcement at once.
            topo.ip(rtr2, "link", "set", "net1", "up")
            cni_garp = time.monotonic()
            topo.exec(rtr2, PYTHON, "-c", "import ipaddress, sys; from netshift.agent import announce; "
                      "announce.send('net1', [ipaddress.ip_address(sys.argv[1])])", EGRESS_V4)
            b.start(spec(RULE), *ha, "--identity", "rtr-b", wait=False)
            wait_for("b to stand by", lambda: "candidate" in b.logs(), timeout=20)
            time.sleep(1.0)
            assert holder(cluster, lease_ns).startswith("rtr-a_")
            assert b.http("/readyz")["status"] == 503 and not link_up(topo, rtr2)
            assert link_up(topo, topo.router)
            assert topo.tool(topo.client, "tcp", ROUTER_V4, "80", "x") == {"reply": f"dest-a {EGRESS_V4} x"}
            mac_a, mac_b = mac_of(topo, topo.router), mac_of(topo, rtr2)

            probe = spawn_tool(topo, topo.client, "first", ROUTER2_V4, "80", "after", "30")
            assert a.proc is not None
            t0 = time.monotonic()
            if fault == "sigterm":
                a.proc.send_signal(signal.SIGTERM)
            else:
                a.proc.send_signal(signal.SIGKILL)
                a.proc.wait(timeout=5)
                a.start(None, *ha, "--identity", "rtr-a", wait=False)  # the kubelet's restart
            out, _ = probe.communicate(timeout=40)
            result = json.loads(out.strip().splitlines()[-1])
            assert result.get("reply") == f"dest-a {EGRESS_V4} after", result
            took = result["t"] - t0
            print(f"{fault}: first new connection through the new active {took:.3f}s after the fault")
            assert took <= (GRACEFUL_SECONDS if fault == "sigterm" else KILL_SECONDS)
            assert holder(cluster, lease_ns).startswith("rtr-b_")
            assert b.http("/readyz")["status"] == 200 and link_up(topo, rtr2)
            wait_for("the old active to be silent", lambda: not link_up(topo, topo.router), timeout=10)
            time.sleep(0.5)  # more probes answered by the new active only
            watch.send_signal(signal.SIGTERM)
            frames = [json.loads(line) for line in watch.communicate(timeout=10)[0].splitlines()
                      if line.startswith("{")]
    finally:
        if failed(request):
            for name, agent in agents.items():
                print(f"--- agent {name} log ---\n{agent.logs()[-4000:]}")

    claim = next(f for f in frames if f["op"] == 1 and f["mac"] == mac_b and cni_garp < f["t"] < t0)
    defended = [f for f in frames if f["op"] == 1 and f["mac"] == mac_a and claim["t"] <= f["t"] < t0]
    assert defended and defended[0]["t"] - claim["t"] < 1.0, "the active did not defend its address"
    print(f"address defended {defended[0]['t'] - claim['t']:.3f}s after the new pod's claim")
    after = [f for f in frames if f["t"] >= t0]
    assert any(f["op"] == 1 and f["mac"] == mac_b for f in after), "no gratuitous ARP from the new active"
    assert {f["mac"] for f in frames if f["op"] == 2 and f["t"] < t0} == {mac_a}
    assert not two_macs_at_once(frames)
    last = [f["mac"] for f in frames if f["op"] == 2][-5:]
    assert last and set(last) == {mac_b}
    metrics = b.metrics()
    assert "netshift_agent_active 1.0" in metrics and "netshift_agent_takeovers_total 1.0" in metrics
    assert os.geteuid() == 0
