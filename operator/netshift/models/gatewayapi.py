"""Gateway API (``gateway.networking.k8s.io``, v1.6) kinds netshift writes: group, version and plural
stated once (the translator builds the objects as plain dicts, the kube layer addresses them)."""
from __future__ import annotations

GROUP = "gateway.networking.k8s.io"
# kind -> (version, plural); ReferenceGrant: v1beta1 is the stored version (v1 is served too).
KINDS = {
    "Gateway": ("v1", "gateways"),
    "HTTPRoute": ("v1", "httproutes"),
    "TLSRoute": ("v1", "tlsroutes"),
    "BackendTLSPolicy": ("v1", "backendtlspolicies"),
    "ReferenceGrant": ("v1beta1", "referencegrants"),
}


def api_version(kind: str) -> str:
    return f"{GROUP}/{KINDS[kind][0]}"
