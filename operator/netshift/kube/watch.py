"""List-then-watch of one resource as plain dicts.

``ListWatch(kube, kind, on_list, on_event).run(stop)`` lists (paginated) and hands the complete list
to ``on_list``, then watches from the list's resourceVersion (with bookmarks) and hands each event to
``on_event``. An expired resourceVersion (410 Gone) or a broken stream starts over with a new list,
so the consumer always rebuilds from a complete listing after any gap.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.watch.watch import iter_resp_lines

from .api import ApiError, Kube, Query, path

log = logging.getLogger("netshift.kube.watch")


class ListWatch:
    def __init__(self, kube: Kube, kind: str,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None], *,
                 page_size: int = 500, watch_seconds: int = 300, params: Query = (),
                 namespace: str | None = None) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace  # None: all namespaces
        self.params = list(params)  # added to every list and watch (e.g. a field selector)
        self.on_list = on_list
        self.on_event = on_event
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()  # set after the first complete listing

    def list(self) -> str:
        items, rv = self.kube.list_all(self.kind, self.namespace, self.params, self.page_size)
        self.on_list(items)
        self.synced.set()
        return rv

    def watch(self, rv: str, stop: threading.Event) -> str:
        query = [*self.params, ("watch", "true"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", self.watch_seconds)]
        resp = self.kube.stream(path(self.kind, self.namespace), query, timeout=(10, self.watch_seconds + 30))
        try:
            for line in iter_resp_lines(resp):
                if stop.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiError(obj.get("code") or 0, obj.get("message") or "watch error")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.on_event(kind, obj)
        finally:
            resp.release_conn()
        return rv

    def run(self, stop: threading.Event) -> None:
        rv = None
        while not stop.is_set():
            try:
                if rv is None:
                    rv = self.list()
                rv = self.watch(rv, stop)
            except ApiError as exc:
                rv = None
                if not exc.gone:
                    log.warning("%s: %s", self.kind, exc)
                    stop.wait(2.0)
            except Exception as exc:
                if stop.is_set():
                    break
                log.warning("%s: watch failed (%s: %s); listing again", self.kind, type(exc).__name__, exc)
                rv = None
                stop.wait(1.0)
