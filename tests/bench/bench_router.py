"""Benchmark of the Route data plane: requests/s and p99 latency through the router vs direct.

    .venv/bin/python -m tests.bench.bench_router [--seconds 3] [--connections 32] [--rounds 1]

Loopback only. The origin is an HAProxy instance answering every request itself (`http-request
return`, one thread): a backend fast enough that the router's cost shows. The router is the real
thing: the router's renderer, store and master-worker HAProxy (one thread), serving one plain route
and one edge route (default certificate) to the origin, with its defaults (sticky cookie inserted,
forwarded headers added). Load: `wrk` (Debian package wrk), one thread, N connections,
- keep-alive: N persistent connections;
- new connections: `Connection: close` on every request (connect + request + close);
- edge TLS keep-alive: TLS terminated by the router, plain HTTP to the origin (compared with direct
  plain HTTP keep-alive: the TLS cost is part of the ratio).
On a shared 2-core machine wrk, the router and the origin compete for the CPUs: read the ratios.

Then, without wrk: a new route's time from apply (render, check, reload) to its first 200, and a
backend scaled 1→5→0→2 endpoints (five origin ports) under a small load (3 clients opening a
connection per request, 2 keep-alive clients): reloads and failed requests (503s while it has no
endpoint are counted apart). Endpoint changes go through HAProxy's runtime API: 0 reloads expected.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from netshift.router.endpoints import Endpoint
from tests.support.net import free_port
from tests.support.router_harness import HAPROXY, Router, get, scale_under_load
from tests.support.routes import served_route_obj

HOST = "bench.example.com"
ORIGIN_ADDRESS = "127.0.0.2"


def origin_config(*ports: int) -> str:
    binds = "\n".join(f"  bind {ORIGIN_ADDRESS}:{port}" for port in ports)
    return f"""global
  nbthread 1
defaults
  mode http
  timeout client 30s
  timeout server 30s
  timeout connect 5s
  timeout http-keep-alive 30s
frontend origin
{binds}
  http-request return status 200 content-type text/plain string "hello from the origin"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: float, connections: int, close: bool, host: str = HOST) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-H", f"Host: {host}"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": _ms(m.group(1), m.group(2)), "errors": errors.group(1) if errors else "",
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="runs per case; the median is reported")
    args = ap.parse_args()
    if not HAPROXY or not shutil.which("wrk"):
        print("needs haproxy and wrk (Debian packages haproxy, wrk)", file=sys.stderr)
        return 2

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-router-"))
    origin_ports = [free_port(ORIGIN_ADDRESS) for _ in range(5)]  # five "pods" for the scaling row
    origin_port = origin_ports[0]
    (tmp / "origin.cfg").write_text(origin_config(*origin_ports))
    origin = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp / "origin.cfg")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    router = Router(tmp, threads=1)
    try:
        origin_eps = {("ns", "svc"): [Endpoint(ORIGIN_ADDRESS, origin_port, "http", "origin")]}
        routes = [served_route_obj("plain", HOST),
                  served_route_obj("edge", f"edge.{HOST}", tls={"termination": "edge"})]
        router.apply(routes, origin_eps)
        deadline = time.monotonic() + 10
        while get(router.http_port, HOST).status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the route does not answer")
            time.sleep(0.1)

        direct_url = f"http://{ORIGIN_ADDRESS}:{origin_port}/"
        cases = [
            ("keep-alive", direct_url, f"http://127.0.0.1:{router.http_port}/", False),
            ("new connections", direct_url, f"http://127.0.0.1:{router.http_port}/", True),
        ]
        print(f"router bench: wrk -t1 -c{args.connections} -d{args.seconds:g}s, {args.rounds} round(s); "
              f"origin and router: HAProxy, 1 thread each; loopback")
        print(f"{'case':<22}{'direct rps':>12}{'router rps':>12}{'rps ratio':>11}"
              f"{'direct p99':>12}{'router p99':>12}{'p99 ratio':>11}")
        rows = []
        for name, d_url, r_url, close in cases:
            d_runs, r_runs = [], []
            for _ in range(args.rounds):  # alternate so drift hits both sides
                d_runs.append(wrk(d_url, args.seconds, args.connections, close))
                r_runs.append(wrk(r_url, args.seconds, args.connections, close))
            d = {k: statistics.median(r[k] for r in d_runs) for k in ("rps", "p99_ms")}
            r = {k: statistics.median(x[k] for x in r_runs) for k in ("rps", "p99_ms")}
            rows.append((name, d, r))
            bad = [x for x in d_runs + r_runs if x["errors"] or x["non2xx"]]
            print(f"{name:<22}{d['rps']:>12.0f}{r['rps']:>12.0f}{r['rps'] / d['rps']:>11.2f}"
                  f"{d['p99_ms']:>10.2f}ms{r['p99_ms']:>10.2f}ms{r['p99_ms'] / d['p99_ms']:>11.2f}"
                  + (f"   (errors: {[(x['errors'], x['non2xx']) for x in bad]})" if bad else ""))
        # Edge TLS through the router vs plain keep-alive direct (TLS cost included).
        d_ka = rows[0][1]
        # wrk sends no SNI to an IP address: the default certificate, the route found by its Host.
        e_runs = [wrk(f"https://127.0.0.1:{router.https_port}/", args.seconds, args.connections, False,
                      host=f"edge.{HOST}") for _ in range(args.rounds)]
        if any(x["errors"] or x["non2xx"] for x in e_runs):
            print(f"   (edge errors: {[(x['errors'], x['non2xx']) for x in e_runs]})")
        e = {k: statistics.median(x[k] for x in e_runs) for k in ("rps", "p99_ms")}
        print(f"{'edge TLS keep-alive':<22}{d_ka['rps']:>12.0f}{e['rps']:>12.0f}{e['rps'] / d_ka['rps']:>11.2f}"
              f"{d_ka['p99_ms']:>10.2f}ms{e['p99_ms']:>10.2f}ms{e['p99_ms'] / d_ka['p99_ms']:>11.2f}")

        first_200 = []
        for i in range(5):  # after a quiet period, as the router reloads at once then
            routes.append(served_route_obj(f"new{i}", f"new{i}.{HOST}"))
            t0 = time.monotonic()
            router.apply(routes, origin_eps)
            while get(router.http_port, f"new{i}.{HOST}").status != 200:
                time.sleep(0.005)
            first_200.append(time.monotonic() - t0)
        print(f"new route, apply to first 200: median {statistics.median(first_200):.3f} s "
              f"(render, haproxy -c, reload; {len(first_200)} routes)")
        pods = [Endpoint(ORIGIN_ADDRESS, port, "http", f"origin-{i}") for i, port in enumerate(origin_ports)]
        scaled = scale_under_load(router, [served_route_obj("scale", f"scale.{HOST}")], f"scale.{HOST}", pods)
        print(f"scaling 1→5→0→2 under load: {scaled.reloads} reloads, {scaled.failed} failed of "
              f"{scaled.requests} requests ({scaled.unavailable} 503s while it had 0 endpoints)")
        return 0
    except Exception:
        print(router.logs()[-3000:], file=sys.stderr)
        raise
    finally:
        router.close()
        origin.terminate()
        origin.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
