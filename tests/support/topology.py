"""A throw-away egress-router topology made of network namespaces, shared by tests and benchmark.

    client ns            router ns                      external ns                 dest ns
    c0 ---- veth ---- eth0      net1 (macvlan) ~~ lan0 ---- veth ---- gw0 (gateway)
    203.0.113.2/24    203.0.113.1/24   master: lan0           10.250.2.1/24           d1 198.51.100.10,.11,.12/24
    2001:db8:c::2/64  2001:db8:c::1/64                        2001:db8:a::1/64        2001:db8:d::10,::12/64
                                                              d0 198.51.100.1/24 ---- veth
                                                              2001:db8:d::1/64

`add_router()` adds a second router namespace `rtr2` (an HA router's second pod): its own eth0 to
the client (c1 10.250.41.2/24 -- eth0 10.250.41.1/24) and its own macvlan net1 on the same lan0.

The macvlan's master is a veth end inside the external namespace created here (never the machine's
uplink). net1 starts without addresses: the agent adds the spec's. All addresses come from the
documentation ranges and 10.250.0.0/16, never 192.0.2.0/24 (the uplink's subnet on these machines;
docs/cluster.md), and exist only inside these namespaces. `close()` kills every process started
through the topology and deletes the namespaces (which deletes every link in them).
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import select
import subprocess
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
NETTOOLS = str(pathlib.Path(__file__).resolve().with_name("nettools.py"))
PYTHON = os.environ.get("NETSHIFT_PYTHON", sys.executable)
# Debian's containernetworking-plugins (the property test runs macvlan, static and tuning).
CNI_PATH = os.environ.get("NETSHIFT_CNI_PATH", "/usr/lib/cni")
CNI_PLUGINS = ("macvlan", "static", "tuning")

ROUTER_V4, ROUTER_V6 = "203.0.113.1", "2001:db8:c::1"      # the router's pod-side (eth0) addresses
EGRESS_V4, EGRESS_V6 = "10.250.2.10", "2001:db8:a::10"      # the router's addresses on net1
GATEWAY_V4, GATEWAY_V6 = "10.250.2.1", "2001:db8:a::1"
DEST_V4, DEST2_V4, FALLBACK_V4 = "198.51.100.10", "198.51.100.11", "198.51.100.12"
DEST_V6, FALLBACK_V6 = "2001:db8:d::10", "2001:db8:d::12"
ROUTER2_V4, CLIENT2_V4 = "10.250.41.1", "10.250.41.2"       # the second router's eth0, the client's c1


class Topology:
    def __init__(self, tag: str | None = None) -> None:
        tag = tag or uuid.uuid4().hex[:6]
        self.client, self.router, self.ext, self.dest = (f"nsx-{tag}-{r}" for r in ("cli", "rtr", "ext", "dst"))
        self.namespaces = [self.client, self.router, self.ext, self.dest]
        self.procs: list[subprocess.Popen] = []

    # --- life cycle --------------------------------------------------------------------------------

    def create(self) -> Topology:
        try:
            for ns in self.namespaces:
                run(["ip", "netns", "add", ns])
            for ns in self.namespaces:
                self.ip(ns, "link", "set", "lo", "up")
                for key in ("all", "default"):
                    self.sysctl(ns, f"net.ipv6.conf.{key}.accept_dad", "0")
            c, r, e, d = self.namespaces
            # client <-> router eth0
            self.ip(r, "link", "add", "eth0", "type", "veth", "peer", "name", "c0", "netns", c)
            # external segment: lan0 is the macvlan master, gw0 the gateway on the same wire
            self.ip(e, "link", "add", "lan0", "type", "veth", "peer", "name", "gw0")
            self.ip(e, "link", "add", "net1", "link", "lan0", "type", "macvlan", "mode", "bridge")
            self.ip(e, "link", "set", "net1", "netns", r)
            # gateway <-> destinations
            self.ip(e, "link", "add", "d0", "type", "veth", "peer", "name", "d1", "netns", d)

            self.addrs(c, "c0", "203.0.113.2/24", "2001:db8:c::2/64")
            self.addrs(r, "eth0", f"{ROUTER_V4}/24", f"{ROUTER_V6}/64")
            self.addrs(e, "gw0", f"{GATEWAY_V4}/24", f"{GATEWAY_V6}/64")
            self.addrs(e, "d0", "198.51.100.1/24", "2001:db8:d::1/64")
            self.addrs(d, "d1", f"{DEST_V4}/24", f"{DEST2_V4}/24", f"{FALLBACK_V4}/24",
                       f"{DEST_V6}/64", f"{FALLBACK_V6}/64")
            for ns, link in ((c, "c0"), (r, "eth0"), (e, "lan0"), (e, "gw0"), (e, "d0"), (d, "d1")):
                self.ip(ns, "link", "set", link, "up")
            # The router pod's default route points into the "cluster" (the client side), as in a pod.
            self.ip(r, "route", "add", "default", "via", "203.0.113.2")
            self.ip(r, "-6", "route", "add", "default", "via", "2001:db8:c::2")
            for ns, v4, v6 in ((c, ROUTER_V4, ROUTER_V6), (d, "198.51.100.1", "2001:db8:d::1")):
                self.ip(ns, "route", "add", "default", "via", v4)
                self.ip(ns, "-6", "route", "add", "default", "via", v6)
            self.sysctl(e, "net.ipv4.ip_forward", "1")
            self.sysctl(e, "net.ipv6.conf.all.forwarding", "1")
        except BaseException:
            self.close()
            raise
        return self

    def add_router(self) -> str:
        """A second router namespace (see the module docstring); returns its name."""
        ns = self.router.removesuffix("-rtr") + "-rtr2"
        self.namespaces.append(ns)
        try:
            run(["ip", "netns", "add", ns])
            self.ip(ns, "link", "set", "lo", "up")
            self.sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")
            self.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "c1", "netns", self.client)
            self.ip(self.ext, "link", "add", "net1b", "link", "lan0", "type", "macvlan", "mode", "bridge")
            self.ip(self.ext, "link", "set", "net1b", "netns", ns, "name", "net1")
            self.addrs(self.client, "c1", f"{CLIENT2_V4}/24")
            self.addrs(ns, "eth0", f"{ROUTER2_V4}/24")
            self.ip(self.client, "link", "set", "c1", "up")
            self.ip(ns, "link", "set", "eth0", "up")
            self.ip(ns, "route", "add", "default", "via", CLIENT2_V4)
        except BaseException:
            self.close()
            raise
        return ns

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        self.procs.clear()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __enter__(self) -> Topology:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()

    def enable_direct_path(self) -> None:
        """Plain routing client -> destinations through the router without NAT (benchmark baseline)."""
        self.sysctl(self.router, "net.ipv4.ip_forward", "1")
        self.sysctl(self.router, "net.ipv6.conf.all.forwarding", "1")
        self.addrs(self.router, "net1", f"{EGRESS_V4}/24")
        self.ip(self.router, "link", "set", "net1", "up")
        self.ip(self.router, "route", "replace", "198.51.100.0/24", "via", GATEWAY_V4, "dev", "net1")
        self.ip(self.ext, "route", "replace", "203.0.113.0/24", "via", EGRESS_V4)

    # --- helpers -----------------------------------------------------------------------------------

    def ip(self, ns: str, *args: str) -> str:
        return run(["ip", "-n", ns, *args])

    def sysctl(self, ns: str, key: str, value: str) -> None:
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"])

    def addrs(self, ns: str, link: str, *cidrs: str) -> None:
        for cidr in cidrs:
            extra = ["nodad"] if ":" in cidr else []
            self.ip(ns, "addr", "add", cidr, "dev", link, *extra)

    def exec(self, ns: str, *cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], text=True, capture_output=True,
                              timeout=timeout, cwd=ROOT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {ns} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, ns: str, *cmd: str, **kwargs) -> subprocess.Popen:
        """A process inside `ns` that close() will kill."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, cwd=ROOT, **kwargs)
        self.procs.append(p)
        return p

    def tool(self, ns: str, *args: str, timeout: float = 30) -> dict:
        out = self.exec(ns, PYTHON, NETTOOLS, *args, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def serve(self, ns: str, name: str, *specs: str) -> subprocess.Popen:
        p = self.spawn(ns, PYTHON, NETTOOLS, "serve", name, *specs, stdin=subprocess.DEVNULL)
        line = read_line(p, 10)
        if line != "READY":
            stderr = p.stderr.read() if p.poll() is not None else ""
            raise AssertionError(f"server {name} did not start: {line!r} {stderr}")
        return p

    def nft_tables(self, ns: str) -> list[tuple[str, str]]:
        out = json.loads(self.exec(ns, "nft", "-j", "list", "tables").stdout)["nftables"]
        return [(o["table"]["family"], o["table"]["name"]) for o in out if "table" in o]


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, text=True, capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def read_line(p: subprocess.Popen, timeout: float) -> str | None:
    """One stdout line of a text-mode Popen, or None on timeout/EOF."""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    if not ready:
        return None
    line = p.stdout.readline()
    return line.strip() if line else None
