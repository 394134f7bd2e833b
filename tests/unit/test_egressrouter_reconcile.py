"""The reconcile against a fake API (an in-memory cache and a recording client): what it writes."""
import asyncio

import pytest

from netshift.egressrouter import reconcile, repair
from netshift.egressrouter.queue import WorkQueue
from netshift.egressrouter.reconcile import Reconciler, contains
from netshift.egressrouter.render import CONFIG_HASH_ANNOTATION, RenderSettings
from tests.support.egressrouters import router_obj
from tests.support.reconcile_fakes import FakeCache, FakeKube, ready_pod


def make(served=True, **changes):
    cache = FakeCache(router_obj(**changes))
    kube = FakeKube(cache)
    return cache, kube, Reconciler(kube, cache, RenderSettings(), nad_served=lambda: served)


def test_first_pass_applies_everything_then_one_status_and_no_event():
    cache, kube, rec = make()
    outcome = rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == [
        ("apply", "NetworkAttachmentDefinition"), ("apply", "ConfigMap"), ("apply", "Deployment"),
        ("apply", "Service")]
    assert ("status", None) not in kube.writes  # a routine rollout: held back, looked at again soon
    assert 0 < outcome.requeue_after <= reconcile.MAX_HOLD_SECONDS
    ready_pod(cache)
    rec.reconcile("ns", "egress")
    assert [w[0] for w in kube.writes].count("status") == 1
    assert not [w for w in kube.writes if w[0] == "event"]  # the routine path posts no Event
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
    assert ("delete", "Service") in kube.writes
    rec.reconcile("ns", "egress")  # the watch reported the deletion
    assert ("apply", "Service") in kube.writes


