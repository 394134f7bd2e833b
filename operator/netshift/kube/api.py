"""Requests to the API server as plain JSON dicts, on the `kubernetes` client's ApiClient.

Server-side apply (field manager `netshift`, forced: the operator owns what it renders), merge
patches (of the object or a subresource), deletes, paginated lists, API discovery and Events. Every
request except watches is counted in `netshift_api_requests_total` (by controller, HTTP verb and
resource), which the tests and the benchmarks use to prove that an idle cluster costs zero writes.
Failed requests raise ``ApiError`` (the API server's status code and message).

Writes pass one gate, ``WRITES``: open unless leader election (``netshift.operator.leader``) closes it, so a
follower, or a leader that could not renew its lease in time, cannot write through any path.
"""
from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, cast

from kubernetes import client
from kubernetes.client.rest import ApiException

from netshift import metrics
from netshift.models import egressrouter, gatewayapi, route

from . import events

log = logging.getLogger("netshift.kube")

FIELD_MANAGER = "netshift"

Query = Iterable[tuple[str, Any]]


class Resource(NamedTuple):  # kopf's (group, version, plural) too
    group: str  # "" for the core API
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"


RESOURCES = {
    "ConfigMap": Resource("", "v1", "configmaps"),
    "Event": Resource("", "v1", "events"),
    "Pod": Resource("", "v1", "pods"),
    "Secret": Resource("", "v1", "secrets"),
    "Service": Resource("", "v1", "services"),
    "Deployment": Resource("apps", "v1", "deployments"),
    "Lease": Resource("coordination.k8s.io", "v1", "leases"),
    "PodDisruptionBudget": Resource("policy", "v1", "poddisruptionbudgets"),
    "Role": Resource("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": Resource("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "ServiceAccount": Resource("", "v1", "serviceaccounts"),
    "EndpointSlice": Resource("discovery.k8s.io", "v1", "endpointslices"),
    egressrouter.NAD_KIND: Resource(egressrouter.NAD_GROUP, egressrouter.NAD_VERSION, egressrouter.NAD_PLURAL),
    egressrouter.KIND: Resource(egressrouter.GROUP, egressrouter.VERSION, egressrouter.PLURAL),
    route.KIND: Resource(route.GROUP, route.VERSION, route.PLURAL),
    **{kind: Resource(gatewayapi.GROUP, version, plural) for kind, (version, plural) in gatewayapi.KINDS.items()},
}


class ApiError(Exception):
    """A request the API server refused (``status`` 0: no answer at all)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"{status} {message}".strip())
        self.status = status
        self.message = message

    not_found = property(lambda self: self.status == 404)
    conflict = property(lambda self: self.status == 409)  # stale resourceVersion or field owners
    gone = property(lambda self: self.status == 410)  # expired resourceVersion: list again

    @classmethod
    def of(cls, exc: ApiException) -> ApiError:
        try:
            message = json.loads(exc.body).get("message") or exc.reason
        except (TypeError, ValueError, AttributeError):
            message = exc.reason
        return cls(exc.status or 0, message or "")


class NotLeader(ApiError):
    """A write refused before it was sent: this process does not hold the leader lease."""

    def __init__(self) -> None:
        super().__init__(0, "write refused: not the leader")


class WriteGate:
    """Fencing: the deadline (monotonic) until which writes may be sent; open forever by default."""

    def __init__(self) -> None:
        self._until = math.inf

    def open_until(self, deadline: float) -> None:
        self._until = deadline

    def close(self) -> None:
        self._until = -math.inf

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until


WRITES = WriteGate()


def error_message(exc: Exception) -> str:
    """The API server's message of a failed request, else the exception."""
    return str(ApiError.of(exc) if isinstance(exc, ApiException) else exc)


def path(kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The URL path of a collection (all namespaces when ``namespace`` is None) or an object."""
    res = RESOURCES[kind]
    out = f"{res.prefix}/namespaces/{namespace}/{res.plural}" if namespace else f"{res.prefix}/{res.plural}"
    return out + "".join(f"/{part}" for part in (name, sub) if part)


class Kube:
    """One component's connection; ``controller`` labels its requests in the metrics. Only the
    lease's own connection is not ``fenced``."""

    def __init__(self, api: client.ApiClient, controller: str, *, fenced: bool = True) -> None:
        self.api = api
        self.controller = controller
        self.fenced = fenced
        self.instance = socket.gethostname()

    def _send(self, method: str, url: str, query: Query, *, body: Any = None,
              content_type: str | None = None, timeout: Any = 30) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            return self.api.call_api(
                url, method, query_params=list(query), header_params=headers, body=body,
                auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False,
                _request_timeout=timeout)
        except ApiException as exc:
            raise ApiError.of(exc) from None

    def request(self, method: str, url: str, *, query: Query = (), body: Any = None,
                content_type: str | None = None, resource: str = "", timeout: Any = 30) -> Any:
        if method != "GET" and self.fenced and not WRITES.open:
            metrics.WRITES_FENCED.labels(controller=self.controller).inc()
            raise NotLeader
        metrics.API_REQUESTS.labels(controller=self.controller, verb=method, resource=resource).inc()
        data = self._send(method, url, query, body=body, content_type=content_type, timeout=timeout).data
        return json.loads(data) if data else None

    def stream(self, url: str, query: Query, timeout: Any) -> Any:
        """A streaming GET (a watch): the urllib3 response, to be released by the caller."""
        return self._send("GET", url, query, timeout=timeout)

    def apply(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return cast("dict[str, Any]", self.request(
            "PATCH", path(kind, meta["namespace"], meta["name"]), body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml", resource=RESOURCES[kind].plural))

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any],
                    sub: str | None = None) -> dict[str, Any]:
        resource = RESOURCES[kind].plural + (f"/{sub}" if sub else "")
        return cast("dict[str, Any]", self.request("PATCH", path(kind, namespace, name, sub), body=patch,
                                                   content_type="application/merge-patch+json", resource=resource))

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None,
               foreground: bool = False) -> None:
        """Delete an object; one that is gone already is fine. ``uid``: only that incarnation (another
        one is left alone); ``foreground``: its dependents go first (a Deployment's pods)."""
        body: dict[str, Any] = {"propagationPolicy": "Foreground"} if foreground else {}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", path(kind, namespace, name), body=body or None,
                         resource=RESOURCES[kind].plural)
        except ApiError as exc:
            if not (exc.not_found or (uid and exc.conflict)):
                raise

    def dry_run_create(self, kind: str, obj: Mapping[str, Any]) -> None:
        """Raises the API server's refusal of ``obj`` as a new object (409 if it exists: it is valid)."""
        self.request("POST", path(kind, obj["metadata"]["namespace"]), body=obj,
                     query=[("dryRun", "All"), ("fieldManager", FIELD_MANAGER)], resource=RESOURCES[kind].plural)

    def list_all(self, kind: str, namespace: str | None = None, query: Query = (),
             page_size: int = 500) -> tuple[list[dict[str, Any]], str]:
        """Every object (page by page) and the list's resourceVersion (where a watch starts)."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page_query = [*query, ("limit", page_size), *([("continue", token)] if token else [])]
            page = self.request("GET", path(kind, namespace), query=page_query,
                                resource=RESOURCES[kind].plural, timeout=60) or {}
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, meta.get("resourceVersion") or ""

    def allowed(self, user: str, namespace: str, verb: str, resource: str, name: str) -> bool:
        """A SubjectAccessReview: may ``user`` do ``verb`` on that one object (core group)?"""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "resourceAttributes": {
                      "namespace": namespace, "verb": verb, "resource": resource, "name": name}}}
        out = self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review,
                           resource="subjectaccessreviews") or {}
        return bool((out.get("status") or {}).get("allowed"))

    def served(self, kind: str) -> bool:
        """Whether the API server serves this kind's resource (a CRD may be missing)."""
        res = RESOURCES[kind]
        try:
            out = self.request("GET", res.prefix, resource="discovery")
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return any(r.get("name") == res.plural for r in (out or {}).get("resources") or [])

    def post_event(self, kind: str, obj: Mapping[str, Any], *, reason: str, message: str,
                   warning: bool) -> None:
        """A core/v1 Event about ``obj``; best effort (a lost Event is logged, never raised)."""
        meta = obj.get("metadata") or {}
        event = events.event(RESOURCES[kind].api_version, kind, meta, reason=reason, message=message,
                             warning=warning, instance=self.instance)
        try:
            self.request("POST", path("Event", meta["namespace"]), body=event, resource="events")
        except Exception as exc:
            log.warning("cannot post event %s on %s/%s: %s", reason, meta.get("namespace"),
                        meta.get("name"), error_message(exc))

    def warning_events(self, kind: str, namespace: str, name: str, uid: str | None) -> list[dict[str, Any]]:
        selector = events.warnings_selector(kind, name, uid)
        return self.list_all("Event", namespace, [("fieldSelector", selector)])[0]
