"""Every object `netshift export gateway-api` prints is accepted by the real API server with the
Gateway API CRDs (v1.6, their CEL validation included): server-side apply, dry run.

Standard channel first: everything but ``sessionPersistence`` (the one experimental field) must be
accepted, and that field refused; then the experimental channel accepts everything. The golden cases
run under fresh namespaces; the repository's examples/ go through the command itself."""
from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from netshift.gatewayapi import Options, export
from netshift.gatewayapi import cli as export_cli
from netshift.gatewayapi import objects as o
from tests.support.cluster import ROOT, Cluster, scratch_namespace
from tests.support.gatewayapi import CASES, case_docs, crd_files

PREFIX = f"gw{uuid.uuid4().hex[:6]}"


def _install(cluster: Cluster, channel: str) -> None:
    files = [arg for f in crd_files(channel) for arg in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)


def _renamespaced(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        meta = d.get("metadata") or {}
        out.append({**d, "metadata": {**meta, "namespace": f"{PREFIX}-{meta.get('namespace') or 'default'}"}})
    return out


def _exported() -> list[dict[str, Any]]:
    """The golden cases' objects, under the PREFIX namespaces, Gateway in PREFIX-gw."""
    objs = []
    for i, case in enumerate(CASES):
        routes, services = export_cli.parse(_renamespaced(case_docs(case)), f"{PREFIX}-default")
        opts = Options(gateway_name=f"case-{i}", gateway_namespace=f"{PREFIX}-gw", domain="apps.example.org")
        objs.extend(export(routes, services, opts).objects)
    return objs


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[set[str]]:
    names = {x["metadata"]["namespace"] for x in _exported()} | {f"{PREFIX}-gw", f"{PREFIX}-examples"}
    with contextlib.ExitStack() as stack:
        for name in sorted(names):
            stack.enter_context(scratch_namespace(cluster, name))
        yield names


def _dry_run(cluster: Cluster, objs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=netshift", "-f", "-",
                           input=yaml.safe_dump_all(objs), check=False)


def _experimental(obj: dict[str, Any]) -> bool:
    return any(o.SESSION_PERSISTENCE in r for r in (obj.get("spec") or {}).get("rules") or [])


def test_exported_objects_pass_both_channels(cluster: Cluster, namespaces: set[str]) -> None:
    objs = _exported()
    kinds = {x["kind"] for x in objs}
    assert kinds == {"Gateway", "HTTPRoute", "TLSRoute", "BackendTLSPolicy", "ReferenceGrant", "Secret",
                     "ConfigMap"}, kinds
    experimental = [x for x in objs if _experimental(x)]
    assert experimental, "the cases cover sessionPersistence"

    _install(cluster, "standard")
    proc = _dry_run(cluster, [x for x in objs if not _experimental(x)])
    assert proc.returncode == 0, proc.stderr
    for x in experimental:
        refused = _dry_run(cluster, [x])
        assert refused.returncode != 0 and "sessionPersistence" in refused.stderr, refused.stderr

    _install(cluster, "experimental")
    proc = _dry_run(cluster, objs)
    assert proc.returncode == 0, proc.stderr
    # The check has teeth: the CRDs' CEL rules run (an HTTPS listener without a certificate is refused).
    gateway = next(x for x in objs if x["kind"] == "Gateway" and any(
        listener["protocol"] == "HTTPS" for listener in x["spec"]["listeners"]))
    broken = copy.deepcopy(gateway)
    for listener in broken["spec"]["listeners"]:
        if listener["protocol"] == "HTTPS":
            listener["tls"]["certificateRefs"] = []
    refused = _dry_run(cluster, [broken])
    assert refused.returncode != 0 and "certificateRefs or options must be specified" in refused.stderr, refused.stderr
    print(f"gateway-api dry-run: {len(objs)} objects accepted ({len(experimental)} experimental)")


def test_export_of_examples_is_accepted(cluster: Cluster, namespaces: set[str]) -> None:
    ns = f"{PREFIX}-examples"
    _install(cluster, "standard")
    proc = subprocess.run([sys.executable, "-m", "netshift", "export", "gateway-api", "-f", str(ROOT / "examples"),
                           "-n", ns, "--gateway", f"{ns}/netshift"], text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objs = list(yaml.safe_load_all(proc.stdout))
    assert [x["kind"] for x in objs] == ["Gateway", "HTTPRoute", "HTTPRoute"]
    applied = _dry_run(cluster, objs)
    assert applied.returncode == 0, applied.stderr
