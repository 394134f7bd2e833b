"""EgressRouters end to end: the operator installed by the Helm chart and running as a pod, a router
pod with a macvlan on the test's "external" network, real TCP and UDP from a client pod through the
router's Service to destination servers that report the source address they saw.

The first router is the redirect example of the OpenShift documentation with its addresses moved
into the test network (tests/e2e/extnet.py):

    192.168.12.99/24 gw 192.168.12.1  ->  198.51.100.1x/24 gw 198.51.100.1
    10.0.0.99      UDP 80             ->  203.0.113.99   UDP 80
    203.0.113.26   TCP 8080 -> 80         (as is)
    203.0.113.27   TCP 8443 -> 443        (as is)
    macvlan.master (unset upstream)   ->  the node's end of the test veth pair

The tests of the redirect example run in file order on one router (module fixture); rule change and
deletion come last.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.extnet import SERVERS
from tests.e2e.shared import ER, MEASUREMENTS, NAD, parse_report
from tests.support.dns import cluster_dns
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(900)

EXAMPLE_RULES = [
    {"destinationIP": "203.0.113.99", "port": 80, "protocol": "UDP"},
    {"destinationIP": "203.0.113.26", "port": 8080, "targetPort": 80, "protocol": "TCP"},
    {"destinationIP": "203.0.113.27", "port": 8443, "targetPort": 443, "protocol": "TCP"},
]
CHILDREN = ("configmap", NAD, "deployment", "service")


def address_ip(cidr: str) -> str:
    return cidr.split("/")[0]


@pytest.fixture(scope="module")
def example(e2e):
    """The documentation's redirect example, applied once and Available."""
    name, address = "egress-router-redirect", e2e.new_address()
    obj = e2e.router(name, address, [dict(r) for r in EXAMPLE_RULES])
    t0 = time.monotonic()
    e2e.apply(obj)
    e2e.wait_condition(name, "Available")
    MEASUREMENTS.setdefault("apply -> Available=True (kubectl wait)", []).append(time.monotonic() - t0)
    yield {"name": name, "address": address, "obj": obj}
    e2e.delete(ER, name)


def test_example_is_available_with_children(e2e, example):
    name = example["name"]
    for kind in CHILDREN:
        assert e2e.get(kind, name), f"{kind} {name} missing"
    assert e2e.condition(name, "Available")["status"] == "True"
    assert e2e.condition(name, "Degraded")["status"] == "False"
    assert e2e.condition(name, "Progressing")["status"] == "False"
    live = [p for p in e2e.router_pods(name)
            if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") in ("Pending", "Running")]
    assert len(live) == 1, [(p["metadata"]["name"], p["status"].get("phase")) for p in e2e.router_pods(name)]
    nad = e2e.get(NAD, name)
    assert e2e.net.master in nad["spec"]["config"]  # the macvlan sits on the test veth, not the uplink
    ports = sorted((p["port"], p["protocol"]) for p in e2e.get("service", name)["spec"]["ports"])
    assert ports == [(80, "UDP"), (8080, "TCP"), (8443, "TCP")]


@pytest.mark.parametrize("proto,port,label", [
    ("tcp", 8080, "web"),       # targetPort 80
    ("tcp", 8443, "tls"),       # targetPort 443
    ("udp", 80, "udp-dns"),     # no targetPort: the same port
])
def test_client_reaches_destination_through_the_service(e2e, example, proto, port, label):
    report = parse_report(e2e.probe(proto, e2e.service_ip(example["name"]), port))
    _, dst_ip, dst_port = SERVERS[label]
    assert report["label"] == label, report
    assert report["proto"] == proto
    assert report["dst"] == f"{dst_ip}:{dst_port}"
    # The destination sees the router's macvlan address, not the client pod or the node.
    assert report["src_ip"] == address_ip(example["address"]), report


def test_openshift_style_service_reaches_destination(e2e, example):
    """OpenShift creates no Service: its documentation has users write one selecting
    `app: egress-router-cni`. That Service works here too (the pod carries the label), also through
    its DNS name and the router's own Service's (CoreDNS on hack/cluster's node and on kind)."""
    e2e.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "egress-1"},
               "spec": {"type": "ClusterIP", "selector": {"app": "egress-router-cni"},
                        "ports": [{"name": "web-app", "protocol": "TCP", "port": 8080}]}})
    try:
        report = parse_report(e2e.probe("tcp", e2e.service_ip("egress-1"), 8080))
        assert report["label"] == "web" and report["src_ip"] == address_ip(example["address"]), report
        cluster_dns(e2e.cluster)
        for host in (e2e.service_host("egress-1"), e2e.service_host(example["name"])):
            report = parse_report(e2e.probe("tcp", host, 8080))
            assert report["label"] == "web" and report["src_ip"] == address_ip(example["address"]), report
    finally:
        e2e.delete("service", "egress-1")


