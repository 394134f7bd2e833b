"""Benchmark: the Gateway API mirror at scale on the real control plane.

    .venv/bin/python tests/bench/bench_gateway_api_mirror.py [--count 1000] [--idle 30]

Creates ``--count`` plain HTTP Routes (unique hosts) in one namespace, runs the operator with the
mirror on (its own router name, restricted to that namespace) and prints: time until every Route has
its HTTPRoute, the mirror's writes for that, its writes while idle, and its writes after a restart.
Needs the Gateway API CRDs (installed here from hack/lib/build.sh's cache).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import existing_cluster, scratch_namespace, start_operator, stop_operator  # noqa: E402 -- after the sys.path set-up above
from tests.support.gatewayapi import crd_files  # noqa: E402 -- after the sys.path set-up above
from tests.support.metrics import metric_sum, scrape  # noqa: E402 -- after the sys.path set-up above

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def _writes(url: str) -> float:
    return metric_sum(scrape(url), "netshift_api_requests_total", lambda labels: labels.get("verb") in WRITES,
                      controller="gateway-api-mirror")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    args = parser.parse_args()
    cluster = existing_cluster()
    files = [arg for f in crd_files("standard") for arg in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)
    tag = uuid.uuid4().hex[:6]
    with scratch_namespace(cluster, f"bench-gwm-{tag}") as ns:
        service = (f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n"
                   "spec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n")
        cluster.kubectl("apply", "-f", "-", input=service)
        docs = [f"apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: r{i}, namespace: {ns}}}\n"
                f"spec: {{host: r{i}.{tag}.bench.netshift.test, to: {{kind: Service, name: web}}, "
                f"port: {{targetPort: 8080}}}}\n" for i in range(args.count)]
        for start in range(0, len(docs), 250):
            cluster.kubectl("apply", "--server-side", "-f", "-", input="---\n".join(docs[start:start + 250]),
                            timeout=600)
        env = {"NETSHIFT_ROUTER_NAME": f"bench-{tag}", "NETSHIFT_GATEWAY_API_MIRROR": "true",
               "NETSHIFT_GATEWAY_API_GATEWAY": f"{ns}/bench"}
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-gwm-"))
        t0 = time.monotonic()
        op = start_operator(cluster, tmp, "--namespace", ns, "--log-format", "plain", env=env)
        try:
            while True:
                names = cluster.kubectl("get", "httproutes", "-n", ns, "-o", "name").stdout.split()
                if len(names) >= args.count:
                    break
                if time.monotonic() - t0 > 900:
                    raise SystemExit(f"only {len(names)} HTTPRoutes after 900 s")
                time.sleep(2)
            mirrored = time.monotonic() - t0
            time.sleep(5)
            sync_writes = _writes(op.metrics_url)
            time.sleep(args.idle)
            idle_writes = _writes(op.metrics_url) - sync_writes
            gateways = len(cluster.kubectl("get", "gateways", "-n", ns, "-o", "name").stdout.split())
        finally:
            stop_operator(op)
        op = start_operator(cluster, tmp, "--namespace", ns, "--log-format", "plain", env=env)
        try:
            deadline = time.monotonic() + 300
            while "gateway api mirror synced" not in op.logs() and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(10)
            restart_writes = _writes(op.metrics_url)
        finally:
            stop_operator(op)
    print(f"routes: {args.count}; gateways: {gateways}; mirrored in {mirrored:.1f} s (operator start included); "
          f"mirror writes: {sync_writes:.0f}; idle writes in {args.idle:.0f} s: {idle_writes:.0f}; "
          f"writes after a restart: {restart_writes:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
