"""List-then-watch of one resource as plain dicts, on the `kubernetes` client's ApiClient.

``ListWatch(api, path, on_list, on_event).run(stop)`` lists (paginated) and hands the complete list
to ``on_list``, then watches from the list's resourceVersion (with bookmarks) and hands each event to
``on_event``. An expired resourceVersion (410) or a broken stream starts over with a new list, so the
consumer always rebuilds from a complete listing after any gap.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("netshift.router.kube")

ROUTES_PATH = "/apis/route.openshift.io/v1/routes"
ENDPOINTSLICES_PATH = "/apis/discovery.k8s.io/v1/endpointslices"
SECRETS_PATH = "/api/v1/secrets"
TLS_SECRETS_SELECTOR = [("fieldSelector", "type=kubernetes.io/tls")]


class Gone(Exception):
    pass


class ListWatch:
    def __init__(self, api: client.ApiClient, path: str, *,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None],
                 page_size: int = 500, watch_seconds: int = 300,
                 params: list[tuple[str, Any]] | None = None) -> None:
        self.api = api
        self.path = path
        self.params = list(params or [])  # added to every list and watch (e.g. a field selector)
        self.on_list = on_list
        self.on_event = on_event
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()  # set after the first complete listing

    def _get(self, query: list[tuple[str, Any]], stream: bool = False, timeout: Any = 60):
        resp = self.api.call_api(self.path, "GET", query_params=self.params + query, auth_settings=["BearerToken"],
                                 _preload_content=False, _request_timeout=timeout,
                                 header_params={"Accept": "application/json"})
        return resp[0]

    def list(self) -> str:
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if cont:
                query.append(("continue", cont))
            body = json.loads(self._get(query).data)
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                break
        self.on_list(items)
        self.synced.set()
        return meta.get("resourceVersion") or ""

    def watch(self, rv: str, stop: threading.Event) -> str:
        query = [("watch", "true"), ("resourceVersion", rv), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", self.watch_seconds)]
        resp = self._get(query, stream=True, timeout=(10, self.watch_seconds + 30))
        try:
            for line in iter_resp_lines(resp):
                if stop.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise RuntimeError(f"watch error: {obj.get('message')}")
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
            except Gone:
                rv = None
            except ApiException as exc:
                log.warning("%s: %s %s", self.path, exc.status, exc.reason)
                rv = None
                stop.wait(2.0)
            except Exception as exc:
                if stop.is_set():
                    break
                log.warning("%s: watch failed (%s: %s); listing again", self.path, type(exc).__name__, exc)
                rv = None
                stop.wait(1.0)