def test_ports_without_a_rule_are_rejected(e2e, example):
    """Rules and no fallbackIP: other ports reach nobody (upstream semantics)."""
    pod_ip = e2e.router_pods(example["name"])[0]["status"]["podIP"]
    out = e2e.probe.fails("tcp", pod_ip, 9000)
    assert "9000" in out


def test_rule_change_reaches_the_running_router(e2e, example):
    name = example["name"]
    pod_before = e2e.router_pods(name)[0]
    rules = [dict(r) for r in EXAMPLE_RULES] + [
        {"destinationIP": "203.0.113.28", "port": 5000, "protocol": "TCP"}]
    obj = {**example["obj"], "spec": {**example["obj"]["spec"], "redirect": {"redirectRules": rules}}}
    t0 = time.monotonic()
    e2e.apply(obj)
    wait_for("Service port 5000", lambda: any(
        p["port"] == 5000 for p in e2e.get("service", name)["spec"]["ports"]), timeout=60, interval=0.2)
    report = parse_report(e2e.probe("tcp", e2e.service_ip(name), 5000, seconds=150))
    MEASUREMENTS.setdefault("rule change -> new rule answers", []).append(time.monotonic() - t0)
    assert report["label"] == "added" and report["src_ip"] == address_ip(example["address"]), report
    # ... hot: the same pod, never restarted, and the old rules still work
    pods = e2e.router_pods(name)
    assert [p["metadata"]["uid"] for p in pods] == [pod_before["metadata"]["uid"]]
    assert all(cs["restartCount"] == 0 for cs in pods[0]["status"]["containerStatuses"])
    assert parse_report(e2e.probe("tcp", e2e.service_ip(name), 8080))["label"] == "web"
    e2e.wait_condition(name, "Available")


def test_deleting_the_router_removes_everything(e2e, example):
    name = example["name"]
    pod_names = [p["metadata"]["name"] for p in e2e.router_pods(name)]
    assert pod_names
    e2e.delete(ER, name, wait=True)

    def gone() -> list[str]:
        left = [kind for kind in CHILDREN if e2e.get(kind, name)]
        left += [f"pod/{p}" for p in pod_names if e2e.get("pod", p)]
        left += [f"pod/{p['metadata']['name']}" for p in e2e.router_pods(name)]
        return left

    try:
        wait_for("every child of the router to be gone", lambda: not gone(), timeout=180, interval=1)
    except AssertionError:
        raise AssertionError(f"left behind: {gone()}") from None


# -- fallback ------------------------------------------------------------------------------------

