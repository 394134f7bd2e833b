"""Render the HAProxy configuration of one router: served routes + endpoints in, text + files out.

Pure: ``render(routes, endpoints, settings)`` returns the configuration text and the files it
references (maps, certificates, CA bundles, long allowlists) as ``{relative path: content}``. The
caller writes the files under ``settings.files_dir`` (every path in the text is absolute, below that
directory) and checks the text with ``haproxy -c`` before using it.

Layout (the shape of OpenShift's router):

- ``frontend public`` (HTTP port, mode http): ``base`` (Host + path) is looked up in ``http.map``,
  a list of anchored regular expressions, most specific first (exact hosts before wildcard hosts,
  longer paths before shorter ones; path ``/`` matches everything). Plain routes and TLS routes
  with ``insecureEdgeTerminationPolicy: Allow`` name their backend; ``Redirect`` routes name
  ``be_redirect_https`` (a 302 to https); anything else falls to ``be_default``: 503.
- ``frontend public_ssl`` (HTTPS port, mode tcp) reads the SNI of the ClientHello without
  terminating TLS: passthrough hosts (``passthrough.map``) go straight to their ``be_tcp`` backend;
  everything else goes through ``be_tls`` to the internal ``fe_tls`` frontend (a unix socket, with the
  PROXY protocol so the client address survives), which terminates TLS with the route's certificate
  (``certs.list``, chosen by SNI) or the default certificate, then routes like ``public`` with
  ``https.map`` (edge and reencrypt routes).
- one backend per route: ``be_http:<ns>:<name>``, ``be_edge_http:…``, ``be_secure:…`` (reencrypt:
  ``ssl verify required ca-file <destinationCACertificate>``), ``be_tcp:…`` (passthrough), with one
  server per endpoint (weights from ``endpoints.endpoint_weights``) and the annotations applied.
- ``frontend stats`` (optional): HAProxy's Prometheus exporter on ``/metrics``, ``/healthz``.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence

from netshift.models.route import InsecureEdgeTerminationPolicy as Insecure
from netshift.models.route import TLSTermination as Termination
from netshift.route.hosts import domain_of

from . import annotations as ann
from .endpoints import Endpoint, endpoint_weights, select_port
from .routes import HTTP, ServedRoute
from .runtime import Server, Slots, assign, slot_name

HTTP_MAP = "http.map"
HTTPS_MAP = "https.map"
PASSTHROUGH_MAP = "passthrough.map"
CERT_LIST = "certs.list"
DEFAULT_BACKEND = "be_default"
REDIRECT_BACKEND = "be_redirect_https"
TLS_BACKEND = "be_tls"
EMPTY_SLOT_ADDRESS = "127.0.0.1:1"  # never used: an empty slot is in maintenance
BACKEND_PREFIX = {HTTP: "be_http", Termination.EDGE: "be_edge_http", Termination.REENCRYPT: "be_secure",
                  Termination.PASSTHROUGH: "be_tcp"}

# Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3 suites are OpenSSL's defaults).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where and how the router listens; paths are absolute."""

    files_dir: str  # where the rendered files are written (referenced from the text)
    run_dir: str  # sockets: the admin socket and the internal TLS frontend (short path: < 100 chars)
    default_certificate: str  # PEM with certificate and key
    http_port: int = 8080
    https_port: int = 8443
    stats_port: int = 1936  # 0: no stats frontend
    bind_address: str = ""  # "" = every IPv4 address
    bind_ipv6: bool = False  # also listen on every IPv6 address
    stats_bind_address: str = ""
    threads: int | None = None
    maxconn: int | None = None
    default_destination_ca: str | None = None  # reencrypt routes without destinationCACertificate
    hard_stop_after: str | None = None  # bound the life of old workers after a reload
    access_log: bool = False
    timeout_connect: str = "5s"
    timeout_client: str = "30s"
    timeout_server: str = "30s"
    timeout_http_request: str = "10s"
    timeout_http_keep_alive: str = "300s"
    timeout_tunnel: str = "1h"
    inspect_delay: str = "5s"
    server_slots: int = 8  # minimum server slots per backend (a power of two: see runtime.py)

    @property
    def admin_socket(self) -> str:
        return f"{self.run_dir}/haproxy.sock"

    @property
    def tls_socket(self) -> str:
        return f"{self.run_dir}/fe_tls.sock"


@dataclasses.dataclass(frozen=True)
class Rendered:
    config: str
    files: dict[str, str]
    backends: dict[str, int]  # backend name -> number of servers (for tests, logs and metrics)
    servers: dict[str, Slots]  # backend name -> its slots, as ``config`` renders them
    shape: str  # ``config`` with every slot empty: what only a reload changes


