"""The ``status.ingress`` entry of our router, and whether the route needs a status patch at all.

Pure. Entries of other routers are kept as they are (same position, same content); ours is
replaced in place or appended. ``lastTransitionTime`` only moves when the condition's status flips,
so re-admitting an admitted route writes nothing.
"""
from __future__ import annotations

from typing import Any

from netshift.models.route import ADMITTED, WildcardPolicy, admitted_condition

from .admission import Decision


def desired_entry(*, router_name: str, host: str, wildcard_policy: str | None,
                  canonical_hostname: str | None, decision: Decision,
                  previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """Our ``status.ingress[]`` entry (wire form) for a decision.

    ``previous`` is our current entry, if any: its ``lastTransitionTime`` is kept while the
    Admitted status stays the same.
    """
    condition: dict[str, Any] = {"type": ADMITTED, "status": "True" if decision.admitted else "False"}
    if not decision.admitted:
        if decision.reason:
            condition["reason"] = decision.reason
        if decision.message:
            condition["message"] = decision.message
    old = admitted_condition(previous)
    if old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
        condition["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        condition["lastTransitionTime"] = now
    entry: dict[str, Any] = {}
    if host:
        entry["host"] = host  # written on rejection too: users see which host was refused
    entry["routerName"] = router_name
    entry["wildcardPolicy"] = wildcard_policy or WildcardPolicy.NONE.value
    if canonical_hostname:
        entry["routerCanonicalHostname"] = canonical_hostname
    entry["conditions"] = [condition]
    return entry


def our_entry(ingress: list[dict[str, Any]] | None, router_name: str) -> dict[str, Any] | None:
    return next((e for e in ingress or [] if e.get("routerName") == router_name), None)


def merged_ingress(ingress: list[dict[str, Any]] | None, router_name: str,
                   entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ingress list with our entry replaced (or appended; or removed when ``entry`` is None).
    Duplicate entries of our router are collapsed into one."""
    out: list[dict[str, Any]] = []
    placed = False
    for e in ingress or []:
        if e.get("routerName") != router_name:
            out.append(e)
        elif not placed and entry is not None:
            out.append(entry)
            placed = True
    if not placed and entry is not None:
        out.append(entry)
    return out


def needs_patch(ingress: list[dict[str, Any]] | None, desired: list[dict[str, Any]]) -> bool:
    return _normal(ingress or []) != _normal(desired)


def _normal(ingress: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The API server drops empty strings and nulls of optional fields; compare without them.
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v not in (None, "", [], {})}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return [clean(e) for e in ingress]


def status_patch(ingress: list[dict[str, Any]], resource_version: str | None) -> dict[str, Any]:
    """A merge patch for the status subresource. The list is replaced as a whole, so the patch
    carries the resourceVersion it was computed from: a concurrent writer (another router) makes
    it fail with a conflict instead of losing its entry."""
    patch: dict[str, Any] = {"status": {"ingress": ingress}}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch
