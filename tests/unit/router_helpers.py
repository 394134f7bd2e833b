"""Builders of Route and EndpointSlice objects for the router's tests (plain dicts, as the API has them)."""
from __future__ import annotations

from typing import Any

ROUTER = "default"


def route_obj(name: str, host: str, *, namespace: str = "ns", path: str | None = None,
              service: str = "svc", weight: int | None = 100, alternates: list[tuple[str, int]] = (),
              target_port: int | str | None = None, tls: dict[str, Any] | None = None,
              annotations: dict[str, str] | None = None, wildcard: bool = False,
              admitted: bool | None = True, router: str = ROUTER, status_host: str | None = None,
              created: str = "2024-01-01T00:00:00Z", uid: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": host, "to": {"kind": "Service", "name": service}}
    if weight is not None:
        spec["to"]["weight"] = weight
    if path is not None:
        spec["path"] = path
    if alternates:
        spec["alternateBackends"] = [{"kind": "Service", "name": n, "weight": w} for n, w in alternates]
    if target_port is not None:
        spec["port"] = {"targetPort": target_port}
    if tls is not None:
        spec["tls"] = tls
    spec["wildcardPolicy"] = "Subdomain" if wildcard else "None"
    obj: dict[str, Any] = {
        "apiVersion": "route.openshift.io/v1", "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}",
                     "creationTimestamp": created, "annotations": dict(annotations or {})},
        "spec": spec,
    }
    if admitted is not None:
        obj["status"] = {"ingress": [{
            "routerName": router, "host": status_host or host, "wildcardPolicy": spec["wildcardPolicy"],
            "conditions": [{"type": "Admitted", "status": "True" if admitted else "False",
                            **({} if admitted else {"reason": "HostAlreadyClaimed"})}]}]}
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
