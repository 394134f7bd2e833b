"""`netshift router`: the Route data plane (HAProxy) of one router name (see docs/router.md)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import pathlib
import sys

from netshift import logs
from netshift.settings import RouterSettings, add_common_flags, flag, load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("router", help="run the Route data plane (HAProxy) for one router name")

    setting = functools.partial(flag, p, RouterSettings)
    setting("--router-name", field="router_name", help="router name whose admitted Routes are served")
    setting("--http-port", field="router_http_port", help="plain HTTP port")
    setting("--https-port", field="router_https_port", help="TLS port: edge, reencrypt and passthrough routes")
    setting("--stats-port", field="router_stats_port",
            help="HAProxy's Prometheus exporter (/metrics) and health (/healthz) port (0 disables)")
    setting("--metrics-port", field="router_metrics_port", help="the process's own metrics (reloads; 0 disables)")
    setting("--bind-address", field="router_bind_address", help="address of the HTTP(S) listeners (unset: all IPv4)")
    setting("--ipv6", field="router_ipv6", help="also listen on every IPv6 address")
    setting("--config-dir", field="router_config_dir", help="writable directory for HAProxy's configuration")
    setting("--run-dir", field="router_run_dir", help="short directory of HAProxy's sockets (unset: <config-dir>/run)")
    setting("--haproxy-bin", field="haproxy_bin", help="HAProxy executable (from PATH or /usr/sbin)")
    setting("--default-certificate", field="router_default_certificate",
            help="PEM file with certificate and key, or a directory with tls.crt and tls.key (unset: self-signed)")
    setting("--domain", field="router_domain", help="router domain, for the self-signed default certificate")
    setting("--default-destination-ca", field="router_default_destination_ca",
            help="CA bundle verifying reencrypt backends without destinationCACertificate (unset: system CAs)")
    setting("--threads", field="router_threads", help="HAProxy threads (0: one per CPU)")
    setting("--maxconn", field="router_maxconn", help="HAProxy maxconn (0: HAProxy's, from the fd limit)")
    setting("--reload-interval", field="router_reload_interval",
            help="minimum seconds between reloads (one after a quiet period is immediate)")
    setting("--hard-stop-after", field="router_hard_stop_after",
            help="stop old HAProxy workers (and their connections) this long after a reload "
                 "(HAProxy time; \"\": never)")
    setting("--shutdown-delay", field="router_shutdown_delay",
            help="on SIGTERM, keep serving this many seconds first (load balancers and endpoints catch up)")
    p.add_argument("--grace-seconds", type=float, default=25.0,
                   help="on SIGTERM, time given to open connections before HAProxy stops (default 25)")
    setting("--access-log", field="router_access_log", help="HAProxy access log on standard output")
    add_common_flags(p)
    p.add_argument("--render", metavar="ROUTES_JSON",
                   help="print the configuration for the Route objects in this file (a List or an array; "
                        "no cluster access, endpoints empty) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netshift.router import haproxy, haproxy_config, runner  # the router's deps only here
    from netshift.router.routes import served_route

    s = load(RouterSettings, args)
    config_dir = pathlib.Path(s.router_config_dir)
    run_dir = s.router_run_dir or str(config_dir / "run")
    settings = haproxy_config.Settings(
        files_dir=str(config_dir), run_dir=run_dir, default_certificate=str(config_dir / "default.pem"),
        http_port=s.router_http_port, https_port=s.router_https_port, stats_port=s.router_stats_port,
        bind_address=s.router_bind_address, bind_ipv6=s.router_ipv6, threads=s.router_threads or None,
        maxconn=s.router_maxconn or None, default_destination_ca=s.router_default_destination_ca,
        hard_stop_after=s.router_hard_stop_after or None, access_log=s.router_access_log)
    if args.render:
        data = json.loads(pathlib.Path(args.render).read_text())
        objs = data.get("items", []) if isinstance(data, dict) else data
        routes = [r for r in (served_route(o, s.router_name) for o in objs) if r]
        print(haproxy_config.render(routes, {}, settings).config, end="")
        return 0

    logs.setup(s.log_format, args.verbose)
    binary = haproxy.find_binary(s.haproxy_bin)
    if not binary:
        print(f"netshift router: {s.haproxy_bin} not found (Debian package haproxy)", file=sys.stderr)
        return 2
    if len(f"{run_dir}/master.sock") > 100:
        print(f"netshift router: --run-dir {run_dir} is too long for unix sockets", file=sys.stderr)
        return 2
    if settings.maxconn:
        fitted = haproxy.fit_maxconn(settings.maxconn)
        if fitted != settings.maxconn:
            logging.getLogger("netshift.router").warning(
                "--maxconn %d does not fit the file descriptor limit: using %d", settings.maxconn, fitted)
            settings = dataclasses.replace(settings, maxconn=fitted)
    config_dir.mkdir(parents=True, exist_ok=True)
    pathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)
    cert = runner.default_certificate(s.router_default_certificate, str(config_dir),
                                      [f"*.{s.router_domain}", s.router_domain])
    settings = dataclasses.replace(settings, default_certificate=cert)
    return runner.run(router_name=s.router_name, settings=settings, config_dir=str(config_dir),
                      haproxy_bin=binary, metrics_address=s.router_bind_address or "0.0.0.0",
                      metrics_port=s.router_metrics_port, min_interval=s.router_reload_interval,
                      grace=args.grace_seconds, shutdown_delay=s.router_shutdown_delay)
