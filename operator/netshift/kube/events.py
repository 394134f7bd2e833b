"""core/v1 Events, the one way netshift reports transitions to `kubectl describe`.

A plain POST through ``Kube.post_event`` (not kopf's ``kopf.info``/``kopf.warn``): it works from any
thread and outside kopf's handler context (the route worker, the reconcile threads), it is counted
with every other request, and both controllers write the same format. Each Event is new (count 1):
transitions are rare, so there is nothing to aggregate.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from netshift.models import rfc3339_now

MAX_MESSAGE = 1024


def event(api_version: str, kind: str, meta: Mapping[str, Any], *, reason: str, message: str,
          warning: bool, instance: str) -> dict[str, Any]:
    now = rfc3339_now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": api_version, "kind": kind, "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "netshift-operator"},
        "reportingComponent": "netshift.io/operator",
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def warnings_selector(kind: str, name: str, uid: str | None) -> str:
    selector = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
    return selector + (f",involvedObject.uid={uid}" if uid else "")
