"""Fixtures of the data-plane tier: a fresh namespace topology per test, echo servers, the agent."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.dataplane.agent_runner import AgentRunner
from tests.support.cluster import failed
from tests.support.topology import (
    CNI_PATH,
    CNI_PLUGINS,
    DEST_V4,
    DEST_V6,
    FALLBACK_V4,
    FALLBACK_V6,
    GATEWAY_V4,
    Topology,
)


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


@pytest.fixture
def agent(servers: Topology, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[AgentRunner]:
    runner = AgentRunner(servers, tmp_path)
    yield runner
    if runner.proc is not None and runner.proc.poll() is None:
        runner.proc.kill()  # topo.close() would too; kill first so the log is complete
        runner.proc.wait(timeout=10)
    if failed(request):
        print(f"--- agent log ---\n{runner.logs()[-6000:]}")
