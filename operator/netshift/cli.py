"""The `netshift` command: one entry point for the operator, the redirect agent and the router."""
from __future__ import annotations

import argparse
import os
import sys

from netshift import __version__
from netshift.cliargs import env_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netshift",
        description="OpenShift's EgressRouter and Route APIs on any Kubernetes cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    op = sub.add_parser("operator", help="run the kopf operator (EgressRouter and Route controllers)")
    op.add_argument(
        "--namespace", "-n", action="append", dest="namespaces", default=None,
        help="watch only this namespace (repeatable); default: all namespaces "
             "(env NETSHIFT_NAMESPACES, comma separated)",
    )
    op.add_argument("--metrics-port", type=int, default=env_int("NETSHIFT_METRICS_PORT", 9102),
                    help="port of the Prometheus /metrics endpoint (default 9102, 0 disables)")
    op.add_argument("--health-port", type=int, default=env_int("NETSHIFT_HEALTH_PORT", 8081),
                    help="port of the liveness endpoint /healthz (default 8081, 0 disables)")
    op.add_argument("--bind-address", default=os.environ.get("NETSHIFT_BIND_ADDRESS", "0.0.0.0"),
                    help="address the metrics and health endpoints listen on (default 0.0.0.0)")
    op.add_argument("--log-format", choices=["json", "plain"],
                    default=os.environ.get("NETSHIFT_LOG_FORMAT", "json"),
                    help="log format (default json: one structured object per line)")
    op.add_argument("--verbose", "-v", action="store_true", help="debug logging")

    sub.add_parser("version", help="print the version and exit")

    from netshift import agent_cli, router_cli

    agent_cli.add_parser(sub)
    router_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"netshift {__version__}")
        return 0
    if args.command == "operator":
        from netshift.operator import run

        namespaces = args.namespaces
        if namespaces is None and os.environ.get("NETSHIFT_NAMESPACES"):
            namespaces = [n for n in os.environ["NETSHIFT_NAMESPACES"].split(",") if n]
        return run(
            namespaces=namespaces or [],
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            bind_address=args.bind_address,
            log_format=args.log_format,
            verbose=args.verbose,
        )
    if hasattr(args, "func"):
        return args.func(args)
    parser.print_help(sys.stderr)
    return 2