# --- helpers -------------------------------------------------------------------------------------

_RE_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def regex_escape(text: str) -> str:
    """Escape the characters PCRE gives a meaning to (only those: keeps maps readable)."""
    return "".join("\\" + c if c in _RE_SPECIAL else c for c in text)


def quote(text: str) -> str:
    """One HAProxy configuration word: single quotes keep everything literal; a quote is closed,
    escaped and reopened."""
    return "'" + text.replace("'", "'\\''") + "'"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def host_regex(host: str, wildcard: bool) -> str:
    if wildcard and domain_of(host):
        return r"[^\.]*\." + regex_escape(domain_of(host))
    return regex_escape(host)


def route_regex(host: str, path: str, wildcard: bool = False) -> str:
    """The anchored regular expression of ``base`` (Host header + path) a route serves.

    As OpenShift: the Host may carry a port; a path made only of slashes matches every path; a path
    ending with ``/`` matches what is below it; any other path matches itself and its subpaths
    (``/foo`` matches ``/foo`` and ``/foo/bar``, never ``/foobar``).
    """
    if not path.strip("/"):
        path_re, sub_re = "", "(/.*)?"
    elif path.endswith("/"):
        path_re, sub_re = regex_escape(path), ".*"
    else:
        path_re, sub_re = regex_escape(path), "(/.*)?"
    return f"^{host_regex(host, wildcard)}(:[0-9]+)?{path_re}{sub_re}$"


def sni_regex(host: str, wildcard: bool = False) -> str:
    return f"^{host_regex(host, wildcard)}$"


def _specificity(r: ServedRoute) -> tuple[bool, str, int, str, str, str, str, str]:
    # Exact hosts before wildcards; within a host the longest path first; then the oldest route
    # (admission never admits two routes with one host and path, but status can lag).
    return (r.wildcard, r.host, -len(r.path.rstrip("/") if r.path.strip("/") else ""), r.path,
            r.created, r.uid, r.namespace, r.name)


def backend_name(r: ServedRoute) -> str:
    return f"{BACKEND_PREFIX[r.termination]}:{r.namespace}:{r.name}"


def _file_stem(r: ServedRoute) -> str:
    return f"{r.namespace}_{r.name}"


def server_address(address: str, port: int) -> str:
    return f"ipv6@{address}:{port}" if ":" in address else f"{address}:{port}"


def pem_bundle(*parts: str) -> str:
    return "".join(p.strip() + "\n" for p in parts if p and p.strip())


# --- the backend of one route -----------------------------------------------------------------------

def route_servers(route: ServedRoute,
                  endpoints: Mapping[tuple[str, str], Sequence[Endpoint]]) -> list[Server]:
    """The servers of a route's backend, weights applied (passthrough drops weight-0 servers)."""
    chosen = {service: select_port(endpoints.get((route.namespace, service), ()), route.target_port)
              for service in route.services}
    weights = endpoint_weights(route.backends, {s: len(eps) for s, eps in chosen.items()})
    servers: dict[tuple[str, int], Server] = {}
    for service, eps in chosen.items():
        weight = weights.get(service, 0)
        if route.termination == Termination.PASSTHROUGH and weight == 0:
            continue  # no cookies in TCP mode: a weight-0 server would only confuse balancing
        for e in eps:  # an address in two services of one route: the first service's weight
            servers.setdefault((e.address, e.port), Server(e.address, e.port, weight))
    return list(servers.values())


def _allowlist_lines(route: ServedRoute, allow: tuple[str, ...], settings: Settings,
                     files: dict[str, str]) -> list[str]:
    if len(allow) <= ann.INLINE_ALLOWLIST_MAX:
        acl = "acl allowlist src " + " ".join(allow)
    else:
        rel = f"allowlists/{_file_stem(route)}.txt"
        files[rel] = "".join(f"{a}\n" for a in allow)
        acl = f"acl allowlist src -f {settings.files_dir}/{rel}"
    return [acl, "tcp-request content reject if !allowlist"]


def _rate_limit_lines(rate: ann.RateLimit, http: bool) -> list[str]:
    lines = ["stick-table type ip size 100k expire 30s store conn_cur,conn_rate(3s),http_req_rate(10s)",
             "tcp-request content track-sc2 src"]
    # The counters of connections include the one being checked (tracking starts first), the HTTP
    # request rate does not: "gt" and "ge" both mean "at most N" (OpenShift's "ge" everywhere allows
    # N-1 concurrent connections).
    if rate.concurrent_tcp is not None:
        lines.append(f"tcp-request content reject if {{ sc2_conn_cur gt {rate.concurrent_tcp} }}")
    if rate.rate_tcp is not None:
        lines.append(f"tcp-request content reject if {{ sc2_conn_rate gt {rate.rate_tcp} }}")
    if http and rate.rate_http is not None:
        lines.append(f"tcp-request content reject if {{ sc2_http_req_rate ge {rate.rate_http} }}")
    return lines


