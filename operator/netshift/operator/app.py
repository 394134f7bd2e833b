"""The operator process: kopf's house settings, the handler registry built from the settings, the
controllers' state in kopf's memo, the metrics endpoint."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import kopf

from netshift import metrics
from netshift.egressrouter.controller import Controller
from netshift.egressrouter.render import RenderSettings
from netshift.operator import egressrouter, malloc, route
from netshift.settings import OperatorSettings

log = logging.getLogger("netshift.operator")

# Own prefix for everything kopf writes onto objects, so we never collide with other operators.
ANNOTATION_PREFIX = "netshift.io"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"


def configure_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    """The startup handler applying the house settings; pure so that a unit test can check them."""
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


async def _trim_memory(memo: kopf.Memo, **_: Any) -> None:
    memo.malloc_trim = asyncio.create_task(malloc.trim_forever(), name="malloc-trim")


async def _stop_trimming(memo: kopf.Memo, **_: Any) -> None:
    if "malloc_trim" in memo:
        memo.malloc_trim.cancel()


def registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg)(kopf.login_via_client)  # what kopf's default registry would use
    kopf.on.startup(id="house-settings", registry=reg)(configure_settings)
    kopf.on.startup(id="malloc-trim", registry=reg)(_trim_memory)
    kopf.on.cleanup(id="malloc-trim", registry=reg)(_stop_trimming)
    egressrouter.register(reg)
    if settings.routes_enabled:
        route.register(reg)
    return reg


def run(settings: OperatorSettings, *, verbose: bool) -> int:
    if not verbose:
        # kopf logs every successful handler call at INFO: thousands of lines at scale.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if settings.metrics_port:
        metrics.serve(settings.bind_address, settings.metrics_port)
    liveness = f"http://{settings.bind_address}:{settings.health_port}/healthz" if settings.health_port else None
    namespaces = list(settings.namespaces)
    log.info("starting netshift operator (namespaces: %s)", ", ".join(namespaces) or "all")
    render = RenderSettings(**settings.model_dump(include={f.name for f in dataclasses.fields(RenderSettings)}))
    memo = kopf.Memo(settings=settings, egressrouter=Controller(render, settings.resync_seconds))
    kopf.run(registry=registry(settings), standalone=True, clusterwide=not namespaces, namespaces=namespaces,
             memo=memo, liveness_endpoint=liveness)
    return 0
