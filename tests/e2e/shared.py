"""What the e2e tests and their fixtures share: resource names, the measurements, the probe's report."""
from __future__ import annotations

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
