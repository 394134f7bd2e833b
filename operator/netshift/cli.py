"""The `netshift` command: dispatches to the operator, the redirect agent and the router."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from netshift import __version__
from netshift.agent import cli as agent_cli
from netshift.gatewayapi import cli as export_cli
from netshift.operator import cli as operator_cli
from netshift.router import cli as router_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netshift",
        description="OpenShift's EgressRouter and Route APIs on any Kubernetes cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for process in (operator_cli, agent_cli, router_cli, export_cli):
        process.add_parser(sub)
    sub.add_parser("version", help="print the version and exit").set_defaults(func=_version)
    return parser


def _version(_: argparse.Namespace) -> int:
    print(f"netshift {__version__}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "func"):
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    parser.print_help(sys.stderr)
    return 2
