"""Route admission on the real control plane: the operator subprocess, kubectl in, status out.

Each test runs its own operator restricted to its namespaces, under a router name of its own, so
that other operators on the shared cluster (which write the "default" router's entries) cannot
make the assertions flaky; their entries double as "other routers" whose entries must survive.
"""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from tests.support.cluster import scratch_namespace, start_operator, stop_operator
from tests.support.wait import wait_for

DOMAIN = "apps.it.netshift.test"


@pytest.fixture
def namespace2(cluster, namespace):
    with scratch_namespace(cluster, f"{namespace[:50]}-b") as name:
        yield name


@pytest.fixture
def router_name():
    return f"it-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def route_operator(cluster, tmp_path, namespace, namespace2, router_name, request):
    op = start_operator(cluster, tmp_path, "--namespace", namespace, "--namespace", namespace2,
                        env={"NETSHIFT_ROUTER_NAME": router_name, "NETSHIFT_ROUTER_DOMAIN": DOMAIN,
                             "NETSHIFT_ROUTER_CANONICAL_HOSTNAME": "router.it.netshift.test"})
    yield op
    stop_operator(op, request)


def route_yaml(name: str, namespace: str, host: str | None = None, path: str | None = None,
               extra_spec: str = "", annotations: str = "") -> str:
    lines = ["apiVersion: route.openshift.io/v1", "kind: Route", "metadata:",
             f"  name: {name}", f"  namespace: {namespace}"]
    if annotations:
        lines += ["  annotations:", f"    {annotations}"]
    lines += ["spec:", "  to:", "    kind: Service", "    name: web"]
    if host:
        lines.append(f"  host: {host}")
    if path:
        lines.append(f"  path: {path}")
    if extra_spec:
        lines.append(extra_spec)
    return "\n".join(lines) + "\n"


def apply(cluster, *docs: str) -> None:
    cluster.kubectl("apply", "-f", "-", input="---\n".join(docs))


def ingress_of(cluster, namespace: str, name: str, router: str) -> dict | None:
    obj = cluster.kubectl_json("get", "route", name, "-n", namespace)
    return next((e for e in (obj.get("status") or {}).get("ingress") or []
                 if e.get("routerName") == router), None)


def admitted(cluster, ns, name, router, status="True", reason=None):
    def check():
        entry = ingress_of(cluster, ns, name, router)
        if not entry:
            return None
        cond = entry["conditions"][0]
        if cond["status"] == status and (reason is None or cond.get("reason") == reason):
            return entry
        return None
    return wait_for(f"{ns}/{name} Admitted={status} {reason or ''}", check, timeout=30.0)


def test_host_is_generated_and_route_admitted(cluster, namespace, namespace2, router_name, route_operator):
    apply(cluster, route_yaml("web.v1", namespace))
    entry = admitted(cluster, namespace, "web.v1", router_name)
    expected = f"web-v1-{namespace}.{DOMAIN}"
    obj = cluster.kubectl_json("get", "route", "web.v1", "-n", namespace)
    assert obj["spec"]["host"] == expected
    assert obj["metadata"]["annotations"]["openshift.io/host.generated"] == "true"
    assert entry["host"] == expected
    assert entry["wildcardPolicy"] == "None"
    assert entry["routerCanonicalHostname"] == "router.it.netshift.test"
    assert entry["conditions"][0]["type"] == "Admitted"
    # The printer columns read the status.
    out = cluster.kubectl("get", "route", "web.v1", "-n", namespace).stdout
    assert expected in out


def test_host_already_claimed_across_namespaces_and_promotion(cluster, namespace, namespace2,
                                                              router_name, route_operator):
    host = f"shared-{uuid.uuid4().hex[:6]}.example.com"
    apply(cluster, route_yaml("owner", namespace, host=host))
    admitted(cluster, namespace, "owner", router_name)
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    apply(cluster, route_yaml("late", namespace2, host=host))
    entry = admitted(cluster, namespace2, "late", router_name, status="False", reason="HostAlreadyClaimed")
    assert entry["host"] == host
    assert entry["conditions"][0]["message"] == \
        f"a route in another namespace holds {host} and is older than late"
    # Same namespace, other path: coexists; same path: the older wins.
    apply(cluster, route_yaml("api", namespace, host=host, path="/api"),
          route_yaml("api-dup", namespace2, host=host, path="/api"))
    admitted(cluster, namespace, "api", router_name)
    # Deleting the owning namespace's routes promotes the other namespace.
    cluster.kubectl("delete", "route", "owner", "api", "-n", namespace)
    admitted(cluster, namespace2, "late", router_name)
    admitted(cluster, namespace2, "api-dup", router_name)


