"""The admission loop against a fake API server: writes only when needed, host assignment,
promotion after deletion, other routers' entries kept, conflicts."""
from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from netshift.kube import ApiError
from netshift.operator.route import Feed
from netshift.route.admission import Policy
from netshift.route.controller import RouteAdmissionController
from tests.support.routes import route_obj

POLICY = Policy(domain="apps.example.com", allow_wildcard_routes=True)


class FakeApi:
    """Objects by (namespace, name); merge patches with resourceVersion preconditions.
    Every successful write is queued as a watch event."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, dict]] = []
        self.events: list[tuple[str, dict]] = []
        self.rv = 1000

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        body["metadata"].setdefault("generation", 1)
        self.objects[(body["metadata"]["namespace"], body["metadata"]["name"])] = body
        self.events.append(("ADDED", copy.deepcopy(body)))
        return body

    def delete(self, namespace: str, name: str) -> None:
        body = self.objects.pop((namespace, name))
        self.events.append(("DELETED", body))

    def _patch(self, namespace, name, patch, kind):
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise ApiError(404)
        want = (patch.get("metadata") or {}).get("resourceVersion")
        if want and want != obj["metadata"]["resourceVersion"]:
            raise ApiError(409)
        self.writes.append((kind, name, copy.deepcopy(patch)))
        if kind == "status":
            obj.setdefault("status", {})["ingress"] = copy.deepcopy(patch["status"]["ingress"])
        else:
            obj["spec"].update(patch.get("spec", {}))
            obj["metadata"].setdefault("annotations", {}).update(
                (patch["metadata"] or {}).get("annotations", {}))
            obj["metadata"]["generation"] += 1
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append(("MODIFIED", copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    async def patch_status(self, namespace, name, patch):
        return self._patch(namespace, name, patch, "status")

    async def patch(self, namespace, name, patch):
        return self._patch(namespace, name, patch, "spec")


def make(api: FakeApi, policy: Policy = POLICY) -> RouteAdmissionController:
    return RouteAdmissionController(policy=policy, router_name="default", canonical_hostname="router.example.com",
                                    api=api, now=lambda: "2024-02-02T00:00:00Z")


async def settle(ctrl: RouteAdmissionController, api: FakeApi, rounds: int = 10) -> None:
    """Deliver queued watch events (as the operator's list-watch feed does) until quiet."""
    feed = Feed(ctrl, [], asyncio.get_running_loop())
    for _ in range(rounds):
        events, api.events = api.events, []
        if not events:
            await ctrl.drain()
            if not api.events:
                return
            continue
        for typ, body in events:
            feed.event(None, typ, body)
        await asyncio.sleep(0)
        await ctrl.drain()
    raise AssertionError("did not settle")


def ingress(api: FakeApi, ns: str, name: str, router: str = "default") -> dict[str, Any]:
    obj = api.objects[(ns, name)]
    return next(e for e in obj["status"]["ingress"] if e["routerName"] == router)


def admitted(api: FakeApi, ns: str, name: str) -> str:
    return ingress(api, ns, name)["conditions"][0]["status"]


def run(coro):
    return asyncio.run(coro)


def test_admits_and_then_stays_idle():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        api.add(route_obj("a", "ns1", host="h.example.com", created="2024-01-01T00:00:01Z"))
        api.add(route_obj("b", "ns2", host="h.example.com", created="2024-01-01T00:00:02Z"))
        await settle(ctrl, api)
        assert admitted(api, "ns1", "a") == "True"
        entry = ingress(api, "ns2", "b")
        assert entry["host"] == "h.example.com" and entry["wildcardPolicy"] == "None"
        assert entry["routerCanonicalHostname"] == "router.example.com"
        assert entry["conditions"][0]["reason"] == "HostAlreadyClaimed"
        assert len(api.writes) == 2
        # Re-delivering every object (a resync, a restart of the watch) writes nothing.
        for obj in list(api.objects.values()):
            api.events.append(("MODIFIED", copy.deepcopy(obj)))
        await settle(ctrl, api)
        assert len(api.writes) == 2
        # A fresh controller (operator restart) derives the same decisions and writes nothing.
        ctrl2 = make(api)
        for obj in api.objects.values():
            ctrl2.observe(copy.deepcopy(obj))
        ctrl2.kick()
        await ctrl2.drain()
        assert len(api.writes) == 2
    run(scenario())


def test_promotion_after_deleting_the_owner_touches_only_its_host():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        api.add(route_obj("a", "ns1", host="h.example.com", created="2024-01-01T00:00:01Z"))
        api.add(route_obj("b", "ns2", host="h.example.com", created="2024-01-01T00:00:02Z"))
        for i in range(20):
            api.add(route_obj(f"x{i}", "ns3", host=f"x{i}.example.com"))
        await settle(ctrl, api)
        writes, evaluated = len(api.writes), ctrl.stats.evaluated
        api.delete("ns1", "a")
        await settle(ctrl, api)
        assert admitted(api, "ns2", "b") == "True"
        assert len(api.writes) == writes + 1
        assert ctrl.stats.evaluated - evaluated == 1  # only b was re-evaluated
    run(scenario())


def test_host_generation_and_keeping_the_host_when_cleared():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        api.add(route_obj("web.v1", "shop"))
        await settle(ctrl, api)
        obj = api.objects[("shop", "web.v1")]
        assert obj["spec"]["host"] == "web-v1-shop.apps.example.com"
        assert obj["metadata"]["annotations"]["openshift.io/host.generated"] == "true"
        assert admitted(api, "shop", "web.v1") == "True"
        # A user's update clears the host: the old host comes back.
        del obj["spec"]["host"]
        obj["metadata"]["generation"] += 1
        api.rv += 1
        obj["metadata"]["resourceVersion"] = str(api.rv)
        api.events.append(("MODIFIED", copy.deepcopy(obj)))
        await settle(ctrl, api)
        assert api.objects[("shop", "web.v1")]["spec"]["host"] == "web-v1-shop.apps.example.com"
    run(scenario())


def test_generated_first_label_over_63_is_rejected_not_written():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        api.add(route_obj("n" * 40, "namespace-" + "s" * 20))
        await settle(ctrl, api)
        obj = next(iter(api.objects.values()))
        assert "host" not in obj["spec"]
        entry = obj["status"]["ingress"][0]
        assert entry["conditions"][0]["reason"] == "InvalidHost"
        assert "must be no more than 63 characters" in entry["conditions"][0]["message"]
        assert entry["host"].endswith(".apps.example.com")
    run(scenario())


def test_subdomain_route_reports_host_in_status_only():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        api.add(route_obj("a", "ns", subdomain="shop"))
        await settle(ctrl, api)
        obj = api.objects[("ns", "a")]
        assert "host" not in obj["spec"]
        assert ingress(api, "ns", "a")["host"] == "shop.apps.example.com"
    run(scenario())


def test_other_routers_entries_are_kept():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        other = {"host": "h.example.com", "routerName": "sharded",
                 "conditions": [{"type": "Admitted", "status": "True",
                                 "lastTransitionTime": "2023-01-01T00:00:00Z"}]}
        api.add(route_obj("a", "ns", host="h.example.com", status={"ingress": [other]}))
        await settle(ctrl, api)
        entries = api.objects[("ns", "a")]["status"]["ingress"]
        assert entries[0] == other and entries[1]["routerName"] == "default"
    run(scenario())


def test_last_transition_time_moves_only_when_status_flips():
    async def scenario():
        api = FakeApi()
        times = iter(f"2024-02-0{i}T00:00:00Z" for i in range(1, 9))
        ctrl = RouteAdmissionController(policy=POLICY, router_name="default", canonical_hostname=None,
                                        api=api, now=lambda: next(times))
        api.add(route_obj("a", "ns1", host="h.example.com", created="2024-01-01T00:00:01Z"))
        api.add(route_obj("b", "ns2", host="h.example.com", created="2024-01-01T00:00:02Z", path="/b"))
        api.add(route_obj("c", "ns2", host="h.example.com", created="2024-01-01T00:00:03Z", path="/b"))
        await settle(ctrl, api)
        first = ingress(api, "ns2", "c")["conditions"][0]
        assert first["message"].startswith("a route in another namespace")
        api.delete("ns1", "a")  # c is still rejected, for another reason: b owns /b
        await settle(ctrl, api)
        second = ingress(api, "ns2", "c")["conditions"][0]
        assert second["message"] == "route b already exposes h.example.com and is older"
        assert second["lastTransitionTime"] == first["lastTransitionTime"]
    run(scenario())


def test_conflict_is_retried_on_the_next_event():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        body = api.add(route_obj("a", "ns", host="h.example.com"))
        ctrl.observe(copy.deepcopy(body))
        api.events.clear()
        # Someone else writes first: our patch carries a stale resourceVersion.
        api.objects[("ns", "a")]["metadata"]["resourceVersion"] = "99999"
        ctrl.kick(body["metadata"]["uid"])
        await ctrl.drain()
        assert ctrl.stats.conflicts == 1 and not api.writes
        api.events.append(("MODIFIED", copy.deepcopy(api.objects[("ns", "a")])))
        await settle(ctrl, api)
        assert admitted(api, "ns", "a") == "True"
    run(scenario())


@pytest.mark.parametrize("n", [200])
def test_startup_cost_is_linear(n):
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        for i in range(n):
            api.add(route_obj(f"r{i}", f"ns{i % 10}", host=f"h{i % (n // 2)}.example.com"))
        await settle(ctrl, api)
        assert ctrl.stats.evaluated <= 2 * n
        assert ctrl.stats.status_writes == n
    run(scenario())


def test_conflict_whose_event_arrived_during_the_write_is_retried():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        body = api.add(route_obj("a", "ns", host="h.example.com"))
        api.events.clear()
        ctrl.observe(copy.deepcopy(body))
        real = api.patch_status
        calls = []

        async def racing(namespace, name, patch):
            if not calls:
                calls.append(1)
                # Another router writes its entry; its watch event reaches us before our reply.
                obj = api.objects[(namespace, name)]
                obj.setdefault("status", {})["ingress"] = [{"routerName": "other", "host": "h.example.com"}]
                api.rv += 1
                obj["metadata"]["resourceVersion"] = str(api.rv)
                ctrl.observe(copy.deepcopy(obj))
                ctrl.kick(obj["metadata"]["uid"])  # skipped: an identical write is in flight
            return await real(namespace, name, patch)

        api.patch_status = racing
        ctrl.kick(body["metadata"]["uid"])
        await settle(ctrl, api)
        assert ctrl.stats.conflicts == 1
        entries = api.objects[("ns", "a")]["status"]["ingress"]
        assert [e["routerName"] for e in entries] == ["other", "default"]
    run(scenario())


def test_second_decision_while_first_write_in_flight_is_not_lost():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        gate, second = asyncio.Event(), asyncio.Event()
        real = api.patch_status
        calls = []

        async def slow(namespace, name, patch):
            if name != "newer":
                return await real(namespace, name, patch)
            calls.append(patch)
            if len(calls) == 1:
                await gate.wait()
                result = await real(namespace, name, patch)
                # Its watch event arrives before the second write's reply.
                api.events.clear()  # delivered here, once
                ctrl.observe(copy.deepcopy(result))
                ctrl.kick(result["metadata"]["uid"])
                for _ in range(5):
                    await asyncio.sleep(0)
                second.set()
                return result
            await second.wait()
            return await real(namespace, name, patch)

        api.patch_status = slow
        newer = api.add(route_obj("newer", "ns1", host="h.example.com", created="2024-01-01T00:00:02Z"))
        api.events.clear()
        ctrl.observe(copy.deepcopy(newer))
        ctrl.kick(newer["metadata"]["uid"])
        for _ in range(5):
            await asyncio.sleep(0)  # the admit write for "newer" is now in flight, held at the gate
        older = api.add(route_obj("older", "ns2", host="h.example.com", created="2024-01-01T00:00:01Z"))
        api.events.clear()
        ctrl.observe(copy.deepcopy(older))
        ctrl.kick(older["metadata"]["uid"])
        for _ in range(5):
            await asyncio.sleep(0)  # the reject write for "newer" is spawned with the same stale rv
        gate.set()
        await settle(ctrl, api)
        assert admitted(api, "ns2", "older") == "True"
        assert ingress(api, "ns1", "newer")["conditions"][0]["reason"] == "HostAlreadyClaimed"
    run(scenario())


def test_feed_listing_replaces_its_scope_and_filters_namespaces():
    async def scenario():
        api = FakeApi()
        ctrl = make(api)
        feed = Feed(ctrl, ["ns1", "ns2"], asyncio.get_running_loop())
        assert feed.scopes == ["ns1", "ns2"]
        a, b, c = (route_obj(n, ns, host=f"{n}.example.com") for n, ns in (("a", "ns1"), ("b", "ns1"), ("c", "ns2")))
        feed.replace("ns1", [a, b])
        feed.replace("ns2", [c, route_obj("x", "ns3")])  # not this scope's: ignored
        assert feed.listed["ns1"].is_set() and feed.listed["ns2"].is_set()
        assert sorted(o.name for o in ctrl.observed.values()) == ["a", "b", "c"]
        feed.replace("ns1", [a])  # relisted after a gap: b was deleted meanwhile; ns2 untouched
        assert sorted(o.name for o in ctrl.observed.values()) == ["a", "c"]
        feed.event("ns2", "DELETED", c)
        assert sorted(o.name for o in ctrl.observed.values()) == ["a"]
        globbed = Feed(make(api), ["ns*", "!ns2"], asyncio.get_running_loop())
        assert globbed.scopes == [None]
        globbed.replace(None, [a, c])
        assert [o.name for o in globbed.ctrl.observed.values()] == ["a"]
        await ctrl.drain()
    run(scenario())
