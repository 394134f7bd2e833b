"""The agent process: apply, watch the config file, repair drift, serve readiness and metrics.

Everything that changes the system goes through `Agent.sync`, which is idempotent: it compares what
is installed with what the config asks for and only writes the difference (an unchanged ruleset is
not re-applied, so applying twice changes nothing and counters keep counting).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import logging
import pathlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from netshift.agent import nft, ruleset
from netshift.agent import routes as net
from netshift.agent.config import parse_text
from netshift.egressrouter.spec import FAMILIES, ConfigError, RouterConfig

log = logging.getLogger("netshift.agent")

FAMILY_LABEL = {"ip": "ipv4", "ip6": "ipv6"}


class Agent:
    def __init__(self, config_path: str, *, pod_if: str = "eth0", egress_if: str = "net1",
                 exempt_ports: Iterable[int] = ()) -> None:
        self.config_path = config_path
        self.pod_if = pod_if
        self.egress_if = egress_if
        self.exempt_ports = tuple(p for p in exempt_ports if p)
        self.lock = threading.RLock()
        self.cfg: RouterConfig | None = None
        self.ready = False
        self.config_valid = True
        self._infos: list[ruleset.CounterInfo] = []
        # Totals of counters lost when a table is replaced, so the exported counters never go back.
        self._base: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[int, int]] = {}
        # Normalized live tables right after our last apply, keyed by the desired ruleset's hash: the
        # reference for drift detection even if this nft version lists something differently.
        self._applied: tuple[str, dict[str, list[dict[str, Any]]]] | None = None

        self.registry = CollectorRegistry()
        self.syncs = Counter("netshift_agent_syncs", "Sync passes by result (changed, unchanged, error)",
                             ["result"], registry=self.registry)
        self.last_sync = Gauge("netshift_agent_last_sync_timestamp_seconds",
                               "Time of the last successful sync", registry=self.registry)
        self.registry.register(_AgentCollector(self))

    # --- configuration ---------------------------------------------------------------------------

    def read_config(self) -> tuple[str, RouterConfig]:
        """(content hash, parsed config); raises ConfigError or OSError."""
        text = pathlib.Path(self.config_path).read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        cfg = parse_text(text, agent_ports=self.exempt_ports)
        return digest, cfg

    # --- the one idempotent sync -------------------------------------------------------------------

    def sync(self, cfg: RouterConfig) -> list[str]:
        """Bring the namespace to `cfg`; returns the changes made (empty when nothing changed)."""
        with self.lock:
            try:
                changes = self._sync(cfg)
            except Exception:
                self.syncs.labels("error").inc()
                raise
            self.cfg = cfg
            self.ready = True
            self.last_sync.set_to_current_time()
            self.syncs.labels("changed" if changes else "unchanged").inc()
            return changes

    def _sync(self, cfg: RouterConfig) -> list[str]:
        from pyroute2 import IPRoute

        tables = ruleset.desired(cfg, pod_if=self.pod_if, egress_if=self.egress_if,
                                 exempt_ports=self.exempt_ports)
        changes = net.ensure_forwarding(cfg.versions)
        with IPRoute() as ipr:
            net.link_index(ipr, self.pod_if)  # only checked: its routes are never touched
            index = net.link_index(ipr, self.egress_if)
            if net.ensure_link_up(ipr, index):
                changes.append(f"link {self.egress_if} up")
            changes += [f"address {a}" for a in net.ensure_addresses(ipr, index, cfg.addresses)]
            changes += net.ensure_routes(ipr, index, net.desired_routes(cfg))

        digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()
        if self._applied and self._applied[0] == digest:
            expected = self._applied[1]
        else:
            expected = {f: ruleset.normalize(objs) for f, objs in tables.items()}
        live = {f: nft.list_table(f) for f in FAMILIES.values()}
        live_norm = {f: ruleset.normalize(objs) for f, objs in live.items() if objs is not None}
        if live_norm != expected:
            self._carry_over(live)
            nft.apply(ruleset.transaction(tables))
            after = {f: ruleset.normalize(nft.list_table(f) or []) for f in tables}
            if after != {f: ruleset.normalize(o) for f, o in tables.items()}:
                log.warning("nft lists the table differently from what was rendered; "
                            "drift checks compare against the listed form")
            self._applied = (digest, after)
            changes.append("nftables " + ", ".join(f"{f} {ruleset.TABLE}" for f in tables) + " replaced")
        self._infos = ruleset.counters(cfg)
        return changes

    def silence(self) -> None:
        """Not Ready first (no new traffic), then the egress link down: no ARP/ND answers (a standby)."""
        from pyroute2 import IPRoute

        self.ready = False
        with IPRoute() as ipr:
            ipr.link("set", index=net.link_index(ipr, self.egress_if), state="down")

    def remove(self) -> None:
        """Remove our tables and routes (SIGTERM): the pod leaves nothing half-working behind."""
        from pyroute2 import IPRoute

        with self.lock:
            self.ready = False
            nft.apply(ruleset.removal())
            with IPRoute() as ipr:
                net.remove_routes(ipr)

    # --- counters ----------------------------------------------------------------------------------

    def _live_counters(self, live: dict[str, list[dict[str, Any]] | None]) -> dict[tuple[str, str], tuple[int, int]]:
        out = {}
        for family, objs in live.items():
            for obj in objs or []:
                if c := obj.get("counter"):
                    out[(family, c["name"])] = (c.get("packets", 0), c.get("bytes", 0))
        return out

    def _carry_over(self, live: dict[str, list[dict[str, Any]] | None]) -> None:
        values = self._live_counters(live)
        for info in self._infos:
            p, b = values.get((info.family, info.name), (0, 0))
            key = (info.family, info.name, info.labels)
            bp, bb = self._base.get(key, (0, 0))
            self._base[key] = (bp + p, bb + b)

    def counter_values(self) -> list[tuple[ruleset.CounterInfo, int, int]]:
        with self.lock:
            infos = list(self._infos)
            live = {f: nft.list_table(f) for f in {i.family for i in infos}}
            values = self._live_counters(live)
            out = []
            for info in infos:
                p, b = values.get((info.family, info.name), (0, 0))
                bp, bb = self._base.get((info.family, info.name, info.labels), (0, 0))
                out.append((info, p + bp, b + bb))
            return out


class _AgentCollector:
    """Per-rule counters read from nftables at scrape time."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        labels = ["family", "protocol", "port", "destination", "target_port"]
        conns = CounterMetricFamily("netshift_agent_redirect_connections",
                                    "Connections redirected, by rule (fallback: protocol=any)", labels=labels)
        pkts = CounterMetricFamily("netshift_agent_redirect_packets",
                                   "Packets of redirected flows (both directions), by rule", labels=labels)
        byts = CounterMetricFamily("netshift_agent_redirect_bytes",
                                   "Bytes of redirected flows (both directions), by rule", labels=labels)
        rejected = CounterMetricFamily("netshift_agent_rejected_packets",
                                       "Packets rejected because no rule matched and no fallback is set",
                                       labels=["family"])
        try:
            values = self.agent.counter_values()
        except Exception as exc:
            log.warning("reading nftables counters failed: %s", exc)
            values = []
        for info, p, b in values:
            fam = FAMILY_LABEL[info.family]
            if info.kind == "rejected":
                rejected.add_metric([fam], p)
                continue
            lv = [fam, *(v for _, v in info.labels)]
            if info.kind == "connections":
                conns.add_metric(lv, p)
            else:
                pkts.add_metric(lv, p)
                byts.add_metric(lv, b)
        ready = GaugeMetricFamily("netshift_agent_ready", "1 when the rules of a valid config are installed")
        ready.add_metric([], 1 if self.agent.ready else 0)
        valid = GaugeMetricFamily("netshift_agent_config_valid", "0 when the current config file cannot be applied")
        valid.add_metric([], 1 if self.agent.config_valid else 0)
        yield from (conns, pkts, byts, rejected, ready, valid)


