"""Real HAProxy driven by the router's own code, real backends on loopback, a small HTTP(S) client.

Used by tests/dataplane/test_router_haproxy.py, tests/integration/test_router_process.py and
tests/bench/bench_router.py. Everything listens
on 127.0.0.x only; every process and thread is stopped by ``close()``.
"""
from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import pathlib
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from cryptography import x509

from netshift.router import haproxy_config as hc
from netshift.router import runner
from netshift.router.endpoints import Endpoint
from netshift.router.routes import served_route
from tests.support import certs
from tests.support.net import free_port

ROUTER = "default"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


# --- backends ------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/sleep/"):
            time.sleep(float(self.path.split("/")[2]))
        self.server.owner.hits += 1
        body = json.dumps({"backend": self.server.owner.name, "path": self.path,
                           "tls": isinstance(self.connection, ssl.SSLSocket),
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    owner: Backend

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # health checks and aborted clients reset connections: not news


class Backend:
    """An HTTP (or HTTPS, with ``tls``) server answering JSON that names it."""

    def __init__(self, name: str, address: str = "127.0.0.1", port: int | None = None,
                 tls: certs.Pem | None = None, tmp: pathlib.Path | None = None) -> None:
        self.name = name
        self.address = address
        self.hits = 0
        self.server = _Server((address, port or 0), _Handler)
        self.server.owner = self
        self.port = self.server.server_address[1]
        if tls is not None:
            assert tmp is not None
            pem = tmp / f"backend-{name}.pem"
            pem.write_text(tls.bundle)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(pem))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def endpoint(self, port_name: str = "http") -> Endpoint:
        return Endpoint(self.address, self.port, port_name, f"pod-{self.name}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- client --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    peer_cert: x509.Certificate | None = None

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def backend(self) -> str | None:
        try:
            return self.json["backend"]
        except (ValueError, KeyError):
            return None


def tls_context(ca: str | None) -> ssl.SSLContext:
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cadata=ca)


def connect(port: int, host: str | None, *, tls: bool = False, ca: str | None = None,
            source: str | None = None, timeout: float = 10, address: str = "127.0.0.1",
            ctx: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    sock = socket.create_connection((address, port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    if tls:
        sock = (ctx or tls_context(ca)).wrap_socket(sock, server_hostname=host)
    conn.sock = sock
    return conn


def request(conn: http.client.HTTPConnection, host: str, path: str = "/",
            headers: dict[str, str] | None = None) -> Response:
    conn.request("GET", path, headers={"Host": host, **(headers or {})})
    resp = conn.getresponse()
    body = resp.read()
    peer = None
    if isinstance(conn.sock, ssl.SSLSocket):
        der = conn.sock.getpeercert(binary_form=True)
        peer = x509.load_der_x509_certificate(der) if der else None
    return Response(resp.status, resp.headers, body, peer)


def get(port: int, host: str, path: str = "/", *, tls: bool = False, ca: str | None = None,
        source: str | None = None, headers: dict[str, str] | None = None, sni: str | None = "",
        timeout: float = 10) -> Response:
    """One request on a new connection. ``sni=""`` sends the host as SNI, ``None`` sends none."""
    conn = connect(port, host if sni == "" else sni, tls=tls, ca=ca, source=source, timeout=timeout)
    try:
        return request(conn, host, path, headers)
    finally:
        conn.close()


# --- the router ----------------------------------------------------------------------------------

class Router:
    """HAProxy run by the router's own process code (``runner.Router``: renderer, store, reloads and
    runtime API), ports on 127.0.0.1; ``apply`` takes Route objects and endpoints instead of watches."""

    def __init__(self, tmp: pathlib.Path, *, default_cert: certs.Pem | None = None,
                 threads: int | None = 1, **settings: Any) -> None:
        assert HAPROXY, "haproxy is not installed"
        self.tmp = tmp
        # Unix socket paths are limited to 107 bytes: keep the run directory short.
        self.run_dir = tempfile.mkdtemp(prefix="nsr-", dir="/tmp")
        self.default_cert = default_cert or certs.self_signed(["default.router.test"])
        cert_path = tmp / "default.pem"
        cert_path.write_text(self.default_cert.bundle)
        self.http_port, self.https_port, self.stats_port = free_port(), free_port(), free_port()
        self.settings = hc.Settings(
            files_dir="", run_dir=self.run_dir, default_certificate=str(cert_path),
            http_port=self.http_port, https_port=self.https_port, stats_port=self.stats_port,
            bind_address="127.0.0.1", stats_bind_address="127.0.0.1", threads=threads, **settings)
        self.log = open(tmp / "haproxy.log", "w")  # noqa: SIM115 (closed in close())
        self.router = runner.Router(router_name=ROUTER, settings=self.settings, config_dir=str(tmp / "config"),
                                    haproxy_bin=HAPROXY, min_interval=0, haproxy_output=self.log)
        self.haproxy, self.store = self.router.haproxy, self.router.store
        self.outcomes: list[str] = []

    def apply(self, route_objs: list[dict], endpoints: dict[tuple[str, str], list[Endpoint]]) -> bool:
        """Render and apply: start, reload or update the servers live; False when nothing changed."""
        served = [r for r in (served_route(o, ROUTER) for o in route_objs) if r is not None]
        outcome = self.router.install(served, endpoints)
        assert outcome != "invalid", f"haproxy -c failed:\n{self.logs()[-3000:]}"
        self.outcomes.append(outcome)
        return outcome != "unchanged"

    def logs(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.tmp / "haproxy.log").read_text(errors="replace")

    def close(self) -> None:
        self.haproxy.stop(grace=2)
        self.log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


class Load:
    """Clients sending requests in a loop until ``stop()``: ``new`` clients open a connection per
    request, ``keep_alive`` clients keep theirs (and reconnect, as HTTP clients do, when the server
    closes it while idle, e.g. an old worker finishing after a reload). Statuses counted."""

    def __init__(self, port: int, host: str, *, new: int = 3, keep_alive: int = 2) -> None:
        self.port, self.host = port, host
        self.results: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._new, daemon=True) for _ in range(new)] + \
                       [threading.Thread(target=self._keep_alive, daemon=True) for _ in range(keep_alive)]
        for t in self.threads:
            t.start()

    def _count(self, status: int | str) -> None:
        with self._lock:
            self.results[status] += 1

    def _new(self) -> None:
        while not self._stop.is_set():
            try:
                status: int | str = get(self.port, self.host, timeout=5).status
            except Exception as exc:
                status = f"{type(exc).__name__}: {exc}"
            self._count(status)

    def _keep_alive(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = connect(self.port, self.host, timeout=5)
                resp = request(conn, self.host)
                status: int | str = resp.status
                if resp.headers.get("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # Closed while idle before our request was read: safe to retry once.
                conn = None
                try:
                    conn = connect(self.port, self.host, timeout=5)
                    status = request(conn, self.host).status
                except Exception as exc2:
                    status = f"retry failed after {type(exc).__name__}: {type(exc2).__name__}: {exc2}"
                    conn = None
            except Exception as exc:
                status = f"{type(exc).__name__}: {exc}"
                conn = None
            self._count(status)
        if conn is not None:
            conn.close()

    def snapshot(self) -> Counter[int | str]:
        with self._lock:
            return Counter(self.results)

    def stop(self) -> Counter[int | str]:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=15)
        return self.snapshot()


@dataclasses.dataclass(frozen=True)
class Scaling:
    reloads: int
    requests: int
    failed: int  # any answer but 200, except 503s while the backend had no endpoint
    unavailable: int  # the 503s while it had none
    answers: dict[int | str, int]  # every answer counted


def scale_under_load(router: Router, routes: list[dict], host: str, pods: list[Endpoint],
                     steps: tuple[int, ...] = (1, 5, 0, 2), pause: float = 1.5) -> Scaling:
    """A backend scaled through ``steps`` endpoints (the first ``n`` of ``pods``) while ``Load``
    runs against ``host``, ``pause`` seconds per step."""
    def scale(n: int) -> None:
        router.apply(routes, {("ns", "svc"): pods[:n]} if n else {})

    scale(steps[0])
    reloads = router.haproxy.reloads
    load = Load(router.http_port, host)
    unavailable = 0
    zero_since: int | None = None  # the 503 count when the backend lost its last endpoint
    try:
        time.sleep(pause)
        for n in steps[1:]:
            before = load.snapshot()[503]
            scale(n)
            time.sleep(0.2)  # requests in flight at the change are answered as before it
            if zero_since is not None:
                unavailable += load.snapshot()[503] - zero_since
                zero_since = None
            if n == 0:
                zero_since = before
            time.sleep(max(0.0, pause - 0.2))
    finally:
        results = load.stop()
    if zero_since is not None:
        unavailable += results[503] - zero_since
    total = sum(results.values())
    return Scaling(router.haproxy.reloads - reloads, total, total - results[200] - unavailable, unavailable,
                   dict(results))
