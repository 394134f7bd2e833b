"""The one idempotent reconcile of an EgressRouter.

parse the spec (egressrouter.spec) → render → apply the children whose observed state does not already
contain the rendered state (server-side apply, field manager `netshift`, force; a child the API server
refuses to update is re-created, see `repair`) → read the pod → compute the status → patch it only if it
changed, holding back a routine rollout's intermediate status for a few seconds (one status write per
change when nothing is wrong) → post Events on problems and repairs.

Observed state comes from a cache fed by watch events (kopf indexes, see the handlers), so an
unchanged router costs no API request at all: no write, and no read either.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from netshift import metrics
from netshift.egressrouter import conditions as cond
from netshift.egressrouter import ha, repair
from netshift.egressrouter.render import (
    AGENT_CONFIG_HASH_ANNOTATION,
    AGENT_HEALTH_PORT,
    AGENT_METRICS_PORT,
    CONFIG_HASH_ANNOTATION,
    HA_KINDS,
    Children,
    RenderSettings,
    render,
)
from netshift.egressrouter.spec import Problem, RouterConfig, parse
from netshift.kube import ApiError, Kube, error_message
from netshift.models import rfc3339_now
from netshift.models.egressrouter import KIND, NAD_KIND, EgressRouter

log = logging.getLogger("netshift.egressrouter")

POLL_WAITING_POD_SECONDS = 10.0  # a scheduled pod that is not ready: re-read its events this often
# A routine rollout about to move on (cond.settling) is written only if it lasts SETTLE_SECONDS after
# the Deployment controller saw the Deployment; until it has, we wait for it (at most MAX_HOLD_SECONDS
# after we held the status first): most routers go straight from nothing to their settled status in
# one write, also when kube-controller-manager lags minutes behind a burst of new routers.
SETTLE_SECONDS = 20.0
MAX_HOLD_SECONDS = 300.0
RECREATE_POLL_SECONDS = 1.0  # a child being deleted for a re-create: look again (the watch is first)


class Cache(Protocol):
    """Observed objects, kept current by watch events."""

    def router(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def child(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def pods(self, namespace: str, name: str) -> list[Mapping[str, Any]]: ...


def contains(desired: Any, observed: Any) -> bool:
    """Whether `observed` already holds everything `desired` says (the API server adds defaults).

    Mappings: every desired key, recursively. Lists of scalars: equal. Lists of objects: every desired
    item matches a distinct observed item (what server-side apply does with keyed lists; an item that
    another manager added cannot be removed by applying again, so it must not cause a re-apply).
    """
    if isinstance(desired, Mapping):
        return isinstance(observed, Mapping) and all(
            k in observed and contains(v, observed[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list):
            return False
        if not any(isinstance(x, Mapping) for x in desired):
            return desired == observed
        remaining = list(observed)
        for item in desired:
            for i, candidate in enumerate(remaining):
                if contains(item, candidate):
                    del remaining[i]
                    break
            else:
                return False
        return True
    return bool(desired == observed)


def _rv(obj: Mapping[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Recent:
    """What we wrote lately, until the watch catches up: avoids writing twice when a second
    reconcile runs before the watch event of our own write arrived."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, ...], Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def newest(self, key: tuple[str, ...], cached: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        with self._lock:
            mine = self._items.get(key)
            if mine is None:
                return cached
            if cached is not None and _rv(cached) >= _rv(mine):
                del self._items[key]  # the watch has caught up
                return cached
            return mine

    def observed(self, key: tuple[str, ...], obj: Mapping[str, Any] | None, deleted: bool = False) -> None:
        """A watch event for `key`: once the watch is as new as our write, the cache is the truth
        (and a deletion always is: the object may have been deleted right after our write)."""
        with self._lock:
            mine = self._items.get(key)
            if mine is not None and (deleted or _rv(obj) >= _rv(mine)):
                del self._items[key]

    def remember(self, key: tuple[str, ...], obj: Mapping[str, Any] | None) -> None:
        with self._lock:
            if obj is None:
                self._items.pop(key, None)
            else:
                self._items[key] = obj

    def forget_router(self, namespace: str, name: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[1:] == (namespace, name)]:
                del self._items[key]


