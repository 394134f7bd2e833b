"""Benchmark of the EgressRouter controller on the real control plane.

    .venv/bin/python -m tests.bench.bench_egressrouter [--count 1000] [--routes 0] [--idle-seconds 60] [--keep]

Creates N EgressRouters (spread over a few namespaces) with `netshift operator` running as a
subprocess, and reports:
- time until every router has its four children (NAD, ConfigMap, Deployment, Service), until every
  router has conditions for its current generation, and until every router reports its pod's fate;
- what it measures is the routine path, where nothing is wrong: 1000 macvlan pods cannot run on the
  shared 2-core test node, so by default a LimitRange gives the router pods a default
  ephemeral-storage request (100Ti) that no node has. The pods are created, as in a real cluster,
  and wait for capacity: the routers settle on Available=False, Progressing=True PodUnschedulable,
  Degraded=False, which the operator writes like a rollout (no Degraded, no Event, one status write
  per router when it goes straight there), from the same Deployment and pod events. A quota or an
  admission denial would instead make every router a real problem (Degraded PodCreateFailed, an
  Event each). `--with-pods` lets the pods run;
- API requests per router: counted by the operator (`netshift_api_requests_total`, exact, by verb)
  and by the API server (`apiserver_request_total` for the resources involved; all clients, so it
  includes kube-controller-manager's ReplicaSets/pods and the benchmark's own creates and lists);
- writes per minute while idle after convergence (operator counter and API server), must be 0;
- the operator's RSS (current and peak); with `--routes N`, N Routes are created first and admitted
  by the same operator before the routers are created (both controllers' state in one process).
Uses $NETSHIFT_TEST_KUBECONFIG, else $KUBECONFIG, else `hack/cluster kubeconfig` (the cluster must
be up). The NetworkAttachmentDefinition CRD from tests/integration/manifests is applied if missing.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import tool
from tests.support.metrics import metric_value, scrape
from tests.support.net import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAD_CRD = ROOT / "tests/integration/manifests/nad-crd.yaml"
GROUP, VERSION, PLURAL = "network.operator.openshift.io", "v1", "egressrouters"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE", "DELETECOLLECTION"}
RESOURCES = {"egressrouters", "deployments", "services", "configmaps", "network-attachment-definitions",
             "events", "pods", "replicasets"}


def kubeconfig() -> str:
    for var in ("NETSHIFT_TEST_KUBECONFIG", "KUBECONFIG"):
        if os.environ.get(var):
            return os.environ[var]
    return subprocess.run([str(ROOT / "hack/cluster"), "kubeconfig"], text=True, capture_output=True,
                          check=True).stdout.strip()


def apiserver_counts(api) -> collections.Counter:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    text = api.call_api("/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False,
                        _return_http_data_only=True).data.decode()
    out: collections.Counter = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        res = labels.get("resource", "")
        if res not in RESOURCES:
            continue
        if labels.get("subresource"):
            res += "/" + labels["subresource"]
        out[(labels.get("verb", ""), res)] += float(line.rsplit(" ", 1)[1])
    return out


def operator_counts(url: str) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for family in text_string_to_metric_families(scrape(url)):
        for s in family.samples:
            if s.name == "netshift_api_requests_total" and s.labels.get("controller") == "EgressRouter":
                out[(s.labels["verb"], s.labels["resource"])] += s.value
    return out


def writes(counts: collections.Counter) -> float:
    return sum(v for (verb, _), v in counts.items() if verb.upper() in WRITE_VERBS)


OPERATOR_PATCHES = {"egressrouters/status", "deployments", "services", "configmaps",
                    "network-attachment-definitions"}


def operator_style(counts: collections.Counter) -> float:
    """PATCHes of the resources the operator applies: in practice only the operator sends them."""
    return sum(v for (verb, res), v in counts.items() if verb == "PATCH" and res in OPERATOR_PATCHES)


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (the machine is shared: wall times are noisy, this less)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconciles(url: str) -> float:
    return metric_value(scrape(url), "netshift_reconcile_total", kind="EgressRouter") or 0.0


def route_status_writes(url: str) -> float:
    return metric_value(scrape(url), "netshift_api_requests_total", resource="routes/status") or 0.0


def route(ns: str, i: int) -> dict:
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"name": f"r{i:05d}", "namespace": ns, "labels": {"netshift.io/bench": "egressrouter"}},
            "spec": {"host": f"r{i}.{ns}.bench.netshift.test", "to": {"kind": "Service", "name": "web"}}}


def load_routes(custom, namespaces: list[str], count: int, metrics_url: str, timeout: float) -> None:
    """Creates `count` Routes and waits until the operator has admitted them (status writes stop)."""
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: custom.create_namespaced_custom_object(
            "route.openshift.io", "v1", namespaces[i % len(namespaces)], "routes",
            route(namespaces[i % len(namespaces)], i)), range(count)))
    print(f"  {count} Routes created in {time.monotonic() - t0:.1f}s", flush=True)
    last, quiet_since = -1.0, time.monotonic()
    while time.monotonic() - t0 < timeout:
        now = route_status_writes(metrics_url)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif now >= count and time.monotonic() - quiet_since >= 5:
            break
        time.sleep(1)
    print(f"  Routes admitted after {time.monotonic() - t0:.1f}s ({last:.0f} status writes)", flush=True)


def router(ns: str, i: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "EgressRouter",
        "metadata": {"name": f"er-{i:05d}", "namespace": ns, "labels": {"netshift.io/bench": "egressrouter"}},
        "spec": {
            "mode": "Redirect",
            "networkInterface": {"macvlan": {"mode": "Bridge", "master": "nsext0"}},
            "addresses": [{"ip": f"10.{100 + i // 60000}.{(i // 250) % 240}.{i % 250 + 2}/16",
                           "gateway": f"10.{100 + i // 60000}.255.254"}],
            "redirect": {"redirectRules": [
                {"destinationIP": "203.0.113.10", "port": 80, "protocol": "TCP"},
                {"destinationIP": "203.0.113.11", "port": 5353, "protocol": "UDP", "targetPort": 53}],
                "fallbackIP": "203.0.113.12"},
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="EgressRouters to create (default 1000)")
    ap.add_argument("--namespaces", type=int, default=10, help="spread over this many namespaces")
    ap.add_argument("--routes", type=int, default=0,
                    help="Routes the same operator admits before the routers are created (RSS of both)")
    ap.add_argument("--idle-seconds", type=float, default=60.0, help="idle window after convergence")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the namespaces afterwards")
    ap.add_argument("--with-pods", action="store_true",
                    help="let the router pods run (default: a LimitRange makes them unschedulable, "
                         "routers then settle on PodUnschedulable; see the module's docstring)")
    ap.add_argument("--cluster-wide", action="store_true",
                    help="run the operator on all namespaces (default: only the benchmark's, so that "
                         "other objects of a shared cluster do not skew the numbers)")
    args = ap.parse_args(argv)

    from kubernetes import client, config

    kc = kubeconfig()
    cfg = client.Configuration()
    config.load_kube_config(config_file=kc, client_configuration=cfg)
    cfg.connection_pool_maxsize = 16
    api = client.ApiClient(cfg)
    custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    kubectl_env = {**os.environ, "KUBECONFIG": kc}
    kubectl = os.environ.get("KUBECTL") or tool("kubectl", "K8S_BIN")
    subprocess.run([kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"),
                    "-f", str(NAD_CRD)], env=kubectl_env, check=True, capture_output=True)

    run = f"{int(time.time()) % 100000}"
    namespaces = [f"bench-er-{run}-{i}" for i in range(args.namespaces)]
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns, "labels": {"netshift.io/bench": "egressrouter"}}})
        if not args.with_pods:  # see the module's docstring
            room = {"ephemeral-storage": "100Ti"}
            core.create_namespaced_limit_range(ns, {"metadata": {"name": "no-room"}, "spec": {"limits": [
                {"type": "Container", "default": room, "defaultRequest": room}]}})

    metrics_port, health_port = free_port(), free_port()
    # kept open for the operator's whole run
    log = tempfile.NamedTemporaryFile(prefix="bench-egressrouter-", suffix=".log", delete=False)  # noqa: SIM115 -- see above
    op = subprocess.Popen(
        [sys.executable, "-m", "netshift", "operator", "--bind-address", "127.0.0.1",
         "--metrics-port", str(metrics_port), "--health-port", str(health_port), "--log-format", "json",
         *([] if args.cluster_wide else [f"--namespace={ns}" for ns in namespaces])],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": kc})
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                operator_counts(metrics_url)
                break
            except OSError:
                if op.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"operator did not start; log: {log.name}") from None
                time.sleep(0.5)
        time.sleep(3)  # initial listing done
        if args.routes:
            load_routes(custom, namespaces, args.routes, metrics_url, args.timeout)

        api0, op0 = apiserver_counts(api), operator_counts(metrics_url)
        cpu0, rec0 = cpu_seconds(op.pid), reconciles(metrics_url)
        print(f"creating {args.count} EgressRouters in {len(namespaces)} namespaces "
              f"(operator log: {log.name})", flush=True)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: custom.create_namespaced_custom_object(
                GROUP, VERSION, namespaces[i % len(namespaces)], PLURAL,
                router(namespaces[i % len(namespaces)], i)), range(args.count)))
        t_created = time.monotonic() - t0
        print(f"  created in {t_created:.1f}s", flush=True)

        sel = "app.kubernetes.io/managed-by=netshift"
        t_children = t_conditions = t_settled = None
        while time.monotonic() - t0 < args.timeout:
            names = collections.Counter()
            for kind, items in (
                ("nad", custom.list_cluster_custom_object("k8s.cni.cncf.io", "v1",
                                                          "network-attachment-definitions",
                                                          label_selector=sel)["items"]),
                ("cm", core.list_config_map_for_all_namespaces(label_selector=sel).to_dict()["items"]),
                ("svc", core.list_service_for_all_namespaces(label_selector=sel).to_dict()["items"]),
                ("dep", apps.list_deployment_for_all_namespaces(label_selector=sel).to_dict()["items"]),
            ):
                for it in items:
                    meta = it["metadata"]
                    if meta["namespace"] in namespaces:
                        names[kind] += 1
            routers = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL,
                                                        label_selector="netshift.io/bench=egressrouter")["items"]
            routers = [r for r in routers if r["metadata"]["namespace"] in namespaces]
            with_conds = settled = 0
            for r in routers:
                status = r.get("status") or {}
                if status.get("observedGeneration") == r["metadata"]["generation"] and status.get("conditions"):
                    with_conds += 1
                    avail = next(c for c in status["conditions"] if c["type"] == "Available")
                    if avail["reason"] not in ("PodPending", "RollingOut"):
                        settled += 1
            now = time.monotonic() - t0
            if t_children is None and all(names[k] >= args.count for k in ("nad", "cm", "svc", "dep")):
                t_children = now
                print(f"  all children exist after {now:.1f}s", flush=True)
            if t_conditions is None and with_conds >= args.count:
                t_conditions = now
                print(f"  all conditions written after {now:.1f}s", flush=True)
            if t_settled is None and settled >= args.count:
                t_settled = now
                print(f"  every router reports its pod after {now:.1f}s", flush=True)
            if t_children is not None and t_conditions is not None and t_settled is not None:
                break
            print(f"  {now:6.1f}s children nad={names['nad']} cm={names['cm']} svc={names['svc']} "
                  f"dep={names['dep']} conditions={with_conds} settled={settled}", flush=True)
            time.sleep(5)
        else:
            print("timed out before convergence", flush=True)
            return 1
        api1, op1 = apiserver_counts(api), operator_counts(metrics_url)
        cpu1, rec1 = cpu_seconds(op.pid), reconciles(metrics_url)
        rss_conv, _ = rss_kib(op.pid)

        # Converged = the operator made no write for 15 s (the controllers of the cluster may still be
        # catching up with the last Deployments; those changes are real work, not idle).
        quiet_since, last, t_quiet = time.monotonic(), writes(op1), None
        while time.monotonic() - t0 < args.timeout:
            time.sleep(3)
            now_writes = writes(operator_counts(metrics_url))
            if now_writes != last:
                quiet_since, last = time.monotonic(), now_writes
            elif time.monotonic() - quiet_since >= 15:
                t_quiet = quiet_since - t0
                break
        api2, op2 = apiserver_counts(api), operator_counts(metrics_url)
        log_offset = pathlib.Path(log.name).stat().st_size
        time.sleep(args.idle_seconds)
        api3, op3 = apiserver_counts(api), operator_counts(metrics_url)
        idle_log = pathlib.Path(log.name).read_bytes()[log_offset:].decode(errors="replace").splitlines()
        idle_status = [line for line in idle_log if "status of EgressRouter" in line or "applied " in line]
        rss_idle, rss_peak = rss_kib(op.pid)

        op_conv, api_conv = op1 - op0, api1 - api0
        op_idle, api_idle = op3 - op2, api3 - api2
        per_minute = 60.0 / args.idle_seconds
        n = args.count
        print()
        print(f"EgressRouters:                         {n}" + (f" (and {args.routes} Routes)" if args.routes else ""))
        print(f"create calls finished:                 {t_created:.1f}s")
        print(f"all children exist:                    {t_children:.1f}s")
        print(f"all conditions written:                {t_conditions:.1f}s")
        print(f"every router reports its pod:          {t_settled:.1f}s")
        print(f"last operator write (converged):       {t_quiet:.1f}s" if t_quiet is not None else
              "operator never went quiet for 15 s")
        print(f"operator CPU until convergence:        {cpu1 - cpu0:.1f}s ({(rec1 - rec0) / n:.1f} reconciles/router); "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"operator API requests per router:      {sum(op_conv.values()) / n:.2f} "
              f"(writes {writes(op_conv) / n:.2f})")
        for (verb, res), v in sorted(op_conv.items()):
            print(f"    {verb:6} {res:32} {v / n:.2f}/router")
        print(f"API server requests per router (all clients, {', '.join(sorted(RESOURCES))}): "
              f"{sum(api_conv.values()) / n:.2f} (writes {writes(api_conv) / n:.2f})")
        print(f"API server PATCHes of routers' status and children per router: {operator_style(api_conv) / n:.2f}")
        print(f"idle writes/minute, operator:          {writes(op_idle) * per_minute:.1f}")
        for (verb, res), v in sorted(op_idle.items()):
            if v:
                print(f"    operator {verb:6} {res:32} {v * per_minute:.1f}/min")
        print(f"idle PATCHes/minute of routers' status and children at the API server: "
              f"{operator_style(api_idle) * per_minute:.1f}")
        print(f"idle writes/minute, API server (all clients, resources above): "
              f"{writes(api_idle) * per_minute:.1f}")
        for (verb, res), v in sorted(api_idle.items()):
            if verb.upper() in WRITE_VERBS and v:
                print(f"    {verb:6} {res:32} {v * per_minute:.1f}/min")
        print(f"idle requests/minute, operator (reads: NAD discovery): {sum(op_idle.values()) * per_minute:.1f}")
        for line in idle_status[:10]:
            print(f"    idle write: {line[:300]}")
        print(f"operator RSS: {rss_conv / 1024:.0f} MiB at convergence, {rss_idle / 1024:.0f} MiB idle, "
              f"{rss_peak / 1024:.0f} MiB peak")
        return 0 if writes(op_idle) == 0 else 1
    finally:
        op.terminate()
        try:
            op.wait(timeout=30)
        except subprocess.TimeoutExpired:
            op.kill()
        if not args.keep:
            for ns in namespaces:
                with contextlib.suppress(Exception):
                    core.delete_namespace(ns)


if __name__ == "__main__":
    raise SystemExit(main())
