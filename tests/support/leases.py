"""A fake Lease API (for netshift.kube.lease.Elector) and a clock the test moves."""
from __future__ import annotations

from typing import Any

from netshift.kube import ApiError


class FakeLeases:
    """One Lease on an 'API server' with optimistic concurrency; a LeaseClient's interface."""
    namespace, name = "ns", "egress"

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = 0
        self.down = False
        self.writes = 0

    def get(self) -> dict[str, Any] | None:
        if self.down:
            raise ApiError(0, "no answer")
        return self.obj

    def write(self, obj: dict[str, Any], *, create: bool) -> dict[str, Any]:
        if self.down:
            raise ApiError(0, "no answer")
        self.writes += 1
        current = self.obj["metadata"]["resourceVersion"] if self.obj else None
        if create != (self.obj is None) or obj["metadata"].get("resourceVersion") != current:
            raise ApiError(409, "conflict")
        self.rv += 1
        self.obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        return self.obj


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t
