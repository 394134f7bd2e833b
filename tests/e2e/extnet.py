"""The e2e tier's "external" network: the outside world an EgressRouter redirects to.

    node (host netns)        | nse2e-<id>-gw (the LAN and its gateway)   | nse2e-<id>-dst (remote servers)
                             |                                           |
    router pod net1 (macvlan)|                                           |
      198.51.100.10+/24      |                                           |
          | bridge mode      |                                           |
    nse2e-<id>  ====== veth ===== ext0 --[ br0 198.51.100.1/24 ]         |
    (macvlan.master)         |            ip_forward=1                   |
                             |            dst0 203.0.113.1/24 === veth ===== eth0 203.0.113.26,.27,.28,.50,.99/24
                             |                                           |    default via 203.0.113.1
                             |                                           |    identify servers (TCP, UDP)

The host end of the first veth pair is what EgressRouters name as `macvlan.master`: a macvlan in
bridge mode on it sends its frames out of the veth to `ext0`, onto the bridge that holds the gateway.
The destinations live one routed hop further, so the agent's host routes via the gateway are really
used, and the servers report the source address they see (the router's macvlan address after SNAT).

On kind (hack/kind-e2e.sh) the workers share one LAN: the near end of the veth pair joins a bridge
(`lan_bridge`, podman's network in the cluster's network namespace) that every worker is on as
`node_master` (eth1), so a router pod on either worker reaches the gateway.

Nothing here touches the machine's uplink: only links and namespaces created here, documentation
address ranges (198.51.100.0/24, 203.0.113.0/24) inside them. With NETSHIFT_E2E_NODE_EXEC (kind:
`docker exec -i <node>`) every command runs on the node through that prefix. `close()` removes
everything and is safe to call twice, also after a half-finished `open()`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import pathlib
import shlex
import subprocess
import sys
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
LAN = ipaddress.ip_network("198.51.100.0/24")
GATEWAY = "198.51.100.1"
REMOTE = ipaddress.ip_network("203.0.113.0/24")
REMOTE_GATEWAY = "203.0.113.1"

# The destination servers: label -> (proto, ip, port). Adapted from the OpenShift documentation's
# redirect example (10.0.0.99 UDP 80; 203.0.113.26 TCP 8080 -> 80; 203.0.113.27 TCP 8443 -> 443),
# plus a server for rule changes and a fallback host answering on several ports.
SERVERS: dict[str, tuple[str, str, int]] = {
    "udp-dns": ("udp", "203.0.113.99", 80),
    "web": ("tcp", "203.0.113.26", 80),
    "tls": ("tcp", "203.0.113.27", 443),
    "added": ("tcp", "203.0.113.28", 5000),
    "fallback-tcp-9000": ("tcp", "203.0.113.50", 9000),
    "fallback-udp-9000": ("udp", "203.0.113.50", 9000),
    "fallback-tcp-7000": ("tcp", "203.0.113.50", 7000),
}


class NodeExec:
    """Runs commands on the node: here directly, or through a prefix such as `docker exec -i node`."""

    def __init__(self, prefix: str | None) -> None:
        self.prefix = shlex.split(prefix) if prefix else []

    @property
    def local(self) -> bool:
        return not self.prefix

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *args], text=True, capture_output=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.prefix, *args], text=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@dataclasses.dataclass
class ExternalNetwork:
    node: NodeExec
    image: str | None = None  # for kind nodes without python3: the servers run in this image (ctr)
    suffix: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:6])
    servers: subprocess.Popen[str] | None = None
    server_log: list[str] = dataclasses.field(default_factory=list)
    _ctr_id: str | None = None

    # kind (hack/kind-e2e.sh): the LAN is a bridge that every worker's `node_master` link is on; the
    # veth's near end joins that bridge instead of being the master itself.
    lan_bridge: str | None = None
    node_master: str | None = None

    @property
    def veth(self) -> str:
        """The near end of the LAN's veth pair (15 characters at most)."""
        return f"nse2e-{self.suffix}"

    @property
    def master(self) -> str:
        """The EgressRouters' macvlan.master: the veth's near end, or the workers' link on the LAN bridge."""
        return self.node_master or self.veth

    @property
    def gw_ns(self) -> str:
        return f"nse2e-{self.suffix}-gw"

    @property
    def dst_ns(self) -> str:
        return f"nse2e-{self.suffix}-dst"

    def router_address(self, index: int) -> str:
        """The CIDR of the index-th router on the LAN (198.51.100.10 and up)."""
        return f"{LAN.network_address + 10 + index}/{LAN.prefixlen}"

    # -- set-up ------------------------------------------------------------------------------------

    def open(self) -> None:
        run = self.node.run
        uplink = self._uplink()
        assert uplink not in (self.master, self.lan_bridge), "never the machine's uplink"
        for ns in (self.gw_ns, self.dst_ns):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        # The LAN: the node's veth end (macvlan master) <-> ext0 on br0 (the gateway) in gw_ns.
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "ext0", "netns", self.gw_ns)
        if self.lan_bridge:
            run("ip", "link", "set", self.veth, "master", self.lan_bridge)
        run("ip", "link", "set", self.veth, "up")
        gw = ("ip", "-n", self.gw_ns)
        run(*gw, "link", "add", "br0", "type", "bridge")
        run(*gw, "link", "set", "ext0", "master", "br0")
        run(*gw, "addr", "add", f"{GATEWAY}/{LAN.prefixlen}", "dev", "br0")
        # The routed hop to the remote servers.
        run(*gw, "link", "add", "dst0", "type", "veth", "peer", "name", "eth0", "netns", self.dst_ns)
        run(*gw, "addr", "add", f"{REMOTE_GATEWAY}/{REMOTE.prefixlen}", "dev", "dst0")
        for link in ("ext0", "br0", "dst0"):
            run(*gw, "link", "set", link, "up")
        self._sysctl(self.gw_ns, "net.ipv4.ip_forward", "1")
        dst = ("ip", "-n", self.dst_ns)
        for ip in sorted({ip for _, ip, _ in SERVERS.values()}):
            run(*dst, "addr", "add", f"{ip}/{REMOTE.prefixlen}", "dev", "eth0")
        run(*dst, "link", "set", "eth0", "up")
        run(*dst, "route", "add", "default", "via", REMOTE_GATEWAY)
        # The servers may run as a non-root user (the netshift image's 65532 on kind).
        self._sysctl(self.dst_ns, "net.ipv4.ip_unprivileged_port_start", "0")
        self._start_servers()

    def _uplink(self) -> str:
        out = self.node.run("ip", "-o", "route", "show", "default", check=False).stdout.split()
        return out[out.index("dev") + 1] if "dev" in out else ""

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.node.run("ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}")

    def _start_servers(self) -> None:
        script = (HERE / "identify_server.py").read_text()
        specs = [f"{label}:{proto}:{ip}:{port}" for label, (proto, ip, port) in SERVERS.items()]
        if self.node.local:
            cmd = ["ip", "netns", "exec", self.dst_ns, sys.executable, "-u", "-c", script, *specs]
        elif self.node.run("sh", "-c", "command -v python3", check=False).returncode == 0:
            cmd = ["ip", "netns", "exec", self.dst_ns, "python3", "-u", "-c", script, *specs]
        else:
            # kind's node image has no python3: run the servers in a container of the netshift image
            # (loaded into the node's containerd) that joins the destination namespace.
            if not self.image:
                raise RuntimeError("the node has no python3 and no image was given for the servers")
            self._ctr_id = f"{self.dst_ns}-servers"
            cmd = ["ctr", "-n", "k8s.io", "run", "--rm", "--with-ns",
                   f"network:/var/run/netns/{self.dst_ns}", self.image, self._ctr_id,
                   "python3", "-u", "-c", script, *specs]
        self.servers = self.node.popen(*cmd)
        ready = threading.Event()

        def pump() -> None:
            assert self.servers and self.servers.stdout
            for line in self.servers.stdout:
                self.server_log.append(line.rstrip())
                if line.strip() == "ready":
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            if self.servers.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("identify servers did not start:\n" + "\n".join(self.server_log[-20:]))

    # -- checks --------------------------------------------------------------------------------------

    def servers_alive(self) -> bool:
        return self.servers is not None and self.servers.poll() is None

    # -- tear-down -----------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove everything; return what could not be removed (empty when clean)."""
        run = self.node.run
        if self._ctr_id:
            run("ctr", "-n", "k8s.io", "task", "kill", "-s", "KILL", self._ctr_id, check=False)
        for ns in (self.dst_ns, self.gw_ns):
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            if pids:
                run("sh", "-c", "kill -KILL " + " ".join(pids), check=False)
        if self.servers is not None:
            if self.servers.poll() is None:
                self.servers.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.servers.wait(timeout=10)
        if self._ctr_id:
            run("ctr", "-n", "k8s.io", "container", "rm", self._ctr_id, check=False)
        run("ip", "link", "del", self.veth, check=False)  # removes both ends of the pair
        for ns in (self.dst_ns, self.gw_ns):
            run("ip", "netns", "del", ns, check=False)
        left = []
        if run("ip", "link", "show", self.veth, check=False).returncode == 0:
            left.append(f"link {self.veth}")
        names = run("ip", "netns", "list", check=False).stdout.split()
        left += [f"netns {ns}" for ns in (self.gw_ns, self.dst_ns) if ns in names]
        return left
