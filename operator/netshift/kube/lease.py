"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm) and the fencing of writes.

The decisions are pure (``next_step``, ``holds``): what to do with the lease as last observed, and
whether a leader may still write. ``Elector`` runs them in a thread of its own (renewals go on while
kopf's event loop is busy) and opens ``kube.api.WRITES`` only while the lease is held and fresh:

- a candidate takes a lease that is absent, released (no holder), or whose record has not changed
  for the holder's leaseDurationSeconds, measured on the local monotonic clock from when this
  process saw the record change (no wall-clock comparison between machines);
- the leader renews every retry period; writes are allowed until ``renew_deadline`` after the start
  of its last successful renewal. The deadline is shorter than the lease duration, so a leader that
  cannot renew stops writing before any follower may take the lease over (fencing). It then exits.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from netshift import metrics

from .api import WRITES, ApiError, Kube

log = logging.getLogger("netshift.leader")


@dataclasses.dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go's rule: a leader must give up before the lease expires, and try more than once.
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("leader election needs lease duration > renew deadline > retry period > 0")


@dataclasses.dataclass(frozen=True)
class Record:
    """The Lease's spec as observed."""

    holder: str
    duration: float
    renew_time: str
    transitions: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(spec.get("holderIdentity") or "", float(spec.get("leaseDurationSeconds") or 0),
                   spec.get("renewTime") or "", int(spec.get("leaseTransitions") or 0))


class Step(enum.Enum):
    CREATE = "create"  # no lease: create it, held by us
    RENEW = "renew"  # ours
    ACQUIRE = "acquire"  # released or expired: take it over
    WAIT = "wait"  # another holder's, fresh


def next_step(record: Record | None, me: str, seen_at: float, now: float) -> Step:
    """What a process does with the lease; ``seen_at``: when (monotonic) the record last changed."""
    if record is None:
        return Step.CREATE
    if record.holder == me:
        return Step.RENEW
    if not record.holder or now - seen_at >= record.duration:
        return Step.ACQUIRE
    return Step.WAIT


def holds(renewed_at: float | None, now: float, timing: Timing) -> bool:
    """Whether a leader whose last successful renewal started at ``renewed_at`` may still write."""
    return renewed_at is not None and now - renewed_at < timing.renew_deadline


def lease_body(namespace: str, name: str, me: str, timing: Timing, current: dict[str, Any] | None,
               step: Step, now: str) -> dict[str, Any]:
    """The Lease to write for ``step`` (``current``: as read; its resourceVersion guards the update)."""
    spec = dict((current or {}).get("spec") or {})
    if step is not Step.RENEW:
        spec["acquireTime"] = now
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (current is not None)
    spec.update(holderIdentity=me, leaseDurationSeconds=int(timing.lease_duration), renewTime=now)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if current is not None:
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}


def released(lease: dict[str, Any], now: str) -> dict[str, Any]:
    """The lease handed back on a clean exit: no holder, so a follower takes it at its next try."""
    spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now}
    return {**lease, "spec": spec}


def micro_now() -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Campaigns for the lease until stopped or until leadership is lost (``on_lost``, once)."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, timing: Timing, *,
                 on_lead: Callable[[], object], on_lost: Callable[[], object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.namespace, self.name, self.identity, self.timing = kube, namespace, name, identity, timing
        self.on_lead, self.on_lost, self.clock = on_lead, on_lost, clock
        self.url = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.lease: dict[str, Any] | None = None  # as last read or written
        self.record: Record | None = None
        self.seen_at = clock()
        self.led = False  # this process has led (it never leads twice: losing ends the process)
        self.renewed_at: float | None = None  # start of the last successful renewal
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="leader-election", daemon=True)

    @property
    def leading(self) -> bool:
        return self.led and holds(self.renewed_at, self.clock(), self.timing)

    def _observe(self, lease: dict[str, Any] | None) -> None:
        self.lease = lease
        record = Record.of(lease) if lease else None
        if record != self.record:
            self.record, self.seen_at = record, self.clock()
            if record:
                metrics.LEASE_TRANSITIONS.set(record.transitions)

    def _read(self) -> None:
        try:
            self._observe(self.kube.request("GET", self.url, resource="leases"))
        except ApiError as exc:
            if not exc.not_found:
                raise
            self._observe(None)

    def attempt(self) -> None:
        """One round: read the lease (unless we hold it: our last write is current), then act."""
        started = self.clock()
        if not self.leading or self.lease is None:
            self._read()
        step = next_step(self.record, self.identity, self.seen_at, started)
        if step is Step.WAIT:
            self.renewed_at = None  # someone else holds it: if we led, we lost
            return
        body = lease_body(self.namespace, self.name, self.identity, self.timing, self.lease, step, micro_now())
        try:
            if step is Step.CREATE:
                written = self.kube.request("POST", self.url.rsplit("/", 1)[0], body=body, resource="leases")
            else:
                written = self.kube.request("PUT", self.url, body=body, resource="leases")
        except ApiError as exc:
            if exc.conflict:  # another candidate was faster, or our copy is stale: read next round
                self.lease = None
                return
            raise
        self._observe(written)
        self.renewed_at = started
        WRITES.open_until(started + self.timing.renew_deadline)
        if not self.led:
            self.led = True
            metrics.LEADER.set(1)
            log.info("leader election: %s leads (lease %s/%s, transitions %d)", self.identity,
                     self.namespace, self.name, self.record.transitions if self.record else 0)
            self.on_lead()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.attempt()
            except Exception as exc:
                log.warning("leader election: lease %s/%s: %s", self.namespace, self.name, exc)
            if self.led and not self.leading:
                WRITES.close()
                metrics.LEADER.set(0)
                log.error("leader election: lease %s/%s not renewed within %.0fs; writes stopped",
                          self.namespace, self.name, self.timing.renew_deadline)
                self.on_lost()
                return
            self.stop.wait(self.timing.retry_period)

    def start(self) -> None:
        metrics.LEADER.set(0)
        self.thread.start()

    def release(self) -> None:
        """Clean exit: stop campaigning; a leader closes the gate, then hands the lease back."""
        self.stop.set()
        self.thread.join(timeout=self.timing.retry_period + 35)
        if not self.leading or self.lease is None:
            return
        WRITES.close()
        metrics.LEADER.set(0)
        try:
            self.kube.request("PUT", self.url, body=released(self.lease, micro_now()), resource="leases")
            log.info("leader election: lease %s/%s released", self.namespace, self.name)
        except Exception as exc:  # it expires by itself
            log.warning("leader election: cannot release lease %s/%s: %s", self.namespace, self.name, exc)