def _forwarded_headers() -> list[str]:
    return [
        "option forwardfor",
        "http-request add-header X-Forwarded-Host %[req.hdr(host)]",
        "http-request add-header X-Forwarded-Port %[dst_port]",
        "http-request add-header X-Forwarded-Proto http if !{ ssl_fc }",
        "http-request add-header X-Forwarded-Proto https if { ssl_fc }",
        "acl ipv6_src src -m sub :",
        'http-request add-header Forwarded for=\\"[%[src]]\\";host=%[req.hdr(host)];'
        "proto=%[req.hdr(X-Forwarded-Proto)] if ipv6_src",
        "http-request add-header Forwarded for=%[src];host=%[req.hdr(host)];"
        "proto=%[req.hdr(X-Forwarded-Proto)] if !ipv6_src",
    ]


def header_action_lines(direction: str, actions: Sequence[tuple[str, str, str]]) -> list[str]:
    """``http-request`` / ``http-response`` rules of ``spec.httpHeaders.actions``, in order.

    Names and values are single-quoted configuration words: nothing in them is special to the
    configuration parser (spaces, ``#``, ``"``, ``\\``, ``$``), while a value's ``%[...]`` stays a
    log-format expression HAProxy evaluates per request (the CRD admits only that syntax and ``%%``).
    """
    out = []
    for action, name, value in actions:
        if action == "set":
            out.append(f"{direction} set-header {quote(name)} {quote(value)}")
        else:
            out.append(f"{direction} del-header {quote(name)}")
    return out


@dataclasses.dataclass(frozen=True)
class _Backend:
    head: list[str]  # the section without its server lines
    slots: Slots
    cookies: bool
    server_options: str  # after the weight, the same for every slot


def _server_lines(name: str, backend: _Backend, filled: bool) -> list[str]:
    """The slots of a backend; ``filled=False``: every slot empty (the shape of the configuration)."""
    out = []
    for i, s in enumerate(backend.slots):
        slot = slot_name(i)
        cookie = f" cookie {short_hash(f'{name}/{slot}')}" if backend.cookies else ""
        if s is not None and filled:
            out.append(f"  server {slot} {server_address(s.address, s.port)}{cookie} weight {s.weight}"
                       f"{backend.server_options}")
        else:  # in maintenance until the runtime API gives it an address
            out.append(f"  server {slot} {EMPTY_SLOT_ADDRESS}{cookie} weight 0{backend.server_options} disabled")
    return out


