"""OpenShift's CRD validation suites, run against netshift's CRDs in a real kube-apiserver.

Every case of ``<repo>/../shared/conformance/openshift-api/**/*.yaml`` (or of
``$NETSHIFT_CONFORMANCE_DIR/openshift-api``) becomes one test, plus the project's own cases in
``tests/conformance/cases/*.yaml`` (same format). Each case creates its ``initial`` object in a fresh
namespace; with ``expected`` the created object must equal it (apart from server-set metadata), with
``expectedError`` the creation must fail with a message containing that text.

Where the shared folder is absent (outside this project's CI and development machines) only the
project's own cases run, and the tier says so; with ``CI=true`` its absence is a failure.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import re
import warnings
from typing import Any

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
OWN_CASES = HERE / "cases"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The suites OpenShift publishes for Route and EgressRouter at the pinned commit (see
# ../shared/conformance/README.md). The test below fails if fewer cases are found, so that cases
# cannot silently disappear.
MIN_UPSTREAM_CASES = 28

# Cases that cannot pass for a reason outside the CRD, keyed by test id, with that reason.
KNOWN_DIFFERENCES: dict[str, str] = {}


class ApiServerWordingWarning(UserWarning):
    """An expected error matched only after adapting it to the API server's newer wording."""


# kube-apiserver 1.35 changed how field errors print their value (kubernetes/kubernetes#132798,
# refined by #133832): a failed x-kubernetes-validations rule on an object or list no longer prints
# the value's type (`Invalid value: "object": msg` became `Invalid value: msg`), and a null value is
# printed as `null` instead of `"null"`. The suites were written against older servers. The same
# rule must still have failed with the same message; only this wording is adapted.
WORDING_1_35 = [
    (re.compile(r'Invalid value: "(?:object|array)": '), "Invalid value: "),
    (re.compile(r'Invalid value: "null": '), "Invalid value: null: "),
]


def adapt_wording(expected: str, server_minor: int) -> str:
    if server_minor >= 35:
        for pattern, replacement in WORDING_1_35:
            expected = pattern.sub(replacement, expected)
    return expected


def conformance_dir() -> pathlib.Path:
    env = os.environ.get("NETSHIFT_CONFORMANCE_DIR")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "conformance"


def upstream_dir() -> pathlib.Path:
    return conformance_dir() / "openshift-api"


@dataclasses.dataclass(frozen=True)
class Case:
    source: str  # "upstream" or "own"
    file: str  # path relative to its suite root
    crd_name: str
    name: str
    index: int
    initial: str
    expected: str | None
    expected_error: str | None

    @property
    def id(self) -> str:
        return f"{self.file} / {self.name}"


def load_suite(path: pathlib.Path, root: pathlib.Path, source: str) -> list[Case]:
    doc = yaml.safe_load(path.read_text())
    rel = path.relative_to(root).as_posix()
    crd = doc["crdName"]
    cases = []
    for i, tc in enumerate((doc.get("tests") or {}).get("onCreate") or []):
        cases.append(Case(source, rel, crd, tc["name"], i, tc["initial"],
                          tc.get("expected"), tc.get("expectedError")))
    unsupported = set(doc.get("tests") or {}) - {"onCreate"}
    if unsupported:  # onUpdate etc.: not in the pinned suites; fail loudly if they appear
        raise AssertionError(f"{rel}: unsupported test kinds {sorted(unsupported)}")
    return cases


def load_cases() -> list[Case]:
    cases: list[Case] = []
    up = upstream_dir()
    if up.is_dir():
        for path in sorted(up.rglob("*.yaml")):
            cases += load_suite(path, up, "upstream")
    if OWN_CASES.is_dir():
        for path in sorted(OWN_CASES.glob("*.yaml")):
            cases += load_suite(path, OWN_CASES, "own")
    return _unique_ids(cases)


def _unique_ids(cases: list[Case]) -> list[Case]:
    """Some upstream files repeat a case name; keep ids unique (``#2``, ``#3``...)."""
    seen: dict[str, int] = {}
    out = []
    for c in cases:
        n = seen[c.id] = seen.get(c.id, 0) + 1
        out.append(dataclasses.replace(c, name=f"{c.name} #{n}") if n > 1 else c)
    return out


CASES = load_cases()


def _param(c: Case):
    marks = []
    if c.id in KNOWN_DIFFERENCES:
        marks.append(pytest.mark.xfail(reason=KNOWN_DIFFERENCES[c.id], strict=True))
    return pytest.param(c, id=c.id, marks=marks)


