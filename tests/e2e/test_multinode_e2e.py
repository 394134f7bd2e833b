"""Scenarios that need pods on two nodes: kind's cluster of one control plane and two workers
(hack/kind-e2e.sh, which installs the operator on the control-plane node and sets
NETSHIFT_E2E_MULTINODE=1). Without that variable (hack/cluster's single node) they are deselected
(tests/e2e/conftest.py); with it, a cluster without two schedulable workers fails them.

- a client pod on one worker reaches the destination through an EgressRouter whose pod runs on the
  other worker (Service -> kube-proxy -> pod network between nodes -> macvlan on that worker);
- the same through the cluster DNS names of the EgressRouter's Service (`<name>.<ns>.svc`);
- the operator runs on another node than the routers it manages;
- a Route served by the chart's router pod on a worker to backends on both workers.
"""
from __future__ import annotations

import json

import pytest

from tests.e2e.shared import ER, Probe, client_pod_manifest, parse_report
from tests.e2e.web import admitted_host, backend, http_requests, route
from tests.support.wait import wait_for

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(900)]

RULES = [{"destinationIP": "203.0.113.26", "port": 8080, "targetPort": 80, "protocol": "TCP"}]


def _schedulable(node: dict) -> bool:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    tainted = any(t.get("effect") in ("NoSchedule", "NoExecute") for t in node["spec"].get("taints") or [])
    return ready and not tainted and not node["spec"].get("unschedulable")


@pytest.fixture(scope="module")
def workers(e2e_cluster) -> list[str]:
    names = [n["metadata"]["name"] for n in e2e_cluster.kubectl_json("get", "nodes")["items"] if _schedulable(n)]
    if len(names) < 2:
        pytest.fail(f"the cluster has {len(names)} schedulable node(s); these scenarios need two", pytrace=False)
    return sorted(names)


def _node_of(cluster, namespace: str, pod: str) -> str:
    return cluster.kubectl_json("get", "pod", pod, "-n", namespace)["spec"]["nodeName"]


def _client_on(cluster, namespace: str, image: str, name: str, node: str) -> Probe:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps(client_pod_manifest(name, image, node=node)))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{name}", "--timeout=180s", timeout=200)
    return Probe(cluster, namespace, name)


@pytest.fixture(scope="module")
def spread(e2e, e2e_image: str, workers: list[str]) -> dict:
    """An EgressRouter, its pod's node, and a client pod on another worker."""
    name, address = "multinode", e2e.new_address()
    e2e.apply(e2e.router(name, address, [dict(r) for r in RULES]))
    e2e.wait_condition(name, "Available")
    (pod,) = [p for p in e2e.router_pods(name) if not p["metadata"].get("deletionTimestamp")]
    router_node = pod["spec"]["nodeName"]
    client_node = next(w for w in workers if w != router_node)
    probe = _client_on(e2e.cluster, e2e.ns, e2e_image, "client-mn", client_node)
    yield {"name": name, "address": address.split("/")[0], "router_node": router_node,
           "client_node": client_node, "probe": probe}
    e2e.delete("pod", "client-mn")
    e2e.delete(ER, name)


def test_client_and_redirect_pod_on_different_workers(e2e, spread):
    assert _node_of(e2e.cluster, e2e.ns, "client-mn") == spread["client_node"] != spread["router_node"]
    report = parse_report(spread["probe"]("tcp", e2e.service_ip(spread["name"]), 8080))
    assert report["label"] == "web" and report["dst"] == "203.0.113.26:80", report
    assert report["src_ip"] == spread["address"], report  # SNAT to the router's macvlan address


def test_egressrouter_service_dns_names(e2e, spread):
    for host in (f"{spread['name']}.{e2e.ns}.svc", f"{spread['name']}.{e2e.ns}.svc.cluster.local"):
        report = parse_report(spread["probe"]("tcp", host, 8080))
        assert report["label"] == "web" and report["src_ip"] == spread["address"], (host, report)


def test_operator_runs_on_another_node_than_its_routers(e2e, spread, operator_release: dict):
    pods = e2e.cluster.kubectl_json("get", "pods", "-n", operator_release["namespace"], "-l",
                                    operator_release["selector"])["items"]
    operator_nodes = {p["spec"]["nodeName"] for p in pods if p["status"].get("phase") == "Running"}
    assert operator_nodes and spread["router_node"] not in operator_nodes, (operator_nodes, spread["router_node"])


def test_route_to_backends_on_both_workers(e2e_cluster, e2e_namespace: str, e2e_image: str,
                                           router_service: dict, workers: list[str], client_pod: str):
    ns = e2e_namespace
    for obj in backend(e2e_image, name="mnweb", spread=True):
        e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))
    e2e_cluster.kubectl("rollout", "status", "-n", ns, "deployment/mnweb", "--timeout=180s", timeout=200)
    backends = {p["metadata"]["name"]: p["spec"]["nodeName"]
                for p in e2e_cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=mnweb")["items"]
                if not p["metadata"].get("deletionTimestamp")}
    assert len(set(backends.values())) == 2, backends
    routers = e2e_cluster.kubectl_json("get", "pods", "-n", router_service["namespace"], "-l",
                                       router_service["selector"])["items"]
    assert {p["spec"]["nodeName"] for p in routers} <= set(workers), "the router pod runs on a worker"
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(route("mnweb", service="mnweb")))
    host = wait_for("the route to be admitted", lambda: admitted_host(e2e_cluster, ns, "mnweb"))

    def both_answer() -> set[str] | None:
        results = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/", count=20)
        seen = {r["body"].split()[0].removeprefix("pod=") for r in results if r["status"] == 200}
        return seen if seen == set(backends) else None

    wait_for("both backends (one per worker) to answer through the router", both_answer, timeout=120)
    e2e_cluster.kubectl("delete", "-n", ns, "route/mnweb", "deployment/mnweb", "service/mnweb", "--wait=false")
