"""The reconcile against a fake API (an in-memory cache and a recording client): what it writes."""
import asyncio
import copy

import pytest

from netshift.egressrouter.queue import WorkQueue
from netshift.egressrouter.reconcile import Reconciler, contains
from netshift.egressrouter.render import RenderSettings
from tests.support.egressrouters import router_obj


class FakeCache:
    def __init__(self, router):
        self.routers = {("ns", "egress"): router}
        self.children = {}
        self.pod_list = []

    def router(self, ns, name):
        return self.routers.get((ns, name))

    def child(self, kind, ns, name):
        return self.children.get((kind, ns, name))

    def pods(self, ns, name):
        return self.pod_list


class FakeKube:
    """Records writes; 'the watch' copies applied objects into the cache (plus server defaults)."""

    def __init__(self, cache):
        self.cache = cache
        self.writes = []
        self.rv = 100

    def _stamp(self, obj):
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return obj

    def apply(self, kind, obj):
        self.writes.append(("apply", kind))
        stored = self._stamp(obj)
        stored.setdefault("spec", {})
        if kind == "Deployment":  # a few server-side defaults
            stored["spec"]["progressDeadlineSeconds"] = 600
            stored["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
        self.cache.children[(kind, "ns", "egress")] = stored
        return stored

    def delete(self, kind, ns, name):
        self.writes.append(("delete", kind))
        self.cache.children.pop((kind, ns, name), None)

    def merge_patch(self, kind, ns, name, patch, sub=None):
        if kind == "Pod":
            self.writes.append(("annotate", "Pod"))
            return {}
        self.writes.append(("status", None))
        body = self._stamp(self.cache.routers[(ns, name)])
        body["status"] = patch["status"]
        self.cache.routers[(ns, name)] = body
        return body

    def warning_events(self, *_):
        return []

    def post_event(self, *_, **__):
        self.writes.append(("event", None))


def make(served=True, **changes):
    cache = FakeCache(router_obj(**changes))
    kube = FakeKube(cache)
    return cache, kube, Reconciler(kube, cache, RenderSettings(), nad_served=lambda: served)


def test_first_pass_applies_everything_then_nothing():
    _cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == [
        ("apply", "NetworkAttachmentDefinition"), ("apply", "ConfigMap"), ("apply", "Deployment"),
        ("apply", "Service")]
    assert ("status", None) in kube.writes
    kube.writes.clear()
    for _ in range(3):
        rec.reconcile("ns", "egress")
    assert kube.writes == []  # idle: zero writes


def test_drift_is_repaired():
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    kube.writes.clear()
    del cache.children[("Service", "ns", "egress")]
    cache.children[("ConfigMap", "ns", "egress")]["data"] = {"egressrouter.json": "{}"}
    rec.recent = type(rec.recent)()  # the watch delivered the edits
    rec.reconcile("ns", "egress")
    assert sorted(w[1] for w in kube.writes if w[0] == "apply") == ["ConfigMap", "Service"]


def test_rule_change_reapplies_config_and_service_not_deployment():
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    kube.writes.clear()
    body = cache.routers[("ns", "egress")]
    body["spec"]["redirect"]["redirectRules"].append({"destinationIP": "10.0.0.7", "port": 443, "protocol": "TCP"})
    body["metadata"]["generation"] = 2
    rec.reconcile("ns", "egress")
    assert sorted(w[1] for w in kube.writes if w[0] == "apply") == ["ConfigMap", "Service"]


def test_headless_switch_recreates_the_service():
    cache, kube, rec = make(redirect={"fallbackIP": "192.168.12.50"})
    rec.reconcile("ns", "egress")
    kube.writes.clear()
    cache.routers[("ns", "egress")]["spec"]["redirect"] = {
        "redirectRules": [{"destinationIP": "10.0.0.7", "port": 443, "protocol": "TCP"}]}
    rec.reconcile("ns", "egress")
    assert ("delete", "Service") in kube.writes and ("apply", "Service") in kube.writes


def test_invalid_spec_applies_nothing_and_reports():
    cache, kube, rec = make(addresses=[{"ip": "10.0.0.5"}])
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == []
    status = cache.routers[("ns", "egress")]["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["message"].startswith('spec.addresses[0].ip: "10.0.0.5"')
    assert ("event", None) in kube.writes


@pytest.mark.parametrize("changes, reason, field", [
    ({"networkInterface": {"macvlan": {"mode": "Bridge", "master": "éééééééé"}}},  # 8 characters, 16 bytes
     "InvalidMacvlanMaster", "spec.networkInterface.macvlan.master"),
    ({"networkInterface": {"macvlan": {"mode": "Bridge", "master": ".."}}},
     "InvalidMacvlanMaster", "spec.networkInterface.macvlan.master"),
    ({"addresses": [{"ip": "192.168.12.99/255.255.255.0", "gateway": "192.168.12.1"}]},
     "InvalidAddress", "spec.addresses[0].ip"),
    ({"addresses": [{"ip": "fe80::1%eth0/64"}, {"ip": "192.168.12.99/24", "gateway": "192.168.12.1"}]},
     "InvalidAddress", "spec.addresses[0].ip"),
    ({"redirect": {"fallbackIP": "::ffff:127.0.0.1"}}, "InvalidFallbackIP", "spec.redirect.fallbackIP"),
    ({"redirect": {"redirectRules": [{"destinationIP": "10.0.0.99", "port": 9180, "protocol": "TCP"}]}},
     "InvalidPort", "spec.redirect.redirectRules[0].port"),  # the agent's health port
])
def test_specs_that_cannot_work_are_degraded_before_anything_is_applied(changes, reason, field):
    cache, kube, rec = make(**changes)
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == []
    degraded = next(c for c in cache.routers[("ns", "egress")]["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert degraded["message"].startswith(f"{field}: "), degraded["message"]


def test_nad_not_served_applies_nothing():
    _cache, kube, rec = make(served=False)
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == []


def test_contains():
    assert contains({"a": 1}, {"a": 1, "b": 2})
    assert not contains({"a": 1}, {"a": 2})
    assert not contains({"a": {"b": 1}}, {"a": {}})
    assert contains([1, 2], [1, 2]) and not contains([1, 2], [1, 2, 3])
    assert contains([{"n": 1}, {"n": 2}], [{"n": 2, "x": 0}, {"n": 1}, {"n": 3}])
    assert not contains([{"n": 1}, {"n": 1}], [{"n": 1}])


def test_work_queue_dedupes_and_requeues_dirty_keys():
    async def main():
        q = WorkQueue(base_delay=0.01)
        for key in ("a", "a", "b"):
            q.add(key)
        assert len(q) == 2
        key = await q.get()
        q.add(key)  # changed while being reconciled
        assert len(q) == 1
        q.done(key)
        assert len(q) == 2
        q.retry("c")
        await asyncio.sleep(0.05)
        assert len(q) == 3
    asyncio.run(main())


def test_recent_writes_yield_to_watch_events():
    from netshift.egressrouter.reconcile import Recent

    recent = Recent()
    mine = {"metadata": {"resourceVersion": "5"}}
    recent.remember(("Service", "ns", "a"), mine)
    assert recent.newest(("Service", "ns", "a"), None) is mine  # created, watch not there yet
    old = {"metadata": {"resourceVersion": "4"}}
    assert recent.newest(("Service", "ns", "a"), old) is mine
    recent.observed(("Service", "ns", "a"), mine, deleted=True)  # deleted right after our write
    assert recent.newest(("Service", "ns", "a"), None) is None
