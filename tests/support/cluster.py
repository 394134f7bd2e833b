"""The test cluster (hack/cluster's local control plane, or any cluster named by
NETSHIFT_TEST_KUBECONFIG), kubectl against it, and `netshift operator` run as a subprocess."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from tests.support.net import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
HACK_CLUSTER = ROOT / "hack" / "cluster"
CRDS = ROOT / "crds"


@dataclasses.dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    kubectl_path: str
    local: bool  # the hack/cluster control plane (as opposed to NETSHIFT_TEST_KUBECONFIG)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_path, *args], input=input, text=True, capture_output=True,
            env={**os.environ, "KUBECONFIG": self.kubeconfig}, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def kubectl_popen(self, *args: str) -> subprocess.Popen[str]:
        """kubectl running in the background (stdout piped, text)."""
        return subprocess.Popen([self.kubectl_path, *args], text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "KUBECONFIG": self.kubeconfig})

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


@contextlib.contextmanager
def scratch_namespace(cluster: Cluster, name: str) -> Iterator[str]:
    """A namespace labelled as the tests', deleted (without waiting) afterwards."""
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "netshift.io/test=true")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def hack_cluster(*args: str, timeout: float = 120) -> str:
    """stdout of `hack/cluster ARGS`, stripped."""
    return subprocess.run([str(HACK_CLUSTER), *args], text=True, capture_output=True, check=True,
                          timeout=timeout).stdout.strip()


def tool(name: str, bin_dir: str) -> str:
    """The path of a tool hack/cluster builds (``bin_dir`` names its directory: K8S_BIN, HELM_BIN, ...)
    for the local cluster, else the one on PATH (kind or another cluster: NETSHIFT_TEST_KUBECONFIG)."""
    if os.environ.get("NETSHIFT_TEST_KUBECONFIG"):
        found = shutil.which(name)
        if not found:
            raise AssertionError(f"NETSHIFT_TEST_KUBECONFIG is set but {name} is not on PATH")
        return found
    return f"{hack_cluster('bin', bin_dir, timeout=3600)}/{name}"


def existing_cluster() -> Cluster:
    """The cluster as it is: NETSHIFT_TEST_KUBECONFIG, else hack/cluster's (not started here)."""
    external = os.environ.get("NETSHIFT_TEST_KUBECONFIG")
    kubeconfig = external or hack_cluster("kubeconfig")
    return Cluster(kubeconfig=kubeconfig, kubectl_path=tool("kubectl", "K8S_BIN"), local=not external)


def started_cluster() -> Cluster:
    """existing_cluster(), after `hack/cluster up` when it is the local one."""
    if not os.environ.get("NETSHIFT_TEST_KUBECONFIG"):
        up = subprocess.run([str(HACK_CLUSTER), "up"], text=True, capture_output=True, timeout=3600)
        if up.returncode != 0:
            raise AssertionError(f"hack/cluster up failed:\n{up.stderr[-4000:]}")
    return existing_cluster()


@dataclasses.dataclass
class OperatorProcess:
    proc: subprocess.Popen
    log_path: pathlib.Path
    metrics_url: str
    health_url: str

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_operator(cluster: Cluster, tmp_path: pathlib.Path, *extra: str,
                   env: dict[str, str] | None = None, name: str = "operator") -> OperatorProcess:
    """Run `netshift operator` as a subprocess against the cluster and wait until it is live
    (``name``: of its log file, for several operators in one test)."""
    metrics_port, health_port = free_port(), free_port()
    log_path = tmp_path / f"{name}.log"
    log_file = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netshift", "operator", "--bind-address", "127.0.0.1",
         "--metrics-port", str(metrics_port), "--health-port", str(health_port), *extra],
        stdout=log_file, stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig, **(env or {})},
    )
    op = OperatorProcess(proc, log_path, f"http://127.0.0.1:{metrics_port}/metrics",
                         f"http://127.0.0.1:{health_port}/healthz")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"operator exited with {proc.returncode}:\n{op.logs()[-4000:]}")
        try:
            with urllib.request.urlopen(op.health_url, timeout=2) as resp:
                if resp.status == 200:
                    return op
        except OSError:
            time.sleep(0.3)
    stop_operator(op)
    raise AssertionError(f"operator not live within 60s:\n{op.logs()[-4000:]}")


def failed(request: Any) -> bool:
    """Whether the test of a fixture's `request` failed (the root conftest records `rep_call`)."""
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


def stop_operator(op: OperatorProcess, request: Any = None) -> None:
    """Stop the operator; with the test's `request`, print the end of its log when the test failed."""
    if op.proc.poll() is None:
        op.proc.terminate()
        try:
            op.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            op.proc.kill()
            op.proc.wait()
    if request is not None and failed(request):
        print(f"--- {op.log_path.name} ---\n{op.logs()[-8000:]}")


@contextlib.contextmanager
def chart_rbac_kubeconfig(cluster: Cluster, namespace: str, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A kubeconfig of a ServiceAccount bound to exactly the chart's ClusterRoles (manifests/netshift.yaml,
    rendered from the Helm chart): the operator run with it holds only what an installed one holds."""
    import yaml

    roles = []
    for doc in yaml.safe_load_all((ROOT / "manifests" / "netshift.yaml").read_text()):
        if doc and doc.get("kind") == "ClusterRole":
            roles.append(doc["metadata"]["name"])
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(doc))
    assert "netshift-egressrouter" in roles
    sa = "netshift-operator"
    cluster.kubectl("create", "serviceaccount", sa, "-n", namespace)
    bindings = [f"{namespace}-{role}"[:63] for role in roles]
    try:
        for binding, role in zip(bindings, roles, strict=True):
            cluster.kubectl("create", "clusterrolebinding", binding, f"--clusterrole={role}",
                            f"--serviceaccount={namespace}:{sa}")
        token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
        admin = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
        kc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa}}],
        }
        path = tmp_path / "sa.kubeconfig"
        path.write_text(json.dumps(kc))
        yield path
    finally:
        for binding in bindings:
            cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
