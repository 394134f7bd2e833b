"""The operator process: house settings for kopf, the metrics endpoint, and handler registration.

Handlers live in `netshift.handlers.*`, one module per kind; importing that package registers them.
"""
from __future__ import annotations

import logging

import kopf

from netshift import metrics

log = logging.getLogger("netshift.operator")

# Own prefix for everything kopf writes onto objects, so we never collide with other operators.
ANNOTATION_PREFIX = "netshift.io"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """Apply the house settings; pure so that a unit test can check them."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Watch streams end server-side after server_timeout; the client gives up a little later,
    # so a silently dead connection is noticed and the watch is re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # We post our own Events on condition transitions; kopf's per-handler chatter only for problems.
    settings.posting.level = logging.WARNING
    # One operator instance per cluster is the deployment model (Recreate strategy); no peering CRD.
    settings.peering.standalone = True
    settings.execution.max_workers = 20


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: object) -> None:
    configure_settings(settings)


def run(
    *,
    namespaces: list[str],
    metrics_port: int,
    health_port: int,
    bind_address: str,
    log_format: str,
    verbose: bool,
) -> int:
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN,
        log_refkey="object",
    )
    if not verbose:
        # kopf logs every successful handler call at INFO: thousands of lines at scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import netshift.handlers  # noqa: F401  registers the handlers

    if metrics_port:
        metrics.serve(bind_address, metrics_port)
    liveness = f"http://{bind_address}:{health_port}/healthz" if health_port else None
    log.info("starting netshift operator", extra={"namespaces": namespaces or "all"})
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        # Handlers that list at startup (route admission) need to know what is watched.
        memo=kopf.Memo(namespaces=list(namespaces)),
        liveness_endpoint=liveness,
    )
    return 0
