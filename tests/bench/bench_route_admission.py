"""Benchmark: Route admission at scale on the real control plane, with the operator running.

    .venv/bin/python tests/bench/bench_route_admission.py [--count 10000] [--namespaces 100]

Creates ``--count`` Routes across ``--namespaces`` namespaces while the operator runs and prints:
time to full status, API writes per route (counted by the operator, and by the API server),
writes while idle, the cost of one route change at that scale (time to the promoted route's new
status, routes re-evaluated, writes) and the cost of an operator restart (writes, re-evaluations).

Route mix (deterministic by index): 80% unique explicit hosts, 10% generated hosts (host write +
status write), 10% on 50 hosts shared across namespaces (one owner, the rest HostAlreadyClaimed).
The operator runs under a router name of its own, so other operators on a shared cluster do not
change what is measured (they add load, though: run on a quiet cluster for clean numbers).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import pathlib
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import Cluster, existing_cluster, start_operator, stop_operator  # noqa: E402 -- after the sys.path set-up above
from tests.support.metrics import metric_sum, scrape  # noqa: E402 -- after the sys.path set-up above

GROUP, VERSION, PLURAL = "route.openshift.io", "v1", "routes"
DOMAIN = "bench.netshift.test"


class Operator:
    def __init__(self, cluster: Cluster, router: str) -> None:
        self.cluster, self.router = cluster, router
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-route-"))
        self.op = None

    def start(self) -> None:
        self.op = start_operator(self.cluster, self.tmp, "--log-format", "plain", env={
            "NETSHIFT_ROUTER_NAME": self.router, "NETSHIFT_ROUTER_DOMAIN": DOMAIN})

    def stop(self) -> None:
        if self.op:
            stop_operator(self.op)

    def metrics(self) -> dict[str, float]:
        text = scrape(self.op.metrics_url)
        return {
            "status_writes": metric_sum(text, "netshift_api_requests_total", resource="routes/status",
                                        verb="patch"),
            "host_writes": metric_sum(text, "netshift_api_requests_total", resource="routes", verb="patch"),
            "evaluated": metric_sum(text, "netshift_route_evaluations_total"),
        }


def apiserver_route_patches(cluster: Cluster) -> float:
    """PATCH requests on routes (and routes/status) the API server served, from all clients."""
    text = cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{") and 'resource="routes"' in line
               and 'verb="PATCH"' in line)


class StatusWatch:
    """Follows our router's entry on every bench route through one watch stream."""

    def __init__(self, api, label: str, router: str) -> None:
        self.api, self.label, self.router = api, label, router
        self.entries: dict[tuple[str, str], dict] = {}
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        rv = None
        while not self.stop:
            w = watch.Watch()
            try:
                for ev in w.stream(self.api.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                                   label_selector=self.label, resource_version=rv, timeout_seconds=60):
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                    entry = next((e for e in (obj.get("status") or {}).get("ingress") or []
                                  if e.get("routerName") == self.router), None)
                    with self.cond:
                        if ev["type"] == "DELETED":
                            self.entries.pop(key, None)
                        else:
                            self.entries[key] = entry
                        self.cond.notify_all()
                    if self.stop:
                        return
            except Exception:  # expired resourceVersion and the like: start over
                rv = None
                time.sleep(0.5)

    def wait(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.entries):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True


def stale_statuses(api, label: str, router: str) -> int:
    """How many routes a fresh controller would rewrite now (0 = the status is converged)."""
    import asyncio

    from netshift.route.admission import Policy
    from netshift.route.controller import RouteAdmissionController

    class Recorder:
        def __init__(self) -> None:
            self.writes = 0

        async def patch_status(self, *_):
            self.writes += 1
            raise RuntimeError("dry run")

        patch = patch_status

    items = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=label)["items"]

    async def check() -> int:
        rec = Recorder()
        ctrl = RouteAdmissionController(policy=Policy(domain=DOMAIN), router_name=router,
                                        canonical_hostname=None, api=rec)
        for item in items:
            ctrl.observe(item)
        ctrl.kick()
        await ctrl.drain()
        return rec.writes
    return asyncio.run(check())


