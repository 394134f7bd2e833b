"""Endpoints of a Service as the router sees them: EndpointSlices in, ready (address, port) pairs out.

Pure. An EndpointSlice carries a list of endpoints (addresses, readiness, the pod it targets) and a
list of ports that apply to every endpoint of the slice. The port ``name`` of a slice is the
*Service* port name and ``port`` is the pod's port number, so a Route's ``spec.port.targetPort``
matches an endpoint port by that name or by that number (as OpenShift's router matches them).

Only addresses a Route may send traffic to are kept: never the router's own addresses (its pod's,
given by the caller), loopback, link-local, unspecified or multicast ones. Whoever can write an
EndpointSlice (the owner of a selector-less Service) could otherwise point a public Route at the
router itself (its stats/metrics listener, its internal ports) or at the node's loopback services.

Weights follow OpenShift's router: a backend's weight is spread over its endpoints, and the
per-endpoint weights are scaled so that the largest is 256 (HAProxy's maximum); a backend with
weight > 0 never drops to 0 by rounding.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_WEIGHT = 256


@dataclasses.dataclass(frozen=True, order=True)
class Endpoint:
    """One (address, port) of a ready endpoint of a Service."""

    address: str
    port: int
    port_name: str = ""  # the Service port name ("" for an unnamed port)
    target: str = ""  # the pod name (a targetRef of kind Pod), "" otherwise

    @property
    def ipv6(self) -> bool:
        return ":" in self.address


def service_of(slice_obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, service name) of an EndpointSlice, or None for slices not owned by a Service."""
    meta = slice_obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not name:
        return None
    return meta.get("namespace") or "", name


def _ready(endpoint: Mapping[str, Any]) -> bool:
    # "ready": nil means ready (the API's documented interpretation); terminating pods are not ready.
    return (endpoint.get("conditions") or {}).get("ready") is not False


def routable(address: str, own: Collection[str] = ()) -> bool:
    """May a route's traffic go to ``address``? Not to the router (``own``: its addresses),
    loopback, link-local, unspecified or multicast addresses, nor to what is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return False
    return str(ip) not in {str(ipaddress.ip_address(a)) for a in own}


def endpoints_from_slices(slices: Iterable[Mapping[str, Any]], own: Collection[str] = ()) -> list[Endpoint]:
    """Every ready, routable (address, port) of the given slices of one Service, deduplicated and
    sorted; ``own``: the router's addresses."""
    out: dict[tuple[str, int, str], Endpoint] = {}
    for s in slices:
        if (s.get("addressType") or "IPv4") not in ("IPv4", "IPv6"):
            continue  # FQDN slices are not routable by address
        ports = [p for p in (s.get("ports") or [])
                 if (p.get("protocol") or "TCP") == "TCP" and p.get("port")]
        for ep in s.get("endpoints") or []:
            if not _ready(ep):
                continue
            ref = ep.get("targetRef") or {}
            target = (ref.get("name") or "") if ref.get("kind") == "Pod" else ""
            for address in ep.get("addresses") or []:
                if not routable(address, own):
                    continue
                for p in ports:
                    e = Endpoint(address=address, port=int(p["port"]), port_name=p.get("name") or "",
                                 target=target)
                    # One address in two slices (during a slice split): keep one, the smallest.
                    key = (e.address, e.port, e.port_name)
                    if key not in out or e < out[key]:
                        out[key] = e
    return sorted(out.values())


def select_port(endpoints: Sequence[Endpoint], target_port: int | str | None) -> list[Endpoint]:
    """The endpoints a route with this ``targetPort`` uses.

    No targetPort: every port of every endpoint (OpenShift's behaviour). A number (or a string of
    digits) matches the endpoint port number or, as a string, the port name; a name matches the
    port name.
    """
    if target_port is None or target_port == "":
        return list(endpoints)
    wanted = str(target_port)
    return [e for e in endpoints if e.port_name == wanted or str(e.port) == wanted]


def endpoint_weights(backends: Sequence[tuple[str, int]], counts: Mapping[str, int]) -> dict[str, int]:
    """HAProxy server weight per backend service (every endpoint of a service gets the same one).

    ``backends``: (service, route weight 0..256) in route order (a service named twice adds up);
    ``counts``: number of endpoints each service has. A service without endpoints gets 0.
    """
    total: dict[str, int] = {}
    for name, weight in backends:
        total[name] = total.get(name, 0) + max(0, int(weight))
    per_endpoint = {name: (w / counts[name] if counts.get(name) else 0.0) for name, w in total.items()}
    top = max(per_endpoint.values(), default=0.0)
    return {name: max(1, min(MAX_WEIGHT, int(w * MAX_WEIGHT / top))) if w > 0 and top > 0 else 0
            for name, w in per_endpoint.items()}
