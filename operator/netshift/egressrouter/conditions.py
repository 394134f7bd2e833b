"""Pure computation of an EgressRouter's status: Available, Progressing, Degraded.

Inputs are what the reconcile observed (validation problems, whether NADs are served, apply errors,
the Deployment, the router's pods and their Warning events); the output is the whole `status`.
`lastTransitionTime` only moves when a condition's status flips; every condition and the status
carry `observedGeneration`. Messages avoid counters and timestamps, so an unchanged world gives an
identical status and the reconcile writes nothing. Reasons are listed in docs/egressrouter.md.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from netshift.egressrouter.render import CONFIG_HASH_ANNOTATION
from netshift.egressrouter.spec import Problem
from netshift.lease import Record
from netshift.models.egressrouter import ConditionType

TYPES = tuple(t.value for t in ConditionType)  # in the order they are written
AVAILABLE, PROGRESSING, DEGRADED = TYPES
NAD_NOT_SERVED = "NetworkAttachmentDefinitionsNotServed"

_IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "RegistryUnavailable"}
_CREATE_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                  "ContainerCannotRun", "PreStartHookError", "PostStartHookError"}
# Warning events that explain a pod stuck before its containers start.
_SANDBOX_EVENTS = {"FailedCreatePodSandBox": "PodSandboxFailed", "FailedMount": "VolumeMountFailed",
                   "NetworkNotReady": "PodSandboxFailed", "FailedKillPod": "PodSandboxFailed"}
_MAX_MESSAGE = 600
_TERSE = re.compile(r"^Error: \w+$")


@dataclasses.dataclass(frozen=True)
class PodState:
    ready: bool
    reason: str
    message: str
    hard: bool = False           # needs a human: reported as Degraded
    waiting: bool = False        # scheduled but not ready: events may explain more (poll them)
    pod_name: str | None = None
    pod_uid: str | None = None


@dataclasses.dataclass(frozen=True)
class HAState:
    """Who is who among an HA router's pods: the Lease's holder and the other running pods."""
    active: str | None            # the pod holding the Lease
    node: str | None              # its node
    standbys: tuple[str, ...]     # the other pods that run (not being deleted)

    def describe(self) -> str:
        if not self.active:
            return "no pod holds the Lease"
        standbys = ", ".join(self.standbys) if self.standbys else "none running"
        return f"active pod {self.active} on node {self.node or 'unknown'}; standbys: {standbys}"


def holder_pod(lease: Mapping[str, Any] | None) -> str:
    """The pod of a Lease holder identity `<pod>_<per-process suffix>` ("" when nobody holds it)."""
    return Record.of(lease or {}).holder.rsplit("_", 1)[0]


def ha_state(pods: Sequence[Mapping[str, Any]], holder: str) -> HAState:
    live = [p for p in pods if not _meta(p).get("deletionTimestamp")]
    active = next((p for p in live if _meta(p).get("name") == holder), None)
    standbys = tuple(sorted(_meta(p).get("name", "") for p in live if p is not active
                            and (p.get("status") or {}).get("phase") == "Running"))
    if active is None:
        return HAState(None, None, standbys)
    return HAState(holder, (active.get("spec") or {}).get("nodeName"), standbys)


def has_spare(pods: Sequence[Mapping[str, Any]], holder: str) -> bool:
    """A standby that can take over from the active on a drain: running (all containers started), not
    being deleted, and on another node than the active's (a drain of that node keeps it)."""
    live = [p for p in pods if not _meta(p).get("deletionTimestamp")]
    active = next((p for p in live if _meta(p).get("name") == holder), None) if holder else None
    if active is None:
        return False
    node = (active.get("spec") or {}).get("nodeName")
    return any(_running(p) and (p.get("spec") or {}).get("nodeName") not in (None, node)
               for p in live if p is not active)


