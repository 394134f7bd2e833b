"""`netshift agent`: the redirect agent of one egress router pod (see docs/agent.md)."""
from __future__ import annotations

import argparse
import logging
import sys

from netshift import logs
from netshift.settings import AgentSettings, add_common_flags, flag, load


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="run the egress redirect agent inside an egress router pod")
    p.add_argument("--config", required=True, help="path of the EgressRouter spec (JSON or YAML)")
    p.add_argument("--pod-interface", default="eth0", help="pod network interface (default eth0)")
    p.add_argument("--egress-interface", default="net1", help="macvlan interface (default net1)")
    p.add_argument("--once", action="store_true", help="apply the configuration once and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config, print the nft script and routes, change nothing")
    flag(p, AgentSettings, "--health-port", field="agent_health_port",
         help="port of /readyz and /healthz (0 disables); never redirected")
    flag(p, AgentSettings, "--metrics-port", field="agent_metrics_port",
         help="port of /metrics (0 disables, may equal --health-port); never redirected")
    flag(p, AgentSettings, "--bind-address", field="agent_bind_address",
         help="address of the HTTP endpoints (unset: all addresses, both families)")
    p.add_argument("--resync-seconds", type=float, default=30.0,
                   help="period of the drift check and repair (default 30)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often the config file is checked for changes (default 1)")
    add_common_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netshift.agent import nft, routes, ruleset, runner  # pyroute2 only for the agent
    from netshift.agent.config import ConfigError

    settings = load(AgentSettings, args)
    if not args.dry_run:
        logs.setup(settings.log_format, args.verbose)
    log = logging.getLogger("netshift.agent")
    exempt = [p for p in (settings.agent_health_port, settings.agent_metrics_port) if p]
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

    for port in sorted({settings.agent_health_port, settings.agent_metrics_port} - {0}):
        runner.serve(agent, settings.agent_bind_address, port)
    return runner.run(agent, resync_seconds=args.resync_seconds, poll_seconds=args.poll_seconds)
