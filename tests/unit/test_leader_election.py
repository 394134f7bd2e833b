"""Leader election: the pure lease decisions, the fencing gate, and the Elector against a fake API."""
from __future__ import annotations

import time
from typing import Any

import pytest

from netshift.kube import lease
from netshift.kube.api import WRITES, ApiError, Kube, NotLeader
from netshift.kube.lease import Elector, Record, Step, Timing, holds, lease_body, next_step
from netshift.settings import OperatorSettings

T = Timing()  # 15 s / 10 s / 2 s
OTHER = Record(holder="b", duration=15, renew_time="t1", transitions=3)


def test_defaults_are_controller_runtimes() -> None:
    s = OperatorSettings()
    assert (s.leader_elect, s.leader_elect_lease_duration, s.leader_elect_renew_deadline,
            s.leader_elect_retry_period) == (False, 15.0, 10.0, 2.0)
    assert (T.lease_duration, T.renew_deadline, T.retry_period) == (15.0, 10.0, 2.0)


@pytest.mark.parametrize("values", [(10, 10, 2), (15, 10, 10), (15, 10, 0)])
def test_timing_must_let_a_leader_give_up_before_expiry(values: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        Timing(*values)
    with pytest.raises(ValueError, match="renew deadline"):
        OperatorSettings(leader_elect_lease_duration=values[0], leader_elect_renew_deadline=values[1],
                         leader_elect_retry_period=values[2])


@pytest.mark.parametrize(("record", "seen_at", "now", "step"), [
    (None, 0, 0, Step.CREATE),
    (Record("a", 15, "t", 0), 0, 100, Step.RENEW),  # ours, however old
    (Record("", 1, "t", 3), 0, 0, Step.ACQUIRE),  # released
    (OTHER, 0, 14.9, Step.WAIT),  # fresh (since we saw it change)
    (OTHER, 0, 15.0, Step.ACQUIRE),  # not renewed for its duration: expired
    (OTHER, 10, 20, Step.WAIT),  # seen changing later: its duration counts from then
])
def test_next_step(record: Record | None, seen_at: float, now: float, step: Step) -> None:
    assert next_step(record, "a", seen_at, now) is step


def test_a_leader_stops_writing_at_the_renew_deadline_before_the_lease_expires() -> None:
    assert holds(100.0, 109.9, T)
    assert not holds(100.0, 110.0, T)
    assert not holds(None, 0.0, T)
    # A follower waits the lease duration from when it saw the last renewal, which happened after the
    # leader started it: the leader's writes end at least lease_duration - renew_deadline earlier.
    assert T.lease_duration - T.renew_deadline >= 5


def test_lease_bodies() -> None:
    new = lease_body("ns", "l", "a", T, None, Step.CREATE, "now")
    assert new["metadata"] == {"name": "l", "namespace": "ns"}
    assert new["spec"] == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "now",
                           "renewTime": "now", "leaseTransitions": 0}
    current = {"metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"},
               "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "acquireTime": "then",
                        "renewTime": "then", "leaseTransitions": 3}}
    taken = lease_body("ns", "l", "a", T, current, Step.ACQUIRE, "now")
    assert taken["metadata"]["resourceVersion"] == "7"  # the update is guarded
    assert taken["spec"] == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "now",
                             "renewTime": "now", "leaseTransitions": 4}
    renewed = lease_body("ns", "l", "a", T, {**current, "spec": {**current["spec"], "holderIdentity": "a"}},
                         Step.RENEW, "now")
    assert renewed["spec"]["acquireTime"] == "then" and renewed["spec"]["leaseTransitions"] == 3
    gone = lease.released(renewed, "later")["spec"]
    assert gone["holderIdentity"] is None and gone["leaseDurationSeconds"] == 1


class FakeApi:
    """One Lease on an 'API server' with optimistic concurrency; the test moves the clock."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False
        self.writes = 0

    def call(self, method: str, body: Any) -> Any:
        if self.down:
            raise ApiError(0, "unreachable")
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "not found")
            return self.lease
        self.writes += 1
        current_rv = self.lease["metadata"]["resourceVersion"] if self.lease else None
        if (method == "POST") == (self.lease is not None) or body["metadata"].get("resourceVersion") != current_rv:
            raise ApiError(409, "conflict")
        self.rv += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
        return self.lease


class FakeKube(Kube):
    def __init__(self, api: FakeApi) -> None:
        self.fake = api
        self.controller = "leader-election"
        self.fenced = False

    def request(self, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.fake.call(method, kwargs.get("body"))


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _gate_restored():
    yield
    WRITES.open_until(float("inf"))


def test_two_electors_one_leader_takeover_after_expiry_and_fencing() -> None:
    api, clock = FakeApi(), Clock()
    events: list[str] = []
    a = Elector(FakeKube(api), "ns", "l", "a", T, on_lead=lambda: events.append("a leads"),
                on_lost=lambda: events.append("a lost"), clock=clock)
    b = Elector(FakeKube(api), "ns", "l", "b", T, on_lead=lambda: events.append("b leads"),
                on_lost=lambda: events.append("b lost"), clock=clock)
    a.attempt()
    b.attempt()
    assert events == ["a leads"] and a.leading and not b.leading
    writes = api.writes
    for _ in range(5):  # b keeps watching: no writes
        clock.now += 2
        a.attempt()
        b.attempt()
    assert api.writes == writes + 5  # only a's renewals
    api.lease = dict(api.lease or {})  # a stops renewing (killed): b waits the lease duration
    clock.now += 14
    b.attempt()
    assert not b.leading
    clock.now += 1.5
    b.attempt()
    assert b.leading and events == ["a leads", "b leads"]
    assert (api.lease or {})["spec"]["leaseTransitions"] == 1
    # a comes back: its renewal conflicts, then it sees b's lease and knows it lost
    a.attempt()
    a.attempt()
    assert not a.leading


def test_a_leader_that_cannot_renew_closes_the_gate_before_the_lease_expires() -> None:
    api, clock = FakeApi(), Clock()
    lost: list[bool] = []
    a = Elector(FakeKube(api), "ns", "l", "a", T, on_lead=lambda: None, on_lost=lambda: lost.append(True),
                clock=clock)
    a.attempt()
    assert a.leading
    api.down = True
    clock.now += T.renew_deadline - 0.1
    with pytest.raises(ApiError):
        a.attempt()  # the renewal fails; still within the deadline
    assert a.leading and not lost and WRITES.open
    clock.now += 0.2
    a.run()  # the next round fails too, past the deadline: it gives up
    assert lost == [True] and not a.leading
    assert not WRITES.open


def test_closed_gate_refuses_writes_before_sending_but_allows_reads() -> None:
    sent: list[str] = []

    class Api:
        def call_api(self, url: str, method: str, **_: Any) -> Any:
            sent.append(method)
            return type("R", (), {"data": b"{}"})()

    kube = Kube(Api(), "EgressRouter")  # type: ignore[arg-type]
    WRITES.close()
    with pytest.raises(NotLeader):
        kube.request("PATCH", "/x")
    assert kube.request("GET", "/x") == {}
    assert sent == ["GET"]
    unfenced = Kube(Api(), "leader-election", fenced=False)  # type: ignore[arg-type]
    unfenced.request("PUT", "/x")
    WRITES.open_until(time.monotonic() + 5)
    kube.request("PATCH", "/x")
    assert sent == ["GET", "PUT", "PATCH"]