def render_backend(route: ServedRoute, endpoints: Mapping[tuple[str, str], Sequence[Endpoint]],
                   settings: Settings, files: dict[str, str], current: Slots | None = None) -> _Backend:
    """The ``backend`` section of one route; its servers in ``current``'s slots (grown if needed)."""
    opts = ann.parse(route.annotation_map)
    slots = assign(current, route_servers(route, endpoints), settings.server_slots)
    active_services = sum(1 for s, w in endpoint_weights(
        route.backends, dict.fromkeys(route.services, 1)).items() if w > 0)
    lines = [f"backend {backend_name(route)}"]
    body: list[str] = []
    if route.termination == Termination.PASSTHROUGH:
        body += ["mode tcp",
                 f"balance {opts.balance or ('roundrobin' if active_services > 1 else 'source')}",
                 "hash-type consistent"]
        if opts.allowlist:
            body += _allowlist_lines(route, opts.allowlist, settings, files)
        tunnel = opts.timeout_tunnel or opts.timeout
        if tunnel:
            body.append(f"timeout tunnel {tunnel}")
        if opts.rate_limit:
            body += _rate_limit_lines(opts.rate_limit, http=False)
    else:
        body += ["mode http", "option redispatch",
                 f"balance {opts.balance or ('roundrobin' if active_services > 1 else 'random')}"]
        if opts.allowlist:
            body += _allowlist_lines(route, opts.allowlist, settings, files)
        if opts.timeout:
            body.append(f"timeout server {opts.timeout}")
        if opts.timeout_tunnel:
            body.append(f"timeout tunnel {opts.timeout_tunnel}")
        if opts.rate_limit:
            body += _rate_limit_lines(opts.rate_limit, http=True)
        body += _forwarded_headers()
        if opts.rewrite_target:
            path = route.path or ""
            if opts.rewrite_target == "/":
                pattern = f"^{regex_escape(path.rstrip('/'))}/?(.*)$"
            else:
                pattern = f"^{regex_escape(path)}(.*)$"
            body.append(f"http-request replace-path {quote(pattern)} {quote(opts.rewrite_target + chr(92) + '1')}")
        # The route's own header actions come after the router's forwarded headers (they may
        # override them), in the backend as OpenShift does.
        body += header_action_lines("http-request", route.request_headers)
        if opts.cookies:
            cookie = opts.cookie_name or short_hash(f"{route.namespace}:{route.name}")
            line = f"cookie {cookie} insert indirect nocache httponly"
            if route.decrypts and route.insecure_policy != Insecure.ALLOW:
                line += f" secure attr SameSite={opts.cookie_same_site}"
            body.append(line)
        if route.decrypts and opts.hsts:
            body.append(f"http-response set-header Strict-Transport-Security {quote(opts.hsts)} if {{ ssl_fc }}")
        body += header_action_lines("http-response", route.response_headers)
    body.append("timeout check 5000ms")
    ssl_opts = ""
    if route.termination == Termination.REENCRYPT:
        if route.destination_ca_certificate.strip():
            rel = f"cacerts/{_file_stem(route)}.pem"
            files[rel] = pem_bundle(route.destination_ca_certificate)
            ca = f"{settings.files_dir}/{rel}"
        else:
            ca = settings.default_destination_ca or "@system-ca"
        ssl_opts = f" ssl verify required ca-file {ca}"
    # Every slot is checked (which slots hold a server changes without a reload).
    check = f" check inter {opts.check_interval or '5000ms'}"
    maxconn = f" maxconn {opts.pod_maxconn}" if opts.pod_maxconn else ""
    return _Backend(lines + ["  " + b for b in body], slots,
                    route.termination != Termination.PASSTHROUGH and opts.cookies, f"{ssl_opts}{check}{maxconn}")


# --- the whole configuration ------------------------------------------------------------------------

def _binds(settings: Settings, port: int) -> list[str]:
    out = [f"bind {settings.bind_address}:{port}"]
    if settings.bind_ipv6:
        out.append(f"bind :::{port} v6only")
    return out


def _global(settings: Settings) -> list[str]:
    lines = ["global",
             f"  stats socket {settings.admin_socket} mode 600 level admin expose-fd listeners",
             "  stats timeout 2m",
             "  tune.maxrewrite 8192",
             "  tune.bufsize 32768",
             "  tune.ssl.default-dh-param 2048",
             "  ssl-default-bind-options ssl-min-ver TLSv1.2",
             f"  ssl-default-bind-ciphers {INTERMEDIATE_CIPHERS}"]
    if settings.threads:
        lines.append(f"  nbthread {settings.threads}")
    if settings.maxconn:
        lines.append(f"  maxconn {settings.maxconn}")
    if settings.hard_stop_after:
        lines.append(f"  hard-stop-after {settings.hard_stop_after}")
    if settings.access_log:
        lines.append("  log stdout format raw local0 info")
    return lines


def _defaults(settings: Settings) -> list[str]:
    lines = ["defaults",
             "  mode http",
             f"  timeout connect {settings.timeout_connect}",
             f"  timeout client {settings.timeout_client}",
             "  timeout client-fin 1s",
             f"  timeout server {settings.timeout_server}",
             "  timeout server-fin 1s",
             f"  timeout http-request {settings.timeout_http_request}",
             f"  timeout http-keep-alive {settings.timeout_http_keep_alive}",
             f"  timeout tunnel {settings.timeout_tunnel}"]
    if settings.maxconn:
        lines.append(f"  maxconn {settings.maxconn}")
    if settings.access_log:
        lines.append("  log global")
    return lines


def _http_frontend_common(map_path: str, settings: Settings) -> list[str]:
    return [*(["  option httplog"] if settings.access_log else []),
            "  http-request del-header Proxy",
            "  http-request set-header Host %[req.hdr(Host),lower]",
            f"  use_backend %[base,map_reg({map_path})]",
            f"  default_backend {DEFAULT_BACKEND}"]


