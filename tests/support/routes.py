"""Builders of Route and EndpointSlice objects (plain dicts, as the API has them) and of admission
candidates."""
from __future__ import annotations

import itertools
from typing import Any

from netshift.models.route import Route
from netshift.route import admission

ROUTER = "default"
POLICY = admission.Policy(domain="apps.example.com", allow_wildcard_routes=True)

_seq = itertools.count(1)


def route_obj(name: str = "r", namespace: str = "ns", *, host: str | None = None,
              created: str | None = None, uid: str | None = None, path: str | None = None,
              service: str = "svc", weight: int | None = 100, alternates: list[tuple[str, int]] = (),
              target_port: int | str | None = None, tls: dict[str, Any] | None = None,
              wildcard: str | None = None, subdomain: str | None = None,
              annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None,
              **spec: Any) -> dict[str, Any]:
    """A Route as a user creates it; creation times and uids increase with every call unless given."""
    n = next(_seq)
    to: dict[str, Any] = {"kind": "Service", "name": service}
    if weight is not None:
        to["weight"] = weight
    body: dict[str, Any] = {
        "apiVersion": "route.openshift.io/v1", "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{n:06d}",
                     "creationTimestamp": created or f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
                     "resourceVersion": str(n)},
        "spec": {"to": to, **spec},
    }
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    if alternates:
        body["spec"]["alternateBackends"] = [{"kind": "Service", "name": s, "weight": w} for s, w in alternates]
    if target_port is not None:
        body["spec"]["port"] = {"targetPort": target_port}
    for key, value in (("host", host), ("path", path), ("tls", tls), ("wildcardPolicy", wildcard),
                       ("subdomain", subdomain)):
        if value is not None:
            body["spec"][key] = value
    if status is not None:
        body["status"] = status
    return body


def served_route_obj(name: str, host: str, *, namespace: str = "ns", wildcard: bool = False,
                     admitted: bool | None = True, router: str = ROUTER, status_host: str | None = None,
                     created: str = "2024-01-01T00:00:00Z", uid: str | None = None,
                     annotations: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """A Route as a router sees it: admitted (or rejected, or with no status when admitted is None) by
    ``router``; same creation time for all, uid from namespace and name, so only what a test sets differs."""
    policy = "Subdomain" if wildcard else "None"
    status = None
    if admitted is not None:
        status = {"ingress": [{
            "routerName": router, "host": status_host or host, "wildcardPolicy": policy,
            "conditions": [{"type": "Admitted", "status": "True" if admitted else "False",
                            **({} if admitted else {"reason": "HostAlreadyClaimed"})}]}]}
    obj = route_obj(name, namespace, host=host, wildcard=policy, created=created,
                    uid=uid or f"uid-{namespace}-{name}", annotations=dict(annotations or {}),
                    status=status, **kwargs)
    del obj["metadata"]["resourceVersion"]
    return obj


def slice_obj(service: str, addresses: list[str], ports: list[tuple[str | None, int]], *,
              namespace: str = "ns", name: str | None = None, ready: list[bool] | None = None,
              address_type: str = "IPv4", protocol: str = "TCP") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or f"{service}-abc", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "endpoints": [{"addresses": [a], "conditions": {"ready": (ready[i] if ready else True)},
                       "targetRef": {"kind": "Pod", "name": f"{service}-pod-{i}"}}
                      for i, a in enumerate(addresses)],
        "ports": [{**({"name": n} if n is not None else {}), "port": p, "protocol": protocol}
                  for n, p in ports],
    }


def route(*args: Any, **kwargs: Any) -> Route:
    return Route.from_obj(route_obj(*args, **kwargs))


def cand(name: str, namespace: str = "ns", policy: admission.Policy = POLICY, **kwargs: Any):
    return admission.candidate(route(name, namespace, **kwargs), policy)
