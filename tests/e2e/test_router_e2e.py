"""The Route data plane end to end: the chart's router Deployment serves a Route to a Service of
real pods, reached through the router's Service (ClusterIP and NodePort) from a client pod.

Uses the tier's fixtures (tests/e2e/conftest.py): the image, the chart installed for the session
(the operator admits Routes of the session namespace; the router Deployment comes with the chart's
defaults), the session namespace and the client pod.
"""
from __future__ import annotations

import json

import pytest

from tests.e2e.web import admitted_host, backend, http_requests, route
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def web(e2e_cluster, e2e_namespace: str, e2e_image: str, client_pod: str) -> str:
    for obj in backend(e2e_image):
        e2e_cluster.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(obj))
    e2e_cluster.kubectl("rollout", "status", "-n", e2e_namespace, "deployment/web", "--timeout=180s", timeout=200)
    return "web"


def test_route_answers_through_the_router_service(e2e_cluster, e2e_namespace: str, router_service: dict,
                                                   web: str) -> None:
    ns = e2e_namespace
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(route("web")))
    host = wait_for("the route to be admitted (generated host)", lambda: admitted_host(e2e_cluster, ns, "web"))
    assert host == f"web-{ns}.apps.netshift.local"

    def answers() -> list[dict] | None:
        out = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/hello", count=1)
        return out if out[0]["status"] == 200 else None

    first = wait_for("the router to serve the route", answers, timeout=120)
    assert first[0]["body"].startswith("pod=web-") and first[0]["body"].endswith("path=/hello")
    # Both pods serve (new connections, no cookie: balanced across the endpoints).
    results = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/", count=30)
    assert all(r["status"] == 200 for r in results), results
    assert len({r["body"].split()[0] for r in results}) == 2, results
    # Unknown hosts: 503 from the router.
    unknown = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, f"nope-{ns}.example.test")
    assert unknown[0]["status"] == 503
    # Through the NodePort as well.
    node_port = router_service["node_ports"].get("http")
    if node_port:
        out = http_requests(e2e_cluster, ns, router_service["node_ip"], node_port, host, "/np")
        assert out[0]["status"] == 200 and out[0]["body"].endswith("path=/np"), out


def test_edge_route_with_redirect(e2e_cluster, e2e_namespace: str, router_service: dict, web: str) -> None:
    ns = e2e_namespace
    host = f"secure-{ns}.apps.netshift.local"
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(route(
        "secure", host=host, tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"})))
    wait_for("the edge route to be admitted", lambda: admitted_host(e2e_cluster, ns, "secure"))

    def served() -> list[dict] | None:
        out = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 443, host, "/tls", tls=True)
        return out if out[0]["status"] == 200 else None

    out = wait_for("the router to terminate TLS for the route", served, timeout=120)
    assert out[0]["body"].endswith("path=/tls")
    redirect = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/x")[0]
    assert redirect["status"] == 302 and redirect["location"].startswith(f"https://{host}"), redirect


def test_router_follows_the_endpoints(e2e_cluster, e2e_namespace: str, router_service: dict, web: str) -> None:
    ns = e2e_namespace
    host = wait_for("the route", lambda: admitted_host(e2e_cluster, ns, "web"))
    e2e_cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=1")
    e2e_cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s", timeout=150)
    pods = {p["metadata"]["name"] for p in e2e_cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")}

    def only_live_pod() -> bool:
        results = http_requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/", count=10)
        return all(r["status"] == 200 and r["body"].split()[0].removeprefix("pod=") in pods for r in results)

    wait_for("only the remaining pod to answer", only_live_pod, timeout=60)
    e2e_cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_for("503 without endpoints", lambda: http_requests(
        e2e_cluster, ns, router_service["cluster_ip"], 80, host)[0]["status"] == 503, timeout=60)
    # Router metrics: HAProxy's exporter counts the route's responses.
    pod = e2e_cluster.kubectl_json("get", "pods", "-n", router_service["namespace"], "-l",
                                   router_service["selector"])["items"][0]
    metrics = http_requests(e2e_cluster, ns, pod["status"]["podIP"], 1936, "metrics", "/metrics")[0]
    assert metrics["status"] == 200
