"""Shared fixtures: the real cluster, per-test namespaces, kubectl, and the operator process.

The cluster is the local control plane from `hack/cluster up`, or any cluster named by
NETSHIFT_TEST_KUBECONFIG (kind, for users). Tests never mock the API server.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"
CRDS = ROOT / "crds"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

TIER_BY_DIR = {"unit": "unit", "conformance": "conformance", "integration": "integration",
               "dataplane": "dataplane", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the tier of its directory, so `-m unit` etc. select by tier."""
    for item in items:
        rel = pathlib.Path(str(item.fspath)).resolve().relative_to(ROOT / "tests")
        tier = TIER_BY_DIR.get(rel.parts[0])
        if tier:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every tier must really run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped; failing the run", red=True)
        session.exitstatus = 1


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

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


def _local_cluster() -> Cluster:
    up = subprocess.run([str(HACK / "cluster"), "up"], text=True, capture_output=True, timeout=3600)
    if up.returncode != 0:
        pytest.fail(f"hack/cluster up failed:\n{up.stderr[-4000:]}", pytrace=False)
    bins = subprocess.run([str(HACK / "cluster"), "bin"], text=True, capture_output=True, check=True)
    k8s_bin = bins.stdout.splitlines()[0]
    kubeconfig = subprocess.run([str(HACK / "cluster"), "kubeconfig"], text=True,
                                capture_output=True, check=True).stdout.strip()
    return Cluster(kubeconfig=kubeconfig, kubectl_path=f"{k8s_bin}/kubectl", local=True)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    external = os.environ.get("NETSHIFT_TEST_KUBECONFIG")
    if external:
        kubectl = shutil.which("kubectl")
        if not kubectl:
            pytest.fail("NETSHIFT_TEST_KUBECONFIG is set but kubectl is not on PATH", pytrace=False)
        c = Cluster(kubeconfig=external, kubectl_path=kubectl, local=False)
    else:
        c = _local_cluster()
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    c.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    return c


@pytest.fixture(scope="session")
def api_client(cluster: Cluster):
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield api


def _dns_label(text: str, limit: int = 40) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    return out[:limit].strip("-") or "t"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted (without waiting) afterwards."""
    name = f"{_dns_label(request.node.name, 40)}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "netshift.io/test=true")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 120.0, interval: float = 0.3) -> Any:
    """Poll fn until it returns something truthy; fail naming what was awaited and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class OperatorProcess:
    proc: subprocess.Popen
    log_path: pathlib.Path
    metrics_url: str
    health_url: str

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_operator(cluster: Cluster, tmp_path: pathlib.Path, *extra: str,
                   env: dict[str, str] | None = None) -> OperatorProcess:
    """Run `netshift operator` as a subprocess against the cluster and wait until it is live."""
    metrics_port, health_port = free_port(), free_port()
    log_path = tmp_path / "operator.log"
    log_file = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netshift", "operator", "--bind-address", "127.0.0.1",
         "--metrics-port", str(metrics_port), "--health-port", str(health_port), *extra],
        stdout=log_file, stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig, **(env or {})},
    )
    op = OperatorProcess(proc, log_path, f"http://127.0.0.1:{metrics_port}/metrics",
                         f"http://127.0.0.1:{health_port}/healthz")
    import urllib.request

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


def stop_operator(op: OperatorProcess) -> None:
    if op.proc.poll() is None:
        op.proc.terminate()
        try:
            op.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            op.proc.kill()
            op.proc.wait()


@pytest.fixture
def operator(cluster: Cluster, tmp_path: pathlib.Path, request: pytest.FixtureRequest):
    """The operator as a subprocess for one test; its log is printed when the test fails."""
    op = start_operator(cluster, tmp_path)
    yield op
    stop_operator(op)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- operator log ---\n{op.logs()[-8000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
