"""`netshift operator`: the kopf operator (EgressRouter and Route controllers)."""
from __future__ import annotations

import argparse
import functools

from netshift import logs
from netshift.settings import OperatorSettings, add_common_flags, flag, load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("operator", help="run the kopf operator (EgressRouter and Route controllers)")
    setting = functools.partial(flag, p, OperatorSettings)
    setting("--namespace", "-n", field="namespaces", action="append",
            help="watch only this namespace (repeatable; the variable is comma separated)")
    setting("--metrics-port", field="metrics_port", help="port of the Prometheus /metrics endpoint (0 disables)")
    setting("--health-port", field="health_port", help="port of the liveness endpoint /healthz (0 disables)")
    setting("--bind-address", field="bind_address", help="address the metrics and health endpoints listen on")
    add_common_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netshift.operator import malloc, slim

    slim.load()  # before kopf and netshift.kube import kubernetes
    malloc.limit_arenas()  # before any thread starts
    from netshift.operator import app  # kopf only for the operator

    settings = load(OperatorSettings, args)
    logs.setup(settings.log_format, args.verbose)
    return app.run(settings, verbose=args.verbose)
