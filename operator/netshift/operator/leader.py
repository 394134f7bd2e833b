"""kopf wiring of leader election (`netshift operator --leader-elect`, docs/ha.md).

A follower runs kopf as usual (its watches and indexes keep the caches warm, events queue work) but
writes nothing: the controllers wait on ``memo.leading``, the one access layer refuses writes
(``kube.api.WRITES``), and kopf itself is kept from writing (no Events; the finalizer name it would
remove from objects of older versions is one that no object carries). On taking the lease the
controllers reconcile everything once. A leader that cannot renew in time has stopped writing before
its lease can expire; it then stops kopf and the process exits with status 1, so that the Deployment
restarts it as a follower (simpler than restarting every controller in place, and as fast).
"""
from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import kopf

from netshift import metrics
from netshift.kube import new_api_client
from netshift.kube.api import WRITES, Kube
from netshift.kube.lease import Elector, LeaseClient
from netshift.lease import Timing
from netshift.settings import OperatorSettings

log = logging.getLogger("netshift.leader")

SA_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# A follower's kopf finalizer: on no object, so kopf never removes one.
FOLLOWER_FINALIZER = "netshift.io/follower-writes-nothing"
EXIT_AFTER_LOSS_SECONDS = 20.0  # hard exit if kopf's graceful stop hangs (writes are fenced already)
TICK_SECONDS = 0.1  # how often the campaign looks at the elector (it renews every retry period)


def lease_namespace(settings: OperatorSettings) -> str:
    if settings.leader_elect_namespace:
        return settings.leader_elect_namespace
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def timing(settings: OperatorSettings) -> Timing:
    return Timing.client_go(settings.leader_elect_lease_duration, settings.leader_elect_renew_deadline,
                            settings.leader_elect_retry_period)


class Campaign:
    """Runs the elector in a thread of its own (renewals go on while kopf's event loop is busy) and
    opens ``kube.api.WRITES`` only while the lease is held and fresh: until ``renew_deadline`` after
    the start of the last successful renewal, which ends before any follower may take the lease over.
    A leader that cannot renew in time closes the gate and loses (``on_lost``, once): it never leads
    twice."""

    def __init__(self, elector: Elector, *, on_lead: Callable[[], object], on_lost: Callable[[], object],
                 tick: float = TICK_SECONDS) -> None:
        self.elector, self.on_lead, self.on_lost, self.tick = elector, on_lead, on_lost, tick
        self.led = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="leader-election", daemon=True)

    @property
    def leading(self) -> bool:
        return self.led and self.elector.holding()

    def round(self) -> bool:
        """One look: step the elector and gate the writes; whether to go on campaigning."""
        elector = self.elector
        holding = elector.step()
        if elector.record is not None:
            metrics.LEASE_TRANSITIONS.set(elector.record.transitions)
        if holding and elector.renewed is not None:
            WRITES.open_until(elector.renewed + elector.timing.renew_deadline)
            if not self.led:
                self.led = True
                metrics.LEADER.set(1)
                log.info("leader election: %s leads (lease %s/%s, transitions %d)", elector.me,
                         elector.client.namespace, elector.client.name,
                         elector.record.transitions if elector.record else 0)
                self.on_lead()
        elif self.led:
            WRITES.close()
            metrics.LEADER.set(0)
            log.error("leader election: lease %s/%s not renewed within %.0fs; writes stopped",
                      elector.client.namespace, elector.client.name, elector.timing.renew_deadline)
            self.on_lost()
            return False
        return True

    def run(self) -> None:
        while not self.stop.is_set() and self.round():
            self.stop.wait(self.tick)

    def start(self) -> None:
        metrics.LEADER.set(0)
        self.thread.start()

    def release(self) -> None:
        """Clean exit: stop campaigning; a leader closes the gate, then hands the lease back."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.elector.timing.retry_period + 35)
        if self.leading:
            WRITES.close()
            metrics.LEADER.set(0)
        self.elector.release()


class Leadership:
    """The elector of one operator process and what happens when it leads or loses."""

    def __init__(self, settings: OperatorSettings, leading: asyncio.Event) -> None:
        self.settings = settings
        self.leading = leading
        self.timing = timing(settings)
        # kopf.run's, set (on kopf's loop) when leadership is lost. Not a threading.Event: kopf
        # would wait for one in an executor thread, which then keeps the process from exiting.
        self.stop_flag = asyncio.Event()
        self.lost = False
        self.campaign: Campaign | None = None
        WRITES.close()

    async def startup(self, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        """Registered after the house settings: kopf writes nothing until this process leads."""
        house = (settings.persistence.finalizer, settings.posting.enabled)
        settings.persistence.finalizer, settings.posting.enabled = FOLLOWER_FINALIZER, False
        loop = asyncio.get_running_loop()

        def lead() -> None:
            settings.persistence.finalizer, settings.posting.enabled = house
            self.leading.set()
            memo.egressrouter.enqueue_all()  # the full resync; routes were all marked when observed

        kube = Kube(new_api_client("operator-leader-election"), controller="leader-election", fenced=False)
        identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        # A renewal slower than a retry period is late anyway: the next round retries.
        client = LeaseClient(kube, lease_namespace(self.settings), self.settings.leader_elect_lease_name,
                             timeout=self.timing.retry_period)
        self.campaign = Campaign(Elector(client, identity, self.timing),
                                 on_lead=lambda: loop.call_soon_threadsafe(lead),
                                 on_lost=lambda: loop.call_soon_threadsafe(self._lose))
        self.campaign.start()
        log.info("leader election: %s campaigns for lease %s/%s", identity, client.namespace, client.name)

    def _lose(self) -> None:
        self.lost = True
        self.leading.clear()
        self.stop_flag.set()
        timer = threading.Timer(EXIT_AFTER_LOSS_SECONDS, os._exit, (1,))
        timer.daemon = True
        timer.start()

    async def cleanup(self, **_: Any) -> None:
        if self.campaign is not None:
            await asyncio.to_thread(self.campaign.release)


def register(registry: kopf.OperatorRegistry, leadership: Leadership) -> None:
    kopf.on.startup(id="leader-election", registry=registry)(leadership.startup)
    kopf.on.cleanup(id="leader-election", registry=registry)(leadership.cleanup)
