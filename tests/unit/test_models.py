"""The typed models: every `expected` object of the conformance suites (OpenShift's and ours) parses
and serialises back without losing anything, plus focused tests of the model API the controllers use."""
from __future__ import annotations

import copy
import os
import pathlib

import pydantic
import pytest
import yaml

from netshift.models import EgressRouter, ObjectMeta, Route, egressrouter, rfc3339_now, route
from netshift.models.egressrouter import EgressRouterSpec, EgressRouterStatus, EgressRouterStatusCondition
from netshift.models.route import RouteIngress, RouteIngressCondition, RouteSpec, RouteStatus

TESTS = pathlib.Path(__file__).resolve().parent.parent
REPO = TESTS.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MODEL_BY_CRD = {"routes.route.openshift.io": Route,
                "egressrouters.network.operator.openshift.io": EgressRouter}


def _upstream_dir() -> pathlib.Path:
    env = os.environ.get("NETSHIFT_CONFORMANCE_DIR")
    return (pathlib.Path(env) if env else REPO.parent / "shared" / "conformance") / "openshift-api"


def _expected_objects():
    roots = [(_upstream_dir(), "**/*.yaml"), (TESTS / "conformance" / "cases", "*.yaml")]
    for root, pattern in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob(pattern)):
            doc = yaml.safe_load(path.read_text())
            for i, tc in enumerate(doc["tests"].get("onCreate") or []):
                for key in ("initial", "expected"):
                    if tc.get("expected") and key in tc:
                        yield pytest.param(doc["crdName"], yaml.safe_load(tc[key]),
                                           id=f"{path.relative_to(root)} #{i} {key}: {tc['name']}")


def test_upstream_suites_present():
    if not _upstream_dir().is_dir():
        msg = f"OpenShift conformance suites not found at {_upstream_dir()}: only own cases are used"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.mark.parametrize("crd, obj", list(_expected_objects()))
def test_round_trip(crd: str, obj: dict):
    model_cls = MODEL_BY_CRD[crd]
    original = copy.deepcopy(obj)
    model = model_cls.from_obj(obj)
    assert obj == original  # parsing does not mutate its input
    assert model.to_obj() == original
    assert model.model_dump(by_alias=True, exclude_none=True) == original
    # and again through the model's own output, and through JSON
    assert model_cls.from_obj(model.to_obj()) == model
    assert model_cls.model_validate_json(model.model_dump_json(by_alias=True, exclude_none=True)) == model


ROUTE = {
    "apiVersion": "route.openshift.io/v1", "kind": "Route",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "generation": 2,
                 "creationTimestamp": "2024-05-01T10:00:00Z",
                 "annotations": {"openshift.io/host.generated": "true"},
                 "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
    "spec": {
        "host": "web-shop.apps.example.com", "path": "/", "subdomain": "",
        "to": {"kind": "Service", "name": "web", "weight": 90},
        "alternateBackends": [{"kind": "Service", "name": "web-canary", "weight": 10}],
        "port": {"targetPort": "http"},
        "tls": {"termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect",
                "certificate": "CERT", "key": "KEY", "caCertificate": "CA",
                "destinationCACertificate": "DCA", "externalCertificate": {"name": "s"}},
        "wildcardPolicy": "None",
        "httpHeaders": {"actions": {
            "request": [{"name": "X-A", "action": {"type": "Set", "set": {"value": "1"}}}],
            "response": [{"name": "X-B", "action": {"type": "Delete"}}]}},
    },
    "status": {"ingress": [
        {"host": "web-shop.apps.example.com", "routerName": "default", "wildcardPolicy": "None",
         "routerCanonicalHostname": "router-default.apps.example.com",
         "conditions": [{"type": "Admitted", "status": "True",
                         "lastTransitionTime": "2024-05-01T10:00:01Z"}]},
        {"host": "web-shop.apps.example.com", "routerName": "sharded",
         "conditions": [{"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed",
                         "message": "a route in another namespace holds the host",
                         "lastTransitionTime": "2024-05-01T10:00:02Z"}]}]},
}

