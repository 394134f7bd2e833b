"""The router process: watch Routes and EndpointSlices, render, check, install, reload HAProxy.

Threads: one list-watch per resource feeds ``RouterState`` (under a lock) and wakes the sync loop;
the sync loop (the main thread) waits for both initial listings, then renders whenever something
relevant changed, at most once per ``min_interval`` (bursts coalesce into one reload). A rendered
configuration that equals the installed one is dropped (no reload); a new one is written to the
inactive slot, checked with ``haproxy -c`` and only then installed and reloaded. A configuration
HAProxy refuses is logged and counted, and the last good one keeps serving.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from . import haproxy, haproxy_config
from .state import RouterState
from .store import ConfigStore, write_private

log = logging.getLogger("netshift.router")


@dataclasses.dataclass
class Metrics:
    registry: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reloads = Counter("netshift_router_reloads", "HAProxy reloads by result", ["result"], registry=r)
        self.renders = Counter("netshift_router_renders", "Configurations rendered by outcome "
                               "(unchanged, installed, invalid)", ["outcome"], registry=r)
        self.routes = Gauge("netshift_router_routes", "Routes served", registry=r)
        self.backends_without_servers = Gauge(
            "netshift_router_routes_without_endpoints", "Served routes whose backend has no server", registry=r)
        self.last_reload = Gauge("netshift_router_last_reload_timestamp_seconds",
                                 "Time of the last successful reload", registry=r)
        self.sync_seconds = Histogram("netshift_router_sync_duration_seconds",
                                      "Render + check + reload duration", registry=r)
        self.events = Counter("netshift_router_watch_events", "Watch events by resource and type",
                              ["resource", "type"], registry=r)


class Router:
    def __init__(self, *, router_name: str, settings: haproxy_config.Settings, config_dir: str,
                 haproxy_bin: str, min_interval: float = 1.0, metrics: Metrics | None = None,
                 haproxy_output: Any = None, own_addresses: tuple[str, ...] = ()) -> None:
        self.router_name = router_name
        self.settings = settings
        self.state = RouterState(router_name, own_addresses)
        self.store = ConfigStore(config_dir)
        self.haproxy_bin = haproxy_bin
        self.min_interval = min_interval
        self.metrics = metrics or Metrics()
        self.haproxy = haproxy.HAProxy(haproxy_bin, self.store.config_path, f"{settings.run_dir}/master.sock",
                                       stdout=haproxy_output, stderr=haproxy_output)
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.stop = threading.Event()
        self._last_sync = 0.0
        self._certificate_problems: list[str] = []
        self.synced_once = threading.Event()
        self.before_sync: Callable[[], None] | None = None  # e.g. follow the Secrets routes name

    # --- inputs (watch threads) ---------------------------------------------------------------

    def feed(self, resource: str, listed: Callable[[list[Any]], bool],
             changed: Callable[[str, Any], bool]) -> tuple[Callable[[list[dict[str, Any]]], None],
                                                           Callable[[str, dict[str, Any]], None]]:
        """The ListWatch callbacks of one resource: a RouterState update under the lock, which
        marks the configuration dirty when what is served changed."""
        def on_list(items: list[dict[str, Any]]) -> None:
            with self.lock:
                if listed(items):
                    self.dirty.set()

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            self.metrics.events.labels(resource, kind).inc()
            with self.lock:
                if changed(kind, obj):
                    self.dirty.set()
        return on_list, on_event

    # --- sync ------------------------------------------------------------------------------------

    def sync(self) -> bool:
        """Render and, when it changed, install and (re)load; True when HAProxy was (re)loaded."""
        t0 = time.monotonic()
        if self.before_sync is not None:
            self.before_sync()
        with self.lock:
            self.dirty.clear()
            routes, endpoints = self.state.snapshot()
            problems = [*self.state.certificate_problems, *self.state.error_page_problems]
            pages = dict(self.state.error_pages)
        if problems != self._certificate_problems:  # logged when they change, not at every sync
            for line in problems:
                if line not in self._certificate_problems:
                    log.warning("%s", line)
            self._certificate_problems = problems
        files_dir = self.store.next_dir()
        rendered = haproxy_config.render(routes, endpoints, dataclasses.replace(
            self.settings, files_dir=files_dir, error_pages=pages))
        self.metrics.routes.set(len(rendered.backends))
        self.metrics.backends_without_servers.set(sum(1 for n in rendered.backends.values() if n == 0))
        if not self.store.changed(rendered, files_dir) and self.haproxy.running:
            self.metrics.renders.labels("unchanged").inc()
            return False
        staged = self.store.stage(rendered, files_dir)
        ok, output = haproxy.check(self.haproxy_bin, staged)
        if not ok:
            self.metrics.renders.labels("invalid").inc()
            log.error("HAProxy refused the new configuration; still serving the previous one:\n%s", output)
            return False
        self.store.commit(rendered, files_dir)
        self.metrics.renders.labels("installed").inc()
        try:
            if self.haproxy.running:
                self.haproxy.reload()
                self.metrics.reloads.labels("ok").inc()
            else:
                self.haproxy.start()
                self.metrics.reloads.labels("started").inc()
        except haproxy.HAProxyError:
            self.metrics.reloads.labels("error").inc()
            raise
        self.metrics.last_reload.set_to_current_time()
        self.metrics.sync_seconds.observe(time.monotonic() - t0)
        log.info("configuration installed: %d routes, %d without endpoints (%.0f ms)", len(rendered.backends),
                 sum(1 for n in rendered.backends.values() if n == 0), (time.monotonic() - t0) * 1000)
        self.synced_once.set()
        return True

    def run_loop(self, ready: list[threading.Event], resync_seconds: float = 300.0) -> None:
        """Until stopped: wait for the first listings, then sync on changes (rate limited)."""
        while not self.stop.is_set() and not all(e.is_set() for e in ready):
            self.stop.wait(0.1)
        last_full = 0.0
        while not self.stop.is_set():
            if self.haproxy.proc is not None and not self.haproxy.running:
                raise haproxy.HAProxyError(f"HAProxy exited with {self.haproxy.proc.returncode}")
            wait = self._last_sync + self.min_interval - time.monotonic()
            if wait > 0:
                self.stop.wait(wait)
                continue
            if self.dirty.is_set() or not self.synced_once.is_set() or time.monotonic() - last_full > resync_seconds:
                last_full = time.monotonic()
                self._last_sync = time.monotonic()
                self.sync()
                continue
            self.dirty.wait(1.0)


class SecretWatches:
    """One list-watch per Secret a served route names (``spec.tls.externalCertificate``), selected
    by ``metadata.name`` in the route's namespace: as in OpenShift, the router may read only the
    Secrets route authors granted it (admission checked the grant), never every Secret."""

    def __init__(self, router: Router, kube: Callable[[], Any], first_wait: float = 5.0) -> None:
        self.router = router
        self.kube = kube
        self.first_wait = first_wait  # the first configuration waits this long for the Secrets
        self.watches: dict[tuple[str, str], threading.Event] = {}  # Secret -> its watch's stop

    def update(self) -> None:
        from netshift.kube.watch import ListWatch

        router, st = self.router, self.router.state
        with router.lock:
            wanted = st.wanted_secrets()
        for key in set(self.watches) - wanted:
            self.watches.pop(key).set()
            with router.lock:
                st.forget_secret(key)
        started = []
        for key in sorted(wanted - set(self.watches)):
            stop = threading.Event()
            on_list, on_event = router.feed("secrets", functools.partial(st.replace_secret, key), st.apply_secret)
            watch = ListWatch(self.kube(), "Secret", _unless(stop, on_list), _unless(stop, on_event),
                              namespace=key[0], params=[("fieldSelector", f"metadata.name={key[1]}")])
            # Daemon threads, like the other watches: they end with the process.
            threading.Thread(target=watch.run, args=(stop,), daemon=True,
                             name=f"secret-{key[0]}/{key[1]}").start()
            self.watches[key] = stop
            started.append(watch)
        if started and not router.synced_once.is_set():
            deadline = time.monotonic() + self.first_wait
            for w in started:
                w.synced.wait(max(0.0, deadline - time.monotonic()))


def _unless(stop: threading.Event, fn: Callable[..., None]) -> Callable[..., None]:
    """``fn``, ignored once ``stop`` is set (a stopped watch's last events change nothing)."""
    def guarded(*args: Any) -> None:
        if not stop.is_set():
            fn(*args)
    return guarded


def default_certificate(path: str | None, config_dir: str, names: list[str]) -> str:
    """The default certificate as one PEM file (cert + key) HAProxy can load.

    ``path``: a PEM file with both, or a directory holding ``tls.crt`` and ``tls.key`` (a mounted
    kubernetes.io/tls Secret). None: a self-signed certificate for ``names`` is made.
    """
    out = pathlib.Path(config_dir) / "default.pem"
    if path:
        p = pathlib.Path(path)
        if p.is_dir():
            text = (p / "tls.crt").read_text().strip() + "\n" + (p / "tls.key").read_text().strip() + "\n"
        else:
            return str(p)
    else:
        from .certs import self_signed
        text = self_signed(names).bundle
        log.info("no default certificate given: using a self-signed one for %s", ", ".join(names))
    write_private(out, text)
    return str(out)


def run(*, router_name: str, settings: haproxy_config.Settings, config_dir: str, haproxy_bin: str,
        metrics_address: str, metrics_port: int, min_interval: float, grace: float,
        shutdown_delay: float = 0.0, error_pages_configmap: str | None = None,
        own_addresses: tuple[str, ...] = ()) -> int:
    from netshift.kube import Kube, new_api_client
    from netshift.kube.watch import ListWatch

    metrics = Metrics()
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_address, registry=metrics.registry)
    router = Router(router_name=router_name, settings=settings, config_dir=config_dir, haproxy_bin=haproxy_bin,
                    min_interval=min_interval, metrics=metrics, own_addresses=own_addresses)
    log.info("netshift router %s: HAProxy %s, http %d, https %d, stats %d", router_name,
             haproxy.version(haproxy_bin), settings.http_port, settings.https_port, settings.stats_port)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        router.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def kube() -> Kube:  # one connection per watch: each holds a streaming request open
        return Kube(new_api_client("router"), controller="router")

    st = router.state
    watches = [ListWatch(kube(), "Route", *router.feed("routes", st.replace_routes, st.apply_route)),
               ListWatch(kube(), "EndpointSlice", *router.feed("endpointslices", st.replace_slices, st.apply_slice))]
    router.before_sync = SecretWatches(router, kube).update
    if error_pages_configmap:  # "<namespace>/<name>": RBAC grants reading that one ConfigMap only
        namespace, _, name = error_pages_configmap.partition("/")
        watches.append(ListWatch(kube(), "ConfigMap", *router.feed("configmaps", st.replace_error_pages,
                                                                   st.apply_error_pages),
                                 namespace=namespace, params=[("fieldSelector", f"metadata.name={name}")]))
    threads = [threading.Thread(target=w.run, args=(router.stop,), daemon=True, name=f"watch-{i}")
               for i, w in enumerate(watches)]
    for t in threads:
        t.start()
    code = 0
    try:
        router.run_loop([w.synced for w in watches])
    except haproxy.HAProxyError as exc:
        log.error("%s", exc)
        code = 1
    finally:
        router.stop.set()
        if code == 0 and shutdown_delay > 0 and router.haproxy.running:
            log.info("serving %.0f s more before stopping", shutdown_delay)
            time.sleep(shutdown_delay)
        # The watch threads are daemons blocked in reads: they end with the process.
        router.haproxy.stop(grace=grace)
    return code
