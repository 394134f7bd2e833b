"""The Route data plane end to end: the chart's router Deployment serves a Route to a Service of
real pods, reached through the router's Service (ClusterIP and NodePort) from a client pod.

Uses the tier's fixtures (tests/e2e/conftest.py): the image, the chart installed for the session
(the operator admits Routes of the session namespace; the router Deployment comes with the chart's
defaults), the session namespace and the client pod.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(600)

# Standard library only: runs in the client pod (the netshift image) as `python3 -c`.
HTTP_CLIENT = textwrap.dedent('''
    import http.client, json, socket, ssl, sys, time
    address, port, host, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    tls, count = sys.argv[5] == "tls", int(sys.argv[6])
    out = []
    for _ in range(count):
        try:
            sock = socket.create_connection((address, port), timeout=5)
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock, server_hostname=host)
            conn = http.client.HTTPConnection(address, port, timeout=5)
            conn.sock = sock
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            out.append({"status": resp.status, "body": resp.read().decode(errors="replace")[:200],
                        "location": resp.getheader("location")})
            conn.close()
        except Exception as exc:
            out.append({"status": 0, "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(out))
''')

# The backend pods: answer with their own name.
WEB_SERVER = textwrap.dedent('''
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("pod=%s path=%s" % (os.environ["POD_NAME"], self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
''')


def _backend(image: str) -> list[dict]:
    labels = {"app": "web"}
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                     "containers": [{
                         "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                         "command": ["python3", "-c", WEB_SERVER],
                         "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                         "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                             "runAsNonRoot": True, "runAsUser": 65532,
                                             "readOnlyRootFilesystem": True}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
    ]


def _route(name: str, *, tls: dict | None = None, host: str | None = None) -> dict:
    spec: dict = {"to": {"kind": "Service", "name": "web"}, "port": {"targetPort": "http"}}
    if host:
        spec["host"] = host
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def router_service(e2e_cluster, operator_release: dict) -> dict:
    """The router Service of the session's release, once a router pod is Ready."""
    ns, release = operator_release["namespace"], operator_release["release"]
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=router"
    proc = e2e_cluster.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "-l", selector,
                               "--timeout=180s", check=False, timeout=200)
    if proc.returncode != 0:
        print(e2e_cluster.kubectl("describe", "pods", "-n", ns, "-l", selector, check=False).stdout[-4000:])
        print(e2e_cluster.kubectl("logs", "-n", ns, "-l", selector, "--tail=100", check=False).stdout)
        raise AssertionError(f"no Ready router pod: {proc.stderr}")
    services = e2e_cluster.kubectl_json("get", "services", "-n", ns, "-l", selector)["items"]
    (svc,) = [s for s in services if not s["metadata"]["name"].endswith("-metrics")]
    node = e2e_cluster.kubectl_json("get", "nodes")["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    return {"namespace": ns, "selector": selector, "cluster_ip": svc["spec"]["clusterIP"], "node_ip": node_ip,
            "node_ports": {name: p.get("nodePort") for name, p in ports.items()}}


@pytest.fixture(scope="module")
def web(e2e_cluster, e2e_namespace: str, e2e_image: str, client_pod: str) -> str:
    for obj in _backend(e2e_image):
        e2e_cluster.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(obj))
    e2e_cluster.kubectl("rollout", "status", "-n", e2e_namespace, "deployment/web", "--timeout=180s", timeout=200)
    return "web"


def _requests(cluster, namespace: str, address: str, port: int, host: str, path: str = "/",
              tls: bool = False, count: int = 1) -> list[dict]:
    proc = cluster.kubectl("exec", "-n", namespace, "client", "--", "python3", "-c", HTTP_CLIENT, address,
                           str(port), host, path, "tls" if tls else "plain", str(count), timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _admitted_host(cluster, namespace: str, name: str) -> str | None:
    route = cluster.kubectl_json("get", "route", name, "-n", namespace)
    for ingress in (route.get("status") or {}).get("ingress") or []:
        if any(c["type"] == "Admitted" and c["status"] == "True" for c in ingress.get("conditions") or []):
            return ingress["host"]
    return None


def test_route_answers_through_the_router_service(e2e_cluster, e2e_namespace: str, router_service: dict,
                                                   web: str) -> None:
    ns = e2e_namespace
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_route("web")))
    host = wait_for("the route to be admitted (generated host)", lambda: _admitted_host(e2e_cluster, ns, "web"))
    assert host == f"web-{ns}.apps.netshift.local"

    def answers() -> list[dict] | None:
        out = _requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/hello", count=1)
        return out if out[0]["status"] == 200 else None

    first = wait_for("the router to serve the route", answers, timeout=120)
    assert first[0]["body"].startswith("pod=web-") and first[0]["body"].endswith("path=/hello")
    # Both pods serve (new connections, no cookie: balanced across the endpoints).
    results = _requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/", count=30)
    assert all(r["status"] == 200 for r in results), results
    assert len({r["body"].split()[0] for r in results}) == 2, results
    # Unknown hosts: 503 from the router.
    assert _requests(e2e_cluster, ns, router_service["cluster_ip"], 80, f"nope-{ns}.example.test")[0]["status"] == 503
    # Through the NodePort as well.
    node_port = router_service["node_ports"].get("http")
    if node_port:
        out = _requests(e2e_cluster, ns, router_service["node_ip"], node_port, host, "/np")
        assert out[0]["status"] == 200 and out[0]["body"].endswith("path=/np"), out


def test_edge_route_with_redirect(e2e_cluster, e2e_namespace: str, router_service: dict, web: str) -> None:
    ns = e2e_namespace
    host = f"secure-{ns}.apps.netshift.local"
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_route(
        "secure", host=host, tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"})))
    wait_for("the edge route to be admitted", lambda: _admitted_host(e2e_cluster, ns, "secure"))

    def served() -> list[dict] | None:
        out = _requests(e2e_cluster, ns, router_service["cluster_ip"], 443, host, "/tls", tls=True)
        return out if out[0]["status"] == 200 else None

    out = wait_for("the router to terminate TLS for the route", served, timeout=120)
    assert out[0]["body"].endswith("path=/tls")
    redirect = _requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/x")[0]
    assert redirect["status"] == 302 and redirect["location"].startswith(f"https://{host}"), redirect


def test_router_follows_the_endpoints(e2e_cluster, e2e_namespace: str, router_service: dict, web: str) -> None:
    ns = e2e_namespace
    host = wait_for("the route", lambda: _admitted_host(e2e_cluster, ns, "web"))
    e2e_cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=1")
    e2e_cluster.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s", timeout=150)
    pods = {p["metadata"]["name"] for p in e2e_cluster.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")}

    def only_live_pod() -> bool:
        results = _requests(e2e_cluster, ns, router_service["cluster_ip"], 80, host, "/", count=10)
        return all(r["status"] == 200 and r["body"].split()[0].removeprefix("pod=") in pods for r in results)

    wait_for("only the remaining pod to answer", only_live_pod, timeout=60)
    e2e_cluster.kubectl("scale", "-n", ns, "deployment/web", "--replicas=0")
    wait_for("503 without endpoints", lambda: _requests(
        e2e_cluster, ns, router_service["cluster_ip"], 80, host)[0]["status"] == 503, timeout=60)
    # Router metrics: HAProxy's exporter counts the route's responses.
    pod = e2e_cluster.kubectl_json("get", "pods", "-n", router_service["namespace"], "-l",
                                   router_service["selector"])["items"][0]
    metrics = _requests(e2e_cluster, ns, pod["status"]["podIP"], 1936, "metrics", "/metrics")[0]
    assert metrics["status"] == 200
