"""`netshift router`: arguments of the Route data plane (HAProxy lands with the router issue)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("router", help="run the Route data plane (HAProxy) for one router name")
    p.add_argument("--router-name", default="default", help="router name whose Routes are served")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("netshift router: the Route data plane is not implemented yet", file=sys.stderr)
    return 1
