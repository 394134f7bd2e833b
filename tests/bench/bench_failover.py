"""`make bench-failover`: how long egress through an active/standby EgressRouter's Service is out after
a fault, on the cluster of $KUBECONFIG / NETSHIFT_TEST_KUBECONFIG (default hack/cluster's).

The measurement runs as the e2e tier's `test_bench_failover` (tests/e2e/test_egressrouter_ha_e2e.py,
collected only with NETSHIFT_BENCH_FAILOVER=ROUNDS): it reuses the tier's operator install, external
network and client pod. This module holds the parts: the poller run in the client pod, the faults,
and the arithmetic.

Per round: the poller, started in the client pod, opens a new TCP connection through the Service
every 50 ms from a given wall-clock instant (the fault) on, and records each attempt's start and
result. The outage is the time from the fault to the first success after the last failure (0 when
no attempt failed). Faults: the active pod deleted (graceful), the active pod's agent SIGKILLed
(from the node: the agent is its container's PID 1, which no signal from inside can kill), and the
active's node stopped (only with several nodes; otherwise "n/a (single node)").
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
from collections.abc import Sequence

from tests.support.cluster import HACK_CLUSTER

# Run with `python3 -c POLLER HOST PORT START WINDOW` in the client pod (standard library only).
POLLER = r'''
import json, socket, sys, time
host, port, start, window = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
out = []
while time.time() < start + window:
    t = time.time()
    try:
        with socket.create_connection((host, port), timeout=0.3) as s:
            s.settimeout(0.5)
            s.sendall(b"bench\n")
            ok = s.recv(4096).strip().decode(errors="replace")
    except OSError:
        ok = ""
    out.append((t, ok))
    time.sleep(max(0.0, 0.05 - (time.time() - t)))
print(json.dumps(out))
'''


def outage(attempts: Sequence[tuple[float, str]], fault_at: float) -> float | None:
    """Seconds from the fault to the first success after the last failure; None: never recovered."""
    failed = [t for t, ok in attempts if not ok]
    if not failed:
        return 0.0
    after = [t for t, ok in attempts if ok and t > failed[-1]]
    return after[0] - fault_at if after else None


def sources(attempts: Sequence[tuple[float, str]]) -> set[str]:
    """The source addresses the destination reported (the identify server's `src=` field)."""
    out = set()
    for _, ok in attempts:
        for part in ok.split():
            if part.startswith("src="):
                out.add(part.removeprefix("src=").rsplit(":", 1)[0])
    return out


def kill_agent(pod: dict, node_prefix: Sequence[str]) -> None:
    """SIGKILL the agent (the pod's container) from the node, through containerd's task list."""
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    ctr = [*node_prefix, "ctr", "-n", "k8s.io"] if node_prefix else [str(HACK_CLUSTER), "ctr"]
    tasks = subprocess.run([*ctr, "task", "ls"], text=True, capture_output=True, check=True).stdout
    pid = next(int(line.split()[1]) for line in tasks.splitlines() if line.startswith(container))
    if node_prefix:
        subprocess.run([*node_prefix, "kill", "-9", str(pid)], check=True)
    else:
        os.kill(pid, signal.SIGKILL)


def table(results: dict[str, list[float | None] | str]) -> str:
    lines = ["fault                      rounds  median    max", "-" * 50]
    for fault, values in results.items():
        if isinstance(values, str):
            lines.append(f"{fault:<26} {values}")
            continue
        got = [v for v in values if v is not None]
        lost = len(values) - len(got)
        med = f"{statistics.median(got):6.2f} s" if got else "     -  "
        top = f"{max(got):6.2f} s" if got else "     -  "
        lines.append(f"{fault:<26} {len(values):>6}  {med}  {top}" + (f"  ({lost} never recovered)" if lost else ""))
    return "\n".join(lines)


def parse(stdout: str) -> list[tuple[float, str]]:
    return [(float(t), str(ok)) for t, ok in json.loads(stdout.strip().splitlines()[-1])]
