"""Prometheus metrics of the operator; one registry, served on its own port."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from netshift import __version__

BUILD_INFO = Info("netshift_build", "netshift build information")
BUILD_INFO.info({"version": __version__})

RECONCILES = Counter(
    "netshift_reconcile_total", "Reconciles by kind and result", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "netshift_reconcile_duration_seconds", "Reconcile duration by kind", ["kind"]
)
CHILDREN_APPLIED = Counter(
    "netshift_children_applied_total", "Child objects server-side applied", ["kind", "child"]
)
CONDITIONS = Gauge(
    "netshift_objects_by_condition", "Objects by condition type and status", ["kind", "type", "status"]
)
ADMISSIONS = Counter(
    "netshift_route_admission_total", "Route admission outcomes by reason", ["reason"]
)


def serve(address: str, port: int) -> None:
    start_http_server(port, addr=address)