def test_invalid_spec_applies_nothing_and_reports():
    cache, kube, rec = make(addresses=[{"ip": "10.0.0.5"}])
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] == "apply"] == []
    status = cache.routers[("ns", "egress")]["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["message"].startswith('spec.addresses[0].ip: "10.0.0.5"')
    assert [w[0] for w in kube.writes].count("event") == 1  # a problem is news


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


def progressing(cache):
    return next(c for c in (cache.routers[("ns", "egress")].get("status") or {}).get("conditions") or []
                if c["type"] == "Progressing")


def test_long_rollout_is_written_once_the_deployment_controller_saw_it_and_settle_time_passed(monkeypatch):
    cache, _kube, rec = make()
    monkeypatch.setattr(reconcile, "SETTLE_SECONDS", 0.0)
    rec.reconcile("ns", "egress")
    assert "status" not in cache.routers[("ns", "egress")]  # the Deployment controller lags: held
    dep = cache.children[("Deployment", "ns", "egress")]
    dep["metadata"]["generation"] = 1
    dep["status"] = {"observedGeneration": 1}
    rec.reconcile("ns", "egress")
    assert progressing(cache)["status"] == "True"


def test_unschedulable_pod_is_written_at_once_in_one_status_write_without_event():
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    assert "status" not in cache.routers[("ns", "egress")]  # no pod yet: held
    template = cache.children[("Deployment", "ns", "egress")]["spec"]["template"]["metadata"]
    cache.pod_list = [{"metadata": {"name": "egress-1", "uid": "p1", "annotations": template["annotations"]},
                       "spec": {}, "status": {"phase": "Pending", "conditions": [
                           {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/1 nodes are available: 1 Insufficient ephemeral-storage."}]}}]
    rec.reconcile("ns", "egress")  # waiting for capacity may last: no hold
    assert progressing(cache)["reason"] == "PodUnschedulable"
    for _ in range(3):
        rec.reconcile("ns", "egress")
    assert [w[0] for w in kube.writes].count("status") == 1
    assert [w[0] for w in kube.writes if w[0] != "status"] == ["apply"] * 4  # and no Event


def test_status_waits_for_a_lagging_deployment_controller_then_settles(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(reconcile.time, "monotonic", lambda: clock[0])
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    clock[0] = 200.0  # kube-controller-manager lags behind a burst: it has not seen the Deployment
    rec.reconcile("ns", "egress")
    assert "status" not in cache.routers[("ns", "egress")]
    dep = cache.children[("Deployment", "ns", "egress")]
    dep["metadata"]["generation"] = 1
    dep["status"] = {"observedGeneration": 1}
    assert 0 < rec.reconcile("ns", "egress").requeue_after <= reconcile.SETTLE_SECONDS
    assert "status" not in cache.routers[("ns", "egress")]  # the pod may come within SETTLE_SECONDS
    clock[0] += reconcile.SETTLE_SECONDS
    rec.reconcile("ns", "egress")
    assert progressing(cache)["reason"] == "PodPending"
    assert [w[0] for w in kube.writes].count("status") == 1


def test_rollout_is_written_after_the_longest_hold(monkeypatch):
    cache, _kube, rec = make()
    monkeypatch.setattr(reconcile, "MAX_HOLD_SECONDS", 0.0)
    rec.reconcile("ns", "egress")
    assert progressing(cache)["status"] == "True"


def edited_service_refused(status=422):
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    svc = cache.children[("Service", "ns", "egress")]
    svc["spec"]["ports"][0]["port"] = 81  # kubectl edit: the list-map key of a port changed
    kube.refuse["Service"] = status
    kube.writes.clear()
    return cache, kube, rec


def test_refused_apply_recreates_the_child_once_valid():
    cache, kube, rec = edited_service_refused()
    old_uid = cache.children[("Service", "ns", "egress")]["metadata"]["uid"]
    rec.reconcile("ns", "egress")
    assert [w for w in kube.writes if w[0] != "status"] == [
        ("apply", "Service"), ("dry-run", "Service"), ("delete", "Service"), ("event", "ChildRecreated")]
    kube.writes.clear()
    rec.reconcile("ns", "egress")  # the watch reported the deletion: created again
    assert kube.writes[0] == ("apply", "Service")
    new = cache.children[("Service", "ns", "egress")]
    assert new["metadata"]["uid"] != old_uid and new["spec"]["ports"][0]["port"] == 80
    conditions = (cache.routers[("ns", "egress")].get("status") or {}).get("conditions") or []
    assert ("Degraded", "True") not in {(c["type"], c["status"]) for c in conditions}


def test_a_child_being_deleted_is_waited_for_not_applied():
    cache, kube, rec = edited_service_refused()
    cache.children[("Service", "ns", "egress")]["metadata"]["uid"] = "u-old"
    kube.delete = lambda *a, **k: kube.writes.append(("delete", a[0]))  # still there (finalizers)
    outcome = rec.reconcile("ns", "egress")
    kube.writes.clear()
    assert rec.reconcile("ns", "egress").requeue_after == reconcile.RECREATE_POLL_SECONDS == outcome.requeue_after
    assert kube.writes == []


def test_invalid_rendered_child_is_reported_not_deleted():
    cache, kube, rec = edited_service_refused()
    kube.invalid.add("Service")
    rec.reconcile("ns", "egress")
    assert ("delete", "Service") not in kube.writes
    degraded = next(c for c in cache.routers[("ns", "egress")]["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyFailed")


def test_second_refusal_after_a_recreate_is_reported():
    cache, kube, rec = edited_service_refused()
    rec.reconcile("ns", "egress")
    cache.children[("Service", "ns", "egress")] = {"metadata": {"uid": "other"}, "spec": {}}  # refused again
    kube.writes.clear()
    assert rec.reconcile("ns", "egress").failed
    assert ("delete", "Service") not in kube.writes


@pytest.mark.parametrize("status, exists, before, want", [
    (422, True, False, repair.Repair.PROBE),
    (422, False, False, repair.Repair.REPORT),   # nothing to delete: the rendered object is refused
    (422, True, True, repair.Repair.REPORT),     # re-created already: do not loop
    (409, True, False, repair.Repair.REPORT),
    (500, True, False, repair.Repair.REPORT),
    (None, True, False, repair.Repair.REPORT),
])
def test_repair_policy(status, exists, before, want):
    assert repair.after_refused_apply(status, exists=exists, recreated_before=before) is want


def test_repair_probe():
    assert repair.after_probe(409) is repair.Repair.RECREATE   # exists, but valid as a new object
    assert repair.after_probe(None) is repair.Repair.RECREATE
    assert repair.after_probe(422) is repair.Repair.REPORT
    assert repair.after_probe(0) is repair.Repair.REPORT       # no answer: never delete blindly


def test_a_headless_service_in_place_of_ours_is_recreated():
    cache, kube, rec = make()
    rec.reconcile("ns", "egress")
    cache.children[("Service", "ns", "egress")]["spec"]["clusterIP"] = "None"  # a user's replacement
    kube.writes.clear()
    rec.reconcile("ns", "egress")
    assert ("delete", "Service") in kube.writes


def test_cache_keeps_packed_objects_and_pods_without_their_spec():
    import kopf

    from netshift.egressrouter import conditions
    from netshift.egressrouter.controller import CHILD_INDEXES, POD_INDEX, ROUTER_INDEX, Cache
    from netshift.operator import egressrouter as wiring

    cache, _kube, rec = make()
    rec.reconcile("ns", "egress")
    ready_pod(cache)
    pod = {**cache.pod_list[0], "metadata": {**cache.pod_list[0]["metadata"], "managedFields": [{}],
                                             "labels": {"app.kubernetes.io/instance": "egress"}}}
    pod["spec"] = {**pod["spec"], "containers": [{"name": "agent", "image": "x"}], "volumes": [{}]}
    dep = cache.children[("Deployment", "ns", "egress")]

    def index(fn, body, **kw):  # as kopf keeps it: a key -> the values of the objects with that key
        return {k: [v] for k, v in asyncio.run(fn(namespace="ns", body=kopf.Body(body), **kw)).items()}

    view = Cache()
    view.bind({ROUTER_INDEX: index(wiring._index, cache.routers[("ns", "egress")], name="egress"),
               CHILD_INDEXES["Deployment"]: index(wiring._index, dep, name="egress"),
               POD_INDEX: index(wiring._pod_index, pod, labels=pod["metadata"]["labels"])})
    assert view.child("Deployment", "ns", "egress") == dep
    assert view.router("ns", "egress") == cache.routers[("ns", "egress")]
    [kept] = view.pods("ns", "egress")
    assert "managedFields" not in kept["metadata"] and kept["spec"] == {"nodeName": "n1"}
    config_hash = dep["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert conditions.pod_state([kept], config_hash) == conditions.pod_state([pod], config_hash)