def route_body(i: int, ns: str, label: str, created_index: int) -> dict:
    kind = i % 10
    spec: dict = {"to": {"kind": "Service", "name": "web"}}
    if kind == 9:
        spec["host"] = f"shared{(created_index // 10) % 50}.{DOMAIN}"
    elif kind != 8:
        spec["host"] = f"r{i}-{ns}.{DOMAIN}"
    key, value = label.split("=")
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Route",
            "metadata": {"name": f"r{i}", "namespace": ns, "labels": {key: value}}, "spec": spec}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--threads", type=int, default=16, help="client threads creating routes")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--keep", action="store_true", help="keep the namespaces afterwards")
    args = parser.parse_args(argv)

    from kubernetes import client, config

    cluster = existing_cluster()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
    cfg = client.Configuration()
    config.load_kube_config(config_file=cluster.kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = args.threads
    api = client.CustomObjectsApi(client.ApiClient(cfg))
    core = client.CoreV1Api(client.ApiClient(cfg))

    run = uuid.uuid4().hex[:6]
    router = f"bench-{run}"
    label = f"netshift.io/bench={run}"
    namespaces = [f"bench-{run}-{n:03d}" for n in range(args.namespaces)]
    results: dict[str, object] = {"count": args.count, "namespaces": args.namespaces}
    op = Operator(cluster, router)
    try:
        for ns in namespaces:
            core.create_namespace({"metadata": {"name": ns, "labels": {"netshift.io/bench": run}}})
        op.start()
        watch = StatusWatch(api, label, router)
        api_before = apiserver_route_patches(cluster)

        per_ns = args.count // args.namespaces
        bodies = [route_body(i, ns, label, n * per_ns + i)
                  for n, ns in enumerate(namespaces) for i in range(per_ns)]
        count = len(bodies)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda b: api.create_namespaced_custom_object(
                GROUP, VERSION, b["metadata"]["namespace"], PLURAL, b), bodies))
        created = time.monotonic() - t0
        print(f"created {count} routes in {created:.1f}s ({count / created:.0f}/s)", flush=True)

        ok = watch.wait(lambda e: len(e) == count and all(v for v in e.values()), args.timeout)
        full = time.monotonic() - t0
        if not ok:
            print(f"TIMEOUT: {sum(1 for v in watch.entries.values() if v)} of {count} have status")
            return 1
        m = op.metrics()
        time.sleep(3)  # let trailing watch events arrive before counting on the API server
        api_after = apiserver_route_patches(cluster)
        admitted = sum(1 for v in watch.entries.values() if v["conditions"][0]["status"] == "True")
        results.update({
            "create_seconds": round(created, 1),
            "time_to_full_status_seconds": round(full, 1),
            "admitted": admitted, "rejected": count - admitted,
            "operator_status_writes": m["status_writes"], "operator_host_writes": m["host_writes"],
            "operator_writes_per_route": round((m["status_writes"] + m["host_writes"]) / count, 3),
            "apiserver_route_patches_per_route (all clients)": round((api_after - api_before) / count, 3),
            "evaluations_per_route": round(m["evaluated"] / count, 3),
        })
        print(json.dumps(results, indent=2), flush=True)

        # Idle: nothing changes, nothing is written.
        before = op.metrics()
        time.sleep(10)
        after = op.metrics()
        results["idle_writes_10s"] = after["status_writes"] + after["host_writes"] \
            - before["status_writes"] - before["host_writes"]

        # One change at scale: delete the owner of a shared host; the next oldest is promoted.
        by_host: dict[str, list[tuple[str, str]]] = {}
        for b in bodies:
            if b["spec"].get("host", "").startswith("shared"):
                by_host.setdefault(b["spec"]["host"], []).append(
                    (b["metadata"]["namespace"], b["metadata"]["name"]))
        shared = max(by_host.values(), key=len, default=[])
        if len(shared) < 2:
            raise SystemExit("too few routes for a shared host: use a larger --count")
        owner = next(k for k in shared if watch.entries[k]["conditions"][0]["status"] == "True")
        rest = [k for k in shared if k != owner]
        objs = {k: api.get_namespaced_custom_object(GROUP, VERSION, k[0], PLURAL, k[1]) for k in rest}
        heir = min(rest, key=lambda k: (objs[k]["metadata"]["creationTimestamp"], objs[k]["metadata"]["uid"]))
        before = op.metrics()
        t1 = time.monotonic()
        api.delete_namespaced_custom_object(GROUP, VERSION, owner[0], PLURAL, owner[1])
        watch.wait(lambda e: (e.get(heir) or {}).get("conditions", [{}])[0].get("status") == "True", 60)
        promoted = time.monotonic() - t1
        time.sleep(2)
        after = op.metrics()
        results["change_delete_owner"] = {
            "routes_on_host": len(shared), "seconds_to_promoted_status": round(promoted, 2),
            "routes_re_evaluated": after["evaluated"] - before["evaluated"],
            "writes": after["status_writes"] - before["status_writes"]}

        # One new route with its own host.
        before = op.metrics()
        t1 = time.monotonic()
        body = route_body(1, namespaces[0], label, 1)
        body["metadata"]["name"] = "late-arrival"
        body["spec"]["host"] = f"late.{DOMAIN}"
        api.create_namespaced_custom_object(GROUP, VERSION, namespaces[0], PLURAL, body)
        watch.wait(lambda e: bool(e.get((namespaces[0], "late-arrival"))), 60)
        created_one = time.monotonic() - t1
        time.sleep(2)
        after = op.metrics()
        results["change_create_one"] = {
            "seconds_to_status": round(created_one, 2),
            "routes_re_evaluated": after["evaluated"] - before["evaluated"],
            "writes": after["status_writes"] - before["status_writes"]}

        # Operator restart at scale: every decision re-derived, nothing rewritten.
        results["stale_before_restart"] = stale_statuses(api, label, router)
        op.stop()
        t1 = time.monotonic()
        op.start()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and op.metrics()["evaluated"] < count:
            time.sleep(0.5)
        settled = time.monotonic() - t1
        time.sleep(3)
        m = op.metrics()
        results["restart"] = {"seconds_to_evaluate_all": round(settled, 1), "evaluated": m["evaluated"],
                              "writes": m["status_writes"] + m["host_writes"]}
        watch.stop = True
        print(json.dumps(results, indent=2))
        return 0
    finally:
        op.stop()
        if not args.keep:
            for ns in namespaces:
                cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    sys.exit(main())
