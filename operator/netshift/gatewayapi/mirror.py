"""The live mirror: the operator keeps the Gateway API objects of the Routes applied (opt-in,
``NETSHIFT_GATEWAY_API_MIRROR``), so a Gateway API implementation serves the same traffic side by side.

Routes and Services come from list-watches; after a change (bursts coalesced) the whole export is
recomputed (pure, ``translate.export``) and compared with what is applied, by a hash of each object
kept in its annotation ``netshift.io/mirror-hash``: only objects whose hash differs are server-side
applied (field manager ``netshift``), objects no longer wanted are deleted. At start the applied
objects are listed by their label, so a restart with nothing changed writes nothing. Per-Route
objects are owned by their Route (garbage collection follows a deletion even when the operator is
down); the Gateway and the ReferenceGrants are shared and deleted by the mirror when unused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pydantic

from netshift.kube import ApiError, Kube
from netshift.kube.watch import ListWatch
from netshift.models import gatewayapi
from netshift.models.route import KIND as ROUTE_KIND
from netshift.models.route import Route

from .translate import Options, export

log = logging.getLogger("netshift.gatewayapi.mirror")

MIRROR_LABEL = "netshift.io/gateway-api-mirror"  # value: <gateway namespace>.<gateway name>
HASH_ANNOTATION = "netshift.io/mirror-hash"
KINDS = (*gatewayapi.KINDS, "Secret", "ConfigMap")

Key = tuple[str, str, str]  # kind, namespace, name


def label_value(opts: Options) -> str:
    value = f"{opts.gateway_namespace}.{opts.gateway_name}"
    return value if len(value) <= 63 else hashlib.sha256(value.encode()).hexdigest()[:63]


def stamped(obj: dict[str, Any], label: str) -> dict[str, Any]:
    """The object with the mirror's label and the hash of its content (pure)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]
    meta = obj["metadata"]
    out = {**obj, "metadata": {**meta, "labels": {**meta.get("labels", {}), MIRROR_LABEL: label},
                               "annotations": {**meta.get("annotations", {}), HASH_ANNOTATION: digest}}}
    return out


