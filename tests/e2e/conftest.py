"""Fixtures of the end-to-end tier: the image, the operator installed by the Helm chart and running
as a pod, the "external" network (tests/e2e/extnet.py), a namespace for routers and a client pod.

Locally (`make test`, `make test-e2e`) the cluster is hack/cluster's node; the image is built and
imported with hack/build-image.sh and the chart is installed for the session, watching only the
session's namespace (other tiers' operators may run at the same time), then uninstalled.

For kind (hack/kind-e2e.sh) or any cluster, the environment says what exists already:

    NETSHIFT_TEST_KUBECONFIG   the cluster (tests/conftest.py); kubectl and helm from PATH
    NETSHIFT_E2E_IMAGE         the image to use (not built here), e.g. localhost/netshift:0.1.0
    NETSHIFT_E2E_RELEASE       Helm release of the operator; reused (and kept) when installed already
    NETSHIFT_E2E_NAMESPACE     its namespace
    NETSHIFT_E2E_NODE_EXEC     prefix that runs a command on the node holding the router pods,
                               e.g. `docker exec -i netshift-e2e-control-plane`; empty: this machine
    NETSHIFT_E2E_LAN_BRIDGE    a bridge (where NODE_EXEC runs) that the workers' NETSHIFT_E2E_MASTER
    NETSHIFT_E2E_MASTER        link is on: the "external" network joins it, routers use that master
    NETSHIFT_E2E_MULTINODE=1   the cluster has workers on two nodes: the multi-node tests must run
    NETSHIFT_E2E_KEEP=1        keep everything after the session (debugging)

Measurements (apply -> Available, child repair times) are collected in `MEASUREMENTS` and printed
in the terminal summary.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.extnet import ExternalNetwork, NodeExec
from tests.e2e.shared import ER, MEASUREMENTS, NAD, Probe, client_pod_manifest
from tests.support.cluster import ROOT, Cluster, tool
from tests.support.dns import service_host

HERE = pathlib.Path(__file__).resolve().parent
KEEP = os.environ.get("NETSHIFT_E2E_KEEP") == "1"
SESSION = uuid.uuid4().hex[:6]

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The multi-node scenarios run where hack/kind-e2e.sh says the cluster has two workers; on
    hack/cluster's single node they are deselected (reported, and not a skip: CI fails on skips)."""
    if os.environ.get("NETSHIFT_E2E_MULTINODE") == "1":
        return
    multi = [item for item in items if item.get_closest_marker("multinode")]
    if multi:
        config.hook.pytest_deselected(items=multi)
        items[:] = [item for item in items if not item.get_closest_marker("multinode")]
        print(f"[e2e] {len(multi)} multi-node test(s) deselected: one node here (make test-e2e-kind runs them)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("netshift e2e measurements")
    for name, values in MEASUREMENTS.items():
        vals = sorted(values)
        median = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
        terminalreporter.write_line(
            f"{name}: median {median:.2f}s  min {vals[0]:.2f}s  max {vals[-1]:.2f}s  "
            f"(n={len(vals)}: {', '.join(f'{v:.2f}' for v in values)})")


# -- the cluster and its tools ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def e2e_cluster(cluster: Cluster) -> Cluster:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    ready = [n["metadata"]["name"] for n in nodes
             if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
    if not ready:
        pytest.fail("the e2e tier needs a Ready node (hack/cluster up starts one)", pytrace=False)
    if not cluster.kubectl("get", "crd", NAD, "--ignore-not-found").stdout.strip():
        pytest.fail(f"{NAD} is not installed: the e2e tier needs Multus", pytrace=False)
    return cluster


@pytest.fixture(scope="session")
def helm(cluster: Cluster) -> str:
    return tool("helm", "HELM_BIN")


@pytest.fixture(scope="session")
def node_exec() -> NodeExec:
    return NodeExec(os.environ.get("NETSHIFT_E2E_NODE_EXEC") or None)


@pytest.fixture(scope="session")
def e2e_image(cluster: Cluster) -> str:
    """The image reference; built and imported into the node's containerd locally."""
    given = os.environ.get("NETSHIFT_E2E_IMAGE")
    if given:
        return given
    ref = subprocess.run([str(ROOT / "hack/build-image.sh"), "ref"], text=True, capture_output=True,
                         check=True).stdout.strip()
    if not cluster.local:
        return ref  # someone else's cluster: the image must be there already (kind load ...)
    t0 = time.monotonic()
    build = subprocess.run([str(ROOT / "hack/build-image.sh")], text=True, capture_output=True, timeout=3600)
    if build.returncode != 0:
        pytest.fail(f"hack/build-image.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    print(f"[e2e] image {ref} ready in {time.monotonic() - t0:.1f}s")
    return build.stdout.strip().splitlines()[-1]


# -- the session namespace, the operator -----------------------------------------------------------

@pytest.fixture(scope="session")
def e2e_namespace(e2e_cluster: Cluster) -> Iterator[str]:
    """Where the routers and the client live. Router pods need NET_ADMIN: Pod Security `privileged`."""
    name = f"nse2e-{SESSION}"
    e2e_cluster.kubectl("create", "namespace", name)
    e2e_cluster.kubectl("label", "namespace", name, "netshift.io/test=true",
                        "pod-security.kubernetes.io/enforce=privileged")
    yield name
    if not KEEP:
        # wait: the router pods' macvlans must be gone before their master link is removed
        e2e_cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False,
                            timeout=200)


def _split_image(ref: str) -> tuple[str, str]:
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


@pytest.fixture(scope="session")
def operator_release(e2e_cluster: Cluster, helm: str, e2e_image: str, e2e_namespace: str) -> Iterator[dict]:
    """The operator from charts/netshift, running as a pod and Ready.

    A release named by NETSHIFT_E2E_RELEASE that is installed already (hack/kind-e2e.sh) is used as
    it is and kept. Otherwise the chart is installed for this session, watching only the session's
    namespace, and uninstalled at the end.
    """
    release = os.environ.get("NETSHIFT_E2E_RELEASE") or f"netshift-e2e-{SESSION}"
    namespace = os.environ.get("NETSHIFT_E2E_NAMESPACE") or f"netshift-e2e-{SESSION}"
    env = {**os.environ, "KUBECONFIG": e2e_cluster.kubeconfig}

    def helm_run(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([helm, *args], text=True, capture_output=True, env=env, timeout=timeout)

    existing = helm_run("status", release, "-n", namespace).returncode == 0
    installed_here = False
    if not existing:
        repo, tag = _split_image(e2e_image)
        image_args = ["--set", f"image.repository={repo}"]
        image_args += ["--set", f"image.digest={tag}"] if tag.startswith("sha256:") else ["--set", f"image.tag={tag}"]
        t0 = time.monotonic()
        installed_here = True
        inst = helm_run("install", release, str(ROOT / "charts/netshift"), "-n", namespace,
                        "--create-namespace", *image_args,
                        "--set", f"operator.watchNamespaces={{{e2e_namespace}}}",
                        "--set", "operator.logFormat=plain",
                        "--wait", "--timeout", "300s")
        if inst.returncode != 0:
            _dump_operator(e2e_cluster, namespace, release)
            _uninstall(e2e_cluster, helm_run, release, namespace)
            pytest.fail(f"helm install failed:\n{inst.stderr[-3000:]}", pytrace=False)
        print(f"[e2e] helm install {release} in {namespace}: {time.monotonic() - t0:.1f}s")
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    try:
        e2e_cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod", "-l", selector,
                            "--timeout=180s", timeout=200)
    except AssertionError:
        _dump_operator(e2e_cluster, namespace, release)
        if installed_here:
            _uninstall(e2e_cluster, helm_run, release, namespace)
        raise
    info = {"release": release, "namespace": namespace, "selector": selector, "installed_here": installed_here}
    yield info
    if installed_here and not KEEP:
        _uninstall(e2e_cluster, helm_run, release, namespace)


def _uninstall(cluster: Cluster, helm_run: Callable[..., subprocess.CompletedProcess[str]],
               release: str, namespace: str) -> None:
    helm_run("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s", timeout=150)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _dump_operator(cluster: Cluster, namespace: str, release: str) -> None:
    sel = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    print(cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout)
    print(cluster.kubectl("describe", "pods", "-n", namespace, "-l", sel, check=False).stdout[-3000:])
    print(cluster.kubectl("logs", "-n", namespace, "-l", sel, "--tail=100", check=False).stdout)


@pytest.fixture(scope="session")
def operator_logs(e2e_cluster: Cluster, operator_release: dict) -> Callable[[], str]:
    def logs() -> str:
        return e2e_cluster.kubectl("logs", "-n", operator_release["namespace"], "-l",
                                   operator_release["selector"], "--tail=200", check=False).stdout
    return logs


# -- the external network and the client -----------------------------------------------------------

@pytest.fixture(scope="session")
def extnet(e2e_cluster: Cluster, node_exec: NodeExec, e2e_image: str) -> Iterator[ExternalNetwork]:
    net = ExternalNetwork(node_exec, image=e2e_image, suffix=SESSION,
                          lan_bridge=os.environ.get("NETSHIFT_E2E_LAN_BRIDGE") or None,
                          node_master=os.environ.get("NETSHIFT_E2E_MASTER") or None)
    try:
        net.open()
        yield net
    finally:
        if not KEEP:
            left = net.close()
            if left:
                print(f"[e2e] WARNING: could not remove {left}")


@pytest.fixture(scope="session")
def client_pod(e2e_cluster: Cluster, e2e_namespace: str, e2e_image: str) -> str:
    """A long-running client pod (the netshift image: Python for TCP and UDP probes, present on kind too)."""
    pod = client_pod_manifest("client", e2e_image)
    e2e_cluster.kubectl("apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(pod))
    try:
        e2e_cluster.kubectl("wait", "-n", e2e_namespace, "--for=condition=Ready", "pod/client",
                            "--timeout=180s", timeout=200)
    except AssertionError:
        print(e2e_cluster.kubectl("describe", "pod", "client", "-n", e2e_namespace, check=False).stdout[-3000:])
        raise
    return "client"


@pytest.fixture(scope="session")
def probe(e2e_cluster: Cluster, e2e_namespace: str, client_pod: str) -> Probe:
    return Probe(e2e_cluster, e2e_namespace, client_pod)


@pytest.fixture(scope="session")
def e2e(e2e_cluster: Cluster, operator_release: dict, extnet: ExternalNetwork, e2e_namespace: str,
        probe: Probe, operator_logs: Callable[[], str]) -> E2E:
    return E2E(e2e_cluster, e2e_namespace, extnet, probe, operator_logs)


class E2E:
    """Everything a test needs, plus helpers for EgressRouters."""

    def __init__(self, cluster: Cluster, namespace: str, net: ExternalNetwork, probe: Probe,
                 operator_logs: Callable[[], str]) -> None:
        self.cluster, self.ns, self.net, self.probe, self.operator_logs = cluster, namespace, net, probe, operator_logs
        self._next_address = 0

    def new_address(self) -> str:
        """A fresh router address on the LAN (each router of the session gets its own)."""
        addr = self.net.router_address(self._next_address)
        self._next_address += 1
        return addr

    def router(self, name: str, address: str, rules: list[dict] | None = None,
               fallback: str | None = None, master: str | None = None) -> dict:
        redirect: dict[str, Any] = {}
        if rules is not None:
            redirect["redirectRules"] = rules
        if fallback:
            redirect["fallbackIP"] = fallback
        from tests.e2e.extnet import GATEWAY
        return {
            "apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
            "metadata": {"name": name},
            "spec": {
                "networkInterface": {"macvlan": {"mode": "Bridge", "master": master or self.net.master}},
                "addresses": [{"ip": address, "gateway": GATEWAY}],
                "mode": "Redirect",
                "redirect": redirect,
            },
        }

    def apply(self, obj: dict) -> None:
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict | None:
        out = self.cluster.kubectl("get", kind, name, "-n", self.ns, "-o", "json", "--ignore-not-found").stdout
        return json.loads(out) if out.strip() else None

    def condition(self, name: str, ctype: str) -> dict:
        router = self.get(ER, name) or {}
        for cond in router.get("status", {}).get("conditions", []):
            if cond["type"] == ctype:
                return cond
        return {}

    def wait_condition(self, name: str, ctype: str, timeout: int = 240) -> None:
        """`kubectl wait --for=condition=<ctype>`, as a user would; diagnostics on failure."""
        proc = self.cluster.kubectl("wait", "-n", self.ns, f"--for=condition={ctype}", f"{ER}/{name}",
                                    f"--timeout={timeout}s", check=False, timeout=timeout + 30)
        if proc.returncode != 0:
            self.diagnose(name)
            raise AssertionError(f"{name} not {ctype} within {timeout}s: {proc.stderr.strip()}")

    def delete(self, kind: str, name: str, wait: bool = False) -> None:
        self.cluster.kubectl("delete", kind, name, "-n", self.ns, f"--wait={str(wait).lower()}",
                             "--ignore-not-found", check=False, timeout=200)

    def router_pods(self, name: str) -> list[dict]:
        return self.cluster.kubectl_json("get", "pods", "-n", self.ns, "-l",
                                         f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=netshift")["items"]

    def service_ip(self, name: str) -> str:
        return self.get("service", name)["spec"]["clusterIP"]

    def service_host(self, name: str) -> str:
        """The DNS name of the session namespace's Service ``name`` (the cluster's DNS resolves it)."""
        return service_host(name, self.ns)

    def diagnose(self, name: str) -> None:
        print(f"--- EgressRouter {name} ---")
        print(json.dumps((self.get(ER, name) or {}).get("status"), indent=1))
        print(self.cluster.kubectl("get", "all,cm,net-attach-def", "-n", self.ns, "-o", "wide", check=False).stdout)
        print(self.cluster.kubectl("describe", "pods", "-n", self.ns, "-l", f"app.kubernetes.io/instance={name}",
                                   check=False).stdout[-4000:])
        print(self.cluster.kubectl("logs", "-n", self.ns, "-l", f"app.kubernetes.io/instance={name}", "--tail=60",
                                   check=False).stdout)
        print("--- operator ---")
        print(self.operator_logs()[-6000:])
        print("--- servers ---")
        print("\n".join(self.net.server_log[-20:]))


# -- the chart's Route router ------------------------------------------------------------------------

@pytest.fixture(scope="session")
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
