"""Cluster DNS: Service names and the check that the cluster serves them (CoreDNS as kube-dns, on
hack/cluster's node and on kind alike)."""
from __future__ import annotations

from tests.support.cluster import Cluster
from tests.support.wait import wait_for

CLUSTER_DOMAIN = "cluster.local"


def service_host(name: str, namespace: str, domain: str = CLUSTER_DOMAIN) -> str:
    """The fully qualified DNS name of Service ``name`` in ``namespace``."""
    return f"{name}.{namespace}.svc.{domain}"


def cluster_dns(cluster: Cluster, timeout: float = 120) -> str:
    """The kube-dns Service's address, once it has a ready endpoint. A cluster without DNS fails the
    caller (hack/cluster up runs CoreDNS): tests never fall back to addresses silently."""
    svc = cluster.kubectl("get", "service", "kube-dns", "-n", "kube-system", "--ignore-not-found",
                          "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    if not svc:
        raise AssertionError("the cluster has no DNS: no Service kube-system/kube-dns (hack/cluster up runs CoreDNS)")

    def ready() -> bool:
        slices = cluster.kubectl_json("get", "endpointslices", "-n", "kube-system",
                                      "-l", "kubernetes.io/service-name=kube-dns")["items"]
        return any(ep.get("conditions", {}).get("ready") for s in slices for ep in s.get("endpoints") or [])
    wait_for("a ready kube-dns endpoint", ready, timeout=timeout, interval=1)
    return svc
