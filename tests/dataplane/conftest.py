"""Fixtures of the data-plane tier: a fresh namespace topology per test, echo servers, the agent."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.dataplane.topology import (
    CNI_PATH,
    CNI_PLUGINS,
    DEST_V4,
    DEST_V6,
    FALLBACK_V4,
    FALLBACK_V6,
    GATEWAY_V4,
    PYTHON,
    Topology,
)

HEALTH_PORT, METRICS_PORT = 9180, 9181


@pytest.fixture(scope="session", autouse=True)
def _requirements() -> None:
    # A skip fails the run under CI=true (tests/conftest.py), so CI cannot pass without these.
    if os.geteuid() != 0:
        pytest.skip("data-plane tests need root (network namespaces)")
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            pytest.skip(f"data-plane tests need `{tool}` (`make deps`: Debian packages iproute2, nftables)")
    for plugin in CNI_PLUGINS:
        if not os.access(f"{CNI_PATH}/{plugin}", os.X_OK):
            pytest.skip(f"data-plane tests need the CNI plugin {CNI_PATH}/{plugin} "
                        "(`make deps`: Debian package containernetworking-plugins)")


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology().create()
    try:
        yield t
    finally:
        t.close()
        leftover = [ns for ns in t.namespaces if ns in subprocess.run(
            ["ip", "netns", "list"], text=True, capture_output=True).stdout]
        assert not leftover, f"namespaces left behind: {leftover}"


@pytest.fixture
def servers(topo: Topology) -> Topology:
    """Echo servers: `dest-a` and `fallback` behind the gateway, `gateway` on the egress segment."""
    topo.serve(topo.dest, "dest-a", f"tcp:{DEST_V4}:8080", f"tcp:{DEST_V4}:81", f"udp:{DEST_V4}:5353",
               f"tcp:[{DEST_V6}]:8080", f"tcp:[{DEST_V6}]:81", f"udp:[{DEST_V6}]:5353")
    topo.serve(topo.dest, "fallback", f"tcp:{FALLBACK_V4}:7000", f"tcp:{FALLBACK_V4}:7001",
               f"udp:{FALLBACK_V4}:7002", f"tcp:[{FALLBACK_V6}]:7000")
    topo.serve(topo.ext, "gateway", f"tcp:{GATEWAY_V4}:9000")
    return topo


def spec(*rules: tuple, fallback: str | None = None, v4: bool = True, v6: bool = False) -> dict:
    """An EgressRouter object; rules are (destination, port, protocol[, targetPort])."""
    addresses = []
    if v4:
        addresses.append({"ip": "192.0.2.10/24", "gateway": "192.0.2.1"})
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
    """`netshift agent` as a real subprocess inside the router namespace."""

    def __init__(self, topo: Topology, tmp_path: pathlib.Path) -> None:
        self.topo = topo
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
        return self.topo.exec(self.topo.router, *self.cmd("--once"), check=check)

    def start(self, obj: dict | None = None, *extra: str) -> AgentRunner:
        if obj is not None:
            self.write(obj)
        self.proc = self.topo.spawn(self.topo.router, *self.cmd("--poll-seconds", "0.2", *extra),
                                    stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def http(self, path: str, port: int = HEALTH_PORT) -> dict:
        return self.topo.tool(self.topo.router, "http", f"http://127.0.0.1:{port}{path}")

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


@pytest.fixture
def agent(servers: Topology, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[AgentRunner]:
    runner = AgentRunner(servers, tmp_path)
    yield runner
    if runner.proc is not None and runner.proc.poll() is None:
        runner.proc.kill()  # topo.close() would too; kill first so the log is complete
        runner.proc.wait(timeout=10)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"--- agent log ---\n{runner.logs()[-6000:]}")