def key_of(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


def plan(desired: list[dict[str, Any]], applied: dict[Key, str]) -> tuple[list[dict[str, Any]], list[Key]]:
    """What to apply (hash differs or absent) and what to delete (applied, no longer desired) (pure)."""
    wanted = {key_of(x): x for x in desired}
    to_apply = [x for k, x in wanted.items() if applied.get(k) != x["metadata"]["annotations"][HASH_ANNOTATION]]
    return to_apply, sorted(k for k in applied if k not in wanted)


@dataclasses.dataclass
class Stats:
    syncs: int = 0
    applied: int = 0
    deleted: int = 0
    errors: int = 0


class Mirror:
    def __init__(self, kube: Kube, opts: Options, *, namespaces: tuple[str, ...] = (),
                 settle_seconds: float = 0.5) -> None:
        self.kube = kube
        self.opts = dataclasses.replace(opts, owner_references=True, status_only=True)
        self.namespaces = set(namespaces)
        self.label = label_value(self.opts)
        self.settle_seconds = settle_seconds
        self.stats = Stats()
        self._lock = threading.Lock()
        self._inputs: dict[str, dict[tuple[str, str], dict[str, Any]]] = {ROUTE_KIND: {}, "Service": {}}
        self._applied: dict[Key, str] = {}
        self._changed = threading.Event()

    # --- inputs (watch threads) -----------------------------------------------------------------

    def feed(self, kind: str) -> tuple[Callable[[list[dict[str, Any]]], None], Callable[[str, dict[str, Any]], None]]:
        """The ListWatch callbacks keeping the objects of ``kind`` (Route or Service) by namespace/name."""
        def wanted(obj: dict[str, Any]) -> bool:
            return not self.namespaces or _nsname(obj)[0] in self.namespaces

        def on_list(items: list[dict[str, Any]]) -> None:
            with self._lock:
                self._inputs[kind] = {_nsname(x): x for x in items if wanted(x)}
            self._changed.set()

        def on_event(event: str, obj: dict[str, Any]) -> None:
            if not wanted(obj):
                return
            with self._lock:
                if event == "DELETED":
                    self._inputs[kind].pop(_nsname(obj), None)
                else:
                    self._inputs[kind][_nsname(obj)] = obj
            self._changed.set()
        return on_list, on_event

    # --- the loop ---------------------------------------------------------------------------------

    def desired(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies, services = list(self._inputs[ROUTE_KIND].values()), dict(self._inputs["Service"])
        routes = []
        for body in bodies:
            try:
                routes.append(Route.from_obj(body))
            except pydantic.ValidationError:  # the CRD should have refused it; nothing to mirror
                log.debug("route %s does not parse", _nsname(body))
        return [stamped(x, self.label) for x in export(routes, services, self.opts).objects]

    def load_applied(self) -> None:
        """What a previous run applied: the labelled objects and their hashes."""
        selector = [("labelSelector", f"{MIRROR_LABEL}={self.label}")]
        applied = {}
        for kind in KINDS:
            for obj in self.kube.list_all(kind, None, selector)[0]:
                meta = obj.get("metadata") or {}
                applied[(kind, meta.get("namespace", ""), meta.get("name", ""))] = \
                    (meta.get("annotations") or {}).get(HASH_ANNOTATION, "")
        self._applied = applied

    def sync(self) -> bool:
        """Apply the difference; False when a request failed for a reason that may pass (no answer,
        conflict, throttling, server error: the caller retries). A refused object (invalid) is
        logged and left until its Route changes: retrying it would write forever."""
        self.stats.syncs += 1
        to_apply, to_delete = plan(self.desired(), self._applied)
        ok = True
        for obj in to_apply:
            key = key_of(obj)
            try:
                self.kube.apply(key[0], obj)
                self._applied[key] = obj["metadata"]["annotations"][HASH_ANNOTATION]
                self.stats.applied += 1
            except ApiError as exc:
                ok = ok and not _transient(exc)
                self.stats.errors += 1
                log.warning("cannot apply %s %s/%s: %s", *key, exc)
        for key in to_delete:
            try:
                self.kube.delete(*key)
                del self._applied[key]
                self.stats.deleted += 1
            except ApiError as exc:
                ok = ok and not _transient(exc)
                self.stats.errors += 1
                log.warning("cannot delete %s %s/%s: %s", *key, exc)
        if to_apply or to_delete or self.stats.syncs == 1:
            log.info("gateway api mirror synced: %d applied, %d deleted, %d unchanged", len(to_apply),
                     len(to_delete), len(self._applied) - len(to_apply))
        return ok

    def run(self, stop: threading.Event, kube_factory: Callable[[], Kube]) -> None:
        """Until ``stop``: watch Routes and Services (``kube_factory()`` gives each watch its
        connection), then sync after every change."""
        while not stop.is_set() and not all(self.kube.served(k) for k in gatewayapi.KINDS):
            log.warning("gateway api mirror: the Gateway API CRDs are not installed; checking again in 30 s")
            stop.wait(30)
        watches = [ListWatch(kube_factory(), kind, *self.feed(kind)) for kind in (ROUTE_KIND, "Service")]
        for i, w in enumerate(watches):
            threading.Thread(target=w.run, args=(stop,), daemon=True, name=f"gateway-api-watch-{i}").start()
        for w in watches:
            while not stop.is_set() and not w.synced.wait(1):
                pass
        while not stop.is_set():
            try:
                self.load_applied()
                break
            except ApiError as exc:
                log.warning("gateway api mirror: cannot list the applied objects: %s", exc)
                stop.wait(5)
        while not stop.is_set():
            if not self._changed.wait(1):
                continue
            stop.wait(self.settle_seconds)  # a burst of events makes one sync
            self._changed.clear()
            if not self.sync():
                stop.wait(2)
                self._changed.set()


def _transient(exc: ApiError) -> bool:
    return exc.status in (0, 409, 429) or exc.status >= 500


def _nsname(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")

