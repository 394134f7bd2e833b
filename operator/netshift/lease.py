"""A `coordination.k8s.io/v1` Lease, pure decisions (client-go's algorithm; the edge: netshift.kube.lease).

Used by the operator's leader election (docs/ha.md) and by an HA EgressRouter's agents
(docs/egressrouter.md, "Active/standby"). Expiry is judged on the observer's own monotonic clock,
never by comparing clocks: a record (holder, renewTime, resourceVersion) that stays unchanged for the
holder's leaseDurationSeconds since this process first saw it is expired. A holder must stop acting
(fencing) once `renew_deadline` passed since the start of its last successful renewal, which is before
any observer (who saw that renewal only after it was written) can call the lease expired.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds; the defaults are the agent's (the operator's, 15/10/2 like controller-runtime, are settings)."""
    duration: float = 3.0        # leaseDurationSeconds (whole seconds in the API)
    renew_deadline: float = 2.0  # a holder that could not renew for this long steps down
    renew_period: float = 1.0    # how often a holder renews
    retry_period: float = 0.5    # how often a candidate looks at the lease

    @classmethod
    def client_go(cls, duration: float, renew_deadline: float, retry_period: float) -> Timing:
        """The operator's (client-go's): a leader renews every retry period, as a candidate retries."""
        return cls(duration=duration, renew_deadline=renew_deadline, renew_period=retry_period,
                   retry_period=retry_period)

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
    duration: float = 0.0  # the holder's leaseDurationSeconds (0: unset)

    @property
    def key(self) -> tuple[str, str, str]:
        """Changes with every write: the lease's age counts from when this last changed."""
        return (self.holder, self.renew_time, self.resource_version)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Record:
        spec = obj.get("spec") or {}
        return cls(holder=spec.get("holderIdentity") or "", renew_time=spec.get("renewTime") or "",
                   transitions=int(spec.get("leaseTransitions") or 0),
                   resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
                   duration=float(spec.get("leaseDurationSeconds") or 0))

    def older_than(self, other: Record) -> bool:
        """Whether this is an earlier version (a watch lagging behind our own write)."""
        try:
            return int(self.resource_version) < int(other.resource_version)
        except ValueError:
            return False


class Action(enum.Enum):
    CREATE = "create"   # no Lease yet: create it holding it
    RENEW = "renew"     # we hold it
    TAKE = "take"       # free or expired: take it over (a new holder)
    WAIT = "wait"       # somebody else holds it, fresh


def decide(me: str, record: Record | None, seen_since: float, now: float, timing: Timing) -> Action:
    """What a candidate does with the Lease as just read; `seen_since`: when this process first saw
    this very record (same key), on its monotonic clock."""
    if record is None:
        return Action.CREATE
    if record.holder == me:
        return Action.RENEW
    if not record.holder or now - seen_since >= (record.duration or timing.duration):
        return Action.TAKE
    return Action.WAIT


def holds(renewed: float | None, now: float, timing: Timing) -> bool:
    """Whether a holder whose last successful renewal started at `renewed` may still act (fencing)."""
    return renewed is not None and now - renewed < timing.renew_deadline


def micro_time(now: datetime.datetime | None = None) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired(name: str, namespace: str, me: str, timing: Timing, *, current: Mapping[str, Any] | None,
            acquire: bool, now: str, release: bool = False) -> dict[str, Any]:
    """The Lease to write, holding it (a new acquisition counts a transition) or released (no holder:
    the next candidate takes it at once). `current`: the object as last read or written; the update
    keeps what others own (labels, ownerReferences) and is guarded by its resourceVersion."""
    spec = dict((current or {}).get("spec") or {})
    transitions = int(spec.get("leaseTransitions") or 0) + (1 if acquire and current is not None else 0)
    spec.update(holderIdentity="" if release else me, leaseDurationSeconds=1 if release else int(timing.duration),
                renewTime=now, leaseTransitions=transitions)
    if acquire:
        spec["acquireTime"] = now
    if current is None:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    return {**current, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
