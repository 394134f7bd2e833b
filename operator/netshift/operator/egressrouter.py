"""kopf wiring of the EgressRouter controller (`memo.egressrouter`, a
`netshift.egressrouter.controller.Controller`): watches feed its cache and work queue.

Why not on.create/on.update: kopf persists a diff-base and progress annotations for those, which is
a write per change and per retry; level-based `on.event` + indexes write nothing, so an idle
cluster costs zero writes. kopf indexes double as the cache: kopf holds every handler back until
the initial listing of every indexed resource is complete, so the first reconcile after a restart
already sees the existing children and re-applies nothing.

Watches: EgressRouters, and the children (Deployments, Services, ConfigMaps, NADs, Pods, and an HA
router's Lease, ServiceAccount, Role, RoleBinding and PodDisruptionBudget) through a server-side label
selector `app.kubernetes.io/managed-by=netshift`. A Lease event queues its router only when the
holder changed (not at every renewal). A child that is deleted, edited
or stripped of that label produces an event for its router and is repaired within a second.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

import kopf

from netshift.egressrouter.controller import CHILD_INDEXES, POD_INDEX, ROUTER_INDEX, pack
from netshift.egressrouter.render import HA_KINDS, MANAGED_BY
from netshift.kube.api import RESOURCES
from netshift.lease import Record
from netshift.models.egressrouter import GROUP, KIND, NAD_KIND, PLURAL, VERSION

SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
# NB: kopf applies these selectors to every watch of these resources in this process.
CHILD_RESOURCES = {kind: RESOURCES[kind] for kind in ("Deployment", "Service", "ConfigMap", NAD_KIND, *HA_KINDS)}
PODS = RESOURCES["Pod"]


# A kopf index entry: a (namespace, name) key -> the object without managedFields, packed.
Index = dict[tuple[str | None, str], str]


def _trim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object without managedFields (the largest part, and never read)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**body, "metadata": meta}


def _pod_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconcile reads of a pod (conditions.pod_state, the config nudge): its metadata, node
    and status. The spec (containers, volumes, tolerations) is most of a pod and comes from the
    Deployment we render."""
    return {**_trim(body), "spec": {"nodeName": (body.get("spec") or {}).get("nodeName")}}


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/") and ref.get("controller"):
            return cast("str | None", ref.get("name"))
    return None


def _owned(body: Mapping[str, Any], **_: Any) -> bool:
    return _owner(body) is not None


# Indexers and handlers are coroutines: kopf runs a plain function on its thread pool, a hop per
# watch event (CPU, and a malloc arena per thread), and the work queue belongs to the event loop.
async def _index(namespace: str | None, name: str, body: Any, **_: Any) -> Index:
    return {(namespace, name): pack(_trim(body))}


async def _pod_index(namespace: str | None, labels: Mapping[str, str], body: Any, **_: Any) -> Index:
    return {(namespace, labels["app.kubernetes.io/instance"]): pack(_pod_view(body))}


async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    for group, version, plural in (*CHILD_RESOURCES.values(), PODS):
        settings.watching.label_selectors[group, version, plural] = SELECTOR
    await memo.egressrouter.start()


async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.egressrouter.stop()


def _router_of_child(name: str, body: Mapping[str, Any]) -> str | None:
    return _owner(body) or (body.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/instance")


def _event_handler(kind: str | None, router_of: Callable[[str, Mapping[str, Any]], str | None]
                   ) -> Callable[..., Coroutine[Any, Any, None]]:
    """Keep the cache bound and the reconciler's recent writes current, queue the router."""
    async def handler(namespace: str | None, name: str, body: Any, type: str, memo: kopf.Memo,
                      **kwargs: Any) -> None:
        controller = memo.egressrouter
        controller.cache.bind(kwargs)
        deleted = type == "DELETED"
        if kind is not None and controller.reconciler is not None:
            controller.reconciler.recent.observed((kind, namespace, name), body, deleted=deleted)
        if kind == "Lease" and controller.lease_holder_unchanged(namespace, name, Record.of(body).holder, deleted):
            return  # a renewal (other edits of a Lease are repaired at the resync)
        controller.enqueue(namespace, router_of(name, body))
    return handler


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(id="egressrouter-controller", registry=registry)(_startup)
    kopf.on.cleanup(id="egressrouter-controller", registry=registry)(_cleanup)
    kopf.index(GROUP, VERSION, PLURAL, id=ROUTER_INDEX, registry=registry)(_index)
    for kind, resource in CHILD_RESOURCES.items():
        kopf.index(*resource, id=CHILD_INDEXES[kind], when=_owned, registry=registry)(_index)
    kopf.index(*PODS, id=POD_INDEX, labels={"app.kubernetes.io/instance": kopf.PRESENT},
               registry=registry)(_pod_index)
    kopf.on.event(GROUP, VERSION, PLURAL, id="egressrouter_event", registry=registry)(
        _event_handler(KIND, lambda name, _: name))
    for child_kind, resource in (*CHILD_RESOURCES.items(), (None, PODS)):
        kopf.on.event(*resource, id=f"egressrouter_child_{resource[2]}", registry=registry)(
            _event_handler(child_kind, _router_of_child))
