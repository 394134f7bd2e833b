"""The Lease: pure decisions (netshift.lease) and the elector (netshift.kube.lease) against a fake API."""
from __future__ import annotations

import datetime
from typing import Any

import pytest

from netshift import lease as le
from netshift.kube.lease import Elector
from tests.support.leases import Clock, FakeLeases

AGENT = le.Timing()  # 3 s / 2 s / 1 s / 0.5 s
OPERATOR = le.Timing.client_go(15, 10, 2)


def rec(holder: str, rv: str = "1", renew: str = "t1", duration: float = 0) -> le.Record:
    return le.Record(holder=holder, renew_time=renew, transitions=0, resource_version=rv, duration=duration)


def test_timing() -> None:
    assert (AGENT.duration, AGENT.renew_deadline, AGENT.renew_period, AGENT.retry_period) == (3, 2, 1, 0.5)
    assert AGENT.problems() == [] and OPERATOR.problems() == []
    assert le.Timing(duration=15, renew_deadline=10, renew_period=2, retry_period=2) == OPERATOR
    assert le.Timing(duration=2, renew_deadline=2).problems()
    assert le.Timing(duration=2.5, renew_deadline=2, renew_period=1).problems()  # whole seconds
    for bad in [(10, 10, 2), (15, 10, 10), (15, 10, 0)]:  # a holder must give up before expiry, retry
        assert le.Timing.client_go(*bad).problems()


def test_record_of_a_lease() -> None:
    obj = {"metadata": {"resourceVersion": "7"},
           "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "t", "leaseTransitions": 3}}
    assert le.Record.of(obj) == le.Record("a", "t", 3, "7", 15.0)
    assert le.Record.of(obj).key == ("a", "t", "7")
    assert le.Record.of({}) == le.Record("", "", 0, "", 0.0)  # released: no holder
    assert rec("a", rv="7").older_than(rec("a", rv="10")) and not rec("a", rv="x").older_than(rec("a"))


@pytest.mark.parametrize(("record", "seen", "now", "want"), [
    (None, 0, 0, le.Action.CREATE),
    (rec("me"), 0, 100, le.Action.RENEW),              # ours, however old
    (rec(""), 10, 10, le.Action.TAKE),                 # released or never held
    (rec("other"), 10, 12.9, le.Action.WAIT),          # unchanged for less than the duration
    (rec("other"), 10, 13.0, le.Action.TAKE),          # unchanged for the duration: expired
    (rec("other", duration=15), 10, 24.9, le.Action.WAIT),  # the holder's own duration counts
    (rec("other", duration=15), 10, 25.0, le.Action.TAKE),
])
def test_decide(record: le.Record | None, seen: float, now: float, want: le.Action) -> None:
    assert le.decide("me", record, seen, now, AGENT) is want


@pytest.mark.parametrize("timing", [AGENT, OPERATOR])
def test_a_holder_stops_acting_at_the_renew_deadline_before_anybody_can_call_the_lease_expired(
        timing: le.Timing) -> None:
    deadline = timing.renew_deadline
    assert le.holds(100.0, 100 + deadline - 0.01, timing) and not le.holds(100.0, 100 + deadline, timing)
    assert not le.holds(None, 0.0, timing)
    # An observer waits the lease duration from when it saw the renewal, which the holder started earlier.
    assert timing.duration > deadline


def test_desired_lease() -> None:
    new = le.desired("l", "ns", "a", OPERATOR, current=None, acquire=True, now="now")
    assert new["metadata"] == {"name": "l", "namespace": "ns"}
    assert new["spec"] == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "now",
                           "renewTime": "now", "leaseTransitions": 0}
    current: dict[str, Any] = {
        "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7", "labels": {"app": "x"}},
        "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "acquireTime": "then", "renewTime": "then",
                 "leaseTransitions": 3}}
    taken = le.desired("l", "ns", "a", AGENT, current=current, acquire=True, now="now")
    assert taken["metadata"] == current["metadata"]  # guarded by its resourceVersion; others' fields kept
    assert taken["spec"] == {"holderIdentity": "a", "leaseDurationSeconds": 3, "acquireTime": "now",
                             "renewTime": "now", "leaseTransitions": 4}
    renewed = le.desired("l", "ns", "a", AGENT, current=taken, acquire=False, now="later")
    assert renewed["spec"]["acquireTime"] == "now" and renewed["spec"]["leaseTransitions"] == 4
    gone = le.desired("l", "ns", "a", AGENT, current=renewed, acquire=False, now="end", release=True)["spec"]
    assert gone["holderIdentity"] == "" and gone["leaseDurationSeconds"] == 1 and gone["renewTime"] == "end"


def test_micro_time() -> None:
    at = datetime.datetime(2026, 12, 7, 3, 4, 5, 60, tzinfo=datetime.UTC)
    assert le.micro_time(at) == "2026-12-07T03:04:05.000060Z"


# --- the elector (fake Lease API, fake clock) ---------------------------------------------------------

def run_for(clock: Clock, seconds: float, *electors: Elector, step: float = 0.1) -> dict[str, list[float]]:
    """Step every elector every `step` seconds; the times at which each held the lease."""
    held: dict[str, list[float]] = {e.me: [] for e in electors}
    end = clock.t + seconds
    while clock.t < end:
        for e in electors:
            if e.step():
                held[e.me].append(clock.t)
        clock.t = round(clock.t + step, 3)
    return held


def electors(api: FakeLeases, clock: Clock, timing: le.Timing = AGENT) -> tuple[Elector, Elector]:
    return Elector(api, "a", timing, clock), Elector(api, "b", timing, clock)  # type: ignore[arg-type]


@pytest.mark.parametrize("timing", [AGENT, OPERATOR])
def test_one_holder_renews_the_other_waits_then_takes_over_after_expiry_only(timing: le.Timing) -> None:
    api, clock = FakeLeases(), Clock()
    a, b = electors(api, clock, timing)
    held = run_for(clock, 10, a, b)
    assert held["a"] and not held["b"]
    assert api.obj and api.obj["spec"]["holderIdentity"] == "a" and api.obj["spec"]["leaseTransitions"] == 0
    assert api.writes == 10 / timing.renew_period  # only a writes: its creation, then a renewal a period
    # a dies (stops stepping): b takes over only after the lease duration, never while a could act
    last_renew = a.renewed
    assert last_renew is not None
    held = run_for(clock, timing.duration + 3, b)
    first = held["b"][0]
    assert timing.duration <= first - last_renew <= timing.duration + timing.retry_period + 0.2
    assert api.obj["spec"]["holderIdentity"] == "b" and api.obj["spec"]["leaseTransitions"] == 1
    # a comes back: its renewal conflicts, then it sees b's lease and waits
    held = run_for(clock, 3, a, b)
    assert not held["a"] and held["b"] and not a.holding()


def test_release_hands_over_at_the_next_retry() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = electors(api, clock)
    run_for(clock, 3, a, b)
    a.release()
    assert not a.holding() and api.obj and api.obj["spec"]["holderIdentity"] == ""
    held = run_for(clock, 1, b)
    assert held["b"] and held["b"][0] - (clock.t - 1) <= AGENT.retry_period + 0.1
    assert not a.step()  # released for good


def test_a_holder_that_cannot_renew_steps_down_before_the_lease_expires() -> None:
    api, clock = FakeLeases(), Clock()
    a, _ = electors(api, clock)
    run_for(clock, 3, a)
    last_renew = a.renewed
    assert last_renew is not None
    api.down = True
    held = run_for(clock, 5, a)
    assert held["a"] and max(held["a"]) < last_renew + AGENT.renew_deadline
    assert not a.holding()


def test_a_watched_lease_is_not_read_and_a_lagging_watch_is_ignored() -> None:
    api, clock = FakeLeases(), Clock()
    a, b = electors(api, clock)
    b.push(None, listed=True)
    run_for(clock, 1, a)
    b.push(api.obj)
    api.down = True  # b must not read
    assert not b.step() and b.record and b.record.holder == "a"
    stale = b.obj
    api.down = False
    run_for(clock, 1, a)
    b.push(api.obj)
    b.step()
    b.push(stale)  # delivered late
    clock.t += 1
    b.step()
    assert b.record == le.Record.of(api.obj or {})
