"""The local cluster's node (hack/cluster up, hack/lib/node.sh): pods really run.

- the node registers and is Ready, with its pod CIDR and no taints;
- a busybox pod runs to completion and its logs are readable through the API server;
- a ClusterIP Service reaches a pod, and the `kubernetes` Service reaches the API server from a pod;
- a pod resolves a Service's name through the cluster DNS (CoreDNS), without MissingClusterDNS;
- a pod annotated for Multus gets `net1`, a macvlan on a veth made for the test (never the
  uplink), with the static address of its NetworkAttachmentDefinition.

Only for the local cluster (the images are built and imported by hack/cluster). Everything a test
creates (namespaces, the veth pair) is removed, also when it fails.
"""
from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.support.dns import cluster_dns, service_host
from tests.support.wait import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_NAME = os.environ.get("NETSHIFT_NODE_NAME", "netshift-node")
BUSYBOX = "localhost/netshift/busybox:test"
CLUSTER_CIDR = ipaddress.ip_network(os.environ.get("NETSHIFT_CLUSTER_CIDR", "10.244.0.0/16"))
NAD_CRD = "network-attachment-definitions.k8s.cni.cncf.io"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def node_cluster(cluster):
    if not cluster.local:
        pytest.skip("node tests need the local cluster (hack/cluster up) with its locally built images")
    if os.environ.get("NETSHIFT_NODE", "1") == "0":
        pytest.skip("NETSHIFT_NODE=0: the local cluster runs without a node")
    wait_for("node Ready", lambda: node_ready(cluster), timeout=120)
    return cluster


def node_ready(cluster) -> bool:
    node = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", "--ignore-not-found").stdout
    if not node.strip():
        return False
    conds = {c["type"]: c["status"] for c in json.loads(node)["status"].get("conditions", [])}
    return conds.get("Ready") == "True"


def pod_manifest(name: str, command: str, *, annotations: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, restart: str = "Never",
                 port: int | None = None) -> dict:
    container: dict[str, Any] = {
        "name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "runAsUser": 65534, "runAsGroup": 65534, "runAsNonRoot": True},
    }
    if port:
        container["ports"] = [{"containerPort": port, "name": "http"}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                     "automountServiceAccountToken": False, "containers": [container]}}


def apply(cluster, ns: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def pod(cluster, ns: str, name: str) -> dict:
    return cluster.kubectl_json("get", "pod", name, "-n", ns)


def run_to_completion(cluster, ns: str, name: str, timeout: float = 90) -> tuple[str, str]:
    """Wait until the pod finished; return (phase, logs)."""
    def finished() -> str | None:
        phase = pod(cluster, ns, name)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None
    try:
        phase = wait_for(f"pod {ns}/{name} to finish", finished, timeout=timeout)
    except AssertionError:
        print(cluster.kubectl("describe", "pod", name, "-n", ns, check=False).stdout[-3000:])
        raise
    return phase, cluster.kubectl("logs", name, "-n", ns).stdout


def test_node_is_ready(node_cluster):
    node = node_cluster.kubectl_json("get", "node", NODE_NAME)
    conds = {c["type"]: c for c in node["status"]["conditions"]}
    assert conds["Ready"]["status"] == "True", conds["Ready"]
    assert not node["spec"].get("taints"), node["spec"].get("taints")
    assert ipaddress.ip_network(node["spec"]["podCIDR"]).subnet_of(CLUSTER_CIDR), node["spec"]
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses.get("InternalIP"), addresses


def test_pod_runs_to_completion_and_logs_are_readable(node_cluster, namespace):
    marker = f"hello-{uuid.uuid4().hex[:8]}"
    apply(node_cluster, namespace, pod_manifest("hello", f"echo {marker}; ip -o -4 addr show eth0"))
    phase, logs = run_to_completion(node_cluster, namespace, "hello")
    assert phase == "Succeeded", logs
    assert marker in logs
    status = pod(node_cluster, namespace, "hello")["status"]
    assert status["podIP"] in logs  # eth0 carries the address the API reports
    pod_cidr = node_cluster.kubectl_json("get", "node", NODE_NAME)["spec"]["podCIDR"]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(pod_cidr), (status["podIP"], pod_cidr)


def test_clusterip_service_reaches_a_pod(node_cluster, namespace):
    body = f"served-by-pod-{uuid.uuid4().hex[:8]}"
    apply(node_cluster, namespace, pod_manifest(
        "server", f"mkdir -p /tmp/www && echo {body} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
        labels={"app": "server"}, restart="Always", port=8080))
    apply(node_cluster, namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "ClusterIP", "selector": {"app": "server"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    node_cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/server", "--timeout=90s")
    ip = node_cluster.kubectl_json("get", "service", "web", "-n", namespace)["spec"]["clusterIP"]
    # kube-proxy programs the Service shortly after the endpoint is ready: retry for a while.
    # (Debian's busybox wget crashes with -T; `timeout` bounds each try instead.)
    apply(node_cluster, namespace, pod_manifest(
        "client", f"for i in $(seq 30); do timeout 3 wget -qO- http://{ip}/ && exit 0; sleep 1; done; exit 1"))
    phase, logs = run_to_completion(node_cluster, namespace, "client")
    assert phase == "Succeeded", logs
    assert body in logs


def test_kubernetes_service_reaches_the_api_server(node_cluster, namespace):
    ip = node_cluster.kubectl_json("get", "service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    # Plain HTTP to the HTTPS port: Go's TLS server answers with a recognisable 400.
    apply(node_cluster, namespace, pod_manifest(
        "client", f"for i in $(seq 20); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 443 && exit 0; "
                  "sleep 1; done; exit 1"))
    phase, logs = run_to_completion(node_cluster, namespace, "client")
    assert phase == "Succeeded", logs
    assert "Client sent an HTTP request to an HTTPS server" in logs


def test_pod_resolves_a_service_name_through_cluster_dns(node_cluster, namespace):
    """kubelet points ClusterFirst pods at CoreDNS (kube-dns), which answers Service names: no more
    MissingClusterDNS fallback. A Service without a selector is enough for its name to resolve."""
    dns_ip = cluster_dns(node_cluster)
    apply(node_cluster, namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "named"},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80}]}})
    ip = node_cluster.kubectl_json("get", "service", "named", "-n", namespace)["spec"]["clusterIP"]
    host = service_host("named", namespace)
    # CoreDNS learns of the new Service by its watch: retry for a while.
    apply(node_cluster, namespace, pod_manifest(
        "resolver", f"cat /etc/resolv.conf; for i in $(seq 30); do nslookup {host} && exit 0; sleep 1; done; exit 1"))
    phase, logs = run_to_completion(node_cluster, namespace, "resolver")
    assert phase == "Succeeded", logs
    assert f"nameserver {dns_ip}" in logs
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" in logs
    assert f"Name:\t{host}\nAddress: {ip}\n" in logs, logs
    events = node_cluster.kubectl_json("get", "events", "-n", namespace,
                                       "--field-selector", "involvedObject.name=resolver")["items"]
    assert events, "no events for the pod"
    assert not [e for e in events if e.get("reason") == "MissingClusterDNS"], events


