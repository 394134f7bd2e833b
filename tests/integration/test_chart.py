"""The Helm chart, the kubectl manifests and the Dockerfile contract.

helm comes from the same place as kubectl (tests/support/cluster.py): `hack/cluster bin HELM_BIN`, or PATH when
NETSHIFT_TEST_KUBECONFIG names another cluster. Rendered objects are validated by the real API server
(`kubectl apply --dry-run=server`).
"""
from __future__ import annotations

import functools
import os
import pathlib
import re
import subprocess

import pytest
import yaml

from netshift import __version__
from tests.support.cluster import ROOT, tool

CHART = ROOT / "charts" / "netshift"
MANIFESTS = ROOT / "manifests"
NON_DEFAULT = {
    "image": {"repository": "registry.example.com/netshift", "tag": "1.2.3", "pullPolicy": "Always"},
    "operator": {"watchNamespaces": ["team-a", "team-b"], "verbose": True, "logFormat": "plain",
                 "extraEnv": [{"name": "EXTRA", "value": "1"}]},
    "egressRouter": {"defaultMacvlanMaster": "ens4", "agentImage": "registry.example.com/agent:9"},
    "routes": {"enabled": False},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "metrics": {"port": 9300},
    "health": {"port": 8090},
}


@functools.cache
def helm_path() -> str:
    return tool("helm", "HELM_BIN")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm_path(), *args], text=True, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def values_file(tmp_path: pathlib.Path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(tmp_path: pathlib.Path, values: dict | None = None, *, release: str = "netshift",
           namespace: str = "netshift-system", crds: bool = False) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values:
        args += ["-f", values_file(tmp_path, values)]
    if crds:
        args.append("--include-crds")
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str) -> dict:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def named(objs: list[dict], kind: str, suffix: str) -> dict:
    """The one object of a kind whose name ends with ``-<suffix>`` (operator, router...)."""
    found = [o for o in by_kind(objs, kind) if o["metadata"]["name"].endswith(f"-{suffix}")]
    assert len(found) == 1, f"expected one {kind} named *-{suffix}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def operator_deployment(objs: list[dict]) -> dict:
    return named(objs, "Deployment", "operator")


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def rules_of(role: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    out = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.add((group, resource, tuple(sorted(rule["verbs"]))))
    return out


# What the code calls, and nothing more (see the comments in templates/rbac.yaml).
KOPF_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"))}
NAMESPACE_RULES = {("", "namespaces", ("list", "watch"))}
EGRESSROUTER_RULES = {
    ("network.operator.openshift.io", "egressrouters", ("list", "watch")),
    ("network.operator.openshift.io", "egressrouters/status", ("patch",)),
    ("network.operator.openshift.io", "egressrouters/finalizers", ("update",)),
    ("k8s.cni.cncf.io", "network-attachment-definitions", ("create", "list", "patch", "watch")),
    ("apps", "deployments", ("create", "list", "patch", "watch")),
    ("", "configmaps", ("create", "list", "patch", "watch")),
    ("", "services", ("create", "delete", "list", "patch", "watch")),
    ("", "pods", ("list", "patch", "watch")),
    ("", "events", ("create", "list")),
    ("coordination.k8s.io", "leases", ("create", "delete", "get", "list", "patch", "update", "watch")),
    ("", "serviceaccounts", ("create", "delete", "list", "patch", "watch")),
    ("rbac.authorization.k8s.io", "roles", ("create", "delete", "list", "patch", "watch")),
    ("rbac.authorization.k8s.io", "rolebindings", ("create", "delete", "list", "patch", "watch")),
    ("policy", "poddisruptionbudgets", ("create", "delete", "list", "patch", "watch")),
}
ROUTE_RULES = {
    ("route.openshift.io", "routes", ("list", "patch", "watch")),
    ("route.openshift.io", "routes/status", ("patch",)),
    ("", "events", ("create",)),
    ("authorization.k8s.io", "subjectaccessreviews", ("create",)),
}
# The router (operator/netshift/kube/watch.py) only reads, and no Secrets: route authors grant it
# their externalCertificate Secret, one by one (a Role in the route's namespace).
ROUTER_RULES = {
    ("route.openshift.io", "routes", ("list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
}


# -- lint and chart metadata --------------------------------------------------------------------
def test_helm_lint_strict(tmp_path: pathlib.Path) -> None:
    out = helm("lint", "--strict", str(CHART)).stdout
    assert "0 chart(s) failed" in out
    helm("lint", "--strict", str(CHART), "-f", values_file(tmp_path, NON_DEFAULT))


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__


def test_chart_crds_are_the_repository_crds() -> None:
    repo = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == repo, "run hack/render-manifests.sh"
    for name in repo:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), \
            f"charts/netshift/crds/{name} differs from crds/{name}: run hack/render-manifests.sh"


def test_manifests_are_rendered_from_the_chart() -> None:
    proc = subprocess.run([str(ROOT / "hack" / "render-manifests.sh"), "--check"], text=True,
                          capture_output=True, timeout=120, env={**os.environ, "HELM": helm_path()})
    assert proc.returncode == 0, f"manifests/ is stale (run hack/render-manifests.sh):\n{proc.stdout}{proc.stderr}"


def test_kustomization_is_the_chart_plus_namespace(cluster, tmp_path: pathlib.Path) -> None:
    built = [d for d in yaml.safe_load_all(cluster.kubectl("kustomize", str(MANIFESTS)).stdout) if d]
    chart = render(tmp_path, crds=True)
    key = lambda o: (o["kind"], o["metadata"]["name"])
    assert sorted(map(key, built)) == sorted([*map(key, chart), ("Namespace", "netshift-system")])
    for deployment in by_kind(built, "Deployment"):
        assert deployment["metadata"]["namespace"] == "netshift-system"
        name = deployment["metadata"]["name"]
        rendered = next(d for d in by_kind(chart, "Deployment") if d["metadata"]["name"] == name)
        assert deployment["spec"]["template"]["spec"] == rendered["spec"]["template"]["spec"]


# -- default values -----------------------------------------------------------------------------
def test_default_objects(tmp_path: pathlib.Path) -> None:
    objs = render(tmp_path)
    names = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert names == sorted([
        ("ServiceAccount", "netshift-operator"),
        ("ClusterRole", "netshift-operator"),
        ("ClusterRole", "netshift-egressrouter"),
        ("ClusterRole", "netshift-route-admission"),
        ("ClusterRoleBinding", "netshift-operator"),
        ("ClusterRoleBinding", "netshift-egressrouter"),
        ("ClusterRoleBinding", "netshift-route-admission"),
        ("Service", "netshift-operator-metrics"),
        ("Deployment", "netshift-operator"),
        # Two operators, one leading (docs/ha.md).
        ("Role", "netshift-leader-election"),
        ("RoleBinding", "netshift-leader-election"),
        ("PodDisruptionBudget", "netshift-operator"),
        # The router (Route data plane), deployed with Route support.
        ("ServiceAccount", "netshift-router"),
        ("ClusterRole", "netshift-router"),
        ("ClusterRoleBinding", "netshift-router"),
        ("Service", "netshift-router"),
        ("Service", "netshift-router-metrics"),
        ("Deployment", "netshift-router"),
    ])
    for o in objs:
        if o["kind"] in ("ServiceAccount", "Service", "Deployment", "Role", "RoleBinding", "PodDisruptionBudget"):
            assert o["metadata"]["namespace"] == "netshift-system"
        # Never the label the operator uses to find its own children.
        assert o["metadata"]["labels"].get("app.kubernetes.io/managed-by") != "netshift"
    crds = [o for o in render(tmp_path, crds=True) if o["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "egressrouters.network.operator.openshift.io", "routes.route.openshift.io"]


def test_rbac_is_exact(tmp_path: pathlib.Path) -> None:
    objs = render(tmp_path)
    roles = {r["metadata"]["name"]: rules_of(r) for r in by_kind(objs, "ClusterRole")}
    assert roles == {
        "netshift-operator": KOPF_RULES,
        "netshift-egressrouter": EGRESSROUTER_RULES,
        "netshift-route-admission": ROUTE_RULES,
        "netshift-router": ROUTER_RULES,
    }
    for binding in by_kind(objs, "ClusterRoleBinding"):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": binding["metadata"]["name"]}
        sa = "netshift-router" if binding["metadata"]["name"] == "netshift-router" else "netshift-operator"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "netshift-system"}]
    # Leader election: the one Lease (create cannot be limited to a name).
    (role,) = by_kind(objs, "Role")
    assert role["metadata"]["namespace"] == "netshift-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["netshift-operator"],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}]
    (binding,) = by_kind(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "netshift-operator",
                                    "namespace": "netshift-system"}]


def test_operator_pod_is_locked_down(tmp_path: pathlib.Path) -> None:
    pod = operator_deployment(render(tmp_path))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    # The only writable path is an emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"} and "emptyDir" in volumes["tmp"]


def test_operator_deployment(tmp_path: pathlib.Path) -> None:
    deployment = operator_deployment(render(tmp_path))
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert pod["serviceAccountName"] == "netshift-operator"
    (container,) = pod["containers"]
    image = container["image"]
    assert image == f"localhost/netshift:{__version__}"
    assert not image.endswith(":latest")
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "operator"
    assert "--metrics-port=9102" in container["args"] and "--health-port=8081" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9102, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = env_of(container)
    assert env["NETSHIFT_AGENT_IMAGE"] == image
    assert env["NETSHIFT_AGENT_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert env["NETSHIFT_ROUTES_ENABLED"] == "true"
    assert env["NETSHIFT_ROUTER_NAME"] == "default"
    assert env["NETSHIFT_ROUTER_DOMAIN"] == "apps.netshift.local"
    assert "NETSHIFT_DEFAULT_MACVLAN_MASTER" not in env
    assert env["NETSHIFT_LEADER_ELECT"] == "true"
    assert env["NETSHIFT_LEADER_ELECT_LEASE_NAME"] == "netshift-operator"
    assert env["NETSHIFT_LEADER_ELECT_NAMESPACE"] == "netshift-system"
    assert (env["NETSHIFT_LEADER_ELECT_LEASE_DURATION"], env["NETSHIFT_LEADER_ELECT_RENEW_DEADLINE"],
            env["NETSHIFT_LEADER_ELECT_RETRY_PERIOD"]) == ("15", "10", "2")
    pdb = one(render(tmp_path), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": spec["selector"]}


def test_single_operator_without_leader_election(tmp_path: pathlib.Path) -> None:
    values = {"operator": {"replicas": 1, "leaderElection": {"enabled": False}}}
    objs = render(tmp_path, values)
    spec = operator_deployment(objs)["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert "NETSHIFT_LEADER_ELECT" not in env_of(container)
    assert not by_kind(objs, "Role") and not by_kind(objs, "PodDisruptionBudget")
    refused = helm("template", "t", str(CHART), "--set", "operator.leaderElection.enabled=false", check=False)
    assert refused.returncode != 0 and "leaderElection" in refused.stderr
    service = named(render(tmp_path), "Service", "operator-metrics")
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9102, "targetPort": "metrics",
                                         "protocol": "TCP"}]


def test_env_names_are_the_operator_settings(tmp_path: pathlib.Path) -> None:
    """Every NETSHIFT_* variable the chart sets is one the operator reads (settings.py)."""
    from netshift.settings import OperatorSettings, env_name

    known = {env_name(field) for field in OperatorSettings.model_fields}
    for values in (None, NON_DEFAULT):
        (container,) = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]["containers"]
        used = {k for k in env_of(container) if k.startswith("NETSHIFT_")}
        assert used <= known, used - known


# -- non-default values -------------------------------------------------------------------------
def test_non_default_values(tmp_path: pathlib.Path) -> None:
    objs = render(tmp_path, NON_DEFAULT, release="edge", namespace="ops")
    roles = {r["metadata"]["name"]: rules_of(r) for r in by_kind(objs, "ClusterRole")}
    # No Route permissions without Route support; namespaces are listed when only some are watched.
    assert roles == {"edge-netshift-operator": KOPF_RULES | NAMESPACE_RULES,
                     "edge-netshift-egressrouter": EGRESSROUTER_RULES}
    assert sorted(b["metadata"]["name"] for b in by_kind(objs, "ClusterRoleBinding")) == [
        "edge-netshift-egressrouter", "edge-netshift-operator"]
    deployment = one(objs, "Deployment")
    assert deployment["metadata"] == {**deployment["metadata"], "name": "edge-netshift-operator",
                                      "namespace": "ops"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/netshift:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == ["operator", "--metrics-port=9300", "--health-port=8090",
                                 "--log-format=plain", "--namespace=team-a", "--namespace=team-b",
                                 "--verbose"]
    env = env_of(container)
    assert env["NETSHIFT_AGENT_IMAGE"] == "registry.example.com/agent:9"
    assert env["NETSHIFT_AGENT_IMAGE_PULL_POLICY"] == "Always"
    assert env["NETSHIFT_DEFAULT_MACVLAN_MASTER"] == "ens4"
    assert env["NETSHIFT_ROUTES_ENABLED"] == "false"
    assert "NETSHIFT_ROUTER_NAME" not in env
    assert env["EXTRA"] == "1"
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(objs, "Service")["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}


def test_route_values(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"router": {"name": "internal", "domain": "apps.example.com",
                         "canonicalHostname": "router.example.com"},
              "routes": {"allowWildcardRoutes": True, "allowedDomains": ["example.com", "example.org"],
                         "deniedDomains": ["secret.example.com"]},
              "image": {"digest": "sha256:" + "a" * 64}}
    (container,) = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["NETSHIFT_ROUTER_NAME"] == "internal"
    assert env["NETSHIFT_ROUTER_DOMAIN"] == "apps.example.com"
    assert env["NETSHIFT_ROUTER_CANONICAL_HOSTNAME"] == "router.example.com"
    assert env["NETSHIFT_ALLOW_WILDCARD_ROUTES"] == "true"
    assert env["NETSHIFT_ROUTER_ALLOWED_DOMAINS"] == "example.com,example.org"
    assert env["NETSHIFT_ROUTER_DENIED_DOMAINS"] == "secret.example.com"
    assert container["image"] == "localhost/netshift@sha256:" + "a" * 64
    assert env["NETSHIFT_AGENT_IMAGE"] == container["image"]
    # The operator's settings model accepts what the chart sets.
    from netshift.settings import OperatorSettings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = OperatorSettings()
    assert cfg.router_name == "internal" and cfg.allow_wildcard_routes is True


@pytest.mark.parametrize("bad", [
    {"image": {"tag": "latest"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"operator": {"logFormat": "xml"}},
    {"router": {"domain": "Not A Domain"}},
    {"egressRouter": {"defaultMacvlanMaster": "eth0/1"}},
    {"metrics": {"port": 0}},
    {"unknownKey": True},
])
def test_schema_rejects_bad_values(tmp_path: pathlib.Path, bad: dict) -> None:
    proc = helm("template", "x", str(CHART), "-f", values_file(tmp_path, bad), check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, proc.stderr


def test_service_monitor_needs_the_metrics_service(tmp_path: pathlib.Path) -> None:
    values = {"serviceMonitor": {"enabled": True}, "metrics": {"service": {"enabled": False}}}
    proc = helm("template", "x", str(CHART), "-f", values_file(tmp_path, values), check=False)
    assert proc.returncode != 0 and "metrics.service.enabled" in proc.stderr


def test_existing_service_account(tmp_path: pathlib.Path) -> None:
    values = {"serviceAccount": {"create": False, "name": "mine"}}
    objs = render(tmp_path, values)
    # Only the router's own ServiceAccount is created.
    assert [a["metadata"]["name"] for a in by_kind(objs, "ServiceAccount")] == ["netshift-router"]
    assert operator_deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert {b["subjects"][0]["name"] for b in by_kind(objs, "ClusterRoleBinding")
            if b["metadata"]["name"] != "netshift-router"} == {"mine"}
    proc = helm("template", "x", str(CHART), "--set", "serviceAccount.create=false", check=False)
    assert proc.returncode != 0 and "serviceAccount.name is required" in proc.stderr


# -- the router (Route data plane) --------------------------------------------------------------
def test_router_deployment_defaults(tmp_path: pathlib.Path) -> None:
    objs = render(tmp_path)
    deployment = named(objs, "Deployment", "router")
    spec = deployment["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "netshift-router"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert not pod.get("hostNetwork")
    assert pod["terminationGracePeriodSeconds"] == 45
    (container,) = pod["containers"]
    assert container["image"] == operator_deployment(objs)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"] == [
        "router", "--router-name=default", "--domain=apps.netshift.local", "--http-port=8080",
        "--https-port=8443", "--public-https-port=443", "--stats-port=1936", "--metrics-port=9103",
        "--config-dir=/var/lib/netshift-router",
        "--maxconn=20000", "--reload-interval=5", "--hard-stop-after=30m", "--shutdown-delay=5",
        "--grace-seconds=30", "--log-format=json"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080, "https": 8443, "stats": 1936, "metrics": 9103}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "stats"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}  # unprivileged ports: no NET_BIND_SERVICE
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/var/lib/netshift-router"}
    # The chart's arguments are the router's arguments.
    from netshift.cli import build_parser
    from netshift.settings import RouterSettings, load

    s = load(RouterSettings, build_parser().parse_args(container["args"]))
    assert (s.router_name, s.router_http_port, s.router_https_port, s.router_config_dir) == \
        ("default", 8080, 8443, "/var/lib/netshift-router")
    service = named(objs, "Service", "router")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "router"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"), ("https", 443, "https")]
    assert all("nodePort" not in p for p in service["spec"]["ports"])
    metrics = named(objs, "Service", "router-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in metrics["spec"]["ports"]] == ["stats", "metrics"]
    # The operator's metrics Service never selects router pods.
    assert named(objs, "Service", "operator-metrics")["spec"]["selector"]["app.kubernetes.io/component"] == "operator"


def test_router_values(tmp_path: pathlib.Path) -> None:
    values = {"router": {"name": "internal", "domain": "apps.example.com", "defaultCertificateSecret": "router-tls",
                         "threads": 4, "maxconn": 0, "accessLog": True, "replicas": 2, "hardStopAfter": "",
                         "service": {"type": "LoadBalancer", "httpNodePort": 30080, "httpsNodePort": 30443,
                                     "externalTrafficPolicy": "Local", "loadBalancerClass": "metallb",
                                     "annotations": {"a": "b"}},
                         "nodeSelector": {"role": "edge"}}}
    objs = render(tmp_path, values)
    deployment = named(objs, "Deployment", "router")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--router-name=internal" in args and "--threads=4" in args and "--access-log" in args
    assert "--default-certificate=/etc/netshift-router/default-certificate" in args
    assert not any(a.startswith("--maxconn") for a in args)
    assert "--hard-stop-after=" in args  # "": old workers are never stopped
    volume = {"name": "default-certificate", "secret": {"secretName": "router-tls", "defaultMode": 0o400}}
    assert volume in pod["volumes"]
    assert pod["nodeSelector"] == {"role": "edge"}
    service = named(objs, "Service", "router")["spec"]
    assert service["type"] == "LoadBalancer" and service["externalTrafficPolicy"] == "Local"
    assert service["loadBalancerClass"] == "metallb"
    assert [p["nodePort"] for p in service["ports"]] == [30080, 30443]


def test_router_error_pages_public_https_port_and_own_addresses(tmp_path: pathlib.Path) -> None:
    objs = render(tmp_path, {"router": {"errorPagesConfigMap": "pages", "publicHttpsPort": 30443}})
    (container,) = named(objs, "Deployment", "router")["spec"]["template"]["spec"]["containers"]
    assert "--error-pages-configmap=netshift-system/pages" in container["args"]
    assert "--public-https-port=30443" in container["args"]
    assert {"name": "NETSHIFT_ROUTER_OWN_ADDRESSES",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}} in container["env"]
    # Exactly the one ConfigMap, for the router only.
    role = named(objs, "Role", "error-pages")
    assert role["metadata"]["namespace"] == "netshift-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["pages"],
                              "verbs": ["get", "list", "watch"]}]
    binding = named(objs, "RoleBinding", "error-pages")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "netshift-router",
                                    "namespace": "netshift-system"}]
    (operator,) = named(objs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    assert {"name": "NETSHIFT_ROUTER_SERVICE_ACCOUNT", "value": "netshift-system:netshift-router"} in operator["env"]


def test_router_not_deployed_without_route_support_or_when_disabled(tmp_path: pathlib.Path) -> None:
    for values in ({"routes": {"enabled": False}}, {"router": {"enabled": False}}):
        objs = render(tmp_path, values)
        assert not [o for o in objs if "netshift-router" in o["metadata"]["name"]], values


@pytest.mark.parametrize("bad", [
    {"router": {"service": {"type": "ExternalName"}}},
    {"router": {"ports": {"http": 0}}},
    {"router": {"threads": -1}},
    {"router": {"hardStopAfter": "30 minutes"}},
])
def test_router_schema(tmp_path: pathlib.Path, bad: dict) -> None:
    proc = helm("template", "x", str(CHART), "-f", values_file(tmp_path, bad), check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, proc.stderr


# -- the real API server ----------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, NON_DEFAULT], ids=["defaults", "non-default"])
def test_rendered_objects_pass_server_side_validation(cluster, namespace: str, tmp_path: pathlib.Path,
                                                      values: dict | None) -> None:
    # A release name of its own, so the cluster-scoped names never touch a real install.
    objs = render(tmp_path, values, release=f"dry-{namespace[-6:]}", namespace=namespace, crds=True)
    # The ServiceMonitor CRD (Prometheus Operator) is not installed here: checked above by shape.
    objs = [o for o in objs if o["kind"] != "ServiceMonitor"]
    docs = yaml.safe_dump_all(objs)
    proc = cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                           "--field-manager=chart-test", "-f", "-", input=docs)
    applied = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(applied) == len(objs), proc.stdout
    assert all("(server dry run)" in line for line in applied), proc.stdout


# -- the image ---------------------------------------------------------------------------------------
def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, re.M)) == 2  # builder and final
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert 'ENTRYPOINT ["netshift"]' in text and 'CMD ["operator"]' in text
    assert "nftables" in text
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[:1] != ["*"] or "!operator/" in ignore


def test_image_reference_matches_the_chart() -> None:
    ref = subprocess.run([str(ROOT / "hack" / "build-image.sh"), "ref"], text=True, capture_output=True,
                         check=True).stdout.strip()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert ref == f"{values['image']['repository']}:{__version__}"
