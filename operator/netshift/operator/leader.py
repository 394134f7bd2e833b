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
from typing import Any

import kopf

from netshift.kube import new_api_client
from netshift.kube.api import WRITES, Kube
from netshift.kube.lease import Elector, Timing
from netshift.settings import OperatorSettings

log = logging.getLogger("netshift.leader")

SA_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# A follower's kopf finalizer: on no object, so kopf never removes one.
FOLLOWER_FINALIZER = "netshift.io/follower-writes-nothing"
EXIT_AFTER_LOSS_SECONDS = 20.0  # hard exit if kopf's graceful stop hangs (writes are fenced already)


def lease_namespace(settings: OperatorSettings) -> str:
    if settings.leader_elect_namespace:
        return settings.leader_elect_namespace
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class Leadership:
    """The elector of one operator process and what happens when it leads or loses."""

    def __init__(self, settings: OperatorSettings, leading: asyncio.Event) -> None:
        self.settings = settings
        self.leading = leading
        self.timing = Timing(settings.leader_elect_lease_duration, settings.leader_elect_renew_deadline,
                             settings.leader_elect_retry_period)
        # kopf.run's, set (on kopf's loop) when leadership is lost. Not a threading.Event: kopf
        # would wait for one in an executor thread, which then keeps the process from exiting.
        self.stop_flag = asyncio.Event()
        self.lost = False
        self.elector: Elector | None = None
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
        self.elector = Elector(kube, lease_namespace(self.settings), self.settings.leader_elect_lease_name,
                               identity, self.timing, on_lead=lambda: loop.call_soon_threadsafe(lead),
                               on_lost=lambda: loop.call_soon_threadsafe(self._lose))
        self.elector.start()
        log.info("leader election: %s campaigns for lease %s/%s", identity, self.elector.namespace,
                 self.elector.name)

    def _lose(self) -> None:
        self.lost = True
        self.leading.clear()
        self.stop_flag.set()
        timer = threading.Timer(EXIT_AFTER_LOSS_SECONDS, os._exit, (1,))
        timer.daemon = True
        timer.start()

    async def cleanup(self, **_: Any) -> None:
        if self.elector is not None:
            await asyncio.to_thread(self.elector.release)


def register(registry: kopf.OperatorRegistry, leadership: Leadership) -> None:
    kopf.on.startup(id="leader-election", registry=registry)(leadership.startup)
    kopf.on.cleanup(id="leader-election", registry=registry)(leadership.cleanup)
