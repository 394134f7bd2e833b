"""The route admission loop: observed routes in, spec.host and status patches out.

Not pure (it owns in-memory state and issues writes through a small ``RouteApi``), but it does
not know kopf: ``netshift.operator.route`` feeds it. The flow:

- ``observe(body)`` is fed by one LIST at startup and then by every watch event, so the index is
  complete before the first decision: a restart re-derives every decision from the full set and,
  when nothing changed, writes nothing;
- a change of a route's candidate marks the groups of its old and new candidate dirty;
- ``kick()`` (from the event handler) wakes one worker that evaluates only the dirty groups and
  compares each decision with the route's observed status; a patch is issued only on difference;
- a status patch replaces the whole ``status.ingress`` list (other routers' entries copied from
  the observed object) with the resourceVersion it was computed from, so a concurrent writer
  causes a conflict (and a retry on its event), never a lost entry.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from netshift.kube.api import ApiError
from netshift.models import rfc3339_now
from netshift.models.route import Route, WildcardPolicy, admitted_condition

from . import admission, hosts, status, validation
from .admission import AdmissionIndex, Candidate, Decision, Policy

log = logging.getLogger("netshift.route")


# A route whose router may not read its external certificate is checked again this often (the
# route's author may add the Role later, without touching the route).
SECRET_RECHECK_SECONDS = 30.0

SecretAccess = Callable[[str, str], Awaitable[tuple[str, ...]]]


class RouteApi(Protocol):
    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...


@dataclasses.dataclass
class Observed:
    namespace: str
    name: str
    resource_version: str | None
    ingress: list[dict[str, Any]]
    wildcard_policy: str
    cache_key: tuple[Any, ...] | None = None  # what the candidate was computed from
    body: dict[str, Any] | None = None  # kept only for routes with an external certificate


@dataclasses.dataclass
class Stats:
    """Counters for tests and the benchmark (the Prometheus metrics mirror them)."""

    evaluated: int = 0  # route decisions computed
    status_writes: int = 0
    host_writes: int = 0
    conflicts: int = 0
    errors: int = 0


def _rv_newer_or_equal(a: str | None, b: str | None) -> bool:
    try:
        return int(a or 0) >= int(b or 0)
    except ValueError:  # resourceVersions are opaque; etcd's happen to be integers
        return True


class RouteAdmissionController:
    def __init__(self, *, policy: Policy, router_name: str, canonical_hostname: str | None,
                 api: RouteApi, now: Callable[[], str] = rfc3339_now, concurrency: int = 16,
                 on_transition: Callable[[Observed, Decision, Decision | None], None] | None = None,
                 metrics: Any = None, leading: asyncio.Event | None = None,
                 secret_access: SecretAccess | None = None) -> None:
        self.policy = policy
        self.leading = leading  # decisions and writes wait for it (leader election); observing goes on
        # (namespace, Secret) -> the verbs the router's ServiceAccount lacks on it (None: no check)
        self.secret_access = secret_access
        self._secret_answers: dict[str, tuple[str, tuple[str, ...]]] = {}  # uid -> (Secret, missing)
        self._secret_inflight: set[str] = set()
        self.router_name = router_name
        self.canonical_hostname = canonical_hostname
        self.api = api
        self.now = now
        self.index = AdmissionIndex()
        self.observed: dict[str, Observed] = {}
        self.decisions: dict[str, Decision] = {}
        self.host_writes: dict[str, hosts.HostWrite] = {}  # routes waiting for a spec.host write
        self.known_host: dict[str, tuple[str, bool]] = {}  # last spec.host seen (+ generated)
        self.stats = Stats()
        self._dirty: set[tuple[str, str]] = set()
        self._check: set[str] = set()
        self._inflight: dict[str, Any] = {}
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_transition = on_transition
        self._metrics = metrics

    # --- inputs -------------------------------------------------------------------------------

    def observe(self, body: dict[str, Any]) -> str:
        """Record a route as the API server has it (ADDED/MODIFIED/listed); returns its key."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        spec = body.get("spec") or {}
        annotations = meta.get("annotations") or {}
        prev = self.observed.get(uid)
        obs = Observed(
            namespace=meta.get("namespace", ""), name=meta.get("name", ""),
            resource_version=meta.get("resourceVersion"),
            ingress=list((body.get("status") or {}).get("ingress") or []),
            wildcard_policy=spec.get("wildcardPolicy") or WildcardPolicy.NONE.value,
            body=body if (spec.get("tls") or {}).get("externalCertificate") else None,
        )
        self.observed[uid] = obs
        # The candidate depends on the spec (generation moves with it), the annotation that relaxes
        # host checks and, for a missing host, on what we remember of the previous one.
        key = (meta.get("generation"), spec.get("host"),
               annotations.get(validation.ALLOW_NON_DNS_COMPLIANT_HOST_ANNOTATION),
               meta.get("creationTimestamp"))
        if prev is not None and prev.cache_key == key and key[0] is not None and uid not in self.host_writes:
            obs.cache_key = key
            return uid
        obs.cache_key = key
        self.host_writes.pop(uid, None)
        route = Route.from_obj(body)
        if route.spec.host:
            self.known_host[uid] = (route.spec.host,
                                    annotations.get(hosts.HOST_GENERATED_ANNOTATION) == "true")
        previous, previous_generated = self.known_host.get(uid, (None, False))
        if previous is None:
            ours = status.our_entry(obs.ingress, self.router_name)
            previous = (ours or {}).get("host")
        write = hosts.host_to_write(
            spec_host=route.spec.host, subdomain=route.spec.subdomain,
            wildcard_policy=route.spec.effective_wildcard_policy, name=obs.name,
            namespace=obs.namespace, domain=self.policy.domain, previous_host=previous,
            previous_generated=previous_generated)
        host_override = None
        if write is not None:
            allow = validation.allows_non_dns_compliant_host(annotations)
            if not validation.host_errors(write.host, allow):
                # Not served until the host is in the spec; the write brings a new event.
                self.host_writes[uid] = write
                self._replace(uid, None)
                return uid
            host_override = write.host  # reported as InvalidHost, never written
        missing: tuple[str, ...] = ()
        if (secret := admission.external_certificate(route)) and self.secret_access is not None:
            answer = self._secret_answers.pop(uid, None)
            if answer is None or answer[0] != secret:
                # Decided once the API server says what the router may do with the Secret; the
                # previous decision (if any) stands until then.
                self._ask_secret_access(uid, obs.namespace, secret)
                return uid
            missing = answer[1]
        self._replace(uid, admission.candidate(route, self.policy, host=host_override, secret_missing=missing))
        return uid

    def _ask_secret_access(self, uid: str, namespace: str, secret: str) -> None:
        if uid not in self._secret_inflight:
            self._secret_inflight.add(uid)
            self._spawn(self._secret_check(uid, namespace, secret))

    async def _secret_check(self, uid: str, namespace: str, secret: str) -> None:
        assert self.secret_access is not None
        loop = asyncio.get_running_loop()
        try:
            async with self._sem:
                missing = await self.secret_access(namespace, secret)
        except Exception as exc:
            self.stats.errors += 1
            log.warning("route %s: cannot check the router's access to Secret %s/%s: %s",
                        uid, namespace, secret, exc)
            loop.call_later(5.0, self._recheck, uid)
            return
        finally:
            self._secret_inflight.discard(uid)
        if uid not in self.observed:
            return
        self._secret_answers[uid] = (secret, missing)
        self._reobserve(uid)
        if missing:
            loop.call_later(SECRET_RECHECK_SECONDS, self._recheck, uid)

    def _reobserve(self, uid: str) -> None:
        """Compute a route's candidate again from its last event (keeping what our own status
        writes taught us since: a newer resourceVersion and ingress list)."""
        obs = self.observed.get(uid)
        if obs is None or obs.body is None:
            return
        obs.cache_key = None
        self.observe(obs.body)
        current = self.observed[uid]
        if _rv_newer_or_equal(obs.resource_version, current.resource_version):
            current.resource_version, current.ingress = obs.resource_version, obs.ingress
        self.kick(uid)

    def _recheck(self, uid: str) -> None:
        """Ask again about a route's Secret (after a refusal or an error)."""
        if uid in self.observed and uid not in self._secret_inflight:
            self._secret_answers.pop(uid, None)
            self._reobserve(uid)

    def forget(self, uid: str) -> None:
        """The route is gone: its groups are re-evaluated (this promotes the next oldest)."""
        self._replace(uid, None)
        for table in (self.observed, self.decisions, self.host_writes, self.known_host,
                      self._secret_answers):
            table.pop(uid, None)

    def kick(self, uid: str | None = None) -> None:
        """Something happened (to ``uid``): let the worker catch up."""
        if uid is not None:
            self._check.add(uid)
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _replace(self, uid: str, cand: Candidate | None) -> None:
        old = self.index.get(uid)
        keys = self.index.group_keys(old) if old is not None else set()
        if cand is None:
            self.index.discard(uid)
            changed = old is not None
            self.decisions.pop(uid, None)
        else:
            _, changed = self.index.put(cand)
            keys |= self.index.group_keys(cand)
        if changed:
            self._dirty |= keys

    # --- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.leading is not None:
                await self.leading.wait()
            self._wake.clear()
            try:
                self.step()
            except Exception:  # never let one bad route stop admission for all
                log.exception("route admission step failed")
            await asyncio.sleep(0)  # let the event handlers of a burst add their marks first

    def step(self) -> None:
        """Evaluate dirty groups, then issue the writes that are needed (synchronously decided)."""
        dirty, self._dirty = self._dirty, set()
        check, self._check = self._check, set()
        if dirty:
            t0 = time.perf_counter()
            fresh = self.index.evaluate(dirty, self.policy)
            self.stats.evaluated += len(fresh)
            if self._metrics:
                self._metrics.evaluated(len(fresh), time.perf_counter() - t0)
            self.decisions.update(fresh)
            check |= fresh.keys()
        for uid in check:
            self._sync(uid)

    def _sync(self, uid: str) -> None:
        obs = self.observed.get(uid)
        if obs is None:
            return
        write = self.host_writes.get(uid)
        if write is not None:
            self._spawn_host_write(uid, obs, write)
            return
        cand, decision = self.index.get(uid), self.decisions.get(uid)
        if cand is None or decision is None:
            return
        ours = status.our_entry(obs.ingress, self.router_name)
        entry = status.desired_entry(
            router_name=self.router_name, host=cand.host, wildcard_policy=obs.wildcard_policy,
            canonical_hostname=self.canonical_hostname, decision=decision, previous=ours,
            now=self.now())
        desired = status.merged_ingress(obs.ingress, self.router_name, entry)
        if not status.needs_patch(obs.ingress, desired):
            return
        if self._inflight.get(uid) == ("status", _strip_times(desired)):
            return
        self._inflight[uid] = ("status", _strip_times(desired))
        previous = _decision_of(ours)
        self._spawn(self._write_status(uid, obs, desired, decision, previous))

    def _spawn_host_write(self, uid: str, obs: Observed, write: hosts.HostWrite) -> None:
        if self._inflight.get(uid) == ("host", write.host):
            return
        self._inflight[uid] = ("host", write.host)
        patch: dict[str, Any] = {"metadata": {"resourceVersion": obs.resource_version},
                                 "spec": {"host": write.host}}
        if write.generated:
            patch["metadata"]["annotations"] = {hosts.HOST_GENERATED_ANNOTATION: "true"}
        self._spawn(self._write(uid, "host", self.api.patch(obs.namespace, obs.name, patch),
                                obs.resource_version))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_status(self, uid: str, obs: Observed, desired: list[dict[str, Any]],
                            decision: Decision, previous: Decision | None) -> None:
        patch = status.status_patch(desired, obs.resource_version)
        result = await self._write(uid, "status", self.api.patch_status(obs.namespace, obs.name, patch),
                                   obs.resource_version)
        if result is None:
            return
        current = self.observed.get(uid)
        meta = result.get("metadata") or {}
        if current is not None and _rv_newer_or_equal(meta.get("resourceVersion"), current.resource_version):
            current.resource_version = meta.get("resourceVersion")
            current.ingress = list((result.get("status") or {}).get("ingress") or [])
        if self._metrics:
            self._metrics.admission(decision.metric_reason)
        if self._on_transition and previous != decision:
            self._on_transition(obs, decision, previous)

    async def _write(self, uid: str, kind: str, call: Awaitable[dict[str, Any]],
                     sent_rv: str | None) -> dict[str, Any] | None:
        try:
            async with self._sem:
                result = await call
        except ApiError as exc:
            if exc.conflict:
                self.stats.conflicts += 1
                # The newer object's event retries the check; if it came while this write was in
                # flight (and was skipped as a duplicate), check again now.
                current = self.observed.get(uid)
                if current is not None and current.resource_version != sent_rv:
                    asyncio.get_running_loop().call_soon(self.kick, uid)
            elif not exc.not_found:
                self.stats.errors += 1
                log.warning("route %s write failed: %s", kind, exc)
                asyncio.get_running_loop().call_later(5.0, self.kick, uid)
            return None
        except Exception:
            self.stats.errors += 1
            log.exception("route %s write failed", kind)
            asyncio.get_running_loop().call_later(5.0, self.kick, uid)
            return None
        finally:
            self._inflight.pop(uid, None)
        if kind == "status":
            self.stats.status_writes += 1
        else:
            self.stats.host_writes += 1
        return result

    async def drain(self) -> None:
        """Wait until the worker and all writes are done (tests)."""
        while self._wake.is_set() or self._tasks:
            await asyncio.sleep(0)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _strip_times(ingress: list[dict[str, Any]]) -> str:
    # Two desired lists that differ only by "now" are the same write.
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "lastTransitionTime"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return json.dumps(strip(ingress), sort_keys=True)


def _decision_of(entry: dict[str, Any] | None) -> Decision | None:
    cond = admitted_condition(entry)
    if cond is None:
        return None
    if cond.get("status") == "True":
        return Decision(True)
    return Decision(False, cond.get("reason"), cond.get("message"))
