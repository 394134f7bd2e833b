"""The opt-in active/standby of an EgressRouter: the `netshift.io/replicas` annotation (pure).

Absent means one pod, exactly as without netshift's extension (the OpenShift API stays exact).
"""
from __future__ import annotations

from collections.abc import Mapping

from netshift.egressrouter.spec import Problem

REPLICAS_ANNOTATION = "netshift.io/replicas"
MAX_REPLICAS = 3
FIELD = f"metadata.annotations[{REPLICAS_ANNOTATION}]"


def replicas(annotations: Mapping[str, str] | None) -> int | Problem:
    """The number of redirect pods the router asks for (1 when the annotation is absent)."""
    raw = (annotations or {}).get(REPLICAS_ANNOTATION)
    if raw is None:
        return 1
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_REPLICAS:
        return Problem("InvalidReplicas", FIELD,
                       f"{raw!r} is not a number of redirect pods from 1 to {MAX_REPLICAS} (like \"2\")")
    return int(text)
