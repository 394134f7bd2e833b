"""Builders of the Gateway API (v1.6) and core objects the translator emits, as plain dicts (pure).

Channels: every object and field written here is in the standard channel except
``HTTPRoute.spec.rules[].sessionPersistence`` (experimental; see ``SESSION_PERSISTENCE``).
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from netshift.models.gatewayapi import GROUP, api_version

ROUTE_ANNOTATION = "netshift.io/route"  # namespace/name of the Route an object was made from
NOT_TRANSLATED_ANNOTATION = "netshift.io/not-translated"
SESSION_PERSISTENCE = "sessionPersistence"  # the one experimental field the translator writes

HTTP, HTTPS, TLS = "HTTP", "HTTPS", "TLS"
PORTS = {HTTP: 80, HTTPS: 443, TLS: 443}
MAX_LISTENERS = 64  # the Gateway CRD's maxItems
_SECTION_NAME_MAX = 253


def metadata(name: str, namespace: str, annotations: Mapping[str, str] | None = None,
             owners: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    if owners:
        meta["ownerReferences"] = [dict(o) for o in owners]
    return meta


def listener_name(protocol: str, hostname: str) -> str:
    """``http-www-example-com``, ``https-wildcard-example-com``: a valid, unique section name."""
    name = f"{protocol.lower()}-{hostname.replace('*', 'wildcard').replace('.', '-')}"
    if len(name) > _SECTION_NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:_SECTION_NAME_MAX - 11]}-{digest}"
    return name


def listener(protocol: str, hostname: str, certificate_refs: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"name": listener_name(protocol, hostname), "hostname": hostname,
                           "port": PORTS[protocol], "protocol": protocol,
                           "allowedRoutes": {"namespaces": {"from": "All"}}}
    if protocol == HTTPS:
        out["tls"] = {"mode": "Terminate", "certificateRefs": [dict(r) for r in certificate_refs]}
    elif protocol == TLS:
        out["tls"] = {"mode": "Passthrough"}
    return out


def gateway(name: str, namespace: str, gateway_class: str, listeners: Sequence[Mapping[str, Any]],
            annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": api_version("Gateway"), "kind": "Gateway", "metadata": metadata(name, namespace, annotations),
            "spec": {"gatewayClassName": gateway_class,
                     "listeners": sorted((dict(x) for x in listeners), key=lambda x: x["name"])}}


def secret_ref(name: str, namespace: str, gateway_namespace: str) -> dict[str, str]:
    ref = {"group": "", "kind": "Secret", "name": name}
    if namespace != gateway_namespace:
        ref["namespace"] = namespace
    return ref


def parent_ref(gateway_name: str, gateway_namespace: str, section: str) -> dict[str, str]:
    return {"group": GROUP, "kind": "Gateway", "name": gateway_name, "namespace": gateway_namespace,
            "sectionName": section}


def http_route(meta: Mapping[str, Any], parents: Sequence[Mapping[str, str]], hostname: str,
               rule: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version("HTTPRoute"), "kind": "HTTPRoute", "metadata": dict(meta),
            "spec": {"parentRefs": [dict(p) for p in parents], "hostnames": [hostname], "rules": [dict(rule)]}}


def tls_route(meta: Mapping[str, Any], parents: Sequence[Mapping[str, str]], hostname: str,
              backend_refs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": api_version("TLSRoute"), "kind": "TLSRoute", "metadata": dict(meta),
            "spec": {"parentRefs": [dict(p) for p in parents], "hostnames": [hostname],
                     "rules": [{"backendRefs": [dict(b) for b in backend_refs]}]}}


def path_match(path: str) -> dict[str, Any]:
    # PathPrefix matches whole path elements: /foo matches /foo and /foo/bar, not /foobar (as OpenShift).
    return {"path": {"type": "PathPrefix", "value": path}}


def header_modifier(kind: str, set_: Sequence[tuple[str, str]], remove: Sequence[str]) -> dict[str, Any]:
    """``RequestHeaderModifier`` / ``ResponseHeaderModifier`` filter."""
    body: dict[str, Any] = {}
    if set_:
        body["set"] = [{"name": n, "value": v} for n, v in set_]
    if remove:
        body["remove"] = list(remove)
    return {"type": kind, kind[0].lower() + kind[1:]: body}


def https_redirect() -> dict[str, Any]:
    # OpenShift's Redirect answers 302; without a port the redirect goes to https' well-known port.
    return {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 302}}


def prefix_rewrite(target: str) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": target}}}


def tls_secret(meta: Mapping[str, Any], certificate: str, key: str) -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": dict(meta), "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(certificate), "tls.key": b64(key)}}


def ca_config_map(meta: Mapping[str, Any], ca: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta), "data": {"ca.crt": ca}}


def backend_tls_policy(meta: Mapping[str, Any], services: Sequence[str], hostname: str,
                       ca_config_map_name: str | None) -> dict[str, Any]:
    validation: dict[str, Any] = {"hostname": hostname}
    if ca_config_map_name:
        validation["caCertificateRefs"] = [{"group": "", "kind": "ConfigMap", "name": ca_config_map_name}]
    else:
        validation["wellKnownCACertificates"] = "System"
    return {"apiVersion": api_version("BackendTLSPolicy"), "kind": "BackendTLSPolicy", "metadata": dict(meta),
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": s} for s in services],
                     "validation": validation}}


def reference_grant(name: str, namespace: str, gateway_namespace: str, secrets: Sequence[str]) -> dict[str, Any]:
    """Lets the Gateway (another namespace) use the listed Secrets of ``namespace`` as certificates."""
    return {"apiVersion": api_version("ReferenceGrant"), "kind": "ReferenceGrant",
            "metadata": metadata(name, namespace),
            "spec": {"from": [{"group": GROUP, "kind": "Gateway", "namespace": gateway_namespace}],
                     "to": [{"group": "", "kind": "Secret", "name": s} for s in sorted(set(secrets))]}}


def duration(ms: float) -> str:
    """A Gateway API Duration (``^([0-9]{1,5}(h|m|s|ms)){1,4}$``) of at least ``ms`` milliseconds."""
    rest = max(1, int(-(-ms // 1)))  # whole milliseconds, rounded up (500us -> 1ms)
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, rest = divmod(rest, size)
        if n:
            out += f"{n}{unit}"
    return out
