"""Fixtures of every tier: the real cluster, per-test namespaces, the operator process (helpers:
tests/support/cluster.py).

The cluster is the local control plane from `hack/cluster up`, or any cluster named by
NETSHIFT_TEST_KUBECONFIG (kind, for users). Tests never mock the API server.
"""
from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest

from tests.support.cluster import CRDS, ROOT, Cluster, scratch_namespace, start_operator, started_cluster, stop_operator

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


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    try:
        c = started_cluster()
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
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
    with scratch_namespace(cluster, f"{_dns_label(request.node.name, 40)}-{uuid.uuid4().hex[:6]}") as name:
        yield name


@pytest.fixture
def operator(cluster: Cluster, tmp_path: pathlib.Path, request: pytest.FixtureRequest):
    """The operator as a subprocess for one test; its log is printed when the test fails."""
    op = start_operator(cluster, tmp_path)
    yield op
    stop_operator(op, request)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