EGRESS_ROUTER = {
    "apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
    "metadata": {"name": "egress", "namespace": "db", "generation": 3},
    "spec": {
        "mode": "Redirect",
        "addresses": [{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"},
                      {"ip": "fd00:12::99/64"}],
        "networkInterface": {"macvlan": {"mode": "Private", "master": "ens4"}},
        "redirect": {"redirectRules": [
            {"destinationIP": "10.0.0.99", "port": 80, "protocol": "UDP"},
            {"destinationIP": "fd00::2", "port": 8080, "targetPort": 80, "protocol": "TCP"}],
            "fallbackIP": "203.0.113.25"},
    },
    "status": {"observedGeneration": 3, "conditions": [
        {"type": "Available", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z",
         "reason": "PodReady", "message": "ok", "observedGeneration": 3},
        {"type": "Degraded", "status": "False", "lastTransitionTime": None}]},
}


def test_route_typed_access():
    r = Route.from_obj(ROUTE)
    assert r.name == "web" and r.namespace == "shop" and r.metadata.generation == 2
    assert r.metadata.annotations["openshift.io/host.generated"] == "true"
    s = r.spec
    assert isinstance(s, RouteSpec)
    assert (s.host, s.subdomain, s.path, s.wildcard_policy) == ("web-shop.apps.example.com", "", "/", "None")
    assert (s.to.kind, s.to.name, s.to.weight) == ("Service", "web", 90)
    assert [b.name for b in s.backends] == ["web", "web-canary"]
    assert s.port.target_port == "http"
    assert s.tls.termination == route.TLSTermination.REENCRYPT == s.termination
    assert s.tls.insecure_edge_termination_policy == route.InsecureEdgeTerminationPolicy.REDIRECT
    assert (s.tls.certificate, s.tls.key, s.tls.ca_certificate, s.tls.destination_ca_certificate) == (
        "CERT", "KEY", "CA", "DCA")
    assert s.tls.external_certificate.name == "s"
    assert s.http_headers.actions.request[0].action.set.value == "1"
    assert s.http_headers.actions.response[0].action.type == route.HeaderActionType.DELETE
    ingress = r.status.for_router("sharded")
    assert isinstance(ingress, RouteIngress)
    cond = ingress.condition(route.ADMITTED)
    assert (cond.status, cond.reason) == ("False", "HostAlreadyClaimed")
    assert r.status.for_router("nope") is None
    # managedFields and other metadata the model does not name are kept
    assert r.to_obj()["metadata"]["managedFields"] == ROUTE["metadata"]["managedFields"]


def test_route_target_port_keeps_its_type():
    for value in (8080, "8080", "https"):
        spec = RouteSpec.model_validate({"to": {"name": "a"}, "port": {"targetPort": value}})
        assert spec.port.target_port == value and type(spec.port.target_port) is type(value)
        assert spec.model_dump(by_alias=True, exclude_none=True)["port"]["targetPort"] == value


def test_route_defaults_are_not_filled_in_but_are_available():
    spec = RouteSpec.model_validate({"to": {"name": "a"}})
    assert spec.to.weight is None
    assert spec.to.kind is None
    assert spec.wildcard_policy is None and spec.effective_wildcard_policy == "None"
    assert RouteSpec.model_validate({"to": {"name": "a"}, "wildcardPolicy": ""}).effective_wildcard_policy == "None"
    assert spec.model_dump(by_alias=True, exclude_none=True) == {"to": {"name": "a"}}


def test_models_accept_what_the_crd_accepts():
    # values the CRD lets through (or that other validation layers judge) must not be rejected here
    Route.from_obj({"spec": {"to": {"kind": "", "name": "a"}, "wildcardPolicy": "",
                             "host": "UPPER.example.com",
                             "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": ""}}})
    EgressRouter.from_obj({"spec": {"redirect": {}, "addresses": [{"ip": "not-a-cidr"}]}})
    EgressRouter.from_obj({"spec": {"mode": "Redirect", "addresses": []}})  # no redirect: CRD rejects, model reads


def test_snake_case_and_camel_case_both_accepted():
    a = RouteIngress(router_name="r", router_canonical_hostname="c")
    b = RouteIngress.model_validate({"routerName": "r", "routerCanonicalHostname": "c"})
    assert a == b
    assert a.to_dict() == {"routerName": "r", "routerCanonicalHostname": "c"}


