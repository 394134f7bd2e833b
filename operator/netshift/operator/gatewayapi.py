"""kopf wiring of the Gateway API mirror (``netshift.gatewayapi.mirror``), registered only when
``NETSHIFT_GATEWAY_API_MIRROR`` is on: the mirror runs in its own thread with its own list-watches
of Routes and Services, started and stopped with the operator."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import kopf

from netshift.gatewayapi import Options
from netshift.gatewayapi.mirror import Mirror
from netshift.kube import Kube, new_api_client
from netshift.settings import OperatorSettings


def _kube() -> Kube:  # one connection per watch: each holds a streaming request open
    return Kube(new_api_client("operator"), controller="gateway-api-mirror")


async def _startup(memo: kopf.Memo, **_: Any) -> None:
    s: OperatorSettings = memo.settings
    namespace, _slash, name = s.gateway_api_gateway.partition("/")
    opts = Options(gateway_name=name, gateway_namespace=namespace, gateway_class=s.gateway_api_class,
                   router_name=s.router_name, domain=s.router_domain)
    stop = threading.Event()
    mirror = Mirror(_kube(), opts, namespaces=s.namespaces)

    async def start_when_leading() -> None:  # with leader election, only the leader mirrors (it writes)
        await memo.leading.wait()
        threading.Thread(target=mirror.run, args=(stop, _kube), daemon=True, name="gateway-api-mirror").start()

    memo.gateway_api_mirror_start = asyncio.create_task(start_when_leading(), name="gateway-api-mirror-start")
    memo.gateway_api_mirror = mirror
    memo.gateway_api_mirror_stop = stop


async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "gateway_api_mirror_stop" in memo:
        memo.gateway_api_mirror_stop.set()


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(id="netshift-gateway-api-mirror", registry=registry)(_startup)
    kopf.on.cleanup(id="netshift-gateway-api-mirror", registry=registry)(_cleanup)
