"""`netshift router`: the Route data plane (HAProxy) of one router name (see docs/router.md)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys

from netshift.cliargs import env_int


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("router", help="run the Route data plane (HAProxy) for one router name")
    p.add_argument("--router-name", default=_env("NETSHIFT_ROUTER_NAME", "default"),
                   help="router name whose admitted Routes are served (env NETSHIFT_ROUTER_NAME; default: default)")
    p.add_argument("--http-port", type=int, default=env_int("NETSHIFT_ROUTER_HTTP_PORT", 8080),
                   help="plain HTTP port (default 8080)")
    p.add_argument("--https-port", type=int, default=env_int("NETSHIFT_ROUTER_HTTPS_PORT", 8443),
                   help="TLS port: edge, reencrypt and passthrough routes (default 8443)")
    p.add_argument("--stats-port", type=int, default=env_int("NETSHIFT_ROUTER_STATS_PORT", 1936),
                   help="HAProxy's Prometheus exporter (/metrics) and health (/healthz) port "
                        "(default 1936, 0 disables)")
    p.add_argument("--metrics-port", type=int, default=env_int("NETSHIFT_ROUTER_METRICS_PORT", 9103),
                   help="the router process's own metrics (reloads, renders; default 9103, 0 disables)")
    p.add_argument("--bind-address", default=_env("NETSHIFT_ROUTER_BIND_ADDRESS", ""),
                   help="address of the HTTP and HTTPS listeners (default: every IPv4 address)")
    p.add_argument("--ipv6", action="store_true", default=os.environ.get("NETSHIFT_ROUTER_IPV6") == "true",
                   help="also listen on every IPv6 address")
    p.add_argument("--config-dir", default=_env("NETSHIFT_ROUTER_CONFIG_DIR", "/var/lib/netshift-router"),
                   help="writable directory for the HAProxy configuration, maps and certificates")
    p.add_argument("--run-dir", default=os.environ.get("NETSHIFT_ROUTER_RUN_DIR"),
                   help="directory of HAProxy's sockets (default: <config-dir>/run; keep it short)")
    p.add_argument("--haproxy-bin", default=_env("NETSHIFT_HAPROXY_BIN", "haproxy"),
                   help="HAProxy executable (default: haproxy from PATH or /usr/sbin)")
    p.add_argument("--default-certificate", default=os.environ.get("NETSHIFT_ROUTER_DEFAULT_CERTIFICATE"),
                   help="PEM file with certificate and key, or a directory with tls.crt and tls.key "
                        "(default: a self-signed certificate for *.<domain>)")
    p.add_argument("--domain", default=_env("NETSHIFT_ROUTER_DOMAIN", "apps.netshift.local"),
                   help="router domain, for the self-signed default certificate")
    p.add_argument("--default-destination-ca", default=os.environ.get("NETSHIFT_ROUTER_DEFAULT_DESTINATION_CA"),
                   help="CA bundle verifying reencrypt backends of routes without destinationCACertificate "
                        "(default: the system CAs)")
    p.add_argument("--threads", type=int, default=env_int("NETSHIFT_ROUTER_THREADS", 0),
                   help="HAProxy threads (default: one per CPU)")
    p.add_argument("--maxconn", type=int, default=env_int("NETSHIFT_ROUTER_MAXCONN", 0),
                   help="HAProxy maxconn (default: HAProxy's, from the file descriptor limit)")
    p.add_argument("--reload-interval", type=float, default=float(_env("NETSHIFT_ROUTER_RELOAD_INTERVAL", "1")),
                   help="minimum seconds between two reloads; changes in between coalesce (default 1)")
    p.add_argument("--hard-stop-after", default=os.environ.get("NETSHIFT_ROUTER_HARD_STOP_AFTER"),
                   help="bound the life of old HAProxy workers after a reload (e.g. 1h; default: unbounded)")
    p.add_argument("--shutdown-delay", type=float, default=float(_env("NETSHIFT_ROUTER_SHUTDOWN_DELAY", "0")),
                   help="on SIGTERM, keep serving this many seconds before stopping (load balancers and "
                        "Service endpoints catch up; default 0)")
    p.add_argument("--grace-seconds", type=float, default=25.0,
                   help="on SIGTERM, time given to open connections before HAProxy stops (default 25)")
    p.add_argument("--access-log", action="store_true", default=os.environ.get("NETSHIFT_ROUTER_ACCESS_LOG") == "true",
                   help="HAProxy access log on standard output")
    p.add_argument("--log-format", choices=["json", "plain"], default=_env("NETSHIFT_LOG_FORMAT", "json"),
                   help="log format (default json)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("--render", metavar="ROUTES_JSON",
                   help="print the configuration for the Route objects in this file (a List or an array; "
                        "no cluster access, endpoints empty) and exit")
    p.set_defaults(func=run)


def _haproxy_bin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def fit_maxconn(maxconn: int) -> int:
    """``maxconn`` HAProxy can have with this process's file descriptor limit (raised to the hard
    limit when needed): HAProxy needs about two descriptors per connection and refuses to start when
    an explicit maxconn does not fit."""
    import resource

    need = 2 * maxconn + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        return max(1, (soft - 1024) // 2)
    return maxconn


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import logging
    import pathlib

    from netshift.agent_cli import _setup_logging
    from netshift.router import haproxy_config, runner
    from netshift.router.routes import served_route

    config_dir = pathlib.Path(args.config_dir)
    run_dir = args.run_dir or str(config_dir / "run")
    settings = haproxy_config.Settings(
        files_dir=str(config_dir), run_dir=run_dir, default_certificate=str(config_dir / "default.pem"),
        http_port=args.http_port, https_port=args.https_port, stats_port=args.stats_port,
        bind_address=args.bind_address, bind_ipv6=args.ipv6, threads=args.threads or None,
        maxconn=args.maxconn or None, default_destination_ca=args.default_destination_ca,
        hard_stop_after=args.hard_stop_after, access_log=args.access_log)
    if args.render:
        data = json.loads(pathlib.Path(args.render).read_text())
        objs = data.get("items", []) if isinstance(data, dict) else data
        routes = [r for r in (served_route(o, args.router_name) for o in objs) if r]
        print(haproxy_config.render(routes, {}, settings).config, end="")
        return 0

    _setup_logging(args.log_format, args.verbose)
    binary = _haproxy_bin(args.haproxy_bin)
    if not binary:
        print(f"netshift router: {args.haproxy_bin} not found (Debian package haproxy)", file=sys.stderr)
        return 2
    if len(f"{run_dir}/master.sock") > 100:
        print(f"netshift router: --run-dir {run_dir} is too long for unix sockets", file=sys.stderr)
        return 2
    if settings.maxconn:
        fitted = fit_maxconn(settings.maxconn)
        if fitted != settings.maxconn:
            logging.getLogger("netshift.router").warning(
                "--maxconn %d does not fit the file descriptor limit: using %d", settings.maxconn, fitted)
            settings = dataclasses.replace(settings, maxconn=fitted)
    config_dir.mkdir(parents=True, exist_ok=True)
    pathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)
    cert = runner.default_certificate(args.default_certificate, str(config_dir),
                                      [f"*.{args.domain}", args.domain])
    settings = dataclasses.replace(settings, default_certificate=cert)
    return runner.run(router_name=args.router_name, settings=settings, config_dir=str(config_dir),
                      haproxy_bin=binary, metrics_address=args.bind_address or "0.0.0.0",
                      metrics_port=args.metrics_port, min_interval=args.reload_interval,
                      grace=args.grace_seconds, shutdown_delay=args.shutdown_delay)