def test_rules_with_fallback(e2e):
    """A rule plus a fallbackIP: the rule's port goes to its destination, every other port to the
    fallback (TCP and UDP, ports kept)."""
    name, address = "rules-and-fallback", e2e.new_address()
    e2e.apply(e2e.router(name, address, [
        {"destinationIP": "203.0.113.26", "port": 8080, "targetPort": 80, "protocol": "TCP"}],
        fallback="203.0.113.50"))
    try:
        e2e.wait_condition(name, "Available")
        web = parse_report(e2e.probe("tcp", e2e.service_ip(name), 8080))
        assert web["label"] == "web" and web["src_ip"] == address_ip(address), web
        pod_ip = e2e.router_pods(name)[0]["status"]["podIP"]
        for proto, port, label in (("tcp", 9000, "fallback-tcp-9000"), ("udp", 9000, "fallback-udp-9000"),
                                   ("tcp", 7000, "fallback-tcp-7000")):
            report = parse_report(e2e.probe(proto, pod_ip, port))
            assert report["label"] == label and report["dst"] == f"203.0.113.50:{port}", report
            assert report["src_ip"] == address_ip(address), report
    finally:
        e2e.delete(ER, name)


def test_fallback_only_router_is_a_headless_service(e2e):
    """Only a fallbackIP: a headless Service (DNS gives the pod IP) and every port redirected."""
    name, address = "fallback-only", e2e.new_address()
    e2e.apply(e2e.router(name, address, fallback="203.0.113.50"))
    try:
        e2e.wait_condition(name, "Available")
        svc = e2e.get("service", name)
        assert svc["spec"]["clusterIP"] == "None" and not svc["spec"].get("ports"), svc["spec"]
        # What DNS would answer for the headless Service: its endpoints (the router pod).
        slices = e2e.cluster.kubectl_json("get", "endpointslices", "-n", e2e.ns, "-l",
                                          f"kubernetes.io/service-name={name}")["items"]
        ips = [a for s in slices for ep in s.get("endpoints") or [] for a in ep["addresses"]]
        assert ips == [e2e.router_pods(name)[0]["status"]["podIP"]], ips
        for proto, port, label in (("tcp", 7000, "fallback-tcp-7000"), ("udp", 9000, "fallback-udp-9000")):
            report = parse_report(e2e.probe(proto, ips[0], port))
            assert report["label"] == label and report["src_ip"] == address_ip(address), report
    finally:
        e2e.delete(ER, name)


# -- broken specs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,mutate,reason,field", [
    ("no-prefix", lambda s: s["addresses"][0].update(ip="198.51.100.240"), "InvalidAddress",
     "spec.addresses[0].ip"),
    ("v6-destination", lambda s: s["redirect"]["redirectRules"][0].update(destinationIP="2001:db8::99"),
     "DestinationFamilyMismatch", "destinationIP"),
    ("duplicate-rule", lambda s: s["redirect"]["redirectRules"].append(dict(s["redirect"]["redirectRules"][0])),
     "DuplicateRedirectRule", "redirectRules"),
], ids=["no-prefix", "v6-destination", "duplicate-rule"])
def test_broken_spec_is_degraded_with_its_reason(e2e, case, mutate, reason, field):
    name = f"broken-{case}"
    obj = e2e.router(name, e2e.new_address(), [
        {"destinationIP": "203.0.113.26", "port": 8080, "targetPort": 80, "protocol": "TCP"}])
    mutate(obj["spec"])
    e2e.apply(obj)
    try:
        e2e.wait_condition(name, "Degraded", timeout=120)
        degraded = e2e.condition(name, "Degraded")
        assert degraded["reason"] == reason, degraded
        assert field in degraded["message"], degraded
        available = e2e.condition(name, "Available")
        assert available["status"] == "False", available
        assert not e2e.get("deployment", name), "nothing is applied for a spec that cannot work"
        events = e2e.cluster.kubectl("get", "events", "-n", e2e.ns, "--field-selector",
                                     f"involvedObject.name={name}", "-o", "jsonpath={.items[*].reason}",
                                     check=False).stdout
        print(f"events of {name}: {events}")
    finally:
        e2e.delete(ER, name)


# -- measurements ----------------------------------------------------------------------------------

