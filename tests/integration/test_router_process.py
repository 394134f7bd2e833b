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
import urllib.request

import pytest

from tests.dataplane.router_harness import HAPROXY, Backend, free_port, get
from tests.unit.router_helpers import route_obj, slice_obj

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


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_router_process_serves_admitted_routes_and_follows_endpoints(cluster, namespace: str, address: str,
                                                                    tmp_path: pathlib.Path) -> None:
    router_name = f"it-{namespace}"[:63]
    one, two = Backend("one", address), Backend("two", address)
    run_dir = tempfile.mkdtemp(prefix="nsr-", dir="/tmp")
    http_port, https_port, stats_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    log_path = tmp_path / "router.log"
    proc = None
    try:
        route = route_obj("web", f"web-{namespace}.example.com", namespace=namespace, target_port="http",
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
        wait_for(lambda: get(http_port, host).backend == "one", what="the route to answer from backend one")
        cfg = (tmp_path / "config" / "haproxy.cfg").read_text()
        assert f"backend be_http:{namespace}:web" in cfg

        # Endpoints move: the router follows.
        apply(cluster, slice_obj("svc", [address], [("http", two.port)], namespace=namespace, name="svc-1"),
              namespace)
        wait_for(lambda: get(http_port, host).backend == "two", what="the switch to backend two")
        reloads = metric(metrics_port, "netshift_router_reloads_total")

        # Irrelevant changes: no reload.
        apply(cluster, slice_obj("unused", [address], [("http", 1234)], namespace=namespace, name="unused-1"),
              namespace)
        cluster.kubectl("annotate", "route", "web", "-n", namespace, "example.com/irrelevant=1")
        time.sleep(1.5)
        assert metric(metrics_port, "netshift_router_reloads_total") == reloads

        # Another router's verdict does not matter; ours does.
        set_status(cluster, namespace, "web", {"ingress": [
            {**entry, "conditions": [{"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed"}]}]})
        wait_for(lambda: get(http_port, host).status == 503, what="503 after the route lost admission")
        set_status(cluster, namespace, "web", {"ingress": [entry]})
        wait_for(lambda: get(http_port, host).status == 200, what="the route back")
        cluster.kubectl("delete", "route", "web", "-n", namespace)
        wait_for(lambda: get(http_port, host).status == 503, what="503 after deletion")

        # HAProxy's own exporter.
        text = urllib.request.urlopen(f"http://127.0.0.1:{stats_port}/metrics", timeout=5).read().decode()
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

    from netshift.router import certs

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
        route = route_obj("ext", host, namespace=namespace, target_port="http", admitted=None,
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
        wait_for(lambda: served_cn() != host, what="the route served with the default certificate")
        wait_for(lambda: "externalCertificate ext-tls: Secret not found" in log_path.read_text(),
                 what="the warning about the missing Secret")
        # The Secret appears: the route's certificate (verified against its CA).
        crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        crt.write_text(leaf.cert)
        key.write_text(leaf.key)
        cluster.kubectl("create", "secret", "tls", "ext-tls", "-n", namespace, f"--cert={crt}", f"--key={key}")
        wait_for(lambda: served_cn() == host, what="the route served with the Secret's certificate")
        assert get(https_port, host, tls=True, ca=ca.cert).status == 200
        # The Secret goes: back to the default certificate.
        cluster.kubectl("delete", "secret", "ext-tls", "-n", namespace)
        wait_for(lambda: served_cn() != host, what="the default certificate again")
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
