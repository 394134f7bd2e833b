"""A `coordination.k8s.io/v1` Lease: who holds it, pure decisions (the edge: netshift.kube.lease).

Expiry is judged the client-go way, on the observer's own monotonic clock and never by comparing
clocks: a record (holder, renewTime, resourceVersion) that stays unchanged for the lease duration
since this process first saw it is expired. A holder must stop acting before that can happen: it
steps down once `renew_deadline` passed since the start of its last successful renewal, which is
before any observer (who saw that renewal only after it was written) can call the lease expired.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timing:
    duration: float = 3.0        # leaseDurationSeconds (whole seconds in the API)
    renew_deadline: float = 2.0  # a holder that could not renew for this long steps down
    renew_period: float = 1.0    # how often a holder renews
    retry_period: float = 0.5    # how often a candidate looks at the lease

    def problems(self) -> list[str]:
        out = []
        if not (self.retry_period > 0 and 0 < self.renew_period < self.renew_deadline < self.duration):
            out.append("need 0 < renew period < renew deadline < lease duration, and a retry period > 0")
        if self.duration != int(self.duration):
            out.append("the lease duration is whole seconds (leaseDurationSeconds)")
        return out


@dataclasses.dataclass(frozen=True)
class Record:
    """What matters of a Lease object."""
    holder: str
    renew_time: str
    transitions: int
    resource_version: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.holder, self.renew_time, self.resource_version)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Record:
        spec = obj.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "", renew_time=spec.get("renewTime") or "",
                   transitions=int(spec.get("leaseTransitions") or 0),
                   resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""))


class Action(enum.Enum):
    CREATE = "create"   # no Lease yet: create it holding it
    RENEW = "renew"     # we hold it
    TAKE = "take"       # free or expired: take it over (a new holder)
    WAIT = "wait"       # somebody else holds it


def decide(me: str, record: Record | None, seen_since: float, now: float, timing: Timing) -> Action:
    """What a candidate does with the Lease as just read; `seen_since`: when this process first saw
    this very record (same key), on its monotonic clock."""
    if record is None:
        return Action.CREATE
    if record.holder == me:
        return Action.RENEW
    if not record.holder or now - seen_since >= timing.duration:
        return Action.TAKE
    return Action.WAIT


def must_step_down(last_renew_started: float, now: float, timing: Timing) -> bool:
    """Whether a holder must stop acting: its last successful renewal started too long ago."""
    return now - last_renew_started >= timing.renew_deadline


def micro_time(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired(name: str, namespace: str, me: str, timing: Timing, *, previous: Record | None,
            acquire: bool, now: str, release: bool = False) -> dict[str, Any]:
    """The Lease object to write: holding it (a new acquisition counts a transition) or released."""
    transitions = (previous.transitions if previous else 0) + (1 if acquire and previous else 0)
    spec: dict[str, Any] = {"holderIdentity": "" if release else me,
                            "leaseDurationSeconds": 1 if release else int(timing.duration),
                            "renewTime": now, "leaseTransitions": transitions}
    if acquire:
        spec["acquireTime"] = now
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None and previous.resource_version:
        meta["resourceVersion"] = previous.resource_version  # optimistic concurrency: one winner
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}
