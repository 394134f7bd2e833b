"""kopf wiring of the EgressRouter controller: watches feed a cache and a work queue; workers call
the one reconcile (`netshift.egressrouter.reconcile`).

Why not on.create/on.update: kopf persists a diff-base and progress annotations for those, which is
a write per change and per retry; level-based `on.event` + indexes write nothing, so an idle
cluster costs zero writes. kopf indexes double as the cache: kopf holds every handler back until
the initial listing of every indexed resource is complete, so the first reconcile after a restart
already sees the existing children and re-applies nothing.

Watches: EgressRouters, and the children (Deployments, Services, ConfigMaps, NADs, Pods) through a
server-side label selector `app.kubernetes.io/managed-by=netshift`. A child that is deleted, edited
or stripped of that label produces an event for its router and is repaired within a second.
A slow resync (NETSHIFT_RESYNC_SECONDS) re-runs every reconcile from the cache (no API request when
nothing changed), and a discovery poll notices NetworkAttachmentDefinitions appearing or vanishing.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from netshift import config
from netshift.egressrouter.kube import NAD_PLURAL, Kube
from netshift.egressrouter.queue import WorkQueue
from netshift.egressrouter.reconcile import Reconciler
from netshift.egressrouter.render import MANAGED_BY, NAD_KIND, RenderSettings
from netshift.kubeclient import new_api_client
from netshift.models.egressrouter import GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("netshift.egressrouter")

WORKERS = 8
NAD_DISCOVERY_SECONDS = 5.0
NAD_GROUP = "k8s.cni.cncf.io"
SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
# NB: kopf applies these selectors to every watch of these resources in this process.
CHILD_RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "ConfigMap": ("", "v1", "configmaps"),
    NAD_KIND: (NAD_GROUP, "v1", NAD_PLURAL),
}
PODS = ("", "v1", "pods")
_INDEX = {
    "Deployment": "egressrouter_deployments",
    "Service": "egressrouter_services",
    "ConfigMap": "egressrouter_configmaps",
    NAD_KIND: "egressrouter_nads",
}


def _trim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without managedFields (the largest part, and never read)."""
    out = dict(body.items())
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/") and ref.get("controller"):
            return ref.get("name")
    return None


def _owned(body: Mapping[str, Any], **_: Any) -> bool:
    return _owner(body) is not None


