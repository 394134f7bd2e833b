"""Benchmark of the redirect agent: TCP throughput and connections/s, redirected vs direct.

    sudo .venv/bin/python -m tests.bench.bench_agent [--seconds 3] [--rounds 2] [--check]

Same namespace topology as the data-plane tests (tests/dataplane/topology.py), traffic only inside it.
- direct:     client -> router (plain forwarding, no nftables, no conntrack) -> gateway -> destination
- redirected: client -> router eth0 address (agent's DNAT/SNAT, conntrack, counters) -> same path
Throughput: iperf3 (one TCP stream). Connection rate: connect + 1 request/reply + close, Python client
against a Python server (the same client/server on both paths, so the ratio is what matters).
Rounds alternate the paths; the median is reported. `--check` exits 1 if throughput < 0.9 of direct.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tests.support.topology import DEST_V4, EGRESS_V4, PYTHON, ROUTER_V4, Topology

GOAL = 0.9


def iperf(topo: Topology, host: str, port: int, seconds: float) -> float:
    out = topo.exec(topo.client, "iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J",
                    timeout=seconds + 30).stdout
    return json.loads(out)["end"]["sum_received"]["bits_per_second"]


def connrate(topo: Topology, host: str, port: int, seconds: float) -> float:
    r = topo.tool(topo.client, "connrate", host, str(port), str(seconds), timeout=seconds + 30)
    if r["errors"]:
        print(f"  warning: {r['errors']} failed connections to {host}:{port}", file=sys.stderr)
    return r["connections"] / r["seconds"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per path")
    ap.add_argument("--check", action="store_true", help=f"fail when throughput ratio < {GOAL}")
    args = ap.parse_args(argv)
    if not shutil.which("iperf3"):
        print("bench_agent: iperf3 not found (Debian package iperf3)", file=sys.stderr)
        return 2

    with Topology() as topo, tempfile.TemporaryDirectory() as tmp:
        topo.enable_direct_path()
        topo.spawn(topo.dest, "iperf3", "-s", "-p", "5201", stdout=subprocess.DEVNULL)
        topo.serve(topo.dest, "bench", f"tcp:{DEST_V4}:8080")
        cfg = f"{tmp}/egressrouter.json"
        with open(cfg, "w") as f:
            json.dump({"spec": {"addresses": [{"ip": f"{EGRESS_V4}/24", "gateway": "10.250.2.1"}],
                                "redirect": {"redirectRules": [
                                    {"destinationIP": DEST_V4, "port": 5201, "protocol": "TCP"},
                                    {"destinationIP": DEST_V4, "port": 80, "protocol": "TCP", "targetPort": 8080},
                                ]}}}, f)
        time.sleep(0.3)  # iperf3 server start

        results: dict[str, dict[str, list[float]]] = {"direct": {"bps": [], "cps": []},
                                                       "redirected": {"bps": [], "cps": []}}
        agent_installed = False
        for rnd in range(args.rounds):
            for path in ("direct", "redirected"):
                if path == "redirected" and not agent_installed:
                    topo.exec(topo.router, PYTHON, "-m", "netshift", "agent", "--config", cfg, "--once",
                              "--log-format", "plain")
                    agent_installed = True
                if path == "direct" and agent_installed:
                    # direct must not pay for conntrack: remove the agent's tables for that measurement
                    topo.exec(topo.router, "nft", "delete", "table", "ip", "netshift_egress")
                    agent_installed = False
                host, tport, cport = (DEST_V4, 5201, 8080) if path == "direct" else (ROUTER_V4, 5201, 80)
                bps = iperf(topo, host, tport, args.seconds)
                cps = connrate(topo, host, cport, args.seconds)
                results[path]["bps"].append(bps)
                results[path]["cps"].append(cps)
                print(f"round {rnd + 1} {path:>10}: {bps / 1e9:7.2f} Gbit/s  {cps:8.0f} conn/s", flush=True)

    med = {p: {k: statistics.median(v) for k, v in m.items()} for p, m in results.items()}
    ratio_bps = med["redirected"]["bps"] / med["direct"]["bps"]
    ratio_cps = med["redirected"]["cps"] / med["direct"]["cps"]
    print(f"median direct    : {med['direct']['bps'] / 1e9:7.2f} Gbit/s  {med['direct']['cps']:8.0f} conn/s")
    print(f"median redirected: {med['redirected']['bps'] / 1e9:7.2f} Gbit/s  {med['redirected']['cps']:8.0f} conn/s")
    print(f"ratio redirected/direct: throughput {ratio_bps:.3f} (goal >= {GOAL}), connections/s {ratio_cps:.3f}")
    print(json.dumps({"throughput_bps": med, "ratio_throughput": round(ratio_bps, 4),
                      "ratio_connections": round(ratio_cps, 4), "goal_met": ratio_bps >= GOAL}))
    return 1 if args.check and ratio_bps < GOAL else 0


if __name__ == "__main__":
    raise SystemExit(main())
