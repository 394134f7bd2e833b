"""Wiring of Route admission (``netshift.route``; the controller is ``memo.route``), registered only
when Route support is enabled: without the Route RBAC the listing would be retried forever.

Routes are not watched by kopf but by ``netshift.kube``'s list-watch (one per watched namespace, or
one for all), on threads that hand every listing and event to the event loop; the controller keeps
only what admission needs of a route. A kopf watch would keep a per-object record for each route
(10,000 routes are tens of MiB with the bodies it parses) and process every event through its
handler machinery, for a controller that needs neither: it writes no annotations, runs no
per-object handlers, and decides from its own index.

The controller must decide from the complete set of routes (a decision taken on a partial set
would be written and then flipped), so the startup handler returns once every initial listing is
in. A relisting (after a watch gap) replaces what the listing covers: routes deleted meanwhile are
forgotten.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import kopf

from netshift import metrics
from netshift.kube import Kube, new_api_client
from netshift.kube.watch import ListWatch
from netshift.models.route import KIND
from netshift.route import admission
from netshift.route.api import KubeRouteApi, scopes, watched
from netshift.route.controller import RouteAdmissionController
from netshift.settings import OperatorSettings


class _Metrics:
    @staticmethod
    def evaluated(count: int, seconds: float) -> None:
        metrics.ROUTE_EVALUATIONS.inc(count)
        metrics.ROUTE_EVALUATION_SECONDS.observe(seconds)

    @staticmethod
    def admission(reason: str) -> None:
        metrics.ADMISSIONS.labels(reason).inc()


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


class Feed:
    """Hands the list-watches' listings and events (from their threads) to the controller (on the
    event loop)."""

    def __init__(self, ctrl: RouteAdmissionController, patterns: list[str],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.ctrl = ctrl
        self.patterns = patterns
        self.loop = loop
        self.scopes = scopes(patterns)
        self.listed = {scope: asyncio.Event() for scope in self.scopes}
        self.stop = threading.Event()

    def _in(self, scope: str | None, obj: dict[str, Any]) -> bool:
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        return namespace == scope if scope is not None else watched(namespace, self.patterns)

    def replace(self, scope: str | None, items: list[dict[str, Any]]) -> None:
        items = [i for i in items if self._in(scope, i)]
        listed = {_key(i) for i in items}
        for uid, obs in list(self.ctrl.observed.items()):
            if uid not in listed and (scope is None or obs.namespace == scope):
                self.ctrl.forget(uid)
        for body in items:
            self.ctrl.observe(body)
        self.ctrl.kick()
        self.listed[scope].set()

    def event(self, scope: str | None, type_: str, obj: dict[str, Any]) -> None:
        if not self._in(scope, obj):
            return
        if type_ == "DELETED":
            self.ctrl.forget(_key(obj))
            self.ctrl.kick()
        else:
            self.ctrl.kick(self.ctrl.observe(obj))

    def watches(self, kube: Callable[[], Kube]) -> list[ListWatch]:
        def to_loop(fn: Callable[..., None], scope: str | None) -> Callable[..., None]:
            def call(*args: Any) -> None:
                self.loop.call_soon_threadsafe(fn, scope, *args)
            return call
        return [ListWatch(kube(), KIND, to_loop(self.replace, scope), to_loop(self.event, scope), namespace=scope)
                for scope in self.scopes]

    def start(self) -> None:
        # One connection per watch: each holds a streaming request open.
        for i, watch in enumerate(self.watches(lambda: Kube(new_api_client("operator"), controller="route"))):
            threading.Thread(target=watch.run, args=(self.stop,), daemon=True, name=f"route-watch-{i}").start()

    async def synced(self) -> None:
        """Once every initial listing is in the controller."""
        await asyncio.gather(*(e.wait() for e in self.listed.values()))


async def _startup(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings: OperatorSettings = memo.settings
    if "route" not in memo:  # kopf retries a failed startup handler
        api = KubeRouteApi()
        memo.route = RouteAdmissionController(
            policy=admission.policy_from_config(settings), router_name=settings.router_name,
            canonical_hostname=settings.router_canonical_hostname, api=api,
            on_transition=api.post_transition, metrics=_Metrics())
    if "route_feed" not in memo:
        memo.route_feed = Feed(memo.route, list(settings.namespaces), asyncio.get_running_loop())
        memo.route_feed.start()
    await memo.route_feed.synced()
    logger.info("route admission: %d routes indexed", len(memo.route.observed))


async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "route_feed" in memo:
        memo.route_feed.stop.set()  # the threads are daemons blocked in reads: they end with the process


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(id="netshift-route-index", registry=registry)(_startup)
    kopf.on.cleanup(id="netshift-route-watch", registry=registry)(_cleanup)