class _NadNotServed(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class _Applied:
    deployment: Mapping[str, Any] | None  # as now known
    errors: list[str]                     # apply failures, reported in Degraded
    repairs: list[str]                    # children deleted to be re-created
    waiting: bool                         # a child is being deleted for a re-create


@dataclasses.dataclass(frozen=True)
class Outcome:
    requeue_after: float | None = None
    failed: bool = False


class Reconciler:
    def __init__(self, kube: Kube, cache: Cache, settings: RenderSettings,
                 nad_served: Callable[[], bool], nad_epoch: Callable[[], int] = lambda: 0,
                 nad_not_found: Callable[[], object] = lambda: None) -> None:
        self.kube = kube
        self.cache = cache
        self.settings = settings
        self.nad_served = nad_served
        self.nad_epoch = nad_epoch
        self.nad_not_found = nad_not_found  # a 404 on a NAD: discovery was stale
        self.recent = Recent()
        self._nad_epoch_seen: dict[tuple[str, str], int] = {}
        self._deleting: dict[tuple[str, str, str], str] = {}  # child -> uid deleted for a re-create
        self._recreated: set[tuple[str, str, str]] = set()    # re-created since its last good apply
        self._progress_since: dict[tuple[str, str], float] = {}
        self._observed_since: dict[tuple[str, str], float] = {}  # ... and the Deployment controller saw it
        self._conditions: dict[tuple[str, str], dict[str, str]] = {}
        self._holders: dict[tuple[str, str], str] = {}  # last pod seen holding an HA router's Lease
        self._lock = threading.Lock()

    # -- the reconcile ------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Outcome:
        started = time.monotonic()
        result = "error"
        try:
            outcome, result = self._reconcile(namespace, name)
            return outcome
        finally:
            metrics.RECONCILES.labels(kind=KIND, result=result).inc()
            metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)

    def _reconcile(self, namespace: str, name: str) -> tuple[Outcome, str]:
        key = (namespace, name)
        body = self.recent.newest((KIND, *key), self.cache.router(namespace, name))
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            # Gone or going: garbage collection removes the children (ownerReferences).
            self.forget(namespace, name)
            return Outcome(), "deleted"
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 0)

        problems: tuple[Problem, ...]
        router: EgressRouter | None = None
        try:
            router = EgressRouter.from_obj(dict(body))
            parsed = parse({"metadata": {"name": name}, "spec": router.spec.to_dict()},
                           default_master=self.settings.default_macvlan_master,
                           agent_ports=(AGENT_HEALTH_PORT, AGENT_METRICS_PORT))
            problems = () if isinstance(parsed, RouterConfig) else parsed
        except ValidationError as exc:
            problems = (Problem("InvalidSpec", "spec", f"cannot be read: {exc.errors()[0].get('msg')}"),)
        replicas = ha.replicas(meta.get("annotations"))
        if isinstance(replicas, Problem):
            problems, replicas = (*problems, replicas), 1

        nad_served = self.nad_served()
        deployment = self._observed("Deployment", namespace, name)
        pod: cond.PodState | None = None
        ha_state: cond.HAState | None = None
        apply_errors: list[str] = []
        repairs: list[str] = []
        summary = ""
        requeue: float | None = None

        pods = self.cache.pods(namespace, name)
        holder = cond.holder_pod(self._observed("Lease", namespace, name)) if replicas > 1 else ""
        if router is not None and not problems and nad_served:
            children = render(router, self.settings, replicas, cond.has_spare(pods, holder))
            try:
                if replicas == 1:
                    self._remove_ha_children(key)
                applied = self._apply_children(key, children, deployment)
                deployment, apply_errors, repairs = applied.deployment, applied.errors, applied.repairs
                if applied.waiting:
                    requeue = RECREATE_POLL_SECONDS
            except _NadNotServed:
                self.nad_not_found()
                nad_served = False
        if router is not None and not problems and nad_served:
            if replicas > 1:
                ha_state = cond.ha_state(pods, holder)
                self._takeover_event(key, body, ha_state)
            pod = cond.pod_state(pods, children.config_hash, deployment=deployment, active=holder)
            if pod.waiting and pod.pod_name:
                try:
                    events = self.kube.warning_events("Pod", namespace, pod.pod_name, pod.pod_uid)
                    pod = cond.pod_state(pods, children.config_hash, events, deployment, holder)
                except Exception as exc:
                    log.debug("cannot read events of pod %s/%s: %s", namespace, pod.pod_name, exc)
                requeue = POLL_WAITING_POD_SECONDS
            if not apply_errors:
                self._nudge_pods(namespace, pods, children)
            summary = _summary(router)

        obs = cond.Observation(generation=generation, problems=problems, nad_served=nad_served,
                               apply_errors=tuple(apply_errors), deployment=deployment, pod=pod,
                               summary=summary, ha=ha_state)
        previous = (body.get("status") or {}).get("conditions") or []
        status = cond.compute_status(obs, previous, rfc3339_now())
        hold = self._hold(key, status, deployment) if cond.status_differs(body.get("status"), status) else None
        if hold:
            requeue = min(requeue or hold, hold)
        elif hold is not None:
            log.info("status of EgressRouter %s/%s: %s", namespace, name, ", ".join(
                f"{c['type']}={c['status']} ({c['reason']}: {c['message']})" for c in status["conditions"]))
            written = self.kube.merge_patch(KIND, namespace, name, {"status": status}, sub="status")
            self.recent.remember((KIND, *key), written)
            self._forget_progress(key)
            for t in cond.transitions(previous, status["conditions"]):
                self.kube.post_event(KIND, body, reason=t.reason, warning=t.warning,
                                     message=f"{t.type}={t.status}: {t.message}" if t.message
                                     else f"{t.type}={t.status}")
        for message in repairs:
            self.kube.post_event(KIND, body, reason="ChildRecreated", warning=True, message=message)
        self._count_conditions(key, status["conditions"])

        if apply_errors:
            return Outcome(failed=True), "error"
        if problems or not nad_served:
            return Outcome(), "degraded"
        return Outcome(requeue_after=requeue), "ok"

    # -- children -----------------------------------------------------------------------------
    def _observed(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.recent.newest((kind, namespace, name), self.cache.child(kind, namespace, name))

    def _apply_children(self, key: tuple[str, str], children: Children,
                        deployment: Mapping[str, Any] | None) -> _Applied:
        namespace, name = key
        errors: list[str] = []
        repairs: list[str] = []
        waiting = False
        epoch = self.nad_epoch()
        for kind, desired in children.items():
            child = (kind, namespace, name)
            observed = self._observed(kind, namespace, name)
            if self._still_deleting(child, observed):
                waiting = True
                continue
            if kind == NAD_KIND and self._nad_epoch_seen.get(key, 0) != epoch:
                observed = None  # NADs were just (re)served: the cache may predate the CRD
            if observed is not None and repair.recreate_first(kind, observed, desired):
                self._recreate(child, observed)
                waiting = True
                continue
            if observed is not None and contains(desired, observed):
                continue
            try:
                applied = self.kube.apply(kind, desired)
            except Exception as exc:
                if kind == NAD_KIND and isinstance(exc, ApiError) and exc.not_found:
                    raise _NadNotServed() from exc
                refusal = f"applying {kind} {namespace}/{name} failed: {error_message(exc)}"
                if self._repair(child, desired, observed, exc):
                    repairs.append(f"{refusal}; deleted it to re-create it")
                    waiting = True
                else:
                    errors.append(refusal)
                continue
            metrics.CHILDREN_APPLIED.labels(kind=KIND, child=kind).inc()
            self.recent.remember(child, applied)
            self._recreated.discard(child)
            if kind == NAD_KIND:
                self._nad_epoch_seen[key] = epoch
            if kind == "Deployment":
                deployment = applied
            log.info("applied %s %s/%s", kind, namespace, name)
        return _Applied(deployment, errors, repairs, waiting)

    def _remove_ha_children(self, key: tuple[str, str]) -> None:
        """A router back to one pod: its Lease, RBAC and PodDisruptionBudget go (the PDB would block
        evicting the single pod)."""
        for kind in HA_KINDS:
            child = (kind, *key)
            if self._observed(*child) is not None:
                log.info("deleting %s %s/%s: the router runs one pod", *child)
                self.kube.delete(*child)
                self.recent.remember(child, None)

    def _takeover_event(self, key: tuple[str, str], body: Mapping[str, Any], state: cond.HAState) -> None:
        """An Event when the Lease has a new holder (not for the first one this process sees)."""
        if not state.active:
            return
        with self._lock:
            before = self._holders.get(key)
            self._holders[key] = state.active
        if before and before != state.active:
            self.kube.post_event(KIND, body, reason="Takeover", warning=False, message=(
                f"pod {state.active} on node {state.node or 'unknown'} is now active (was {before})"))

    def _repair(self, child: tuple[str, str, str], desired: dict[str, Any],
                observed: Mapping[str, Any] | None, exc: Exception) -> bool:
        """Re-creates the child if the policy says so (see `repair`); whether it did."""
        action = repair.after_refused_apply(_status(exc), exists=observed is not None,
                                            recreated_before=child in self._recreated)
        if action is repair.Repair.PROBE:
            try:
                self.kube.dry_run_create(child[0], desired)
                action = repair.after_probe(None)
            except Exception as probe:
                action = repair.after_probe(_status(probe) or 0)
        if action is not repair.Repair.RECREATE or observed is None:
            return False
        self._recreate(child, observed)
        return True

    def _recreate(self, child: tuple[str, str, str], observed: Mapping[str, Any]) -> None:
        uid = str((observed.get("metadata") or {}).get("uid") or "")
        log.warning("deleting %s %s/%s to re-create it", *child)
        self.kube.delete(*child, uid=uid or None, foreground=True)
        self._deleting[child] = uid
        self._recreated.add(child)
        self.recent.remember(child, None)

    def _still_deleting(self, child: tuple[str, str, str], observed: Mapping[str, Any] | None) -> bool:
        """Whether the incarnation deleted for a re-create is still there (then wait for it)."""
        uid = self._deleting.get(child)
        if uid is None:
            return False
        if observed is not None and (observed.get("metadata") or {}).get("uid") == uid:
            return True
        del self._deleting[child]
        return False

    def _hold(self, key: tuple[str, str], status: Mapping[str, Any],
              deployment: Mapping[str, Any] | None) -> float:
        """Seconds to hold back writing `status` (0: write it now)."""
        if not cond.settling(status):
            self._forget_progress(key)
            return 0.0
        now = time.monotonic()
        since = self._progress_since.setdefault(key, now)
        if cond.deployment_observed(deployment):
            return max(0.0, self._observed_since.setdefault(key, now) + SETTLE_SECONDS - now)
        return max(0.0, since + MAX_HOLD_SECONDS - now)

    def _forget_progress(self, key: tuple[str, str]) -> None:
        self._progress_since.pop(key, None)
        self._observed_since.pop(key, None)

    def _nudge_pods(self, namespace: str, pods: Iterable[Mapping[str, Any]], children: Children) -> None:
        """Make the kubelet refresh the mounted agent config now (see render.AGENT_CONFIG_HASH_ANNOTATION).

        Only scheduled pods of the current template: an unscheduled pod mounts the newest config anyway.
        """
        want = children.agent_config_hash
        for pod in pods:
            meta = pod.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if (meta.get("deletionTimestamp") or not (pod.get("spec") or {}).get("nodeName")
                    or annotations.get(CONFIG_HASH_ANNOTATION) != children.config_hash
                    or annotations.get(AGENT_CONFIG_HASH_ANNOTATION) == want):
                continue
            try:
                self.kube.merge_patch("Pod", namespace, meta["name"],
                                     {"metadata": {"annotations": {AGENT_CONFIG_HASH_ANNOTATION: want}}})
            except Exception as exc:
                log.warning("cannot annotate pod %s/%s: %s", namespace, meta.get("name"), error_message(exc))

    # -- bookkeeping --------------------------------------------------------------------------
    def forget(self, namespace: str, name: str) -> None:
        self.recent.forget_router(namespace, name)
        with self._lock:
            self._nad_epoch_seen.pop((namespace, name), None)
            self._holders.pop((namespace, name), None)
            self._forget_progress((namespace, name))
            for child in [c for c in (*self._deleting, *self._recreated) if c[1:] == (namespace, name)]:
                self._deleting.pop(child, None)
                self._recreated.discard(child)
            old = self._conditions.pop((namespace, name), None)
        for type_, status in (old or {}).items():
            metrics.CONDITIONS.labels(kind=KIND, type=type_, status=status).dec()

    def _count_conditions(self, key: tuple[str, str], conditions: list[dict[str, Any]]) -> None:
        new = {c["type"]: c["status"] for c in conditions}
        with self._lock:
            old = self._conditions.get(key) or {}
            self._conditions[key] = new
        for type_, status in old.items():
            if new.get(type_) != status:
                metrics.CONDITIONS.labels(kind=KIND, type=type_, status=status).dec()
        for type_, status in new.items():
            if old.get(type_) != status:
                metrics.CONDITIONS.labels(kind=KIND, type=type_, status=status).inc()


def _status(exc: Exception) -> int | None:
    """The API server's answer to a failed request (None: not an answer of the API server)."""
    return exc.status if isinstance(exc, ApiError) else None


def _summary(router: EgressRouter) -> str:
    spec = router.spec
    rules = len(spec.redirect_rules)
    parts = [f"{rules} redirect rule{'s' if rules != 1 else ''}"] if rules else []
    if spec.fallback_ip:
        parts.append(f"fallback {spec.fallback_ip}")
    return f"redirecting {' and '.join(parts)} from {', '.join(a.ip for a in spec.addresses)}"
