"""Reading and writing one `coordination.k8s.io/v1` Lease (the decisions: netshift.lease)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from netshift.lease import Record

from .api import ApiError, Kube, path


class LeaseClient:
    """Read and write one Lease; every request bounded by `timeout` seconds (a holder must be able to
    step down in time even when the API server does not answer)."""

    def __init__(self, kube: Kube, namespace: str, name: str, timeout: float) -> None:
        self.kube, self.namespace, self.name, self.timeout = kube, namespace, name, timeout

    def get(self) -> tuple[Record | None, dict[str, Any] | None]:
        try:
            obj = self.kube.request("GET", path("Lease", self.namespace, self.name), resource="leases",
                                    timeout=self.timeout)
        except ApiError as exc:
            if exc.not_found:
                return None, None
            raise
        return Record.of(obj), obj

    def write(self, obj: dict[str, Any], *, create: bool) -> Record:
        """Create, or merge-patch at the object's resourceVersion (409: somebody else wrote first). A
        patch keeps what others own (the operator's labels and ownerReferences)."""
        if create:
            out = self.kube.request("POST", path("Lease", self.namespace), body=obj, resource="leases",
                                    timeout=self.timeout)
        else:
            out = self.kube.request("PATCH", path("Lease", self.namespace, self.name), body=obj,
                                    content_type="application/merge-patch+json", resource="leases",
                                    timeout=self.timeout)
        return Record.of(cast(Mapping[str, Any], out))