class _Cache:
    """The reconcile's view of the kopf indexes (live mappings, bound on the first event)."""

    def __init__(self) -> None:
        self.indices: Mapping[str, Any] = {}

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        if not self.indices:
            self.indices = {k: kwargs[k] for k in (*_INDEX.values(), "egressrouter_routers",
                                                  "egressrouter_pods") if k in kwargs}

    def _one(self, index: str, key: tuple[str, str]) -> Mapping[str, Any] | None:
        idx = self.indices.get(index)
        if idx is None or key not in idx:
            return None
        return next(iter(idx[key]), None)

    def router(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._one("egressrouter_routers", (namespace, name))

    def child(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._one(_INDEX[kind], (namespace, name))

    def pods(self, namespace: str, name: str) -> list[Mapping[str, Any]]:
        idx = self.indices.get("egressrouter_pods")
        if idx is None or (namespace, name) not in idx:
            return []
        return list(idx[(namespace, name)])

    def router_keys(self) -> list[tuple[str, str]]:
        idx = self.indices.get("egressrouter_routers")
        return list(idx.keys()) if idx is not None else []


class _Discovery:
    """Whether NADs are served; `epoch` counts the times they (re)appeared."""

    def __init__(self) -> None:
        self.served = False
        self.epoch = 0

    def update(self, served: bool) -> bool:
        changed = served != self.served
        if changed and served:
            self.epoch += 1
        self.served = served
        return changed


class _Controller:
    def __init__(self) -> None:
        self.cache = _Cache()
        self.queue: WorkQueue | None = None
        self.reconciler: Reconciler | None = None
        self.discovery = _Discovery()
        self.tasks: list[asyncio.Task] = []
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None

    def enqueue(self, namespace: str | None, name: str | None) -> None:
        if self.queue is not None and namespace and name:
            self.queue.add((namespace, name))

    def enqueue_all(self) -> None:
        for key in self.cache.router_keys():
            self.enqueue(*key)


CONTROLLER = _Controller()


# -- startup / cleanup ---------------------------------------------------------------------------
@kopf.on.startup()
async def egressrouter_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    for group, version, plural in (*CHILD_RESOURCES.values(), PODS):
        settings.watching.label_selectors[group, version, plural] = SELECTOR
    c = CONTROLLER
    cfg = config.current()
    c.executor = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="egressrouter")
    kube = Kube(new_api_client("operator", pool_size=WORKERS + 2))
    loop = asyncio.get_running_loop()
    try:
        c.discovery.update(await loop.run_in_executor(c.executor, kube.nad_served))
    except Exception as exc:
        log.warning("cannot check NetworkAttachmentDefinitions: %s", exc)
    c.discovery.epoch = 0  # what was served at startup is what kopf lists: nothing to force
    c.reconciler = Reconciler(
        kube, c.cache,
        RenderSettings(agent_image=cfg.agent_image, agent_image_pull_policy=cfg.agent_image_pull_policy,
                       default_macvlan_master=cfg.default_macvlan_master),
        nad_served=lambda: c.discovery.served, nad_epoch=lambda: c.discovery.epoch,
        nad_not_found=lambda: c.discovery.update(False),
    )
    c.queue = WorkQueue()
    c.tasks = [asyncio.create_task(_worker(i), name=f"egressrouter-worker-{i}") for i in range(WORKERS)]
    c.tasks.append(asyncio.create_task(_resync(cfg.resync_seconds), name="egressrouter-resync"))
    c.tasks.append(asyncio.create_task(_discovery(kube), name="egressrouter-nad-discovery"))
    log.info("EgressRouter controller started (NADs served: %s)", c.discovery.served)


@kopf.on.cleanup()
async def egressrouter_cleanup(**_: Any) -> None:
    for task in CONTROLLER.tasks:
        task.cancel()
    await asyncio.gather(*CONTROLLER.tasks, return_exceptions=True)
    if CONTROLLER.executor is not None:
        CONTROLLER.executor.shutdown(wait=False, cancel_futures=True)


async def _worker(_: int) -> None:
    c = CONTROLLER
    queue, reconciler = c.queue, c.reconciler
    assert queue is not None and reconciler is not None, "workers start after the controller"
    loop = asyncio.get_running_loop()
    while True:
        key = await queue.get()
        namespace, name = cast(tuple[str, str], key)
        try:
            outcome = await loop.run_in_executor(c.executor, reconciler.reconcile, namespace, name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = queue.retry(key)
            log.warning("reconcile of EgressRouter %s/%s failed (retry in %.1fs): %s", namespace, name, delay, exc)
        else:
            if outcome.failed:
                queue.retry(key)
            else:
                queue.forget(key)
                if outcome.requeue_after:
                    queue.add_after(key, outcome.requeue_after)
        finally:
            queue.done(key)


async def _resync(period: float) -> None:
    while True:
        await asyncio.sleep(period)
        CONTROLLER.enqueue_all()


async def _discovery(kube: Kube) -> None:
    c = CONTROLLER
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(NAD_DISCOVERY_SECONDS)
        try:
            served = await loop.run_in_executor(c.executor, kube.nad_served)
        except Exception as exc:
            log.debug("NAD discovery failed: %s", exc)
            continue
        if c.discovery.update(served):
            log.info("NetworkAttachmentDefinitions are %s", "served" if served else "no longer served")
            c.enqueue_all()


# -- indexes (the cache) --------------------------------------------------------------------------
@kopf.index(GROUP, VERSION, PLURAL)
def egressrouter_routers(namespace: str | None, name: str, body: Any, **_: Any) -> dict:
    return {(namespace, name): _trim(body)}


@kopf.index(*CHILD_RESOURCES["Deployment"], when=_owned)
def egressrouter_deployments(namespace: str | None, name: str, body: Any, **_: Any) -> dict:
    return {(namespace, name): _trim(body)}


@kopf.index(*CHILD_RESOURCES["Service"], when=_owned)
def egressrouter_services(namespace: str | None, name: str, body: Any, **_: Any) -> dict:
    return {(namespace, name): _trim(body)}


@kopf.index(*CHILD_RESOURCES["ConfigMap"], when=_owned)
def egressrouter_configmaps(namespace: str | None, name: str, body: Any, **_: Any) -> dict:
    return {(namespace, name): _trim(body)}


@kopf.index(*CHILD_RESOURCES[NAD_KIND], when=_owned)
def egressrouter_nads(namespace: str | None, name: str, body: Any, **_: Any) -> dict:
    return {(namespace, name): _trim(body)}


@kopf.index(*PODS, labels={"app.kubernetes.io/instance": kopf.PRESENT})
def egressrouter_pods(namespace: str | None, labels: Mapping[str, str], body: Any, **_: Any) -> dict:
    return {(namespace, labels["app.kubernetes.io/instance"]): _trim(body)}


# -- events → queue -------------------------------------------------------------------------------
def _seen(kind: str, namespace: str | None, name: str, body: Any, type: str | None) -> None:
    if CONTROLLER.reconciler is not None:
        CONTROLLER.reconciler.recent.observed((kind, namespace, name), body, deleted=type == "DELETED")


@kopf.on.event(GROUP, VERSION, PLURAL)
def egressrouter_event(namespace: str | None, name: str, body: Any, type: str, **kwargs: Any) -> None:
    CONTROLLER.cache.bind(kwargs)
    _seen(KIND, namespace, name, body, type)
    CONTROLLER.enqueue(namespace, name)


def _child_handler(kind: str | None):
    def handler(namespace: str, name: str, body: Any, type: str | None, **kwargs: Any) -> None:
        CONTROLLER.cache.bind(kwargs)
        if kind is not None:
            _seen(kind, namespace, name, body, type)
        labels = body.get("metadata", {}).get("labels") or {}
        CONTROLLER.enqueue(namespace, _owner(body) or labels.get("app.kubernetes.io/instance"))
    return handler


for _kind, _resource in (*CHILD_RESOURCES.items(), (None, PODS)):
    kopf.on.event(*_resource, id=f"egressrouter_child_{_resource[2]}")(_child_handler(_kind))
