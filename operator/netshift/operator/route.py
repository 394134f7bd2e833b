"""kopf wiring of Route admission (``netshift.route``; the controller is ``memo.route``), registered
only when Route support is enabled: without the Route RBAC the startup LIST would be retried forever.

Only a startup handler and an event handler: no on.create/on.update handlers, so kopf writes no
progress or diff-base annotations and an idle cluster sees no writes at all.

The controller must decide from the complete set of routes (a decision taken on a partial set
would be written and then flipped). So the startup handler lists all watched routes once, before
kopf starts watching; the watch events then keep the index current. (kopf's own indexes would also
hold handlers until the initial listing is done, but every held event wakes every other one:
quadratic in the number of routes, minutes at 10,000.)
"""
from __future__ import annotations

from typing import Any

import kopf

from netshift import metrics
from netshift.models.route import GROUP, PLURAL, VERSION
from netshift.route import admission
from netshift.route.api import KubeRouteApi
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


async def _startup(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings: OperatorSettings = memo.settings
    if "route" not in memo:  # kopf retries a failed startup handler
        api = KubeRouteApi()
        memo.route = RouteAdmissionController(
            policy=admission.policy_from_config(settings), router_name=settings.router_name,
            canonical_hostname=settings.router_canonical_hostname, api=api,
            on_transition=api.post_transition, metrics=_Metrics(), leading=memo.leading)
    ctrl = memo.route
    api = ctrl.api
    assert isinstance(api, KubeRouteApi)
    for body in await api.list_routes(list(settings.namespaces)):
        ctrl.observe(body)
    logger.info("route admission: %d routes indexed", len(ctrl.observed))


async def _event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    ctrl = memo.route
    obj = event["object"]
    if event["type"] == "DELETED":
        meta = obj.get("metadata") or {}
        ctrl.forget(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
        ctrl.kick()
    else:
        ctrl.kick(ctrl.observe(dict(obj)))


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(id="netshift-route-index", registry=registry)(_startup)
    kopf.on.event(GROUP, VERSION, PLURAL, id="netshift-route-admission", registry=registry)(_event)
