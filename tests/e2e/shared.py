"""What the e2e tests and their fixtures share: resource names, the measurements, the probe's report."""
from __future__ import annotations

import pathlib

from tests.support.cluster import Cluster

HERE = pathlib.Path(__file__).resolve().parent

ER = "egressrouters.network.operator.openshift.io"
NAD = "network-attachment-definitions.k8s.cni.cncf.io"

# name -> list of seconds, filled by the measurement tests, printed at the end of the session.
MEASUREMENTS: dict[str, list[float]] = {}


def parse_report(line: str) -> dict[str, str]:
    """`web proto=tcp dst=203.0.113.26:80 src=198.51.100.10:41234` -> {label, proto, dst, src, src_ip}."""
    label, *fields = line.split()
    out = {"label": label, **dict(f.split("=", 1) for f in fields)}
    out["src_ip"] = out["src"].rsplit(":", 1)[0]
    return out


def client_pod_manifest(name: str, image: str, node: str | None = None) -> dict:
    """A long-running client pod (the netshift image: Python for TCP and UDP probes, present on kind
    too), on `node` when given."""
    spec: dict = {
        "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False,
        "containers": [{
            "name": "client", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", "import time\nwhile True: time.sleep(3600)"],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True},
        }],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "e2e-client"}},
            "spec": spec}


class Probe:
    """Runs tests/e2e/probe.py in the client pod."""

    def __init__(self, cluster: Cluster, namespace: str, pod: str) -> None:
        self.cluster, self.namespace, self.pod = cluster, namespace, pod
        self.script = (HERE / "probe.py").read_text()

    def __call__(self, proto: str, host: str, port: int, seconds: float = 60) -> str:
        proc = self.cluster.kubectl("exec", "-n", self.namespace, self.pod, "--", "python3", "-c",
                                    self.script, proto, host, str(port), str(seconds),
                                    check=False, timeout=seconds + 60)
        out = proc.stdout.strip()
        assert proc.returncode == 0, f"{proto} {host}:{port}: {out} {proc.stderr.strip()}"
        return out.splitlines()[-1]

    def fails(self, proto: str, host: str, port: int, seconds: float = 3) -> str:
        proc = self.cluster.kubectl("exec", "-n", self.namespace, self.pod, "--", "python3", "-c",
                                    self.script, proto, host, str(port), str(seconds),
                                    check=False, timeout=seconds + 60)
        assert proc.returncode == 1 and "FAILED" in proc.stdout, (proc.stdout, proc.stderr)
        return proc.stdout.strip()