@pytest.fixture
def master_link() -> Iterator[str]:
    """One end of a veth pair in the host namespace for macvlan to sit on (never the machine's uplink;
    this kernel has no dummy links). Deleting one end removes the pair."""
    suffix = uuid.uuid4().hex[:8]
    name, peer = f"nsmv{suffix}", f"nsmp{suffix}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    try:
        for link in (name, peer):
            subprocess.run(["ip", "link", "set", link, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_multus_gives_a_pod_a_macvlan_net1(node_cluster, namespace, master_link):
    if not node_cluster.kubectl("get", "crd", NAD_CRD, "--ignore-not-found").stdout.strip():
        node_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "hack/manifests/nad-crd.yaml"))
        node_cluster.kubectl("wait", "--for=condition=Established", f"crd/{NAD_CRD}", "--timeout=60s")
    address = "10.250.77.10/24"
    config = {"cniVersion": "0.4.0", "name": "extnet", "plugins": [
        {"type": "macvlan", "master": master_link, "mode": "bridge",
         "ipam": {"type": "static", "addresses": [{"address": address}]}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.net1.arp_ignore": "1"}}]}
    wait_for("NADs served", lambda: node_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "extnet"}, "spec": {"config": json.dumps(config)}})).returncode == 0,
        timeout=30)
    apply(node_cluster, namespace, pod_manifest(
        "multi", "ip -o -4 addr show net1; ip -o link show net1; cat /proc/sys/net/ipv4/conf/net1/arp_ignore",
        annotations={"k8s.v1.cni.cncf.io/networks": "extnet"}))
    try:
        phase, logs = run_to_completion(node_cluster, namespace, "multi")
        assert phase == "Succeeded", logs
        assert f"inet {address}" in logs
        assert "net1@" in logs  # a link with a parent: the macvlan on our veth (ifindex in the host)
        assert logs.strip().endswith("1"), logs  # the tuning plugin of the chain ran
        status = json.loads(pod(node_cluster, namespace, "multi")["metadata"]["annotations"]
                            ["k8s.v1.cni.cncf.io/network-status"])
        net1 = [s for s in status if s.get("interface") == "net1"]
        assert net1 and net1[0]["ips"] == [address.split("/")[0]], status
        assert net1[0]["name"] == f"{namespace}/extnet"
    finally:
        # the macvlan goes with the pod's network namespace; remove the pod before its master link
        node_cluster.kubectl("delete", "pod", "multi", "-n", namespace, "--wait=true", "--timeout=60s",
                             check=False)


def test_nad_crd_of_the_cluster_matches_the_tests_stand_in():
    """hack/manifests/nad-crd.yaml and tests/integration/manifests/nad-crd.yaml are one CRD: the
    EgressRouter tests delete and re-apply theirs, recognising it by the netshift.io/test-manifest label."""
    ours = yaml.safe_load((ROOT / "hack/manifests/nad-crd.yaml").read_text())
    theirs = yaml.safe_load((ROOT / "tests/integration/manifests/nad-crd.yaml").read_text())
    assert ours["spec"] == theirs["spec"]
    assert ours["metadata"] == theirs["metadata"]


def test_uplink_guard_drops_foreign_frames():
    """A macvlan on the uplink (an EgressRouter without macvlan.master) must never reach the outside."""
    import subprocess

    up = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout.split()
    uplink = up[up.index("dev") + 1]
    table = subprocess.run(["nft", "list", "table", "netdev", "netshift-uplink-guard"],
                           capture_output=True, text=True, check=True).stdout
    mac = pathlib.Path(f"/sys/class/net/{uplink}/address").read_text().strip()
    assert f'hook egress device "{uplink}"' in table
    assert f"ether saddr != {mac}" in table and "drop" in table
