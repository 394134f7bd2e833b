"""`netshift agent`: the redirect agent of one egress router pod (see docs/agent.md)."""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import uuid
from typing import Any

from netshift import logs
from netshift.lease import Timing
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
    ha = p.add_argument_group("active/standby (an HA router's pods; docs/egressrouter.md)")
    ha.add_argument("--lease-name", default="",
                    help="hold this coordination.k8s.io Lease to be active (unset: the single-pod mode, "
                         "which never talks to the API server)")
    ha.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", ""),
                    help="namespace of the Lease (default $POD_NAMESPACE)")
    ha.add_argument("--identity", default=os.environ.get("POD_NAME") or socket.gethostname(),
                    help="this candidate's name in the Lease (default $POD_NAME, else the host name); "
                         "a per-process suffix is added")
    defaults = Timing()
    ha.add_argument("--lease-duration", type=float, default=defaults.duration, help="seconds (whole)")
    ha.add_argument("--renew-deadline", type=float, default=defaults.renew_deadline,
                    help="an active that could not renew for this long steps down (seconds)")
    ha.add_argument("--renew-period", type=float, default=defaults.renew_period, help="seconds")
    ha.add_argument("--retry-period", type=float, default=defaults.retry_period,
                    help="how often a standby reads the Lease (seconds)")
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

    stop = runner.stop_on_signals()
    if args.lease_name:
        try:  # first: the CNI plugin brought the link up, and a standby must be silent
            agent.silence()
        except (routes.NetError, OSError) as exc:
            log.error("cannot bring %s down: %s", args.egress_interface, exc)
            return 1
    for port in sorted({settings.agent_health_port, settings.agent_metrics_port} - {0}):
        runner.serve(agent, settings.agent_bind_address, port)
    if not args.lease_name:
        return runner.run(agent, resync_seconds=args.resync_seconds, poll_seconds=args.poll_seconds, stop=stop)
    return _run_ha(args, agent, stop)


def _run_ha(args: argparse.Namespace, agent: Any, stop: threading.Event) -> int:
    from netshift.agent import standby
    from netshift.kube import Kube, new_api_client
    from netshift.kube.lease import Elector, LeaseClient

    timing = Timing(duration=args.lease_duration, renew_deadline=args.renew_deadline,
                    renew_period=args.renew_period, retry_period=args.retry_period)
    if problems := timing.problems():
        print(f"netshift agent: lease timing: {'; '.join(problems)}", file=sys.stderr)
        return 2
    if not args.lease_namespace:
        print("netshift agent: --lease-name needs --lease-namespace (or $POD_NAMESPACE)", file=sys.stderr)
        return 2
    # Bounded requests: a hung renewal must end before the holder has to step down.
    client = LeaseClient(Kube(new_api_client("agent"), controller="agent"), args.lease_namespace,
                         args.lease_name, timeout=min(1.0, (timing.duration - timing.renew_deadline) / 2))
    elector = Elector(client, f"{args.identity}_{uuid.uuid4().hex[:8]}", timing)
    logging.getLogger("netshift.agent").info("candidate %s for lease %s/%s", elector.me,
                                             args.lease_namespace, args.lease_name)
    return standby.run(agent, elector, resync_seconds=args.resync_seconds, poll_seconds=args.poll_seconds,
                       stop=stop)
