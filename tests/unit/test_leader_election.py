"""Leader election: the settings, the fencing gate, and the operator's campaign against a fake API
(the Lease decisions and the elector: test_lease.py)."""
from __future__ import annotations

import time
from typing import Any

import pytest

from netshift.kube.api import WRITES, Kube, NotLeader
from netshift.kube.lease import Elector
from netshift.operator.leader import Campaign, timing
from netshift.settings import OperatorSettings
from tests.support.leases import Clock, FakeLeases

T = timing(OperatorSettings())


def test_defaults_are_controller_runtimes() -> None:
    s = OperatorSettings()
    assert (s.leader_elect, s.leader_elect_lease_duration, s.leader_elect_renew_deadline,
            s.leader_elect_retry_period) == (False, 15.0, 10.0, 2.0)
    assert (T.duration, T.renew_deadline, T.renew_period, T.retry_period) == (15.0, 10.0, 2.0, 2.0)


@pytest.mark.parametrize("values", [(10, 10, 2), (15, 10, 10), (15, 10, 0), (15.5, 10, 2)])
def test_timing_must_let_a_leader_give_up_before_expiry(values: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match=r"renew deadline|whole seconds"):
        OperatorSettings(leader_elect_lease_duration=values[0], leader_elect_renew_deadline=values[1],
                         leader_elect_retry_period=values[2])


@pytest.fixture(autouse=True)
def _gate_restored():
    yield
    WRITES.open_until(float("inf"))


def campaign(api: FakeLeases, clock: Clock, me: str, events: list[str]) -> Campaign:
    elector = Elector(api, me, T, clock)  # type: ignore[arg-type]
    return Campaign(elector, on_lead=lambda: events.append(f"{me} leads"),
                    on_lost=lambda: events.append(f"{me} lost"), tick=0)


def test_two_campaigns_one_leader_and_the_gate_open_only_while_it_holds() -> None:
    api, clock, events = FakeLeases(), Clock(), []
    a, b = campaign(api, clock, "a", events), campaign(api, clock, "b", events)
    assert a.round() and b.round()
    assert events == ["a leads"] and a.leading and not b.leading
    for _ in range(5):
        clock.t += 2
        assert a.round() and b.round()
    assert events == ["a leads"] and api.writes == 6  # only a's creation and renewals


def test_a_leader_that_cannot_renew_closes_the_gate_before_the_lease_expires() -> None:
    api, clock, events = FakeLeases(), Clock(), []
    a = campaign(api, clock, "a", events)
    a.round()
    renewed = a.elector.renewed
    assert a.leading and renewed is not None
    api.down = True
    while clock.t < renewed + T.renew_deadline - 0.1:
        clock.t += 0.1
        assert a.round()  # the renewals fail; still within the deadline
    assert a.leading and events == ["a leads"]
    clock.t += 0.2
    a.run()  # past the deadline: it gives up
    assert events == ["a leads", "a lost"] and not a.leading
    assert not WRITES.open
    assert renewed + T.renew_deadline < renewed + T.duration  # before any follower may take over


def test_release_closes_the_gate_and_hands_the_lease_back() -> None:
    api, clock, events = FakeLeases(), Clock(), []
    a = campaign(api, clock, "a", events)
    a.round()
    a.release()
    assert not WRITES.open and api.obj and api.obj["spec"]["holderIdentity"] == ""


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
