"""What the case-file format cannot express: the status subresource, the status schema (with
netshift's superset fields) and the printer columns of both CRDs, against the real API server.

A netshift operator may be running against the same cluster (a developer's `make run`) and write
status on these objects at any time: the tests only assert on responses to their own writes, and
compare printer columns with the object as read at the same moment."""
from __future__ import annotations

import json
import time

import pytest

from netshift.models import EgressRouter, Route, egressrouter, rfc3339_now, route

ER = (egressrouter.GROUP, egressrouter.VERSION, egressrouter.PLURAL)
RT = (route.GROUP, route.VERSION, route.PLURAL)


def _api(api_client):
    from kubernetes import client

    return client.CustomObjectsApi(api_client)


def _error(exc) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc)


def _router(name: str) -> dict:
    return {
        "apiVersion": egressrouter.API_VERSION, "kind": egressrouter.KIND,
        "metadata": {"name": name},
        "spec": {"addresses": [{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"}],
                 "redirect": {"fallbackIP": "203.0.113.25"}},
    }


def _route(name: str, **spec) -> dict:
    return {"apiVersion": route.API_VERSION, "kind": route.KIND, "metadata": {"name": name},
            "spec": {"to": {"name": "web"}, **spec}}


def _conditions(generation: int, **statuses: str) -> list[dict]:
    now = rfc3339_now()
    return [{"type": t, "status": s, "lastTransitionTime": now, "reason": "Testing",
             "message": f"{t} is {s}", "observedGeneration": generation}
            for t, s in statuses.items()]


def _table(cluster, namespace: str, resource: str, name: str) -> dict[str, str]:
    """`kubectl get` output of one object as {COLUMN: value}."""
    out = cluster.kubectl("get", resource, name, "-n", namespace).stdout.splitlines()
    header, row = out[0].split(), out[1].split()
    return dict(zip(header, row, strict=False))


def _columns_match(cluster, api_client, namespace, kind, name, columns) -> dict[str, str]:
    """The printed row, once it agrees with ``columns(object)`` read around it (retried, since
    someone else may write status in between)."""
    api = _api(api_client)
    for _ in range(10):
        before = api.get_namespaced_custom_object(*kind[:2], namespace, kind[2], name)
        row = _table(cluster, namespace, kind[2], name)
        after = api.get_namespaced_custom_object(*kind[:2], namespace, kind[2], name)
        if before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
            expected = columns(after)
            assert {k: row.get(k) for k in expected} == expected
            return row
        time.sleep(0.5)
    raise AssertionError(f"{kind[2]}/{name} kept changing; cannot compare its printer columns")


def test_egressrouter_status_subresource(api_client, namespace):
    api = _api(api_client)
    body = _router("er")
    body["status"] = {"conditions": _conditions(1, Available="True")}
    created = api.create_namespaced_custom_object(*ER[:2], namespace, ER[2], body)
    assert "status" not in created, "status must only be writable through the status subresource"

    status = {"observedGeneration": created["metadata"]["generation"],
              "conditions": _conditions(created["metadata"]["generation"],
                                        Available="True", Progressing="False", Degraded="False")}
    patched = api.patch_namespaced_custom_object_status(*ER[:2], namespace, ER[2], "er",
                                                        {"status": status})
    assert patched["status"] == status  # superset fields are kept, not pruned
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]

    model = EgressRouter.from_obj(patched)
    assert model.status.observed_generation == created["metadata"]["generation"]
    assert model.status.condition("Available").status == "True"
    assert model.status.condition("Degraded").observed_generation == created["metadata"]["generation"]

    # a write through the main resource changes spec (and the generation) but never status
    bogus = {"conditions": [{"type": "Degraded", "status": "True", "reason": "FromMainResource",
                             "lastTransitionTime": rfc3339_now()}]}
    updated = api.patch_namespaced_custom_object(
        *ER[:2], namespace, ER[2], "er",
        {"spec": {"redirect": {"fallbackIP": "203.0.113.26"}}, "status": bogus})
    assert updated["spec"]["redirect"]["fallbackIP"] == "203.0.113.26"
    assert updated["status"] != bogus
    assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1


@pytest.mark.parametrize("conditions, message", [
    pytest.param([{"type": "Available", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                  {"type": "Available", "status": "False", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                 "Duplicate value", id="duplicate type"),
    pytest.param([{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                 "Unsupported value", id="unknown type"),
    pytest.param([{"type": "Available", "status": "Yes", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                 "Unsupported value", id="unknown status"),
    pytest.param([{"type": "Available", "status": "True"}],
                 "lastTransitionTime: Required value", id="no lastTransitionTime"),
])
def test_egressrouter_status_schema(api_client, namespace, conditions, message):
    from kubernetes import client

    api = _api(api_client)
    api.create_namespaced_custom_object(*ER[:2], namespace, ER[2], _router("er"))
    with pytest.raises(client.ApiException) as err:
        api.patch_namespaced_custom_object_status(*ER[:2], namespace, ER[2], "er",
                                                  {"status": {"conditions": conditions}})
    assert message in _error(err.value)


def test_egressrouter_printer_columns(cluster, api_client, namespace):
    api = _api(api_client)
    api.create_namespaced_custom_object(*ER[:2], namespace, ER[2], _router("er"))
    api.patch_namespaced_custom_object_status(
        *ER[:2], namespace, ER[2], "er",
        {"status": {"conditions": _conditions(1, Available="True", Progressing="False", Degraded="False")}})
    # the API server's table convertor prints the first match of a [*] column (as on OpenShift)
    row = _columns_match(cluster, api_client, namespace, ER, "er", lambda obj: {
        "CONDITION": obj["status"]["conditions"][0]["type"],
        "STATUS": obj["status"]["conditions"][0]["status"]})
    assert list(row)[:3] == ["NAME", "CONDITION", "STATUS"]


def test_route_status_and_printer_columns(cluster, api_client, namespace):
    api = _api(api_client)
    created = api.create_namespaced_custom_object(
        *RT[:2], namespace, RT[2], _route("web", host="www.example.com", tls={"termination": "edge"}))
    assert "status" not in created
    assert created["spec"]["host"] == "www.example.com"
    ingress = [
        {"host": "www.example.com", "routerName": "netshift", "wildcardPolicy": "None",
         "routerCanonicalHostname": "router.apps.example.com",
         "conditions": [{"type": "Admitted", "status": "True", "lastTransitionTime": rfc3339_now()}]},
        {"host": "www.example.com", "routerName": "other",
         "conditions": [{"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed",
                         "message": "taken", "lastTransitionTime": rfc3339_now()}]},
    ]
    patched = api.patch_namespaced_custom_object_status(*RT[:2], namespace, RT[2], "web",
                                                        {"status": {"ingress": ingress}})
    assert patched["status"]["ingress"] == ingress
    model = Route.from_obj(patched)
    assert model.status.for_router("other").condition().reason == "HostAlreadyClaimed"
    assert model.to_obj() == patched

    def columns(obj):
        first = Route.from_obj(obj).status.ingress[0]
        return {"HOST": first.host, "ADMITTED": first.condition().status,
                "SERVICE": "web", "TLS": "edge"}

    row = _columns_match(cluster, api_client, namespace, RT, "web", columns)
    assert list(row)[:5] == ["NAME", "HOST", "ADMITTED", "SERVICE", "TLS"]


def test_route_status_conditions_are_a_map(api_client, namespace):
    from kubernetes import client

    api = _api(api_client)
    api.create_namespaced_custom_object(*RT[:2], namespace, RT[2], _route("web"))
    cond = {"type": "Admitted", "status": "True"}
    with pytest.raises(client.ApiException) as err:
        api.patch_namespaced_custom_object_status(
            *RT[:2], namespace, RT[2], "web",
            {"status": {"ingress": [{"routerName": "r", "conditions": [cond, cond]}]}})
    assert "Duplicate value" in _error(err.value)
