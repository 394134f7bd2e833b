"""Condition computation: reasons, messages, stable transition times, events."""
from netshift.egressrouter import conditions as c
from netshift.egressrouter.render import CONFIG_HASH_ANNOTATION
from netshift.egressrouter.spec import Problem

HASH = "abc"
NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def pod(name="egress-1", *, hash_=HASH, node="node1", phase="Pending", conditions=(), statuses=(),
        deleting=False):
    meta = {"name": name, "uid": f"uid-{name}", "annotations": {CONFIG_HASH_ANNOTATION: hash_},
            "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": list(statuses)}}


def waiting(reason, message=""):
    return {"name": "agent", "image": "netshift:0.1.0", "state": {"waiting": {"reason": reason, "message": message}}}


READY = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]
RUNNING = {"name": "agent", "image": "netshift:0.1.0", "state": {"running": {}}, "ready": True}
DONE_DEPLOYMENT = {"metadata": {"generation": 2},
                   "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                              "readyReplicas": 1, "availableReplicas": 1}}


def conds(obs, previous=None, now=NOW):
    status = c.compute_status(obs, previous, now)
    return {x["type"]: x for x in status["conditions"]}, status


def test_ready_router():
    p = c.pod_state([pod(phase="Running", conditions=READY, statuses=[RUNNING])], HASH)
    got, status = conds(c.Observation(generation=2, pod=p, deployment=DONE_DEPLOYMENT, summary="redirecting 1 rule"))
    assert (got["Available"]["status"], got["Available"]["reason"]) == ("True", "Ready")
    assert "redirecting 1 rule" in got["Available"]["message"]
    assert (got["Progressing"]["status"], got["Progressing"]["reason"]) == ("False", "AsExpected")
    assert (got["Degraded"]["status"], got["Degraded"]["reason"]) == ("False", "AsExpected")
    assert status["observedGeneration"] == 2
    assert all(x["observedGeneration"] == 2 for x in got.values())
    assert [x["type"] for x in status["conditions"]] == ["Available", "Progressing", "Degraded"]


def test_unschedulable_pod_without_nodes():
    sched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": "no nodes available to schedule pods"}]
    p = c.pod_state([pod(node=None, conditions=sched)], HASH)
    got, _ = conds(c.Observation(generation=1, pod=p))
    assert (got["Available"]["status"], got["Available"]["reason"]) == ("False", "PodUnschedulable")
    assert "no nodes available to schedule pods" in got["Available"]["message"]
    assert (got["Progressing"]["status"], got["Progressing"]["reason"]) == ("True", "PodUnschedulable")
    assert got["Degraded"]["status"] == "False"


def test_progress_deadline_turns_a_slow_pod_into_degraded():
    sched = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]
    dep = {"metadata": {"generation": 1}, "status": {"conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}
    p = c.pod_state([pod(node=None, conditions=sched)], HASH)
    got, _ = conds(c.Observation(generation=1, pod=p, deployment=dep))
    assert (got["Degraded"]["status"], got["Degraded"]["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert (got["Progressing"]["status"], got["Progressing"]["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert "0/3 nodes" in got["Degraded"]["message"]


def test_image_pull_error_uses_the_event_message():
    p = c.pod_state([pod(statuses=[waiting("ImagePullBackOff", "Back-off pulling image")])], HASH,
                    events=[{"reason": "Failed", "message": "failed to pull netshift:0.1.0: not found",
                             "lastTimestamp": "2026-01-01T00:00:05Z"}])
    assert (p.reason, p.hard) == ("ImagePullFailed", True)
    got, _ = conds(c.Observation(generation=1, pod=p))
    assert got["Degraded"]["status"] == "True" and got["Degraded"]["reason"] == "ImagePullFailed"
    assert "not found" in got["Degraded"]["message"]


def test_crash_loop():
    cs = waiting("CrashLoopBackOff", "back-off 40s restarting failed container")
    cs["lastState"] = {"terminated": {"exitCode": 2, "reason": "Error", "message": "spec.addresses: bad"}}
    p = c.pod_state([pod(phase="Running", statuses=[cs])], HASH)
    assert p.reason == "CrashLoopBackOff" and p.hard
    assert "exitCode 2" in p.message and "40s" not in p.message  # no ever-changing back-off counter


def test_sandbox_failure_from_events():
    events = [{"reason": "FailedCreatePodSandBox", "message": "multus: cannot find NAD ns/egress",
               "lastTimestamp": "2026-01-01T00:00:05Z"},
              {"reason": "Scheduled", "message": "ok", "lastTimestamp": "2026-01-01T00:00:01Z"}]
    p = c.pod_state([pod(statuses=[waiting("ContainerCreating")])], HASH, events)
    assert (p.reason, p.hard) == ("PodSandboxFailed", True)
    assert "cannot find NAD" in p.message
    p = c.pod_state([pod(statuses=[waiting("ContainerCreating")])], HASH, [])
    assert (p.reason, p.hard, p.waiting) == ("PodStarting", False, True)


def test_running_but_not_ready():
    p = c.pod_state([pod(phase="Running", statuses=[{**RUNNING, "ready": False}],
                         conditions=[{"type": "Ready", "status": "False"}])], HASH,
                    [{"reason": "Unhealthy",
                      "message": "Readiness probe failed: HTTP probe failed with statuscode: 503"}])
    assert p.reason == "PodNotReady" and not p.hard and "503" in p.message


def test_old_pod_terminating_is_rolling_out():
    p = c.pod_state([pod(hash_="old", phase="Running", deleting=True)], HASH)
    assert p.reason == "RollingOut" and "Recreate" in p.message
    assert c.pod_state([], HASH).reason == "PodPending"


def test_invalid_spec_blocks_and_names_the_field():
    probs = (Problem("InvalidAddress", "spec.addresses[0].ip", '"10.0.0.5" is not a CIDR'),
             Problem("NoRedirectTarget", "spec.redirect", "needs rules"))
    got, _ = conds(c.Observation(generation=3, problems=probs))
    assert (got["Degraded"]["status"], got["Degraded"]["reason"]) == ("True", "InvalidAddress")
    assert got["Degraded"]["message"].startswith('spec.addresses[0].ip: "10.0.0.5" is not a CIDR; spec.redirect:')
    assert (got["Available"]["status"], got["Progressing"]["status"]) == ("False", "False")
    # a pod from the last good spec still runs: say so honestly
    got, _ = conds(c.Observation(generation=3, problems=probs, deployment=DONE_DEPLOYMENT))
    assert (got["Available"]["status"], got["Available"]["reason"]) == ("True", "PreviousSpecServing")


def test_nad_not_served():
    got, _ = conds(c.Observation(generation=1, nad_served=False))
    assert (got["Degraded"]["status"], got["Degraded"]["reason"]) == ("True", c.NAD_NOT_SERVED)
    assert "Multus" in got["Degraded"]["message"]


def test_apply_errors():
    got, _ = conds(c.Observation(generation=1, apply_errors=("applying Deployment ns/egress failed: 403 forbidden",)))
    assert (got["Degraded"]["status"], got["Degraded"]["reason"]) == ("True", "ApplyFailed")
    assert "403 forbidden" in got["Degraded"]["message"]


def test_transition_time_is_stable_unless_status_flips():
    obs = c.Observation(generation=1, pod=c.PodState(False, "PodPending", "waiting"))
    _, first = conds(obs)
    obs2 = c.Observation(generation=2, pod=c.PodState(False, "PodUnschedulable", "no nodes"))
    got, second = conds(obs2, first["conditions"], now=LATER)
    assert got["Available"]["lastTransitionTime"] == NOW  # still False
    assert got["Available"]["reason"] == "PodUnschedulable"
    ready = c.Observation(generation=2, pod=c.PodState(True, "Ready", "ready"), deployment=DONE_DEPLOYMENT)
    got, _ = conds(ready, second["conditions"], now=LATER)
    assert got["Available"]["lastTransitionTime"] == LATER


def test_status_differs_only_on_real_changes():
    obs = c.Observation(generation=1, pod=c.PodState(False, "PodPending", "waiting"))
    _, status = conds(obs)
    _, again = conds(obs, status["conditions"], now=LATER)
    assert not c.status_differs(status, again)
    assert c.status_differs(None, status)
    assert c.status_differs(status, {**again, "observedGeneration": 2})


def test_transitions_worth_an_event():
    pending = c.compute_status(c.Observation(generation=1, pod=c.PodState(False, "PodPending", "w")), None, NOW)
    assert c.transitions(None, pending["conditions"]) == []  # a new router's routine state: no event
    ready = c.compute_status(c.Observation(generation=1, pod=c.PodState(True, "Ready", "ok"),
                                           deployment=DONE_DEPLOYMENT), pending["conditions"], LATER)
    assert c.transitions(pending["conditions"], ready["conditions"]) == []  # routine: no event
    bad = c.compute_status(c.Observation(generation=2, nad_served=False), ready["conditions"], LATER)
    got = {(t.type, t.status, t.warning) for t in c.transitions(ready["conditions"], bad["conditions"])}
    assert got == {("Available", "False", True), ("Degraded", "True", True)}
    fixed = c.compute_status(c.Observation(generation=2, pod=c.PodState(True, "Ready", "ok"),
                                           deployment=DONE_DEPLOYMENT), bad["conditions"], LATER)
    got = {(t.type, t.status, t.warning) for t in c.transitions(bad["conditions"], fixed["conditions"])}
    assert got == {("Degraded", "False", False)}  # the end of a problem is news


def test_settling():
    def status(pod, deployment=None):
        return c.compute_status(c.Observation(generation=1, pod=pod, deployment=deployment), None, NOW)
    for reason in ("PodPending", "PodStarting", "PodNotReady", "RollingOut"):
        assert c.settling(status(c.PodState(False, reason, "w")))  # about to move on: held back
    assert c.settling(status(c.PodState(True, "Ready", "ok")))  # ready, the Deployment not done yet
    # waiting for capacity may last: written at once, and it is no problem (no Degraded, no Event)
    unschedulable = status(c.PodState(False, "PodUnschedulable", "0/1 nodes are available"))
    assert not c.settling(unschedulable)
    assert [x["status"] for x in unschedulable["conditions"]] == ["False", "True", "False"]
    assert c.transitions(None, unschedulable["conditions"]) == []
    bad = c.compute_status(c.Observation(generation=1, nad_served=False), None, NOW)
    assert not c.settling(bad)
    assert not c.settling(status(c.PodState(True, "Ready", "ok"), DONE_DEPLOYMENT))
    hard = status(c.PodState(False, "ImagePullFailed", "no such image", hard=True))
    assert not c.settling(hard)


def test_pod_cannot_be_created():
    dep = {"status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                      "message": 'pods "egress-7d7789c7f8-9zsml" is forbidden: violates '
                                                 'PodSecurity "baseline:latest": non-default capabilities'}]}}
    p = c.pod_state([], HASH, deployment=dep)
    assert (p.reason, p.hard) == ("PodCreateFailed", True)
    assert "PodSecurity" in p.message and "9zsml" not in p.message


def test_image_pull_message_does_not_flap_with_terse_events():
    detail = {"reason": "Failed", "message": 'Failed to pull image "netshift:0.1.0": no such host',
              "lastTimestamp": "2026-01-01T00:00:05Z"}
    terse = {"reason": "Failed", "message": "Error: ImagePullBackOff", "lastTimestamp": "2026-01-01T00:00:09Z"}
    a = c.pod_state([pod(statuses=[waiting("ErrImagePull")])], HASH, [detail])
    b = c.pod_state([pod(statuses=[waiting("ImagePullBackOff")])], HASH, [detail, terse])
    assert a.message == b.message and "no such host" in a.message
