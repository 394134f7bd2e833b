"""kopf wiring of Route admission (the logic lives in ``netshift.route``).

Only a startup handler and an event handler: no on.create/on.update handlers, so kopf writes no
progress or diff-base annotations and an idle cluster sees no writes at all.

The controller must decide from the complete set of routes (a decision taken on a partial set
would be written and then flipped). So the startup handler lists all watched routes once, before
kopf starts watching; the watch events then keep the index current. (kopf's own indexes would also
hold handlers until the initial listing is done, but every held event wakes every other one:
quadratic in the number of routes, minutes at 10,000.)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import functools
import logging
from typing import Any

import kopf

from netshift import config, metrics
from netshift.models.route import GROUP, PLURAL, VERSION
from netshift.route import admission
from netshift.route.controller import ApiError, Observed, RouteAdmissionController

log = logging.getLogger("netshift.route")


class KubeRouteApi:
    """Route patches through the ``kubernetes`` client, off the event loop."""

    def __init__(self, threads: int = 16) -> None:
        from kubernetes import client

        from netshift.kubeclient import new_api_client

        self._api = client.CustomObjectsApi(new_api_client("operator", pool_size=threads))
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="route-api")

    async def _call(self, verb: str, resource: str, fn, *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        metrics.API_REQUESTS.labels("route", verb, resource).inc()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "") from None

    async def list_routes(self, namespaces: list[str]) -> list[dict[str, Any]]:
        """Every route of the watched namespaces (all when empty), page by page."""
        exact = [n for n in namespaces if not any(ch in n for ch in "*?[!")]
        scopes: list[str | None] = [*exact] if namespaces and len(exact) == len(namespaces) else [None]
        items: list[dict[str, Any]] = []
        for ns in scopes:
            token = None
            while True:
                kwargs = {"limit": 500, **({"_continue": token} if token else {})}
                if ns is None:
                    page = await self._call("list", "routes", functools.partial(
                        self._api.list_cluster_custom_object, GROUP, VERSION, PLURAL, **kwargs))
                else:
                    page = await self._call("list", "routes", functools.partial(
                        self._api.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, **kwargs))
                items.extend(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        if namespaces and scopes == [None]:
            items = [i for i in items if _watched(i["metadata"]["namespace"], namespaces)]
        return items

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._call("patch", "routes/status",
                                self._api.patch_namespaced_custom_object_status,
                                GROUP, VERSION, namespace, PLURAL, name, patch)

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._call("patch", "routes", self._api.patch_namespaced_custom_object,
                                GROUP, VERSION, namespace, PLURAL, name, patch)


class _Metrics:
    @staticmethod
    def evaluated(count: int, seconds: float) -> None:
        metrics.ROUTE_EVALUATIONS.inc(count)
        metrics.ROUTE_EVALUATION_SECONDS.observe(seconds)

    @staticmethod
    def admission(reason: str) -> None:
        metrics.ADMISSIONS.labels(reason).inc()

    @staticmethod
    def write(kind: str) -> None:
        pass  # counted per request in KubeRouteApi


def _post_event(obs: Observed, decision: admission.Decision, previous: admission.Decision | None) -> None:
    """An Event on the route for each transition; a first admission is not news."""
    if decision.admitted and previous is None:
        return
    ref: dict[str, Any] = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Route",
           "metadata": {"name": obs.name, "namespace": obs.namespace}}
    try:
        if decision.admitted:
            kopf.info(ref, reason="Admitted", message="route admitted")  # type: ignore[arg-type]  # any body-like mapping works
        else:
            kopf.warn(ref, reason=decision.reason or "Rejected",  # type: ignore[arg-type]  # any body-like mapping
                      message=decision.message or "")
    except Exception:  # posting is best effort (e.g. outside kopf's context in tests)
        log.debug("could not post route event", exc_info=True)


@functools.cache
def controller() -> RouteAdmissionController:
    cfg = config.current()
    return RouteAdmissionController(
        policy=admission.policy_from_config(cfg), router_name=cfg.router_name,
        canonical_hostname=cfg.router_canonical_hostname, api=KubeRouteApi(),
        on_transition=_post_event, metrics=_Metrics())


def _watched(namespace: str, patterns: list[str]) -> bool:
    """kopf's namespace patterns: globs, and ``!glob`` to exclude."""
    included = [p for p in patterns if not p.startswith("!")]
    excluded = [p[1:] for p in patterns if p.startswith("!")]
    return (not included or any(fnmatch.fnmatchcase(namespace, p) for p in included)) and \
        not any(fnmatch.fnmatchcase(namespace, p) for p in excluded)


async def route_startup(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    ctrl = controller()
    namespaces = list(getattr(memo, "namespaces", None) or [])
    api = ctrl.api
    assert isinstance(api, KubeRouteApi)
    for body in await api.list_routes(namespaces):
        ctrl.observe(body)
    logger.info("route admission: %d routes indexed", len(ctrl.observed))


async def route_event(event: kopf.RawEvent, **_: Any) -> None:
    ctrl = controller()
    obj = event["object"]
    if event["type"] == "DELETED":
        meta = obj.get("metadata") or {}
        ctrl.forget(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
        ctrl.kick()
    else:
        ctrl.kick(ctrl.observe(dict(obj)))


# Registered only when enabled: without the Route RBAC the startup LIST would be retried forever.
if config.current().routes_enabled:
    kopf.on.startup(id="netshift-route-index")(route_startup)
    kopf.on.event(GROUP, VERSION, PLURAL, id="netshift-route-admission")(route_event)
