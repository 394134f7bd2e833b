"""The few API calls the EgressRouter controller makes, on the `kubernetes` client's ApiClient.

Server-side apply (field manager `netshift`, force), status merge patches, pod annotation nudges,
Warning events of one pod, core/v1 Events, and a discovery check for NetworkAttachmentDefinitions.
Every request is counted in `netshift_api_requests_total` (by verb and resource), which the tests and
the benchmark use to prove that an idle cluster costs zero writes.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import socket
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from netshift import metrics
from netshift.egressrouter.render import NAD_KIND
from netshift.models.egressrouter import API_VERSION, KIND, PLURAL

log = logging.getLogger("netshift.egressrouter")

FIELD_MANAGER = "netshift"
NAD_GROUP_VERSION = "k8s.cni.cncf.io/v1"
NAD_PLURAL = "network-attachment-definitions"

# kind -> (API prefix, plural)
PATHS = {
    NAD_KIND: (f"/apis/{NAD_GROUP_VERSION}", NAD_PLURAL),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    KIND: (f"/apis/{API_VERSION}", PLURAL),
}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_message(exc: Exception) -> str:
    """The API server's message of a failed request (a Status object), else the exception."""
    if isinstance(exc, ApiException):
        try:
            return f"{exc.status} {json.loads(exc.body).get('message')}"
        except (TypeError, ValueError, AttributeError):
            return f"{exc.status} {exc.reason}"
    return str(exc)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.instance = socket.gethostname()

    def _call(self, method: str, path: str, *, body: Any = None, query: list | None = None,
              content_type: str | None = None, resource: str = "") -> Any:
        metrics.API_REQUESTS.labels(controller=KIND, verb=method, resource=resource).inc()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        resp = self.api.call_api(
            path, method, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False,
            _request_timeout=30,
        )
        data = resp.data
        return json.loads(data) if data else None

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = PATHS[kind]
        out = f"{prefix}/namespaces/{namespace}/{plural}"
        if name:
            out += f"/{name}"
        if sub:
            out += f"/{sub}"
        return out

    def apply(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call(
            "PATCH", self.path(kind, meta["namespace"], meta["name"]), body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml", resource=PATHS[kind][1],
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", self.path(kind, namespace, name), resource=PATHS[kind][1])
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", self.path(KIND, namespace, name, "status"), body={"status": status},
                          content_type="application/merge-patch+json", resource=f"{PLURAL}/status")

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self._call("PATCH", self.path("Pod", namespace, name),
                   body={"metadata": {"annotations": annotations}},
                   content_type="application/merge-patch+json", resource="pods")

    def pod_events(self, namespace: str, pod: str, uid: str | None) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod},type=Warning"
        if uid:
            selector += f",involvedObject.uid={uid}"
        out = self._call("GET", self.path("Event", namespace), query=[("fieldSelector", selector)],
                         resource="events")
        return list((out or {}).get("items") or [])

    def post_event(self, router: dict[str, Any], *, reason: str, message: str, warning: bool) -> None:
        meta = router["metadata"]
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "netshift-operator"},
            "reportingComponent": "netshift.io/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call("POST", self.path("Event", meta["namespace"]), body=event, resource="events")
        except Exception as exc:
            log.warning("cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"],
                        error_message(exc))

    def nad_served(self) -> bool:
        """Whether the API server serves network-attachment-definitions.k8s.cni.cncf.io/v1."""
        try:
            out = self._call("GET", f"/apis/{NAD_GROUP_VERSION}", resource="discovery")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == NAD_PLURAL for r in (out or {}).get("resources") or [])
