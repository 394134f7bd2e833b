"""Reading and writing one `coordination.k8s.io/v1` Lease, and the candidate that does it (the
decisions: netshift.lease). Used by the operator's leader election (netshift.operator.leader) and by
an HA EgressRouter's agents (netshift.agent.standby).

A write is an update (PUT) of the object as last read or written, with its resourceVersion: of two
candidates, one wins and the other gets 409. An update rather than a merge patch: client-go does the
same, the operator's own Role grants get/update only, and the object as read carries what others own
(the labels and ownerReferences the operator applies to a router's Lease).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from netshift.lease import Action, Record, Timing, decide, desired, holds, micro_time

from .api import ApiError, Kube, path
from .watch import ListWatch

log = logging.getLogger("netshift.lease")


class LeaseClient:
    """Read and write one Lease; every request bounded by `timeout` seconds (a holder must be able to
    step down in time even when the API server does not answer)."""

    def __init__(self, kube: Kube, namespace: str, name: str, timeout: float) -> None:
        self.kube, self.namespace, self.name, self.timeout = kube, namespace, name, timeout

    def get(self) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.kube.request("GET", path("Lease", self.namespace, self.name),
                                                    resource="leases", timeout=self.timeout)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return obj

    def write(self, obj: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """Create, or update at the object's resourceVersion (409: somebody else wrote first)."""
        if create:
            out = self.kube.request("POST", path("Lease", self.namespace), body=obj, resource="leases",
                                    timeout=self.timeout)
        else:
            out = self.kube.request("PUT", path("Lease", self.namespace, self.name), body=obj, resource="leases",
                                    timeout=self.timeout)
        written: dict[str, Any] = out
        return written


class Elector:
    """One candidate for one Lease; `step()` is called often and acts when its period is due."""

    def __init__(self, client: LeaseClient, me: str, timing: Timing,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.me, self.timing, self.clock = client, me, timing, clock
        self.obj: dict[str, Any] | None = None  # the Lease as last read or written
        self.record: Record | None = None
        self.seen_since = 0.0                   # when this record was first seen
        self.renewed: float | None = None       # start of our last successful renewal (holding)
        self.next_try = 0.0
        self._pushed: list[dict[str, Any] | None] = []  # the Lease as a watch delivered it (newest last)
        self.watched = False                    # a watch keeps the record current: no reads
        self.released = False                   # for good: no more steps
        self._lock = threading.Lock()           # guards what the watch pushes
        self._io = threading.Lock()             # one step or release at a time

    def push(self, obj: dict[str, Any] | None, *, listed: bool = False) -> None:
        """The Lease changed (from a watch): look at it at the next step instead of reading it."""
        with self._lock:
            self._pushed.append(obj)
            self.next_try = 0.0
            self.watched = self.watched or listed

    def watch(self, stop: threading.Event) -> None:
        """Push every change of the Lease (run in a thread until `stop`)."""
        ListWatch(self.client.kube, "Lease", params=[("fieldSelector", f"metadata.name={self.client.name}")],
                  namespace=self.client.namespace, watch_seconds=60,
                  on_list=lambda items: self.push(items[0] if items else None, listed=True),
                  on_event=lambda kind, obj: self.push(None if kind == "DELETED" else obj)).run(stop)

    def holding(self) -> bool:
        return holds(self.renewed, self.clock(), self.timing)

    def step(self) -> bool:
        """Renew or try to acquire when due; whether we hold the Lease now."""
        with self._io:
            now = self.clock()
            if self.released or now < self.next_try:
                return self.holding()
            try:
                self._step(now)
            except Exception as exc:
                log.warning("lease %s/%s: %s", self.client.namespace, self.client.name, exc)
            self.next_try = now + (self.timing.renew_period if self.holding() else self.timing.retry_period)
            return self.holding()

    def _step(self, now: float) -> None:
        with self._lock:
            pushed, self._pushed = self._pushed[-1:], []
        if pushed:
            self._saw(pushed[0], now)
        elif self.obj is None or (self.renewed is None and not self.watched):
            self._saw(self.client.get(), now)
        action = decide(self.me, self.record, self.seen_since, now, self.timing)
        if action is Action.WAIT:
            self.renewed = None  # somebody else holds it: if we held it, we lost it
            return
        obj = desired(self.client.name, self.client.namespace, self.me, self.timing, current=self.obj,
                      acquire=action is not Action.RENEW, now=micro_time())
        try:
            self._saw(self.client.write(obj, create=action is Action.CREATE), now)
        except Exception:
            self.obj = self.record = None  # read again next time: somebody else may have written it
            if not self.holding():
                self.renewed = None
            raise
        self.renewed = now

    def _saw(self, obj: dict[str, Any] | None, now: float) -> None:
        record = Record.of(obj) if obj is not None else None
        if record is not None and self.record is not None and record.older_than(self.record):
            return  # the watch lags behind our own write
        if record is None or self.record is None or record.key != self.record.key:
            self.seen_since = now
        self.obj, self.record = obj, record

    def release(self) -> None:
        """Give the Lease up for good (after stepping down): the next candidate need not wait for it
        to expire."""
        with self._io:
            self.released = True
            if self.record is not None and self.record.holder == self.me:
                self._release()

    def _release(self) -> None:
        obj = desired(self.client.name, self.client.namespace, self.me, self.timing, current=self.obj,
                      acquire=False, now=micro_time(), release=True)
        try:
            self.client.write(obj, create=False)
            log.info("released lease %s/%s", self.client.namespace, self.client.name)
        except Exception as exc:  # it expires by itself
            log.warning("cannot release lease %s/%s: %s", self.client.namespace, self.client.name, exc)
        self.renewed = None
