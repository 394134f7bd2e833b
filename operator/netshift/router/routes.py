"""The routes a router serves: admitted Routes of its router name, reduced to what HAProxy needs.

Pure. A route is served when its ``status.ingress`` has an entry for the router name with an
``Admitted=True`` condition; the served host is the host of that entry (for ``spec.subdomain``
routes it is ``<subdomain>.<domain>``, only known from status).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from netshift.models.route import DEFAULT_WEIGHT, HeaderActionType, WildcardPolicy, admitted_condition
from netshift.models.route import InsecureEdgeTerminationPolicy as Insecure
from netshift.models.route import TLSTermination as Termination

HTTP = "http"  # no spec.tls


@dataclasses.dataclass(frozen=True)
class ServedRoute:
    namespace: str
    name: str
    host: str
    path: str = ""
    wildcard: bool = False  # wildcardPolicy Subdomain: serves *.<domain of host>
    termination: str = HTTP  # http | edge | reencrypt | passthrough
    insecure_policy: str = Insecure.NONE  # Allow | None | Redirect (TLS routes only)
    backends: tuple[tuple[str, int], ...] = ()  # (service, weight) of to + alternateBackends
    target_port: int | str | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    certificate: str = ""
    key: str = ""
    ca_certificate: str = ""
    destination_ca_certificate: str = ""
    created: str = ""
    uid: str = ""
    # spec.httpHeaders.actions: (action, header name, value) with action "set" or "del" (value "")
    request_headers: tuple[tuple[str, str, str], ...] = ()
    response_headers: tuple[tuple[str, str, str], ...] = ()
    external_certificate: str = ""  # spec.tls.externalCertificate.name (a Secret in the namespace)

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)

    @property
    def tls(self) -> bool:
        return self.termination != HTTP

    @property
    def decrypts(self) -> bool:
        """edge and reencrypt: the router terminates TLS (passthrough only routes by SNI)."""
        return self.termination in (Termination.EDGE, Termination.REENCRYPT)

    @property
    def services(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.backends))


SET, DELETE = "set", "del"


def _valid_header_text(text: str) -> bool:
    # Control characters (a newline above all) would break the configuration's line syntax; the CRD
    # already refuses them, this only keeps a bad object from reaching HAProxy.
    return bool(text) and not any(ord(c) < 32 or ord(c) == 127 for c in text)


def header_actions(items: Any) -> tuple[tuple[str, str, str], ...]:
    """``spec.httpHeaders.actions.request`` / ``.response`` as (action, name, value), in order.

    ``Set`` needs a value, ``Delete`` has none; items the CRD would refuse (no name, unknown type,
    control characters) are dropped. Values stay in HAProxy's log-format syntax (``%[...]``, ``%%``):
    the CRD admits only that syntax, the renderer quotes them as one configuration word.
    """
    out = []
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        name = item.get("name") or ""
        action = item.get("action") or {}
        kind = action.get("type")
        if not _valid_header_text(name):
            continue
        if kind == HeaderActionType.SET:
            value = (action.get("set") or {}).get("value") or ""
            if _valid_header_text(value):
                out.append((SET, name, value))
        elif kind == HeaderActionType.DELETE:
            out.append((DELETE, name, ""))
    return tuple(out)


def admitted_entry(obj: Mapping[str, Any], router_name: str) -> Mapping[str, Any] | None:
    """This router's ``status.ingress`` entry when it says Admitted=True, else None."""
    for entry in (obj.get("status") or {}).get("ingress") or []:
        if entry.get("routerName") == router_name:
            return entry if (admitted_condition(entry) or {}).get("status") == "True" else None
    return None


def served_route(obj: Mapping[str, Any], router_name: str) -> ServedRoute | None:
    """The served form of a Route object (a plain dict from the API), or None when not served."""
    entry = admitted_entry(obj, router_name)
    if entry is None:
        return None
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    host = (entry.get("host") or spec.get("host") or "").lower()
    if not host:
        return None
    to = spec.get("to") or {}
    backends = []
    for ref in [to, *(spec.get("alternateBackends") or [])]:
        if not ref.get("name") or (ref.get("kind") or "Service") != "Service":
            continue
        weight = ref.get("weight")
        backends.append((ref["name"], DEFAULT_WEIGHT if weight is None else int(weight)))
    tls = spec.get("tls") or {}
    termination = (tls.get("termination") or "").lower() or HTTP
    if termination not in tuple(Termination):
        termination = HTTP
    policy = tls.get("insecureEdgeTerminationPolicy") or Insecure.NONE
    if termination == HTTP:
        policy = Insecure.ALLOW  # plain routes are served on the HTTP port, by definition
    elif policy not in tuple(Insecure):
        policy = Insecure.NONE
    target_port = (spec.get("port") or {}).get("targetPort")
    actions = (spec.get("httpHeaders") or {}).get("actions") or {}
    http_mode = termination != Termination.PASSTHROUGH
    wildcard = (entry.get("wildcardPolicy") or spec.get("wildcardPolicy")) == WildcardPolicy.SUBDOMAIN
    return ServedRoute(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        host=host,
        path="" if termination == Termination.PASSTHROUGH else (spec.get("path") or ""),
        wildcard=wildcard,
        termination=termination,
        insecure_policy=policy,
        backends=tuple(backends),
        target_port=target_port,
        annotations=tuple(sorted((meta.get("annotations") or {}).items())),
        certificate=tls.get("certificate") or "",
        key=tls.get("key") or "",
        ca_certificate=tls.get("caCertificate") or "",
        destination_ca_certificate=tls.get("destinationCACertificate") or "",
        created=meta.get("creationTimestamp") or "",
        uid=meta.get("uid") or "",
        request_headers=header_actions(actions.get("request")) if http_mode else (),
        response_headers=header_actions(actions.get("response")) if http_mode else (),
        external_certificate=((tls.get("externalCertificate") or {}).get("name") or "")
        if termination in (Termination.EDGE, Termination.REENCRYPT) else "",
    )
