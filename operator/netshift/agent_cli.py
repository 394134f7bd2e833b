"""`netshift agent`: arguments of the redirect agent (the data path lands with the agent issue)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run the egress redirect agent inside an egress router pod")
    p.add_argument("--config", required=True, help="path of the EgressRouter spec (JSON or YAML)")
    p.add_argument("--pod-interface", default="eth0", help="pod network interface (default eth0)")
    p.add_argument("--egress-interface", default="net1", help="macvlan interface (default net1)")
    p.add_argument("--once", action="store_true", help="apply the configuration once and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("netshift agent: the redirect data path is not implemented yet", file=sys.stderr)
    return 1
