"""Routes -> Gateway API: golden cases (tests/unit/golden/gatewayapi/<case>.yaml -> <case>.golden.yaml)
and the `netshift export gateway-api` command.

A golden file holds the exported objects and the not-translated notes. After a deliberate change,
rewrite them with NETSHIFT_UPDATE_GOLDEN=1 and review the diff."""
from __future__ import annotations

import copy
import dataclasses
import io
import os
import pathlib
from typing import Any

import pytest
import yaml

from netshift import cli
from netshift.gatewayapi import Options, export, mirror
from netshift.gatewayapi import cli as export_cli
from netshift.gatewayapi import objects as o
from netshift.models import Route
from tests.support.gatewayapi import CASES, GOLDEN, case_docs

OPTIONS = Options(domain="apps.example.org")


def run_case(case: str) -> dict[str, Any]:
    routes, services = export_cli.parse(case_docs(case), "default")
    result = export(routes, services, OPTIONS)
    return {"objects": list(result.objects),
            "notes": [f"{n.namespace}/{n.route} | {n.field} | {n.detail}" for n in result.notes]}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    got = run_case(case)
    golden = GOLDEN / f"{case}.golden.yaml"
    if os.environ.get("NETSHIFT_UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(got, sort_keys=False, width=200))
    assert got == yaml.safe_load(golden.read_text())


def _by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {f"{x['metadata']['namespace']}/{x['metadata']['name']}": x for x in objs if x["kind"] == kind}


def test_every_generated_object_names_its_route_and_carries_its_notes() -> None:
    for case in CASES:
        out = run_case(case)
        for obj in out["objects"]:
            annotations = obj["metadata"].get("annotations") or {}
            if obj["kind"] in ("Gateway", "ReferenceGrant"):
                continue
            ns, _, name = annotations[o.ROUTE_ANNOTATION].partition("/")
            mine = [n.split(" | ", 2) for n in out["notes"] if n.startswith(f"{ns}/{name} | ")]
            expected = "; ".join(f"{field}: {detail}" for _, field, detail in mine)
            assert annotations.get(o.NOT_TRANSLATED_ANNOTATION, "") == expected, (case, obj["metadata"])


def test_semantics_spelled_out() -> None:
    """The key facts of the golden files, stated once more in code (a careless golden update fails here)."""
    web = run_case("http-weights")["objects"]
    rule = _by_kind(web, "HTTPRoute")["shop/web"]["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/store"}}]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == \
        [("web", 80, 80), ("web-canary", 81, 20), ("web-off", 82, 0)]
    assert _by_kind(web, "HTTPRoute")["shop/metrics"]["spec"]["rules"][0]["backendRefs"][0]["port"] == 9090

    edge = run_case("edge")["objects"]
    gw = edge[0]["spec"]["listeners"]
    assert {(x["protocol"], x["hostname"]) for x in gw} == {
        ("HTTPS", "shop.example.com"), ("HTTP", "shop.example.com"), ("HTTPS", "api.example.com"),
        ("HTTPS", "www.example.com"), ("HTTP", "www.example.com")}
    assert _by_kind(edge, "Secret")["shop/inline-tls"]["type"] == "kubernetes.io/tls"
    assert _by_kind(edge, "ReferenceGrant")["shop/netshift-netshift"]["spec"]["to"] == [
        {"group": "", "kind": "Secret", "name": "api-cert"}, {"group": "", "kind": "Secret", "name": "inline-tls"}]
    redirect = _by_kind(edge, "HTTPRoute")["default/default-cert-redirect"]["spec"]
    assert redirect["parentRefs"][0]["sectionName"] == "http-www-example-com"
    assert redirect["rules"][0]["filters"] == [o.https_redirect()]

    pr = run_case("passthrough-reencrypt")["objects"]
    assert _by_kind(pr, "TLSRoute")["bank/pass"]["spec"]["parentRefs"][0]["sectionName"] == "tls-secure-example-com"
    policy = _by_kind(pr, "BackendTLSPolicy")["bank/re"]["spec"]
    assert policy["validation"] == {"hostname": "ledger.bank.svc", "caCertificateRefs": [
        {"group": "", "kind": "ConfigMap", "name": "re-destination-ca"}]}
    assert _by_kind(pr, "HTTPRoute")["bank/re"]["spec"]["rules"][0]["timeouts"] == {"request": "2m"}

    wh = run_case("wildcard-headers")["objects"]
    route = _by_kind(wh, "HTTPRoute")["tenants/any"]["spec"]
    assert route["hostnames"] == ["*.tenants.example.com"]
    assert route["rules"][0]["filters"] == [
        o.header_modifier("RequestHeaderModifier", [("X-Env", "prod")], ["x-debug"]),
        o.header_modifier("ResponseHeaderModifier", [("Cache-Control", "max-age=60, 100%")], ["Server"])]

    rule = _by_kind(run_case("annotations")["objects"], "HTTPRoute")["shop/tuned"]["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "596h31m23s647ms"}  # HAProxy's maximum, 2147483647ms
    assert rule["filters"] == [o.prefix_rewrite("/")]
    assert rule[o.SESSION_PERSISTENCE] == {"sessionName": "shop_session", "type": "Cookie"}

    exported = set(_by_kind(run_case("admission")["objects"], "HTTPRoute"))
    assert exported == {"team-a/served", "team-a/owner", "team-a/same-ns-other-path", "team-a/sub",
                        "team-a/no.host"}


@pytest.mark.parametrize(("ms", "text"), [(0.5, "1ms"), (1000, "1s"), (90_000, "1m30s"), (3_600_001, "1h1ms")])
def test_duration(ms: float, text: str) -> None:
    assert o.duration(ms) == text


def test_listener_name_stays_a_section_name() -> None:
    host = ".".join(["a" * 62] * 4)
    name = o.listener_name("HTTPS", host)
    assert len(name) == 253 and name != o.listener_name("HTTP", host)


def test_cli_files_stdin_and_exit_status(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    examples = pathlib.Path(__file__).parents[2] / "examples"
    assert cli.main(["export", "gateway-api", "-f", str(examples), "--gateway", "gw/edge",
                     "--gateway-class", "cls"]) == 0
    out, err = capsys.readouterr()
    objs = list(yaml.safe_load_all(out))
    assert objs[0]["kind"] == "Gateway" and objs[0]["metadata"] == {"name": "edge", "namespace": "gw"}
    assert objs[0]["spec"]["gatewayClassName"] == "cls"
    assert err.splitlines()[0].split() == ["ROUTE", "FIELD", "NOT", "TRANSLATED"]
    assert len(err.splitlines()) == 3  # the example's two notes: its Service port and its certificate

    monkeypatch.setattr("sys.stdin", io.StringIO((examples / "route-edge.yaml").read_text()))
    assert cli.main(["export", "gateway-api", "-f", "-", "-n", "web"]) == 0
    assert "namespace: web" in capsys.readouterr().out

    (tmp_path / "bad.yaml").write_text("kind: [")
    (tmp_path / "route.yaml").write_text("apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: x}\n"
                                         "spec: {host: 3}\n")
    for path in (tmp_path / "missing.yaml", tmp_path / "bad.yaml", tmp_path / "route.yaml"):
        assert cli.main(["export", "gateway-api", "-f", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("netshift: ")


def test_more_than_64_listeners_are_spread_over_gateways() -> None:
    routes = [Route.from_obj({"metadata": {"name": f"r{i}", "namespace": "ns", "uid": f"u{i}"},
                              "spec": {"host": f"h{i:03}.example.com", "to": {"name": "s"},
                                       "port": {"targetPort": 80}}}) for i in range(130)]
    objs = export(routes, {}, OPTIONS).objects
    gateways = {x["metadata"]["name"]: x for x in objs if x["kind"] == "Gateway"}
    assert {n: len(g["spec"]["listeners"]) for n, g in gateways.items()} == \
        {"netshift": 64, "netshift-2": 64, "netshift-3": 2}
    for x in objs:
        if x["kind"] == "HTTPRoute":
            ref = x["spec"]["parentRefs"][0]
            assert ref["sectionName"] in {lst["name"] for lst in gateways[ref["name"]]["spec"]["listeners"]}


def test_mirror_plan_applies_changed_hashes_and_deletes_the_unwanted() -> None:
    label = mirror.label_value(OPTIONS)
    objs = [mirror.stamped(x, label) for x in run_case("edge")["objects"]]
    assert all(x["metadata"]["labels"] == {mirror.MIRROR_LABEL: "default.netshift"} for x in objs)
    applied = {mirror.key_of(x): x["metadata"]["annotations"][mirror.HASH_ANNOTATION] for x in objs}
    assert mirror.plan(objs, applied) == ([], [])  # nothing changed: nothing written
    changed = copy.deepcopy(run_case("edge")["objects"])
    changed[-1]["spec"]["hostnames"] = ["other.example.com"]
    to_apply, to_delete = mirror.plan([mirror.stamped(x, label) for x in changed[:-1]] +
                                      [mirror.stamped(changed[-1], label)], {**applied, ("HTTPRoute", "x", "y"): "h"})
    assert [mirror.key_of(x) for x in to_apply] == [mirror.key_of(objs[-1])]
    assert to_delete == [("HTTPRoute", "x", "y")]


def test_status_only_waits_for_the_operators_admission() -> None:
    routes, services = export_cli.parse(case_docs("admission"), "default")
    exported = export(routes, services, dataclasses.replace(OPTIONS, status_only=True)).objects
    assert {x["metadata"]["name"] for x in exported if x["kind"] == "HTTPRoute"} == {"served"}
