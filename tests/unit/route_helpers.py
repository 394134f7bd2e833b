"""Builders of Route objects and candidates for the route unit tests."""
from __future__ import annotations

import itertools
from typing import Any

from netshift.models.route import Route
from netshift.route import admission

_seq = itertools.count(1)


def route_obj(name: str = "r", namespace: str = "ns", *, host: str | None = None,
              created: str | None = None, uid: str | None = None, path: str | None = None,
              tls: dict[str, Any] | None = None, wildcard: str | None = None,
              subdomain: str | None = None, annotations: dict[str, str] | None = None,
              status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    n = next(_seq)
    body: dict[str, Any] = {
        "apiVersion": "route.openshift.io/v1", "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{n:06d}",
                     "creationTimestamp": created or f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
                     "resourceVersion": str(n)},
        "spec": {"to": {"kind": "Service", "name": "svc", "weight": 100}, **spec},
    }
    if annotations:
        body["metadata"]["annotations"] = annotations
    for key, value in (("host", host), ("path", path), ("tls", tls), ("wildcardPolicy", wildcard),
                       ("subdomain", subdomain)):
        if value is not None:
            body["spec"][key] = value
    if status is not None:
        body["status"] = status
    return body


def route(*args: Any, **kwargs: Any) -> Route:
    return Route.from_obj(route_obj(*args, **kwargs))


POLICY = admission.Policy(domain="apps.example.com", allow_wildcard_routes=True)


def cand(name: str, namespace: str = "ns", policy: admission.Policy = POLICY, **kwargs: Any):
    return admission.candidate(route(name, namespace, **kwargs), policy)
