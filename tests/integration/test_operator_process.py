"""The operator process against the real control plane: liveness, metrics, structured logs, shutdown."""
import json
import signal
import time
import urllib.request

from tests.support.cluster import start_operator, stop_operator


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_operator_serves_liveness_and_metrics(operator):
    status, _ = _get(operator.health_url)
    assert status == 200
    status, body = _get(operator.metrics_url)
    assert status == 200
    assert 'netshift_build_info{version="' in body


def test_operator_logs_are_structured_json(operator):
    time.sleep(1)
    lines = [line for line in operator.logs().splitlines() if line.startswith("{")]
    assert lines, operator.logs()
    records = [json.loads(line) for line in lines]
    # One schema for our records and kopf's (netshift.logs).
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), lines
    assert {r["logger"].split(".")[0] for r in records} >= {"netshift", "kopf"}, lines


def test_operator_restricted_to_namespaces_stops_cleanly(cluster, tmp_path, namespace):
    op = start_operator(cluster, tmp_path, "--namespace", namespace)
    try:
        assert _get(op.health_url)[0] == 200
        op.proc.send_signal(signal.SIGTERM)
        assert op.proc.wait(timeout=30) == 0, op.logs()
    finally:
        stop_operator(op)
