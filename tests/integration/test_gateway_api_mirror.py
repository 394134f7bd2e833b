"""The Gateway API mirror on the real control plane: the operator (its own router name, restricted
to the test's namespace, Gateway in that namespace) keeps the objects of the admitted Routes applied:
create, update, delete, and a restart that writes nothing."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.cluster import Cluster, start_operator, stop_operator
from tests.support.gatewayapi import crd_files
from tests.support.metrics import metric_sum, scrape
from tests.support.wait import wait_for

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def gateway_api_crds(cluster: Cluster) -> None:
    files = [arg for f in crd_files("standard") for arg in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)


def _route(name: str, namespace: str, host: str, path: str) -> str:
    return f"""apiVersion: route.openshift.io/v1
kind: Route
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}
  path: {path}
  to: {{kind: Service, name: web}}
  port: {{targetPort: 8080}}
  tls: {{termination: edge, insecureEdgeTerminationPolicy: Redirect}}
"""


def _mirror_writes(metrics_url: str) -> float:
    return metric_sum(scrape(metrics_url), "netshift_api_requests_total",
                      lambda labels: labels.get("verb") in WRITES, controller="gateway-api-mirror")


def test_mirror_follows_routes_and_restarts_without_writes(cluster: Cluster, namespace: str, tmp_path,
                                                           gateway_api_crds: None) -> None:
    router = f"gw-{uuid.uuid4().hex[:8]}"
    domain = f"{uuid.uuid4().hex[:8]}.mirror.netshift.test"
    env = {"NETSHIFT_ROUTER_NAME": router, "NETSHIFT_GATEWAY_API_MIRROR": "true",
           "NETSHIFT_GATEWAY_API_GATEWAY": f"{namespace}/mirror", "NETSHIFT_GATEWAY_API_CLASS": "test"}
    cluster.kubectl("apply", "-f", "-", input=f"""apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
""")
    cluster.kubectl("apply", "-f", "-", input=_route("one", namespace, f"one.{domain}", "/")
                    + "---\n" + _route("two", namespace, f"two.{domain}", "/two"))

    def get(kind: str, name: str) -> dict | None:
        proc = cluster.kubectl("get", kind, "-n", namespace, name, "-o", "json", check=False)
        return None if proc.returncode else json.loads(proc.stdout)

    op = start_operator(cluster, tmp_path, "--namespace", namespace, env=env)
    try:
        one = wait_for("HTTPRoute one", lambda: get("httproute", "one"))
        wait_for("HTTPRoute two-redirect", lambda: get("httproute", "two-redirect"))
        gateway = wait_for("the Gateway", lambda: get("gateway", "mirror"))
        assert {x["hostname"] for x in gateway["spec"]["listeners"]} == {f"one.{domain}", f"two.{domain}"}
        route_uid = cluster.kubectl_json("get", "route", "-n", namespace, "one")["metadata"]["uid"]
        assert one["metadata"]["ownerReferences"][0]["uid"] == route_uid
        assert one["spec"]["rules"][0]["backendRefs"] == [
            {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 100}]

        cluster.kubectl("patch", "route", "-n", namespace, "one", "--type=merge", "-p", '{"spec":{"path":"/v2"}}')
        wait_for("HTTPRoute one at /v2", lambda: (get("httproute", "one") or {}).get("spec", {})
                 .get("rules", [{}])[0].get("matches", [{}])[0].get("path", {}).get("value") == "/v2")

        cluster.kubectl("delete", "route", "-n", namespace, "two")
        wait_for("HTTPRoutes of two gone", lambda: get("httproute", "two") is None
                 and get("httproute", "two-redirect") is None)
        wait_for("listener of two gone", lambda: len((get("gateway", "mirror") or {})["spec"]["listeners"]) == 2)
    except BaseException:
        print(f"--- operator log ---\n{op.logs()[-6000:]}")
        raise
    finally:
        stop_operator(op)

    op = start_operator(cluster, tmp_path, "--namespace", namespace, env=env)
    try:
        wait_for("the mirror's first sync", lambda: "gateway api mirror synced" in op.logs())
        time.sleep(3)  # events, resyncs: nothing may be written
        assert "0 applied, 0 deleted" in op.logs()
        assert _mirror_writes(op.metrics_url) == 0
    finally:
        stop_operator(op)
