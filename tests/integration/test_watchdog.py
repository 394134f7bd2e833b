"""The watch watchdog: a watch stream that stays open but goes silent is restarted within the bound.

A TCP proxy (tests/support/proxy.py) in front of the API server silences every open connection
without closing it; new connections pass. A child deleted during the silence reaches the operator
only through a new watch: it must be back within the inactivity timeout plus a few seconds (the resync
is far away). It may come back sooner: a stream whose inactivity timer was already running when the
proxy froze it is restarted sooner, which is the watchdog too.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, config

from netshift.kube import Kube
from netshift.kube.watch import ListWatch
from tests.support.cluster import start_operator, stop_operator
from tests.support.egressrouters import SPEC, apply_router, children_exist, get
from tests.support.proxy import silent_proxy
from tests.support.wait import wait_for

INACTIVITY = 6.0


def test_silent_watch_is_restarted_and_the_change_reconciled(cluster, namespace, nad_crd, tmp_path, request):
    with silent_proxy(cluster.kubeconfig, tmp_path / "proxied.kubeconfig") as (proxy, kubeconfig):
        op = start_operator(cluster, tmp_path, "--namespace", namespace,
                            "--watch-inactivity-seconds", str(INACTIVITY), env={"KUBECONFIG": kubeconfig})
        try:
            apply_router(cluster, namespace, "egress", SPEC)
            wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
            uid = get(cluster, "Service", namespace, "egress")["metadata"]["uid"]
            assert proxy.freeze() > 0
            silenced = time.monotonic()
            cluster.kubectl("delete", "service", "egress", "-n", namespace, "--wait=true")  # not via the proxy

            def back() -> bool:
                obj = get(cluster, "Service", namespace, "egress")
                return bool(obj) and obj["metadata"]["uid"] != uid

            wait_for("Service recreated after the watchdog", back, timeout=INACTIVITY + 15)
            assert time.monotonic() - silenced <= INACTIVITY + 15
        finally:
            stop_operator(op, request)


def test_list_watch_resumes_a_silent_stream(cluster, namespace, tmp_path):
    """netshift.kube.watch (the router's watches) has the same watchdog: its read timeout."""
    seen: list[str] = []
    listings: list[int] = []

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        seen.append(obj["metadata"]["name"])

    with silent_proxy(cluster.kubeconfig, tmp_path / "proxied.kubeconfig") as (proxy, kubeconfig):
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        watch = ListWatch(Kube(client.ApiClient(cfg), controller="test"), "ConfigMap",
                          lambda items: listings.append(len(items)), on_event, inactivity=INACTIVITY,
                          params=[("fieldSelector", f"metadata.namespace={namespace}")])
        stop = threading.Event()
        thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
        thread.start()
        try:
            assert watch.synced.wait(30)
            time.sleep(1)  # the watch request is open
            assert proxy.freeze() > 0
            silenced = time.monotonic()
            cluster.kubectl("create", "configmap", "during-silence", "-n", namespace)
            wait_for("the event after the silence", lambda: "during-silence" in seen, timeout=INACTIVITY + 10)
            assert time.monotonic() - silenced >= INACTIVITY - 1  # it did go silent
            assert len(listings) == 1  # resumed from its resourceVersion, no new listing
        finally:
            stop.set()
