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
API_REQUESTS = Counter(
    "netshift_api_requests_total", "API requests made by a controller (excluding watches)",
    ["controller", "verb", "resource"],
)
WRITES_FENCED = Counter(
    "netshift_api_writes_fenced_total", "Writes refused before sending: not the leader", ["controller"],
)
LEADER = Gauge("netshift_leader", "1 while this operator process leads (always 1 without leader election)")
LEASE_TRANSITIONS = Gauge(
    "netshift_lease_transitions", "The leader Lease's spec.leaseTransitions as last observed"
)
ADMISSIONS = Counter(
    "netshift_route_admission_total", "Route admission outcomes by reason", ["reason"]
)

ROUTE_EVALUATIONS = Counter(
    "netshift_route_evaluations_total", "Route admission decisions computed (routes re-evaluated)"
)
ROUTE_EVALUATION_SECONDS = Histogram(
    "netshift_route_evaluation_duration_seconds", "Time to re-evaluate the dirty route groups"
)


def serve(address: str, port: int) -> None:
    start_http_server(port, addr=address)