# --------------------------------------------------------------------------------------------
# The API server side


def _crd_resource(crd_name: str) -> tuple[str, str]:
    plural, _, group = crd_name.partition(".")
    return group, plural


def create(api_client, case: Case, obj: dict[str, Any], namespace: str) -> tuple[dict | None, str | None]:
    """Create ``obj``; return (created object, None) or (None, the server's error message)."""
    from kubernetes import client

    group, plural = _crd_resource(case.crd_name)
    version = obj["apiVersion"].split("/", 1)[1]
    api = client.CustomObjectsApi(api_client)
    try:
        return api.create_namespaced_custom_object(group, version, namespace, plural, obj), None
    except client.ApiException as exc:
        try:
            message = json.loads(exc.body)["message"]
        except (TypeError, ValueError, KeyError):
            message = f"{exc.status} {exc.reason}: {exc.body}"
        return None, message


def prepare(initial: dict[str, Any], namespace: str, case: Case) -> dict[str, Any]:
    obj = copy.deepcopy(initial)
    meta = obj.setdefault("metadata", {}) or {}
    obj["metadata"] = meta
    if not meta.get("name") and not meta.get("generateName"):
        meta["name"] = f"case-{case.index}"
    meta["namespace"] = namespace  # the suites name namespaces of their own; each test has one
    return obj


SERVER_SET_METADATA = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                       "namespace", "selfLink"}


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the server sets on its own (metadata bookkeeping)."""
    out = {k: v for k, v in obj.items() if k != "metadata"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_SET_METADATA}
    if meta:
        out["metadata"] = meta
    return out


# --------------------------------------------------------------------------------------------
# Tests


def test_upstream_suites_present():
    """The shared suites are where CI expects them, and none of their cases went missing."""
    up = upstream_dir()
    if not up.is_dir():
        msg = (f"OpenShift conformance suites not found at {up} (set NETSHIFT_CONFORMANCE_DIR): "
               f"running only the project's own cases ({sum(c.source == 'own' for c in CASES)})")
        if IN_CI:
            pytest.fail(msg + "; CI=true requires them", pytrace=False)
        pytest.skip(msg)
    upstream = [c for c in CASES if c.source == "upstream"]
    by_crd: dict[str, int] = {}
    for c in upstream:
        by_crd[c.crd_name] = by_crd.get(c.crd_name, 0) + 1
    print(f"upstream conformance cases: {len(upstream)} {by_crd}")
    assert set(by_crd) == {"routes.route.openshift.io", "egressrouters.network.operator.openshift.io"}
    assert len(upstream) >= MIN_UPSTREAM_CASES, by_crd
    for c in upstream:
        assert (c.expected is None) != (c.expected_error is None), f"{c.id}: needs expected xor expectedError"


def test_crd_files_match_suites():
    """Every suite names a CRD that netshift ships."""
    shipped = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "crds").glob("*.yaml")}
    assert {c.crd_name for c in CASES} <= shipped


@pytest.fixture(scope="session")
def server_minor(api_client) -> int:
    from kubernetes import client

    info = client.VersionApi(api_client).get_code()
    return int(re.match(r"\d+", info.minor).group())


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case: Case, api_client, namespace: str, server_minor: int):
    initial = yaml.safe_load(case.initial)
    obj = prepare(initial, namespace, case)
    created, error = create(api_client, case, obj, namespace)

    if case.expected_error is not None:
        assert created is None, (
            f"creation succeeded but should have failed with {case.expected_error!r}:\n"
            f"{yaml.safe_dump(comparable(created), sort_keys=False)}")
        expected_error = case.expected_error
        if expected_error not in error:
            adapted = adapt_wording(expected_error, server_minor)
            if adapted != expected_error and adapted in error:
                warnings.warn(ApiServerWordingWarning(
                    f"{case.id}: matched with kube-apiserver 1.{server_minor} wording "
                    f"(kubernetes/kubernetes#132798): {adapted!r}"), stacklevel=2)
                expected_error = adapted
        assert expected_error in error, (
            f"error message does not contain the expected text\n"
            f"expected substring: {case.expected_error}\nactual message:     {error}")
        return

    assert error is None, f"creation failed: {error}"
    expected = prepare(yaml.safe_load(case.expected), namespace, case)
    expected["metadata"]["name"] = created["metadata"]["name"]
    assert comparable(created) == comparable(expected)