# --- HTTP endpoints ----------------------------------------------------------------------------------

def _handler(agent: Agent) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(agent.registry), "text/plain; version=0.0.4")
            elif path == "/readyz":
                ok = agent.ready
                self._send(200 if ok else 503, b"ok\n" if ok else b"rules not installed\n")
            elif path == "/healthz":
                self._send(200, b"ok\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: keep logs quiet
            pass

    return Handler


class _DualStackServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(agent: Agent, bind: str, port: int) -> http.server.ThreadingHTTPServer:
    """Serve /readyz, /healthz and /metrics; all addresses of both families unless `bind` is given."""
    handler = _handler(agent)
    if bind:
        cls = type("_S", (http.server.ThreadingHTTPServer,),
                   {"address_family": socket.AF_INET6 if ":" in bind else socket.AF_INET})
        server: http.server.ThreadingHTTPServer = cls((bind, port), handler)
    else:
        try:
            server = _DualStackServer(("::", port), handler)
        except OSError:  # no IPv6 in this namespace
            server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
    threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
    return server


# --- the loop --------------------------------------------------------------------------------------

def sync_pass(agent: Agent, cfg: RouterConfig, now: float, resync_seconds: float,
              sync: Callable[[RouterConfig], list[str]] | None = None) -> float:
    """One sync (`agent.sync` unless `sync` is given), logged; when the next one is due (sooner after
    a failure, which is logged, not raised)."""
    try:
        if changes := (sync or agent.sync)(cfg):
            log.info("applied: %s", "; ".join(changes))
        return now + resync_seconds
    except (net.NetError, nft.NftError, OSError, ConfigError) as exc:
        log.error("sync failed: %s", exc)
        return now + min(resync_seconds, 5.0)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run(agent: Agent, *, resync_seconds: float, poll_seconds: float = 1.0,
        stop: threading.Event | None = None) -> int:
    """Apply, then watch the file and resync until SIGTERM/SIGINT; then remove our tables."""
    stop = stop or stop_on_signals()

    try:
        digest, cfg = agent.read_config()
    except (ConfigError, OSError) as exc:
        log.error("cannot load config %s: %s", agent.config_path, exc)
        return 2
    next_sync = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= next_sync:
                next_sync = sync_pass(agent, cfg, now, resync_seconds)
            if stop.wait(poll_seconds):
                break
            digest, cfg, reloaded = reload(agent, digest, cfg)
            if reloaded:
                next_sync = 0.0
    finally:
        try:
            agent.remove()
            log.info("removed nftables tables and routes")
        except Exception as exc:
            log.error("cleanup failed: %s", exc)
    return 0


def reload(agent: Agent, digest: str, cfg: RouterConfig) -> tuple[str, RouterConfig, bool]:
    """New content -> new config. A config that cannot be applied keeps the last good rules running."""
    try:
        new_digest = hashlib.sha256(pathlib.Path(agent.config_path).read_bytes()).hexdigest()
    except OSError as exc:
        log.warning("cannot read config %s: %s", agent.config_path, exc)
        return digest, cfg, False
    if new_digest == digest:
        return digest, cfg, False
    try:
        new_digest, new_cfg = agent.read_config()
    except (ConfigError, OSError) as exc:
        agent.config_valid = False
        log.error("config change not applied, keeping the previous rules: %s", exc)
        return new_digest, cfg, False
    agent.config_valid = True
    log.info("config changed, reloading")
    return new_digest, new_cfg, True