def test_invalid_routes_are_rejected_with_openshift_reasons(cluster, namespace, namespace2,
                                                            router_name, route_operator):
    apply(cluster,
          route_yaml("upper", namespace, host="Upper.Example.com"),
          route_yaml("badtls", namespace, host="tls.example.com",
                     extra_spec="  tls:\n    termination: edge\n    key: not-a-key\n"))
    e = admitted(cluster, namespace, "upper", router_name, status="False", reason="InvalidHost")
    assert e["conditions"][0]["message"].startswith("host name validation errors: spec.host: Invalid value:")
    e = admitted(cluster, namespace, "badtls", router_name, status="False",
                 reason="ExtendedValidationFailed")
    assert "spec.tls.key" in e["conditions"][0]["message"]


def test_other_routers_entries_are_preserved_and_idle_means_no_writes(cluster, namespace, namespace2,
                                                                      router_name, route_operator):
    apply(cluster, route_yaml("keep", namespace, host=f"keep-{uuid.uuid4().hex[:6]}.example.com"))
    admitted(cluster, namespace, "keep", router_name)
    other = {"routerName": "someone-else", "host": "keep.example.com",
             "conditions": [{"type": "Admitted", "status": "True",
                             "lastTransitionTime": "2023-01-01T00:00:00Z"}]}
    obj = cluster.kubectl_json("get", "route", "keep", "-n", namespace)
    ingress = obj["status"]["ingress"] + [other]
    cluster.kubectl("patch", "route", "keep", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"ingress": ingress}}))
    # Our entry changed by hand: the operator repairs it and keeps the other router's entry.
    ours = next(e for e in ingress if e["routerName"] == router_name)
    ours["conditions"][0]["status"] = "False"
    cluster.kubectl("patch", "route", "keep", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"ingress": ingress}}))
    admitted(cluster, namespace, "keep", router_name)
    obj = cluster.kubectl_json("get", "route", "keep", "-n", namespace)
    assert any(e["routerName"] == "someone-else" for e in obj["status"]["ingress"])

    def writes() -> float:
        with urllib.request.urlopen(route_operator.metrics_url, timeout=5) as resp:
            body = resp.read().decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith("netshift_api_requests_total{") and 'controller="route"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = writes()
    time.sleep(3)
    assert writes() == before


def test_external_certificate_needs_the_routers_grant_on_its_secret(cluster, tmp_path, namespace, router_name,
                                                                    request):
    """OpenShift's per-Secret access: a SubjectAccessReview for the router's ServiceAccount."""
    op = start_operator(cluster, tmp_path, "--namespace", namespace,
                        env={"NETSHIFT_ROUTER_NAME": router_name, "NETSHIFT_ROUTER_DOMAIN": DOMAIN,
                             "NETSHIFT_ROUTER_SERVICE_ACCOUNT": f"{namespace}:the-router"})
    try:
        tls = "  tls:\n    termination: edge\n    externalCertificate:\n      name: web-tls\n"
        apply(cluster, route_yaml("ext", namespace, host=f"ext-{namespace}.example.com", extra_spec=tls))
        e = admitted(cluster, namespace, "ext", router_name, status="False", reason="ExtendedValidationFailed")
        assert e["conditions"][0]["message"] == (
            "[spec.tls.externalCertificate: Forbidden: router serviceaccount does not have permission to get "
            "this secret, spec.tls.externalCertificate: Forbidden: router serviceaccount does not have "
            "permission to watch this secret, spec.tls.externalCertificate: Forbidden: router serviceaccount "
            "does not have permission to list this secret]")
        # The route's author grants the router the one Secret; a route change asks again.
        apply(cluster, f"""apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: router-web-tls, namespace: {namespace}}}
rules:
  - {{apiGroups: [""], resources: [secrets], resourceNames: [web-tls], verbs: [get, list, watch]}}
""", f"""apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: router-web-tls, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: router-web-tls}}
subjects: [{{kind: ServiceAccount, name: the-router, namespace: {namespace}}}]
""")
        cluster.kubectl("patch", "route", "ext", "-n", namespace, "--type=merge", "-p", '{"spec":{"path":"/"}}')
        admitted(cluster, namespace, "ext", router_name)
    finally:
        stop_operator(op, request)
