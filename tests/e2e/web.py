"""The Route tests' web backends and HTTP client (standard library only: they run in pods of the
netshift image as `python3 -c`), shared by test_router_e2e.py and test_multinode_e2e.py."""
from __future__ import annotations

import json
import textwrap

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


def backend(image: str, name: str = "web", spread: bool = False) -> list[dict]:
    """A Deployment of two web pods and its Service; `spread`: on two different nodes."""
    labels = {"app": name}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}} if spread else {}
    return [{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                     **({"affinity": affinity} if affinity else {}),
                     "containers": [{
                         "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                         "command": ["python3", "-c", WEB_SERVER],
                         "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
                         "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                             "runAsNonRoot": True, "runAsUser": 65532,
                                             "readOnlyRootFilesystem": True}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
    ]


def route(name: str, *, tls: dict | None = None, host: str | None = None, service: str = "web") -> dict:
    spec: dict = {"to": {"kind": "Service", "name": service}, "port": {"targetPort": "http"}}
    if host:
        spec["host"] = host
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": name}, "spec": spec}


def http_requests(cluster, namespace: str, address: str, port: int, host: str, path: str = "/",
                  tls: bool = False, count: int = 1, client: str = "client") -> list[dict]:
    """`count` requests from the client pod, each on a new connection: status, body, location."""
    proc = cluster.kubectl("exec", "-n", namespace, client, "--", "python3", "-c", HTTP_CLIENT, address,
                           str(port), host, path, "tls" if tls else "plain", str(count), timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def admitted_host(cluster, namespace: str, name: str) -> str | None:
    route = cluster.kubectl_json("get", "route", name, "-n", namespace)
    for ingress in (route.get("status") or {}).get("ingress") or []:
        if any(c["type"] == "Admitted" and c["status"] == "True" for c in ingress.get("conditions") or []):
            return ingress["host"]
    return None