def _poll(fn, timeout: float = 180, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


def test_measure_apply_to_available(e2e, api_client):
    """Median time from `kubectl apply` of an EgressRouter to Available=True (5 fresh routers)."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)

    def available(name: str) -> bool:
        try:
            obj = api.get_namespaced_custom_object("network.operator.openshift.io", "v1", e2e.ns,
                                                   "egressrouters", name)
        except client.ApiException:
            return False
        return any(c["type"] == "Available" and c["status"] == "True"
                   for c in obj.get("status", {}).get("conditions", []))

    samples = []
    for i in range(5):
        name = f"measure-{i}"
        obj = e2e.router(name, e2e.new_address(), [dict(r) for r in EXAMPLE_RULES])
        t0 = time.monotonic()
        e2e.apply(obj)
        try:
            _poll(lambda name=name: available(name), timeout=240, interval=0.1)
        except AssertionError:
            e2e.diagnose(name)
            raise
        samples.append(time.monotonic() - t0)
        e2e.delete(ER, name, wait=True)
        # let the old pod go before the next one (its address is fresh anyway; keeps the node calm)
        _poll(lambda name=name: not e2e.router_pods(name), timeout=120, interval=0.5)
    MEASUREMENTS["apply -> Available=True (poll 0.1s)"] = samples
    print(f"apply -> Available: {', '.join(f'{s:.2f}s' for s in samples)}")
    assert max(samples) < 240


@pytest.fixture(scope="module")
def steady(e2e):
    name, address = "steady", e2e.new_address()
    e2e.apply(e2e.router(name, address, [dict(r) for r in EXAMPLE_RULES]))
    e2e.wait_condition(name, "Available")
    yield {"name": name, "address": address}
    e2e.delete(ER, name)


@pytest.mark.parametrize("kind", ["service", "configmap", NAD, "deployment"])
@pytest.mark.parametrize("round_", [1, 2, 3])
def test_measure_deleted_child_is_back(e2e, steady, kind, round_):
    """Time from deleting a child to its recreation (new uid), and for the Deployment until the router
    is Available again; three rounds per kind."""
    name = steady["name"]
    old = e2e.get(kind, name)
    assert old
    old_pods = {p["metadata"]["uid"] for p in e2e.router_pods(name)}
    t0 = time.monotonic()
    e2e.cluster.kubectl("delete", kind, name, "-n", e2e.ns, "--wait=false")

    def back() -> bool:
        obj = e2e.get(kind, name)
        return bool(obj) and obj["metadata"]["uid"] != old["metadata"]["uid"] \
            and not obj["metadata"].get("deletionTimestamp")

    try:
        _poll(back, timeout=120, interval=0.1)
    except AssertionError:
        e2e.diagnose(name)
        raise AssertionError(f"{kind} {name} not recreated within 120s") from None
    took = time.monotonic() - t0
    MEASUREMENTS.setdefault(f"deleted {kind.split('.')[0]} -> recreated", []).append(took)
    print(f"deleted {kind} -> recreated in {took:.2f}s")
    # the router works again (the Deployment's deletion takes its pod: a new one must come up, and
    # Available must be True for that new pod, not still for the old one)
    if kind == "deployment":
        def new_pod_available() -> bool:
            pods = [p for p in e2e.router_pods(name) if p["metadata"]["uid"] not in old_pods]
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for p in pods for c in p["status"].get("conditions", []))
            return ready and e2e.condition(name, "Available").get("status") == "True"
        try:
            _poll(new_pod_available, timeout=240, interval=0.2)
        except AssertionError:
            e2e.diagnose(name)
            raise AssertionError("no new Ready router pod with Available=True within 240s") from None
        MEASUREMENTS.setdefault("deleted deployment -> new pod, Available=True", []).append(time.monotonic() - t0)
    e2e.wait_condition(name, "Available")
    report = parse_report(e2e.probe("tcp", e2e.service_ip(name), 8443, seconds=120))
    assert report["label"] == "tls" and report["src_ip"] == address_ip(steady["address"])
