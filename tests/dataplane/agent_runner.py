"""`netshift agent` in the router namespace of a tests/support/topology.py Topology, and the
EgressRouter objects it is given."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time

from tests.support.topology import PYTHON, Topology

HEALTH_PORT, METRICS_PORT = 9180, 9181


def spec(*rules: tuple, fallback: str | None = None, v4: bool = True, v6: bool = False) -> dict:
    """An EgressRouter object; rules are (destination, port, protocol[, targetPort])."""
    addresses = []
    if v4:
        addresses.append({"ip": "10.250.2.10/24", "gateway": "10.250.2.1"})
    if v6:
        addresses.append({"ip": "2001:db8:a::10/64", "gateway": "2001:db8:a::1"})
    redirect: dict = {"redirectRules": [
        {"destinationIP": r[0], "port": r[1], "protocol": r[2], **({"targetPort": r[3]} if len(r) > 3 else {})}
        for r in rules]}
    if fallback:
        redirect["fallbackIP"] = fallback
    return {"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
            "metadata": {"name": "egress", "namespace": "default"},
            "spec": {"addresses": addresses, "mode": "Redirect", "redirect": redirect}}


class AgentRunner:
    """`netshift agent` as a real subprocess inside a router namespace (`ns`, default the topology's);
    `env`: extra environment of the process."""

    def __init__(self, topo: Topology, tmp_path: pathlib.Path, ns: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.topo = topo
        self.ns = ns or topo.router
        self.env = {**os.environ, **(env or {})}
        self.config = tmp_path / "egressrouter.json"
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen | None = None

    def write(self, obj: dict | str) -> None:
        # Atomic replace, like the kubelet's ConfigMap updates.
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        tmp.replace(self.config)

    def cmd(self, *extra: str) -> list[str]:
        return [PYTHON, "-m", "netshift", "agent", "--config", str(self.config), "--log-format", "plain",
                "--health-port", str(HEALTH_PORT), "--metrics-port", str(METRICS_PORT), *extra]

    def once(self, obj: dict | str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        if obj is not None:
            self.write(obj)
        return self.topo.exec(self.ns, *self.cmd("--once"), check=check)

    def start(self, obj: dict | None = None, *extra: str, wait: bool = True) -> AgentRunner:
        if obj is not None:
            self.write(obj)
        self.proc = self.topo.spawn(self.ns, *self.cmd("--poll-seconds", "0.2", *extra),
                                    stdout=self.log.open("a"), stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def http(self, path: str, port: int = HEALTH_PORT) -> dict:
        return self.topo.tool(self.ns, "http", f"http://127.0.0.1:{port}{path}")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.logs()}")
            if self.http("/readyz")["status"] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"agent not ready within {timeout}s:\n{self.logs()}")

    def metrics(self) -> str:
        return self.http("/metrics", METRICS_PORT)["body"]

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
