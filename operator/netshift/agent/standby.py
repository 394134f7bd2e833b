"""Active/standby (docs/egressrouter.md, "Active/standby"): one agent of an HA router is active.

The active holds the router's Lease, has the egress interface up with the router's addresses and
rules, and is Ready. A standby keeps the interface down (no ARP/ND answers) and is not Ready. On a
takeover the new active syncs (rules, link up, addresses, routes), announces its addresses, then
becomes Ready. A holder that cannot renew steps down (link down, not Ready) before its lease can
expire; on SIGTERM it steps down and then releases the Lease, so a standby takes over at once.
"""
from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time

from prometheus_client import Counter, Gauge

from netshift.agent import announce
from netshift.agent import routes as net
from netshift.agent.runner import Agent, reload, sync_pass
from netshift.egressrouter.spec import ConfigError, RouterConfig
from netshift.kube.lease import Elector

log = logging.getLogger("netshift.agent")


@dataclasses.dataclass
class HAMetrics:
    active: Gauge
    takeovers: Counter
    active_seconds: Counter

    @classmethod
    def create(cls, agent: Agent) -> HAMetrics:
        reg = agent.registry
        return cls(Gauge("netshift_agent_active", "1 while this agent is the router's active pod", registry=reg),
                   Counter("netshift_agent_takeovers", "Times this agent became the active pod", registry=reg),
                   Counter("netshift_agent_active_seconds", "Time this agent spent active", registry=reg))


def take_over(agent: Agent, cfg: RouterConfig) -> list[str]:
    """Rules, link up, addresses and routes (one sync), announce the addresses, then Ready."""
    with agent.lock:
        changes = agent.sync(cfg)
        agent.ready = False  # sync marks Ready: only after the announcements
    log.info("took over: %s", "; ".join(changes) or "nothing to change")
    announce_addresses(agent, cfg)
    agent.ready = True
    return []  # logged above


def _silence(agent: Agent) -> None:
    try:
        agent.silence()
    except (net.NetError, OSError) as exc:
        log.error("cannot bring %s down: %s", agent.egress_if, exc)


def announce_addresses(agent: Agent, cfg: RouterConfig) -> None:
    try:
        sent = announce.send(agent.egress_if, [a.interface.ip for a in cfg.addresses])
        log.info("announced %d address(es) on %s", sent, agent.egress_if)
    except OSError as exc:
        log.warning("cannot announce the addresses on %s: %s", agent.egress_if, exc)


class Defender:
    """While `active`, answers another MAC's claim of one of our IPv4 addresses by announcing them."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.active = False   # announce on foreign claims
        self.up = False       # the link may be up: fence it when the Lease is lost
        self.cfg: RouterConfig | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(announce.ETH_P_ARP))
            sock.bind((self.agent.egress_if, 0))
        except OSError as exc:
            log.warning("cannot watch ARP on %s (addresses not defended): %s", self.agent.egress_if, exc)
            return
        sock.settimeout(0.5)
        mac = sock.getsockname()[4][:6]
        last = 0.0
        with sock:
            while not stop.is_set():
                try:
                    frame = sock.recv(128)
                except TimeoutError:
                    continue
                except OSError:
                    stop.wait(0.5)
                    continue
                cfg = self.cfg
                if not (self.active and cfg) or time.monotonic() - last < 0.2:
                    continue
                mine = [a.interface.ip for a in cfg.addresses if a.version == 4]
                if (claimed := announce.foreign_claim(frame, mac, mine)) is not None:
                    log.warning("%s claims %s: announcing our addresses again", frame[6:12].hex(":"), claimed)
                    announce_addresses(self.agent, cfg)
                    last = time.monotonic()


def _keep_lease(agent: Agent, elector: Elector, defender: Defender, stop: threading.Event, tick: float) -> None:
    """Renew or acquire in a thread of its own, so that a slow sync never delays a renewal, and fence:
    the link goes down as soon as the Lease is no longer held (whatever the main loop is doing)."""
    while not stop.is_set():
        if not elector.step() and defender.up:
            log.warning("lease %s/%s not held: silencing %s", elector.client.namespace, elector.client.name,
                        agent.egress_if)
            defender.active = defender.up = False
            _silence(agent)
        stop.wait(tick)


def run(agent: Agent, elector: Elector, *, resync_seconds: float, poll_seconds: float,
        stop: threading.Event, tick: float = 0.05) -> int:
    """The HA loop; the caller silenced the agent (first thing at startup) and installed the signal
    handlers that set `stop`."""
    metrics = HAMetrics.create(agent)
    threading.Thread(target=elector.watch, args=(stop,), name="lease-watch", daemon=True).start()
    defender = Defender(agent)
    threading.Thread(target=defender.run, args=(stop,), name="arp-defender", daemon=True).start()
    threading.Thread(target=_keep_lease, args=(agent, elector, defender, stop, tick), name="lease",
                     daemon=True).start()
    try:
        digest, cfg = agent.read_config()
    except (ConfigError, OSError) as exc:
        log.error("cannot load config %s: %s", agent.config_path, exc)
        return 2
    active = False
    since = next_sync = next_poll = 0.0
    try:
        while not stop.is_set():
            holding = elector.holding()
            now = time.monotonic()
            defender.cfg = cfg
            if active and not holding:
                defender.active = defender.up = False
                _silence(agent)
                metrics.active.set(0)
                metrics.active_seconds.inc(now - since)
                active = False
                log.warning("lost lease %s/%s: standing by", elector.client.namespace, elector.client.name)
            elif holding and active and now >= next_sync:
                next_sync = sync_pass(agent, cfg, now, resync_seconds)
            elif holding and not active:
                defender.up = True
                next_sync = sync_pass(agent, cfg, now, resync_seconds, lambda c: take_over(agent, c))
                if agent.ready:
                    active, since = True, now
                    defender.active = True
                    metrics.takeovers.inc()
                    metrics.active.set(1)
                else:  # half taken over: silent again until the next try
                    defender.up = False
                    _silence(agent)
            if active:
                metrics.active_seconds.inc(now - since)
                since = now
            if now >= next_poll:
                digest, cfg, reloaded = reload(agent, digest, cfg)
                next_poll = now + poll_seconds
                if reloaded:
                    next_sync = 0.0
            stop.wait(tick)
    finally:
        log.info("stopping%s", ": stepping down" if active else "")
        try:
            if active:
                agent.silence()
            elector.release()
            agent.remove()
            log.info("stepped down and removed nftables tables and routes")
        except Exception as exc:
            log.error("cleanup failed: %s", exc)
    return 0
