"""`netshift agent`: the redirect agent of one egress router pod (see docs/agent.md)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from netshift.cliargs import env_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run the egress redirect agent inside an egress router pod")
    p.add_argument("--config", required=True, help="path of the EgressRouter spec (JSON or YAML)")
    p.add_argument("--pod-interface", default="eth0", help="pod network interface (default eth0)")
    p.add_argument("--egress-interface", default="net1", help="macvlan interface (default net1)")
    p.add_argument("--once", action="store_true", help="apply the configuration once and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config, print the nft script and routes, change nothing")
    p.add_argument("--health-port", type=int, default=env_int("NETSHIFT_AGENT_HEALTH_PORT", 9180),
                   help="port of /readyz and /healthz (default 9180, 0 disables); never redirected")
    p.add_argument("--metrics-port", type=int, default=env_int("NETSHIFT_AGENT_METRICS_PORT", 9181),
                   help="port of /metrics (default 9181, 0 disables, may equal --health-port); never redirected")
    p.add_argument("--bind-address", default=os.environ.get("NETSHIFT_AGENT_BIND_ADDRESS", ""),
                   help="address of the HTTP endpoints (default: all addresses, both families)")
    p.add_argument("--resync-seconds", type=float, default=30.0,
                   help="period of the drift check and repair (default 30)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often the config file is checked for changes (default 1)")
    p.add_argument("--log-format", choices=["json", "plain"],
                   default=os.environ.get("NETSHIFT_LOG_FORMAT", "json"), help="log format (default json)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.set_defaults(func=run)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def _setup_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def run(args: argparse.Namespace) -> int:
    from netshift.agent import nft, routes, ruleset, runner
    from netshift.agent.config import ConfigError

    if not args.dry_run:
        _setup_logging(args.log_format, args.verbose)
    log = logging.getLogger("netshift.agent")
    exempt = [p for p in (args.health_port, args.metrics_port) if p]
    agent = runner.Agent(args.config, pod_if=args.pod_interface, egress_if=args.egress_interface,
                         exempt_ports=exempt)
    if args.dry_run or args.once:
        try:
            _, cfg = agent.read_config()
        except (ConfigError, OSError) as exc:
            print(f"netshift agent: {args.config}: {exc}", file=sys.stderr)
            return 2
        if args.dry_run:
            print(ruleset.render_script(cfg, pod_if=args.pod_interface, egress_if=args.egress_interface,
                                        exempt_ports=exempt), end="")
            for r in routes.desired_routes(cfg):
                print(f"# route {r.dst}/{r.prefixlen} {'via ' + r.gateway if r.gateway else 'scope link'} "
                      f"dev {args.egress_interface}")
            return 0
        try:
            changes = agent.sync(cfg)
        except (routes.NetError, nft.NftError, OSError) as exc:
            print(f"netshift agent: {exc}", file=sys.stderr)
            return 1
        log.info("applied: %s", "; ".join(changes) if changes else "nothing to change")
        return 0

    for port in sorted({args.health_port, args.metrics_port} - {0}):
        runner.serve(agent, args.bind_address, port)
    return runner.run(agent, resync_seconds=args.resync_seconds, poll_seconds=args.poll_seconds)
