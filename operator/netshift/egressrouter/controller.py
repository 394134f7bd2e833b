"""The EgressRouter controller of one operator process (fed by `netshift.operator.egressrouter`): the
cache view of kopf's indexes, the work queue and its workers calling the one reconcile, a slow resync
(every reconcile from the cache, no API request when nothing changed), the NAD discovery poll."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from collections.abc import Mapping
from typing import Any, cast

from netshift.egressrouter.queue import WorkQueue
from netshift.egressrouter.reconcile import Reconciler
from netshift.egressrouter.render import RenderSettings
from netshift.kube import Kube, new_api_client
from netshift.models.egressrouter import KIND, NAD_KIND

log = logging.getLogger("netshift.egressrouter")

WORKERS = 8
NAD_DISCOVERY_SECONDS = 5.0
# The kopf index of each child kind (registered by netshift.operator.egressrouter).
CHILD_INDEXES = {
    "Deployment": "egressrouter_deployments",
    "Service": "egressrouter_services",
    "ConfigMap": "egressrouter_configmaps",
    NAD_KIND: "egressrouter_nads",
    # An HA router's (render.HA_KINDS)
    "Lease": "egressrouter_leases",
    "ServiceAccount": "egressrouter_serviceaccounts",
    "Role": "egressrouter_roles",
    "RoleBinding": "egressrouter_rolebindings",
    "PodDisruptionBudget": "egressrouter_pdbs",
}
ROUTER_INDEX = "egressrouter_routers"
POD_INDEX = "egressrouter_pods"


def pack(obj: Mapping[str, Any]) -> str:
    """An object as the indexes keep it: compact JSON, a sixth of the memory of the parsed object (a
    router's six objects are ~60 KiB parsed); the reconcile parses the few it reads."""
    return json.dumps(obj, separators=(",", ":"))


class Cache:
    """The reconcile's view of the kopf indexes (live mappings of packed objects, bound on the first
    event)."""

    def __init__(self) -> None:
        self.indices: Mapping[str, Any] = {}

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        if not self.indices:
            self.indices = {k: kwargs[k] for k in (*CHILD_INDEXES.values(), ROUTER_INDEX, POD_INDEX)
                            if k in kwargs}

    def _all(self, index: str, key: tuple[str, str]) -> list[Mapping[str, Any]]:
        idx = self.indices.get(index)
        return [json.loads(packed) for packed in idx[key]] if idx is not None and key in idx else []

    def router(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return next(iter(self._all(ROUTER_INDEX, (namespace, name))), None)

    def child(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return next(iter(self._all(CHILD_INDEXES[kind], (namespace, name))), None)

    def pods(self, namespace: str, name: str) -> list[Mapping[str, Any]]:
        return self._all(POD_INDEX, (namespace, name))

    def router_keys(self) -> list[tuple[str, str]]:
        return list(self.indices.get(ROUTER_INDEX, ()))


class Controller:
    def __init__(self, render: RenderSettings, resync_seconds: float, leading: asyncio.Event) -> None:
        self.render = render
        self.resync_seconds = resync_seconds
        self.leading = leading  # workers reconcile only while set (leader election); the queue fills anyway
        self.cache = Cache()
        self.queue = WorkQueue()
        self.reconciler: Reconciler | None = None
        self.nads_served = False
        self.nad_epoch = 0  # how many times NADs (re)appeared
        self.tasks: list[asyncio.Task[None]] = []
        self.lease_holders: dict[tuple[str | None, str], str] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="egressrouter")

    def enqueue(self, namespace: str | None, name: str | None) -> None:
        if self.reconciler is not None and namespace and name:
            self.queue.add((namespace, name))

    def lease_holder_unchanged(self, namespace: str | None, name: str, holder: str, deleted: bool) -> bool:
        """Record the holder of a router's Lease; whether this event left it as it was (a renewal)."""
        key = (namespace, name)
        if deleted:
            self.lease_holders.pop(key, None)
            return False
        unchanged = key in self.lease_holders and self.lease_holders[key] == holder
        self.lease_holders[key] = holder
        return unchanged

    def enqueue_all(self) -> None:
        for key in self.cache.router_keys():
            self.enqueue(*key)

    def _nads(self, served: bool) -> bool:
        """Record whether NADs are served; True when that changed."""
        changed, self.nads_served = served != self.nads_served, served
        self.nad_epoch += changed and served
        return changed

    async def start(self) -> None:
        kube = Kube(new_api_client("operator", pool_size=WORKERS + 2), controller=KIND)
        loop = asyncio.get_running_loop()
        try:
            self._nads(await loop.run_in_executor(self.executor, kube.served, NAD_KIND))
        except Exception as exc:
            log.warning("cannot check NetworkAttachmentDefinitions (the poll retries): %s", exc)
        self.nad_epoch = 0  # what was served at startup is what kopf lists: nothing to force
        self.reconciler = Reconciler(
            kube, self.cache, self.render,
            nad_served=lambda: self.nads_served, nad_epoch=lambda: self.nad_epoch,
            nad_not_found=lambda: self._nads(False),
        )
        self.tasks = [asyncio.create_task(self._worker(), name=f"egressrouter-worker-{i}") for i in range(WORKERS)]
        self.tasks.append(asyncio.create_task(self._resync(), name="egressrouter-resync"))
        self.tasks.append(asyncio.create_task(self._discover(kube), name="egressrouter-nad-discovery"))
        log.info("EgressRouter controller started (NADs served: %s)", self.nads_served)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        reconciler = self.reconciler
        assert reconciler is not None, "workers start after the reconciler"
        loop = asyncio.get_running_loop()
        while True:
            await self.leading.wait()
            key = await self.queue.get()
            namespace, name = cast(tuple[str, str], key)
            try:
                outcome = await loop.run_in_executor(self.executor, reconciler.reconcile, namespace, name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried with backoff
                delay = self.queue.retry(key)
                log.warning("reconcile of EgressRouter %s/%s failed (retry in %.1fs): %s", namespace, name, delay, exc)
            else:
                if outcome.failed:
                    self.queue.retry(key)
                else:
                    self.queue.forget(key)
                    if outcome.requeue_after:
                        self.queue.add_after(key, outcome.requeue_after)
            finally:
                self.queue.done(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self.enqueue_all()

    async def _discover(self, kube: Kube) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(NAD_DISCOVERY_SECONDS)
            try:
                served = await loop.run_in_executor(self.executor, kube.served, NAD_KIND)
            except Exception as exc:
                log.debug("NAD discovery failed: %s", exc)
                continue
            if self._nads(served):
                log.info("NetworkAttachmentDefinitions are %s", "served" if served else "no longer served")
                self.enqueue_all()
