"""`netshift router` as a process against the real API server, HAProxy serving real backends.

Admission is played by the test (it writes this router's status entry), so the router name is unique
per test and no operator is needed. The API server refuses loopback endpoint addresses, so the
backends listen on the node's pod bridge address (hack/cluster's nsbr0): traffic stays on this machine.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.support.metrics import metric_sum, scrape
from tests.support.net import free_port
from tests.support.router_harness import HAPROXY, Backend, get
from tests.support.routes import served_route_obj, slice_obj
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(180)


def _bridge_address() -> str | None:
    proc = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "nsbr0"], capture_output=True, text=True)
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", proc.stdout)
    return m.group(1) if m else None


@pytest.fixture
def address(cluster) -> str:
    if not HAPROXY:
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    found = _bridge_address() if cluster.local else None
    if not found:
        pytest.skip("needs hack/cluster's node bridge nsbr0 for non-loopback backend addresses")
    return found


def apply(cluster, obj: dict, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "--server-side", "--force-conflicts", "-f", "-",
                    input=json.dumps(obj))


def set_status(cluster, namespace: str, name: str, status: dict) -> None:
    cluster.kubectl("patch", "route", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))


def test_router_process_serves_admitted_routes_and_follows_endpoints(cluster, namespace: str, address: str,
                                                                    tmp_path: pathlib.Path) -> None:
    router_name = f"it-{namespace}"[:63]
    one, two = Backend("one", address), Backend("two", address)
    run_dir = tempfile.mkdtemp(prefix="nsr-", dir="/tmp")
    http_port, https_port, stats_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    log_path = tmp_path / "router.log"
    proc = None
    try:
        route = served_route_obj("web", f"web-{namespace}.example.com", namespace=namespace, target_port="http",
                          admitted=None)
        del route["metadata"]["uid"], route["metadata"]["creationTimestamp"]
        apply(cluster, route, namespace)
        entry = {"routerName": router_name, "host": route["spec"]["host"], "wildcardPolicy": "None",
                 "conditions": [{"type": "Admitted", "status": "True"}]}
        set_status(cluster, namespace, "web", {"ingress": [entry]})
        apply(cluster, slice_obj("svc", [address], [("http", one.port)], namespace=namespace, name="svc-1"),
              namespace)

        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "netshift", "router", "--router-name", router_name,
                 "--http-port", str(http_port), "--https-port", str(https_port), "--stats-port", str(stats_port),
                 "--metrics-port", str(metrics_port), "--bind-address", "127.0.0.1",
                 "--config-dir", str(tmp_path / "config"), "--run-dir", run_dir, "--threads", "1",
                 "--reload-interval", "0.2", "--grace-seconds", "2", "--log-format", "plain"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": cluster.kubeconfig})
        host = route["spec"]["host"]
        wait_for("the route to answer from backend one", lambda: get(http_port, host).backend == "one")
        cfg = (tmp_path / "config" / "haproxy.cfg").read_text()
        assert f"backend be_http:{namespace}:web" in cfg

        # Endpoints move: the router follows through HAProxy's runtime API, without a reload.
        apply(cluster, slice_obj("svc", [address], [("http", two.port)], namespace=namespace, name="svc-1"),
              namespace)
        wait_for("the switch to backend two", lambda: get(http_port, host).backend == "two")
        wait_for("the runtime update to be counted",
                 lambda: metric_sum(scrape(metrics_url), "netshift_router_runtime_updates_total", result="ok") >= 1)
        assert metric_sum(scrape(metrics_url), "netshift_router_reloads_total", result="ok") == 0
        reloads = metric_sum(scrape(metrics_url), "netshift_router_reloads_total")

        # Irrelevant changes: no reload.
        apply(cluster, slice_obj("unused", [address], [("http", 1234)], namespace=namespace, name="unused-1"),
              namespace)
        cluster.kubectl("annotate", "route", "web", "-n", namespace, "example.com/irrelevant=1")
        time.sleep(1.5)
        assert metric_sum(scrape(metrics_url), "netshift_router_reloads_total") == reloads

        # Another router's verdict does not matter; ours does.
        set_status(cluster, namespace, "web", {"ingress": [
            {**entry, "conditions": [{"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed"}]}]})
        wait_for("503 after the route lost admission", lambda: get(http_port, host).status == 503)
        set_status(cluster, namespace, "web", {"ingress": [entry]})
        wait_for("the route back", lambda: get(http_port, host).status == 200)
        cluster.kubectl("delete", "route", "web", "-n", namespace)
        wait_for("503 after deletion", lambda: get(http_port, host).status == 503)

        # HAProxy's own exporter.
        text = scrape(f"http://127.0.0.1:{stats_port}/metrics")
        assert "haproxy_process_uptime_seconds" in text

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not subprocess.run(["pgrep", "-f", f"{run_dir}/master.sock"], capture_output=True).stdout
    except BaseException:
        print(f"--- router log ---\n{log_path.read_text(errors='replace')[-6000:] if log_path.exists() else ''}")
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()  # HAProxy follows its parent (PR_SET_PDEATHSIG)
            proc.wait(timeout=10)
        one.close()
        two.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_router_process_external_certificate(cluster, namespace: str, address: str,
                                             tmp_path: pathlib.Path) -> None:
    from cryptography.x509.oid import NameOID

    from tests.support import certs

    router_name = f"itx-{namespace}"[:63]
    backend = Backend("one", address)
    run_dir = tempfile.mkdtemp(prefix="nsr-", dir="/tmp")
    http_port, https_port, stats_port = free_port(), free_port(), free_port()
    log_path = tmp_path / "router.log"
    host = f"ext-{namespace}.example.com"
    ca = certs.make_ca("external CA")
    leaf = certs.issue(ca, [host])
    proc = None
    try:
        route = served_route_obj("ext", host, namespace=namespace, target_port="http", admitted=None,
                          tls={"termination": "edge", "externalCertificate": {"name": "ext-tls"}})
        del route["metadata"]["uid"], route["metadata"]["creationTimestamp"]
        apply(cluster, route, namespace)
        set_status(cluster, namespace, "ext", {"ingress": [{
            "routerName": router_name, "host": host, "wildcardPolicy": "None",
            "conditions": [{"type": "Admitted", "status": "True"}]}]})
        apply(cluster, slice_obj("svc", [address], [("http", backend.port)], namespace=namespace, name="svc-1"),
              namespace)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "netshift", "router", "--router-name", router_name,
                 "--http-port", str(http_port), "--https-port", str(https_port), "--stats-port", str(stats_port),
                 "--metrics-port", "0", "--bind-address", "127.0.0.1", "--domain", "default.example.com",
                 "--config-dir", str(tmp_path / "config"), "--run-dir", run_dir, "--threads", "1",
                 "--reload-interval", "0.2", "--grace-seconds", "2", "--log-format", "plain"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": cluster.kubeconfig})

        def served_cn() -> str:
            r = get(https_port, host, tls=True)
            assert r.status == 200 and r.backend == "one"
            return r.peer_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

        # No Secret yet: the default certificate, and a warning.
        wait_for("the route served with the default certificate", lambda: served_cn() != host)
        wait_for("the warning about the missing Secret",
                 lambda: "externalCertificate ext-tls: Secret not found" in log_path.read_text())
        # The Secret appears: the route's certificate (verified against its CA).
        crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        crt.write_text(leaf.cert)
        key.write_text(leaf.key)
        cluster.kubectl("create", "secret", "tls", "ext-tls", "-n", namespace, f"--cert={crt}", f"--key={key}")
        wait_for("the route served with the Secret's certificate", lambda: served_cn() == host)
        assert get(https_port, host, tls=True, ca=ca.cert).status == 200
        # The Secret goes: back to the default certificate.
        cluster.kubectl("delete", "secret", "ext-tls", "-n", namespace)
        wait_for("the default certificate again", lambda: served_cn() != host)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    except BaseException:
        print(f"--- router log ---\n{log_path.read_text(errors='replace')[-6000:] if log_path.exists() else ''}")
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        backend.close()
        shutil.rmtree(run_dir, ignore_errors=True)
