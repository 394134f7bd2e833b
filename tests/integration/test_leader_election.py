"""Two operators with --leader-elect against the real control plane (docs/ha.md).

Each test's Lease lives in its own namespace, and its operators watch only that namespace. Writes
are counted from the operators' own request metrics (netshift_api_requests_total, every request
but watches); the lease's renewals (controller "leader-election") are the price of election and
are counted apart.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import time

import pytest

from tests.support.cluster import start_operator, stop_operator
from tests.support.egressrouters import SPEC, apply_router, children_exist, conditions, get
from tests.support.metrics import metric_sum, metric_value, scrape
from tests.support.proxy import silent_proxy
from tests.support.wait import wait_for

LEASE_DURATION, RENEW_DEADLINE, RETRY = 15.0, 10.0, 2.0  # the defaults

# The acceptance case is 50 routers idle for a minute (NETSHIFT_IDLE_ROUTERS=50
# NETSHIFT_IDLE_SECONDS=60); the tier's default keeps the same check cheaper.
IDLE_ROUTERS = int(os.environ.get("NETSHIFT_IDLE_ROUTERS", "20"))
IDLE_SECONDS = int(os.environ.get("NETSHIFT_IDLE_SECONDS", "15"))


def ha_operator(cluster, tmp_path, namespace, name, kubeconfig=None):
    return start_operator(cluster, tmp_path, "--namespace", namespace, "--leader-elect",
                          "--leader-elect-namespace", namespace, name=name,
                          env={"NETSHIFT_RESYNC_SECONDS": "5", **({"KUBECONFIG": kubeconfig} if kubeconfig else {})})


def leads(op) -> bool:
    return metric_value(scrape(op.metrics_url), "netshift_leader") == 1


def writes(op) -> float:
    """Writes to anything but the lease, including those refused by the fence (none expected)."""
    text = scrape(op.metrics_url)
    return metric_sum(text, "netshift_api_requests_total",
                      lambda labels: labels["verb"] != "GET" and labels["controller"] != "leader-election") + \
        metric_sum(text, "netshift_api_writes_fenced_total")


@pytest.fixture
def proxy(cluster, tmp_path):
    with silent_proxy(cluster.kubeconfig, tmp_path / "proxied.kubeconfig") as (p, kubeconfig):
        yield p, kubeconfig


@pytest.fixture
def pair(cluster, namespace, nad_crd, tmp_path, request, proxy):
    """Operator a (through the proxy), leading, then operator b; no pods in the namespace (routers
    settle on PodCreateFailed instead of churning through pod starts, which are real changes)."""
    cluster.kubectl("create", "quota", "no-pods", "--hard=pods=0", "-n", namespace)
    ops = [ha_operator(cluster, tmp_path, namespace, "a", kubeconfig=proxy[1])]
    try:
        wait_for("a leads", lambda: leads(ops[0]), timeout=10)
        ops.append(ha_operator(cluster, tmp_path, namespace, "b"))
        yield tuple(ops)
    finally:
        for op in ops:
            stop_operator(op, request)


def test_one_leads_the_follower_writes_nothing_and_takes_over_after_a_kill(cluster, namespace, pair):
    a, b = pair
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    wait_for("conditions", lambda: "Degraded" in conditions(cluster, namespace, "egress"))
    time.sleep(2 * RETRY)
    assert leads(a) and not leads(b)
    assert writes(b) == 0 and writes(a) > 0
    lease = json.loads(cluster.kubectl("get", "lease", "netshift-operator", "-n", namespace, "-o", "json").stdout)
    holder = lease["spec"]["holderIdentity"]

    uid = get(cluster, "Service", namespace, "egress")["metadata"]["uid"]
    a.proc.kill()  # SIGKILL: no release, the lease must expire
    killed = time.monotonic()
    cluster.kubectl("delete", "service", "egress", "-n", namespace, "--wait=true")
    assert writes(b) == 0
    wait_for("b leads", lambda: leads(b), timeout=LEASE_DURATION + RETRY + 5, interval=0.2)
    took_over = time.monotonic() - killed
    wait_for("Service back", lambda: (o := get(cluster, "Service", namespace, "egress"))
             and o["metadata"]["uid"] != uid, timeout=25, interval=0.2)
    back = time.monotonic() - killed
    print(f"takeover {took_over:.1f}s, child back {back:.1f}s after SIGKILL")
    # The follower sees the last renewal up to a retry period late, then polls every retry period.
    assert took_over <= LEASE_DURATION + 2 * RETRY + 0.5
    assert back <= 20
    lease = json.loads(cluster.kubectl("get", "lease", "netshift-operator", "-n", namespace, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"] != holder and lease["spec"]["leaseTransitions"] == 1
    assert metric_value(scrape(b.metrics_url), "netshift_lease_transitions") == 1


def _edit(cluster, namespace: str, name: str, i: int) -> None:
    spec = copy.deepcopy(SPEC)
    spec["redirect"]["redirectRules"][0]["destinationIP"] = f"10.0.1.{i}"
    apply_router(cluster, namespace, name, spec)
    generation = get(cluster, "egressrouters.network.operator.openshift.io", namespace, name)["metadata"]["generation"]
    wait_for(f"edit {i} reconciled", lambda: (c := conditions(cluster, namespace, name))
             and all(x["observedGeneration"] == generation for x in c.values()), timeout=30)


def _ten_edits(cluster, namespace, name, ops) -> float:
    before = sum(writes(op) for op in ops)
    for i in range(10):
        _edit(cluster, namespace, name, i + 1)
    time.sleep(3)  # late writes would count
    return sum(writes(op) for op in ops) - before


def test_idle_cluster_costs_zero_writes_and_edits_cost_the_same_as_one_operator(cluster, namespace, pair):
    a, b = pair
    routers = IDLE_ROUTERS
    items = [{"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
              "metadata": {"name": f"r-{i:02d}", "namespace": namespace}, "spec": SPEC} for i in range(routers)]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    def settled() -> bool:
        objs = json.loads(cluster.kubectl("get", "egressrouters", "-n", namespace, "-o", "json").stdout)["items"]
        return len(objs) == routers and all(
            any(c["type"] == "Degraded" and c.get("reason") == "PodCreateFailed"
                for c in (o.get("status") or {}).get("conditions") or []) for o in objs)
    wait_for(f"{routers} routers settled", settled, timeout=180, interval=2)
    time.sleep(5)  # replica set events settle
    ops = (a, b)
    before = sum(writes(op) for op in ops)
    reconciles = metric_sum(scrape(a.metrics_url), "netshift_reconcile_total")
    time.sleep(IDLE_SECONDS)  # resyncs of every router (NETSHIFT_RESYNC_SECONDS=5)
    idle = sum(writes(op) for op in ops) - before
    resyncs = IDLE_SECONDS // 5 - 1
    assert metric_sum(scrape(a.metrics_url), "netshift_reconcile_total") >= reconciles + resyncs * routers
    assert writes(b) == 0
    print(f"idle: {idle:.0f} writes in {IDLE_SECONDS}s from both operators ({routers} routers)")
    assert idle == 0

    with_follower = _ten_edits(cluster, namespace, "r-00", ops)
    assert writes(b) == 0
    stop_operator(b)  # the leader alone: today's single operator
    alone = _ten_edits(cluster, namespace, "r-01", (a,))
    print(f"10 edits: {with_follower:.0f} writes with a follower, {alone:.0f} with one operator")
    assert with_follower == alone


def test_a_stopped_leader_hands_the_lease_over(pair):
    a, b = pair
    a.proc.send_signal(signal.SIGTERM)  # a rolling update or a drain
    assert a.proc.wait(timeout=30) == 0, a.logs()[-4000:]
    exited = time.monotonic()
    wait_for("b leads", lambda: leads(b), timeout=RETRY + 5, interval=0.2)
    print(f"b leads {time.monotonic() - exited:.1f}s after a stopped")
    assert time.monotonic() - exited <= RETRY + 1  # released: no waiting for the lease to expire
    assert "released" in a.logs()


def test_a_leader_cut_off_from_the_api_server_stops_writing_and_exits(pair, proxy):
    a, b = pair
    proxy[0].stop()  # a's connections are closed and refused: it cannot renew
    cut = time.monotonic()
    assert a.proc.wait(timeout=RENEW_DEADLINE + RETRY + 30) == 1, a.logs()[-4000:]
    assert "writes stopped" in a.logs()
    wait_for("b leads", lambda: leads(b), timeout=LEASE_DURATION + RETRY + 5, interval=0.2)
    print(f"a exited {a.proc.returncode} and b leads {time.monotonic() - cut:.1f}s after the cut")
    assert writes(b) == 0  # nothing happened in between
