"""Routes -> Gateway API test material: the golden cases (their Route/Service inputs, with the PEM
placeholders resolved) and the Gateway API CRDs hack/lib/build.sh caches by version."""
from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import yaml

from tests.support.cluster import ROOT

GOLDEN = ROOT / "tests" / "unit" / "golden" / "gatewayapi"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml") if p.stem != "pki" and not p.stem.endswith(".golden"))
PKI = yaml.safe_load((GOLDEN / "pki.yaml").read_text())


def _with_pki(value: Any) -> Any:
    """<ca>, <certificate> and <key> in a case stand for pki.yaml's PEM blocks."""
    if isinstance(value, dict):
        return {k: _with_pki(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_pki(v) for v in value]
    if isinstance(value, str) and value.startswith("<") and value[1:-1] in PKI:
        return PKI[value[1:-1]]
    return value


def case_docs(case: str) -> list[dict[str, Any]]:
    return [_with_pki(d) for d in yaml.safe_load_all((GOLDEN / f"{case}.yaml").read_text())]


def crd_files(channel: str) -> list[pathlib.Path]:
    """The CRDs of a channel (``standard`` or ``experimental``), without the upgrade-guard policy:
    the tests switch channels both ways on one cluster."""
    proc = subprocess.run([str(ROOT / "hack" / "lib" / "build.sh"), "gateway-api-crds"], text=True,
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"hack/lib/build.sh gateway-api-crds failed:\n{proc.stderr[-2000:]}")
    directory = pathlib.Path(proc.stdout.strip()) / channel
    return sorted(p for p in directory.glob("gateway.networking.k8s.io_*.yaml") if "_vap_" not in p.name)
