"""The router process: watch Routes and EndpointSlices, render, then reload HAProxy or update it live.

Threads: one list-watch per resource feeds ``RouterState`` (under a lock) and wakes the sync loop;
the sync loop (the main thread) waits for both initial listings, then renders whenever something
relevant changed. Every backend's servers live in slots (see ``runtime``): when the rendered
configuration differs from the installed one only in which endpoints fill the slots, the slots are
updated through HAProxy's admin socket, with no reload. Otherwise (routes, certificates, the set of
backends, a backend outgrowing its slots) the configuration is written to the inactive slot
directory, installed and reloaded. The first one is checked with ``haproxy -c`` before HAProxy
starts; a reload HAProxy refuses leaves the old worker serving, the previous file is put back and
the refusal is logged with HAProxy's messages and counted. Reloads are coalesced: immediate after
a quiet period, then at most one per ``min_interval`` (while a reload waits, endpoint changes of
existing backends still go through the admin socket).
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from . import haproxy, haproxy_config, runtime
from .endpoints import Endpoint
from .routes import ServedRoute
from .state import RouterState
from .store import ConfigStore, write_private

log = logging.getLogger("netshift.router")


@dataclasses.dataclass
class Metrics:
    registry: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reloads = Counter("netshift_router_reloads", "HAProxy (re)loads by result (ok, started, refused, "
                               "error) and cause (start, config, server-slots, runtime-error)", ["result", "cause"],
                               registry=r)
        self.runtime_updates = Counter("netshift_router_runtime_updates", "Endpoint changes applied through "
                                       "HAProxy's admin socket, without a reload, by result", ["result"], registry=r)
        self.runtime_commands = Counter("netshift_router_runtime_commands",
                                        "Commands sent to HAProxy's admin socket", registry=r)
        self.renders = Counter("netshift_router_renders", "Configurations rendered by outcome "
                               "(unchanged, runtime, installed, invalid)", ["outcome"], registry=r)
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
                 haproxy_bin: str, min_interval: float = 5.0, metrics: Metrics | None = None,
                 haproxy_output: Any = None) -> None:
        self.router_name = router_name
        self.settings = settings
        self.state = RouterState(router_name)
        self.store = ConfigStore(config_dir)
        self.haproxy_bin = haproxy_bin
        self.min_interval = min_interval
        self.metrics = metrics or Metrics()
        self.haproxy = haproxy.HAProxy(haproxy_bin, self.store.config_path, f"{settings.run_dir}/master.sock",
                                       stdout=haproxy_output, stderr=haproxy_output)
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.stop = threading.Event()
        self.runtime = runtime.RuntimeAPI(settings.admin_socket)
        self.slots: dict[str, runtime.Slots] = {}  # what HAProxy's current worker has in its server slots
        self._last_reload = -float("inf")
        self._last_sync = -float("inf")
        self._certificate_problems: list[str] = []
        self.synced_once = threading.Event()

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

    def sync(self, reload_ok: bool = True) -> str:
        """Render the current state and apply it (see ``install``)."""
        with self.lock:
            self.dirty.clear()
            routes, endpoints = self.state.snapshot()
            problems = list(self.state.certificate_problems)
        if problems != self._certificate_problems:  # logged when they change, not at every sync
            for line in problems:
                if line not in self._certificate_problems:
                    log.warning("%s", line)
            self._certificate_problems = problems
        return self.install(routes, endpoints, reload_ok=reload_ok)

    def install(self, routes: list[ServedRoute], endpoints: Mapping[tuple[str, str], Sequence[Endpoint]], *,
                reload_ok: bool = True) -> str:
        """Apply a rendering: ``unchanged``, ``runtime`` (servers updated live), ``deferred`` (a reload
        is due but ``reload_ok`` is false: live updates only), ``invalid``, ``reloaded`` or ``started``."""
        t0 = time.monotonic()
        self._last_sync = t0
        files_dir = self.store.next_dir()
        rendered = haproxy_config.render(routes, endpoints, dataclasses.replace(self.settings, files_dir=files_dir),
                                         self.slots)
        self.metrics.routes.set(len(rendered.backends))
        self.metrics.backends_without_servers.set(sum(1 for n in rendered.backends.values() if n == 0))
        cause = "start"
        if self.haproxy.running:
            # Endpoints first, through the admin socket, whatever else changed: they never wait for
            # a reload (deferred, or refused while a broken route is served).
            try:
                changed = self._update_servers(rendered.servers)
            except runtime.RuntimeAPIError as exc:
                log.warning("%s: reloading instead", exc)
                cause = "runtime-error"
            else:
                if not self.store.changed(rendered, files_dir):
                    outcome = "runtime" if changed else "unchanged"
                    self.metrics.renders.labels(outcome).inc()
                    return outcome
                if not reload_ok:
                    return "deferred"
                grew = any(len(slots) > len(self.slots.get(name, slots)) for name, slots in rendered.servers.items())
                cause = "server-slots" if grew else "config"
        staged = self.store.stage(rendered, files_dir)
        # A reload checks the configuration itself (see haproxy.py): only a start needs haproxy -c.
        if not self.haproxy.running and not self._valid(staged):
            return "invalid"
        self.store.commit(rendered, files_dir)
        try:
            if self.haproxy.running:
                self.haproxy.reload()
                outcome = "reloaded"
                self.metrics.reloads.labels("ok", cause).inc()
            else:
                self.haproxy.start()
                outcome = "started"
                self.metrics.reloads.labels("started", cause).inc()
        except haproxy.ReloadRefused:
            self.metrics.reloads.labels("refused", cause).inc()
            self.store.rollback()
            self._valid(staged)  # for HAProxy's messages
            return "invalid"
        except haproxy.HAProxyError:
            self.metrics.reloads.labels("error", cause).inc()
            raise
        self.metrics.renders.labels("installed").inc()
        self.slots = dict(rendered.servers)
        self._last_reload = time.monotonic()
        self.metrics.last_reload.set_to_current_time()
        self.metrics.sync_seconds.observe(time.monotonic() - t0)
        log.info("configuration installed (%s): %d routes, %d without endpoints (%.0f ms)", cause,
                 len(rendered.backends), sum(1 for n in rendered.backends.values() if n == 0),
                 (time.monotonic() - t0) * 1000)
        self.synced_once.set()
        return outcome

    def _valid(self, staged: str) -> bool:
        ok, output = haproxy.check(self.haproxy_bin, staged)
        if not ok:
            self.metrics.renders.labels("invalid").inc()
            log.error("HAProxy refused the new configuration; still serving the previous one:\n%s", output)
        return ok

    def _update_servers(self, desired: Mapping[str, runtime.Slots]) -> bool:
        """Bring the slots of the backends HAProxy has (with as many slots) to ``desired`` through the
        admin socket; True when something was sent. Others wait for the next reload."""
        cmds: list[str] = []
        updated = {}
        for name, slots in desired.items():
            current = self.slots.get(name)
            if current is not None and (todo := runtime.commands(name, current, slots)):
                cmds += todo
                updated[name] = slots
        if not cmds:
            return False
        try:
            self.runtime.apply(cmds)
        except runtime.RuntimeAPIError:
            self.metrics.runtime_updates.labels("error").inc()
            raise
        self.slots.update(updated)
        self.metrics.runtime_updates.labels("ok").inc()
        self.metrics.runtime_commands.inc(len(cmds))
        log.info("servers updated without reload: %s", ", ".join(sorted(updated)))
        return True

    def run_loop(self, ready: list[threading.Event], resync_seconds: float = 300.0,
                 min_sync_interval: float = 0.1) -> None:
        """Until stopped: wait for the first listings, then sync on changes. A change after a quiet
        period is applied at once; within ``min_sync_interval`` of a sync it waits for the rest of
        that interval (bursts of endpoint events coalesce); reloads wait for ``min_interval``."""
        while not self.stop.is_set() and not all(e.is_set() for e in ready):
            self.stop.wait(0.1)
        last_full = 0.0
        pending = False  # a reload deferred by min_interval
        while not self.stop.is_set():
            if self.haproxy.proc is not None and not self.haproxy.running:
                raise haproxy.HAProxyError(f"HAProxy exited with {self.haproxy.proc.returncode}")
            now = time.monotonic()
            reload_at = self._last_reload + self.min_interval
            if not (self.dirty.is_set() or (pending and now >= reload_at) or not self.synced_once.is_set()
                    or now - last_full > resync_seconds):
                self.dirty.wait(min(1.0, max(0.0, reload_at - now)) if pending else 1.0)
                continue
            if (wait := self._last_sync + min_sync_interval - now) > 0:
                self.stop.wait(wait)
                continue
            if now - last_full > resync_seconds:
                last_full = now
            pending = self.sync(reload_ok=now >= reload_at) == "deferred"


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
        shutdown_delay: float = 0.0) -> int:
    from netshift.kube import Kube, new_api_client
    from netshift.kube.watch import ListWatch

    metrics = Metrics()
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_address, registry=metrics.registry)
    router = Router(router_name=router_name, settings=settings, config_dir=config_dir, haproxy_bin=haproxy_bin,
                    min_interval=min_interval, metrics=metrics)
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
               ListWatch(kube(), "EndpointSlice", *router.feed("endpointslices", st.replace_slices, st.apply_slice)),
               # spec.tls.externalCertificate: every kubernetes.io/tls Secret (RBAC cannot name them
               # in advance); only those a served route names affect the configuration.
               ListWatch(kube(), "Secret", *router.feed("secrets", st.replace_secrets, st.apply_secret),
                         params=[("fieldSelector", "type=kubernetes.io/tls")])]
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