def _running(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(containers) and all(
        "running" in (c.get("state") or {}) for c in containers)


@dataclasses.dataclass(frozen=True)
class Observation:
    generation: int
    problems: tuple[Problem, ...] = ()
    nad_served: bool = True
    apply_errors: tuple[str, ...] = ()
    deployment: Mapping[str, Any] | None = None
    pod: PodState | None = None
    summary: str = ""            # what the router does, for the Available=True message
    ha: HAState | None = None    # an HA router's pods


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _cond(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_),
                None)


def _latest_event(events: Sequence[Mapping[str, Any]], reasons: Iterable[str]) -> Mapping[str, Any] | None:
    wanted = set(reasons)
    # The kubelet repeats a failure as a terse "Error: ErrImagePull" next to the detailed event;
    # keep the detailed one, so the message (and the status) does not flap between the two.
    matching = [e for e in events if e.get("reason") in wanted
                and not _TERSE.match(e.get("message") or "")]
    if not matching:
        return None
    key = lambda e: e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
    return max(matching, key=key)


def pod_state(pods: Sequence[Mapping[str, Any]], config_hash: str,
              events: Sequence[Mapping[str, Any]] = (),
              deployment: Mapping[str, Any] | None = None, active: str = "") -> PodState:
    """The state of the router's current pod (the one whose template hash is `config_hash`; of an
    HA router's, the `active` one, else a Ready one, else the newest).

    `events` are the Warning events of that pod (the reconcile reads them only when `waiting`);
    `deployment` tells why no pod exists (ReplicaFailure: quota, Pod Security admission...).
    """
    current = [p for p in pods if not _meta(p).get("deletionTimestamp")
               and (_meta(p).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION) == config_hash]
    if not current:
        if old := sorted(_meta(p).get("name", "") for p in pods):
            return PodState(False, "RollingOut",
                            f"waiting for the previous pod {old[0]} to terminate before the new one "
                            "starts (Recreate: never two pods with one address)")
        failure = _cond(deployment or {}, "ReplicaFailure")
        if failure is not None and failure.get("status") == "True":
            # The generated pod name in the message changes at every retry: drop it.
            message = re.sub(r'pods? "[^"]*" ', "pod ", failure.get("message") or failure.get("reason") or "")
            return PodState(False, "PodCreateFailed", _clip(f"the pod cannot be created: {message}"),
                            hard=True)
        return PodState(False, "PodPending", "waiting for the Deployment to create the pod")
    pod = max(current, key=lambda p: (_meta(p).get("name") == active, (_cond(p, "Ready") or {}).get("status") == "True",
                                      _meta(p).get("creationTimestamp") or ""))
    name, uid = _meta(pod).get("name"), _meta(pod).get("uid")
    status = pod.get("status") or {}
    st: Callable[..., PodState] = lambda ready, reason, message, **kw: PodState(
        ready, reason, _clip(message), pod_name=name, pod_uid=uid, **kw)

    if status.get("phase") == "Failed":
        why = ": ".join(x for x in (status.get("reason"), status.get("message")) if x) or "no reason given"
        return st(False, "PodFailed", f"pod {name} failed: {why}", hard=True)
    scheduled = _cond(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return st(False, "PodUnschedulable",
                  f"pod {name} cannot be scheduled: {scheduled.get('message') or scheduled.get('reason')}")
    if not (pod.get("spec") or {}).get("nodeName") and scheduled is None:
        return st(False, "PodPending", f"pod {name} waits for the scheduler")

    statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _IMAGE_ERRORS:
            failed = _latest_event(events, {"Failed"})
            detail = (failed or {}).get("message") or waiting.get("message") or reason
            return st(False, "ImagePullFailed",
                      f"pod {name} cannot pull image {cs.get('image')}: {detail}", hard=True, waiting=True)
        if reason == "CrashLoopBackOff":
            last = (cs.get("lastState") or {}).get("terminated") or {}
            why = ", ".join(f"{k} {last[k]}" for k in ("exitCode", "reason", "message") if last.get(k) not in
                            (None, ""))
            return st(False, "CrashLoopBackOff",
                      f"pod {name}: container {cs.get('name')} keeps crashing"
                      + (f" (last exit: {why})" if why else ""), hard=True)
        if reason in _CREATE_ERRORS:
            return st(False, "ContainerCreateFailed",
                      f"pod {name}: container {cs.get('name')}: {reason}: {waiting.get('message') or ''}",
                      hard=True)

    ready = _cond(pod, "Ready")
    if ready and ready.get("status") == "True":
        return st(True, "Ready", f"pod {name} is ready")

    started = any("running" in (cs.get("state") or {}) for cs in statuses)
    if not started:
        problem = _latest_event(events, _SANDBOX_EVENTS)
        if problem is not None:
            return st(False, _SANDBOX_EVENTS[problem["reason"]],
                      f"pod {name}: {problem['reason']}: {problem.get('message', '')}",
                      hard=True, waiting=True)
        return st(False, "PodStarting", f"pod {name} is starting (no container running yet)", waiting=True)
    unhealthy = _latest_event(events, {"Unhealthy"})
    detail = f": {unhealthy.get('message')}" if unhealthy else ""
    return st(False, "PodNotReady",
              f"pod {name} runs but is not ready: the agent has not installed the redirect rules{detail}",
              waiting=True)


def _deployment_done(deployment: Mapping[str, Any] | None) -> bool:
    if not deployment:
        return False
    status = deployment.get("status") or {}
    gen = _meta(deployment).get("generation") or 0
    # Of an HA router only the active pod is ever available.
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    return bool(status.get("observedGeneration", 0) >= gen
                and status.get("updatedReplicas", 0) == status.get("replicas", 0) == wanted
                and status.get("availableReplicas", 0) >= 1)


def deployment_observed(deployment: Mapping[str, Any] | None) -> bool:
    """Whether the Deployment controller has seen the Deployment's current generation."""
    if not deployment:
        return False
    gen = _meta(deployment).get("generation") or 0
    return bool(gen) and (deployment.get("status") or {}).get("observedGeneration", 0) >= gen


def _deployment_ready(deployment: Mapping[str, Any] | None) -> bool:
    return bool(deployment and ((deployment.get("status") or {}).get("readyReplicas") or 0) >= 1)


def _deadline_exceeded(deployment: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    cond = _cond(deployment or {}, "Progressing")
    if cond and cond.get("status") == "False" and cond.get("reason") == "ProgressDeadlineExceeded":
        return cond
    return None


Triple = tuple[bool, str, str]  # status, reason, message


def _blocked(obs: Observation, reason: str, message: str) -> dict[str, Triple]:
    """Nothing is applied: the pod from the last good spec (if any) keeps running."""
    if _deployment_ready(obs.deployment):
        available = (True, "PreviousSpecServing",
                     "the pod keeps redirecting with the last spec that was applied; see Degraded")
    else:
        available = (False, reason, message)
    return {
        AVAILABLE: available,
        PROGRESSING: (False, reason, "blocked until the problem reported by Degraded is fixed"),
        DEGRADED: (True, reason, message),
    }


def evaluate(obs: Observation) -> dict[str, Triple]:
    """(status, reason, message) of each condition type."""
    if obs.problems:
        message = "; ".join(p.message for p in obs.problems)
        return _blocked(obs, obs.problems[0].reason, _clip(message + " (nothing was applied)"))
    if not obs.nad_served:
        return _blocked(obs, NAD_NOT_SERVED, (
            "the API server does not serve network-attachment-definitions.k8s.cni.cncf.io/v1: "
            "install Multus; the router is created as soon as the resource appears"))
    pod = obs.pod or PodState(False, "PodPending", "waiting for the Deployment to create the pod")
    if pod.ready:
        message = "; ".join(m for m in (pod.message, obs.ha.describe() if obs.ha else "", obs.summary) if m)
        available = (True, "Ready", _clip(message))
    else:
        available = (False, pod.reason, pod.message)

    if obs.apply_errors:
        message = _clip("; ".join(obs.apply_errors))
        return {AVAILABLE: available, PROGRESSING: (True, "ApplyFailed", "retrying: " + message),
                DEGRADED: (True, "ApplyFailed", message)}

    deadline = _deadline_exceeded(obs.deployment)
    # An HA Deployment never completes (standbys are not Ready): its deadline passes once all is rolled.
    if deadline is not None and not (pod.ready and _deployment_done(obs.deployment)):
        why = f"the pod did not become ready in time: {pod.message}"
        progressing = (False, "ProgressDeadlineExceeded", _clip(why))
        degraded = (True, pod.reason if pod.hard else "ProgressDeadlineExceeded", _clip(why))
    else:
        if pod.ready and _deployment_done(obs.deployment):
            progressing = (False, "AsExpected", "the router runs the current spec")
        elif pod.ready:
            progressing = (True, "RollingOut", "the Deployment is rolling out the current spec")
        else:
            progressing = (True, pod.reason, pod.message)
        degraded = (True, pod.reason, pod.message) if pod.hard else (False, "AsExpected", "")
    return {AVAILABLE: available, PROGRESSING: progressing, DEGRADED: degraded}


def compute_status(obs: Observation, previous: Sequence[Mapping[str, Any]] | None, now: str) -> dict[str, Any]:
    """The whole `status`: conditions in a fixed order, transition times kept unless status flips."""
    prev = {c.get("type"): c for c in previous or []}
    conditions = []
    for type_, (ok, reason, message) in evaluate(obs).items():
        status = "True" if ok else "False"
        old = prev.get(type_)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        conditions.append({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now,
            "observedGeneration": obs.generation,
        })
    return {"observedGeneration": obs.generation, "conditions": conditions}


_KEYS = ("type", "status", "reason", "message", "lastTransitionTime", "observedGeneration")


def status_differs(observed: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether `desired` (from compute_status) must be written over the observed status."""
    observed = observed or {}
    if observed.get("observedGeneration") != desired.get("observedGeneration"):
        return True
    norm: Callable[[Any], list[dict[str, Any]]] = lambda conds: [{k: c.get(k) for k in _KEYS} for c in conds or []]
    return norm(observed.get("conditions")) != norm(desired.get("conditions"))


@dataclasses.dataclass(frozen=True)
class Transition:
    type: str
    status: str
    reason: str
    message: str
    warning: bool


def transitions(previous: Sequence[Mapping[str, Any]] | None,
                current: Sequence[Mapping[str, Any]]) -> list[Transition]:
    """Changes worth a Kubernetes Event: problems and their end. Degraded flipping (either way) or
    changing its reason while True, and Available turning False. The routine path (a new router
    becoming Available, Progressing) is not news: an Event per router would be a write per router."""
    prev = {c.get("type"): c for c in previous or []}
    out = []
    for c in current:
        old = prev.get(c["type"])
        is_true = c["status"] == "True"
        if c["type"] == DEGRADED:
            news = (is_true and (old is None or old.get("reason") != c["reason"])) or (
                old is not None and old.get("status") != c["status"])
        elif c["type"] == AVAILABLE:
            news = not is_true and old is not None and old.get("status") == "True"
        else:
            news = False
        if news:
            warning = is_true if c["type"] == DEGRADED else not is_true
            out.append(Transition(c["type"], c["status"], c["reason"], c["message"], warning))
    return out


# A pod in these states is expected to move on by itself within seconds (the Deployment controller,
# the scheduler, the kubelet or the agent is at work): worth holding the status back for.
_MOVING = {"PodPending", "PodStarting", "PodNotReady", "RollingOut"}


def settling(status: Mapping[str, Any]) -> bool:
    """Whether `status` says "rolling out, nothing wrong, about to change" (worth holding back for a
    few seconds). A routine state that may last (PodUnschedulable: waiting for capacity) is not: it
    is written at once, so a router waiting for room costs one status write like a router that runs."""
    by_type = {c.get("type"): c for c in status.get("conditions") or []}
    available = by_type.get(AVAILABLE) or {}
    return ((by_type.get(PROGRESSING) or {}).get("status") == "True"
            and (by_type.get(DEGRADED) or {}).get("status") == "False"
            and (available.get("status") == "True" or available.get("reason") in _MOVING))