def test_models_are_frozen():
    r = Route.from_obj(ROUTE)
    with pytest.raises(pydantic.ValidationError):
        r.spec.host = "other"  # type: ignore[misc]  # the point: frozen models refuse it
    changed = r.model_copy(update={"spec": r.spec.model_copy(update={"host": "other.example.com"})})
    assert changed.spec.host == "other.example.com" and r.spec.host == ROUTE["spec"]["host"]


def test_unknown_fields_are_kept():
    obj = copy.deepcopy(EGRESS_ROUTER)
    obj["spec"]["futureField"] = {"a": [1, 2]}
    obj["spec"]["redirect"]["redirectRules"][0]["comment"] = "kept"
    obj["status"]["conditions"][0]["extra"] = "x"
    assert EgressRouter.from_obj(obj).to_obj() == {
        **obj, "status": {**obj["status"], "conditions": [
            obj["status"]["conditions"][0], {"type": "Degraded", "status": "False"}]}}


def test_egressrouter_typed_access():
    er = EgressRouter.from_obj(EGRESS_ROUTER)
    s = er.spec
    assert isinstance(s, EgressRouterSpec)
    assert s.mode == egressrouter.EgressRouterMode.REDIRECT
    assert [(a.ip, a.gateway) for a in s.addresses] == [("192.168.12.99/24", "192.168.12.1"),
                                                       ("fd00:12::99/64", None)]
    assert s.network_interface.macvlan.mode == "Private" == s.macvlan.effective_mode
    assert s.network_interface.macvlan.master == "ens4"
    rules = s.redirect.redirect_rules
    assert [(r.destination_ip, r.port, r.protocol, r.target_port) for r in rules] == [
        ("10.0.0.99", 80, "UDP", None), ("fd00::2", 8080, "TCP", 80)]
    assert s.redirect.fallback_ip == "203.0.113.25" == s.fallback_ip
    assert s.redirect_rules == rules
    st = er.status
    assert isinstance(st, EgressRouterStatus) and st.observed_generation == 3
    avail = st.condition(egressrouter.ConditionType.AVAILABLE)
    assert isinstance(avail, EgressRouterStatusCondition)
    assert (avail.status, avail.reason, avail.observed_generation) == ("True", "PodReady", 3)
    assert st.condition("Degraded").last_transition_time is None
    assert st.condition("Progressing") is None


def test_egressrouter_schema_defaults_via_helpers():
    s = EgressRouterSpec.model_validate({"addresses": [], "redirect": {}})
    assert s.mode is None and s.network_interface is None
    assert s.macvlan.effective_mode == egressrouter.DEFAULT_MACVLAN_MODE and s.macvlan.master is None
    assert s.redirect_rules == [] and s.fallback_ip is None
    assert EgressRouterSpec.model_validate({"addresses": []}).redirect_rules == []


def test_build_status_for_the_api():
    now = rfc3339_now()
    status = EgressRouterStatus(observed_generation=4, conditions=[
        EgressRouterStatusCondition(type="Available", status="False", last_transition_time=now,
                                    reason="PodNotReady", message="waiting", observed_generation=4)])
    assert status.to_dict() == {"observedGeneration": 4, "conditions": [
        {"type": "Available", "status": "False", "lastTransitionTime": now,
         "reason": "PodNotReady", "message": "waiting", "observedGeneration": 4}]}
    rs = RouteStatus(ingress=[RouteIngress(host="h", router_name="r", conditions=[
        RouteIngressCondition(type="Admitted", status="True", last_transition_time=now)])])
    assert rs.to_dict()["ingress"][0]["conditions"][0]["lastTransitionTime"] == now


def test_whole_object_construction_and_metadata():
    er = EgressRouter(api_version=egressrouter.API_VERSION, kind=egressrouter.KIND,
                      metadata=ObjectMeta(name="e", namespace="n"),
                      spec=EgressRouterSpec(addresses=[], redirect={}))
    assert er.to_obj() == {"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
                           "metadata": {"name": "e", "namespace": "n"},
                           "spec": {"addresses": [], "redirect": {}}}
    # an object without metadata gets an empty one for attribute access, not on output
    bare = Route.from_obj({"spec": {"to": {"name": "a"}}})
    assert bare.metadata.name is None and "metadata" not in bare.to_obj()