def render(routes: Iterable[ServedRoute], endpoints: Mapping[tuple[str, str], Sequence[Endpoint]],
           settings: Settings, slots: Mapping[str, Slots] | None = None) -> Rendered:
    """The configuration of a router serving ``routes`` (already admitted for it); ``slots``: the
    servers HAProxy has now (each keeps its slot)."""
    ordered = sorted(routes, key=_specificity)
    files: dict[str, str] = {}
    d = settings.files_dir
    http_map: list[str] = []
    https_map: list[str] = []
    sni_map: list[str] = []
    cert_list: list[str] = []
    cert_hosts: set[str] = set()
    rendered_backends: dict[str, _Backend] = {}

    for r in ordered:
        name = backend_name(r)
        if name in rendered_backends:
            continue
        rendered_backends[name] = render_backend(r, endpoints, settings, files, (slots or {}).get(name))
        key = route_regex(r.host, r.path, r.wildcard)
        if r.termination == Termination.PASSTHROUGH:
            sni_map.append(f"{sni_regex(r.host, r.wildcard)} {name}")
        elif r.decrypts:
            https_map.append(f"{key} {name}")
        if r.termination == HTTP or r.insecure_policy == Insecure.ALLOW:
            http_map.append(f"{key} {name}")
        elif r.insecure_policy == Insecure.REDIRECT:
            path = "" if r.termination == Termination.PASSTHROUGH else r.path
            http_map.append(f"{route_regex(r.host, path, r.wildcard)} {REDIRECT_BACKEND}")
        if r.decrypts and r.certificate.strip() and r.key.strip():
            sni = f"*.{domain_of(r.host)}" if r.wildcard and domain_of(r.host) else r.host
            if sni not in cert_hosts:  # one certificate per host: the most specific route's
                cert_hosts.add(sni)
                rel = f"certs/{_file_stem(r)}.pem"
                files[rel] = pem_bundle(r.certificate, r.ca_certificate, r.key)
                cert_list.append(f"{d}/{rel} {sni}")

    # Maps are searched top-down: the order above is the precedence.
    files[HTTP_MAP] = "".join(f"{line}\n" for line in http_map)
    files[HTTPS_MAP] = "".join(f"{line}\n" for line in https_map)
    files[PASSTHROUGH_MAP] = "".join(f"{line}\n" for line in sni_map)
    files[CERT_LIST] = "".join(f"{line}\n" for line in cert_list)

    out: list[str] = ["# Generated by netshift router: do not edit.", *_global(settings), "",
                      *_defaults(settings)]
    if settings.stats_port:
        out += ["", "frontend stats",
                f"  bind {settings.stats_bind_address}:{settings.stats_port}",
                "  mode http",
                "  monitor-uri /healthz",
                "  http-request use-service prometheus-exporter if { path /metrics }"]
    out += ["", "frontend public", *("  " + b for b in _binds(settings, settings.http_port)),
            "  mode http",
            f"  tcp-request inspect-delay {settings.inspect_delay}",
            "  tcp-request content accept if HTTP",
            *_http_frontend_common(f"{d}/{HTTP_MAP}", settings)]
    out += ["", "frontend public_ssl", *("  " + b for b in _binds(settings, settings.https_port)),
            "  mode tcp",
            *(["  option tcplog"] if settings.access_log else []),
            f"  tcp-request inspect-delay {settings.inspect_delay}",
            "  tcp-request content accept if { req_ssl_hello_type 1 }",
            "  acl sni req.ssl_sni -m found",
            f"  acl sni_passthrough req.ssl_sni,lower,map_reg({d}/{PASSTHROUGH_MAP}) -m found",
            f"  use_backend %[req.ssl_sni,lower,map_reg({d}/{PASSTHROUGH_MAP})] if sni sni_passthrough",
            f"  default_backend {TLS_BACKEND}"]
    out += ["", f"backend {TLS_BACKEND}",
            "  mode tcp",
            f"  server fe_tls unix@{settings.tls_socket} send-proxy-v2",
            "", "frontend fe_tls",
            f"  bind unix@{settings.tls_socket} accept-proxy ssl crt {settings.default_certificate} "
            f"crt-list {d}/{CERT_LIST}",
            "  mode http",
            *_http_frontend_common(f"{d}/{HTTPS_MAP}", settings)]
    out += ["", f"backend {DEFAULT_BACKEND}", "  mode http",
            "", f"backend {REDIRECT_BACKEND}", "  mode http",
            "  http-request redirect scheme https code 302"]
    full, shape = list(out), out
    for name, b in rendered_backends.items():
        full += ["", *b.head, *_server_lines(name, b, filled=True)]
        shape += ["", *b.head, *_server_lines(name, b, filled=False)]
    return Rendered(config="\n".join(full) + "\n", files=files, shape="\n".join(shape) + "\n",
                    backends={n: sum(1 for s in b.slots if s is not None) for n, b in rendered_backends.items()},
                    servers={n: b.slots for n, b in rendered_backends.items()})
