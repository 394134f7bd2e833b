"""Active/standby: the annotation, the HA children, GARP/NA frames (the Lease: test_lease.py)."""
import copy
import ipaddress
import struct

import pytest

from netshift.agent import announce
from netshift.egressrouter import conditions as cond
from netshift.egressrouter import ha
from netshift.egressrouter import render as r
from netshift.egressrouter.spec import Problem
from tests.support.egressrouters import router, router_obj
from tests.support.reconcile_fakes import FakeCache, FakeKube, ready_pod

SETTINGS = r.RenderSettings(agent_image="netshift:test")


# --- the annotation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("annotations", "want"), [
    (None, 1), ({}, 1), ({"other": "x"}, 1), ({ha.REPLICAS_ANNOTATION: "1"}, 1),
    ({ha.REPLICAS_ANNOTATION: "2"}, 2), ({ha.REPLICAS_ANNOTATION: " 3 "}, 3),
])
def test_replicas_annotation(annotations, want):
    assert ha.replicas(annotations) == want


@pytest.mark.parametrize("value", ["0", "4", "-1", "two", "", "2.0", "\uff12", "+2"])
def test_invalid_replicas_name_the_annotation(value):
    problem = ha.replicas({ha.REPLICAS_ANNOTATION: value})
    assert isinstance(problem, Problem) and problem.reason == "InvalidReplicas"
    assert problem.message.startswith("metadata.annotations[netshift.io/replicas]: ")
    assert repr(value) in problem.message


# --- rendering ---------------------------------------------------------------------------------------

def test_single_pod_router_is_unchanged_no_token_recreate():
    children = r.render(router(), SETTINGS)
    assert children.ha == ()
    assert [k for k, _ in children.items()] == ["NetworkAttachmentDefinition", "ConfigMap", "Deployment", "Service"]
    spec = children.deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod and "affinity" not in pod
    assert "--lease-name" not in pod["containers"][0]["args"]
    assert r.render(router(), SETTINGS, replicas=1) == children


def test_ha_deployment():
    dep = r.render(router(), SETTINGS, replicas=2).deployment
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 2}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "egress" and pod["automountServiceAccountToken"] is True
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"labelSelector": {"matchLabels": r.selector("egress")},
                                       "topologyKey": "kubernetes.io/hostname"}
    (container,) = pod["containers"]
    assert container["args"][-2:] == ["--lease-name", "egress"]
    assert {e["name"] for e in container["env"]} == {"POD_NAME", "POD_NAMESPACE"}
    assert container["readinessProbe"]["periodSeconds"] == 1
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    single = r.render(router(), SETTINGS).deployment
    assert single["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] == 5
    assert r.render(router(), SETTINGS, 2).config_hash != r.render(router(), SETTINGS).config_hash


def test_ha_children_rbac_exactly_the_lease_and_pdb():
    children = r.render(router(), SETTINGS, replicas=3)
    kinds = [k for k, _ in children.items()]
    assert kinds == ["NetworkAttachmentDefinition", "ConfigMap", *r.HA_KINDS, "Deployment", "Service"]
    by_kind = dict(children.items())
    for kind in r.HA_KINDS:
        meta = by_kind[kind]["metadata"]
        assert (meta["name"], meta["namespace"]) == ("egress", "ns")
        assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"]
    assert "spec" not in by_kind["Lease"]  # the agents write the spec
    assert by_kind["Role"]["rules"] == [{
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["egress"],
        "verbs": ["get", "list", "watch", "update", "patch"]}]
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "egress"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "egress", "namespace": "ns"}]
    pdb = by_kind["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"] == {"matchLabels": r.selector("egress")}
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    spare = dict(r.build_ha_children(router(), spare=True))["PodDisruptionBudget"]["spec"]
    assert spare["minAvailable"] == 0 and spare["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# --- the reconcile -----------------------------------------------------------------------------------

def ha_router(value="2"):
    obj = router_obj()
    obj["metadata"]["annotations"] = {ha.REPLICAS_ANNOTATION: value}
    return obj


def make(obj):
    from netshift.egressrouter.reconcile import Reconciler
    cache = FakeCache(obj)
    kube = FakeKube(cache)
    return cache, kube, Reconciler(kube, cache, r.RenderSettings(), nad_served=lambda: True)


def pods(cache, *specs):
    """HA pods from the ready single pod: (name, node, ready)."""
    ready_pod(cache)
    base = cache.pod_list[0]
    out = []
    for name, node, ready in specs:
        p = copy.deepcopy(base)
        p["metadata"]["name"], p["spec"]["nodeName"] = name, node
        p["status"]["phase"] = "Running"
        p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        out.append(p)
    cache.pod_list = out
    dep = cache.children[("Deployment", "ns", "egress")]
    dep["status"].update(replicas=len(out), updatedReplicas=len(out), readyReplicas=1, availableReplicas=1)


def conditions(cache):
    return {c["type"]: c for c in cache.routers[("ns", "egress")]["status"]["conditions"]}


def test_ha_router_applies_its_lease_rbac_and_pdb_and_names_the_active_pod():
    cache, kube, rec = make(ha_router())
    rec.reconcile("ns", "egress")
    assert [k for w, k in kube.writes if w == "apply"] == [
        "NetworkAttachmentDefinition", "ConfigMap", *r.HA_KINDS, "Deployment", "Service"]
    cache.children[("Lease", "ns", "egress")]["spec"] = {"holderIdentity": "egress-a_1234abcd"}
    pods(cache, ("egress-a", "n1", True), ("egress-b", "n2", False))
    rec.reconcile("ns", "egress")
    available = conditions(cache)["Available"]
    assert available["status"] == "True"
    assert "active pod egress-a on node n1; standbys: egress-b" in available["message"]
    assert conditions(cache)["Progressing"]["reason"] == "AsExpected"
    assert not [w for w in kube.writes if w[0] == "event"]  # the first holder seen is not a takeover
    kube.writes.clear()
    rec.reconcile("ns", "egress")
    assert kube.writes == []  # idle: zero writes

    # b takes over
    cache.children[("Lease", "ns", "egress")]["spec"] = {"holderIdentity": "egress-b_99999999"}
    pods(cache, ("egress-a", "n1", False), ("egress-b", "n2", True))
    rec.reconcile("ns", "egress")
    assert ("event", "Takeover") in kube.writes
    assert "active pod egress-b on node n2; standbys: egress-a" in conditions(cache)["Available"]["message"]


def test_invalid_replicas_is_degraded_naming_the_annotation_and_applies_nothing():
    cache, kube, rec = make(ha_router("five"))
    rec.reconcile("ns", "egress")
    assert not [w for w in kube.writes if w[0] == "apply"]
    degraded = conditions(cache)["Degraded"]
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidReplicas"
    assert "netshift.io/replicas" in degraded["message"]


def test_back_to_one_pod_deletes_the_ha_children():
    cache, kube, rec = make(ha_router())
    rec.reconcile("ns", "egress")
    del cache.routers[("ns", "egress")]["metadata"]["annotations"]
    kube.writes.clear()
    rec.reconcile("ns", "egress")
    assert [k for w, k in kube.writes if w == "delete"] == list(r.HA_KINDS)
    assert cache.children[("Deployment", "ns", "egress")]["spec"]["replicas"] == 1
    kube.writes.clear()
    rec.reconcile("ns", "egress")
    assert not [w for w in kube.writes if w[0] == "delete"]


def test_pdb_lets_a_drain_evict_the_active_only_while_a_standby_elsewhere_can_take_over():
    cache, _kube, rec = make(ha_router())
    rec.reconcile("ns", "egress")
    pdb = ("PodDisruptionBudget", "ns", "egress")
    assert cache.children[pdb]["spec"]["minAvailable"] == 1
    cache.children[("Lease", "ns", "egress")]["spec"] = {"holderIdentity": "egress-a_1234abcd"}
    pods(cache, ("egress-a", "n1", True), ("egress-b", "n2", False))
    rec.reconcile("ns", "egress")
    assert cache.children[pdb]["spec"]["minAvailable"] == 0
    pods(cache, ("egress-a", "n1", True), ("egress-b", "n1", False))  # same node: a drain takes both
    rec.reconcile("ns", "egress")
    assert cache.children[pdb]["spec"]["minAvailable"] == 1


def pod(name, node=None, phase="Running", running=True, deleted=False):
    state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    meta = {"name": name, **({"deletionTimestamp": "x"} if deleted else {})}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "containerStatuses": [{"name": "agent", "state": state}]}}


@pytest.mark.parametrize(("others", "want"), [
    ([], False),
    ([pod("b", "n2")], True),
    ([pod("b", "n1")], False),                   # same node as the active
    ([pod("b", "n2", running=False)], False),    # container not started yet
    ([pod("b", "n2", phase="Pending")], False),
    ([pod("b", "n2", deleted=True)], False),     # terminating
    ([pod("b")], False),                         # not scheduled
    ([pod("b", "n1"), pod("c", "n3")], True),
])
def test_has_spare(others, want):
    assert cond.has_spare([pod("a", "n1"), *others], "a") is want
    assert cond.has_spare(others, "") is False  # no active: nothing to protect, nothing to hand over


def test_ha_state_and_holder():
    assert cond.holder_pod(None) == "" and cond.holder_pod({"spec": {"holderIdentity": ""}}) == ""
    assert cond.holder_pod({"spec": {"holderIdentity": "egress-7d9f-abcde_0a1b2c3d"}}) == "egress-7d9f-abcde"
    gone = {"metadata": {"name": "c", "deletionTimestamp": "x"}, "status": {"phase": "Running"}}
    pending = {"metadata": {"name": "d"}, "status": {"phase": "Pending"}}
    state = cond.ha_state([{"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}},
                           {"metadata": {"name": "b"}, "status": {"phase": "Running"}}, gone, pending], "a")
    assert state == cond.HAState("a", "n1", ("b",))
    assert cond.ha_state([], "").describe() == "no pod holds the Lease"


# --- GARP / NA frames --------------------------------------------------------------------------------

MAC = bytes.fromhex("02000a2829aa")


def test_gratuitous_arp_bytes():
    frame = announce.gratuitous_arp(MAC, ipaddress.IPv4Address("10.250.41.10"))
    assert frame.hex() == (
        "ffffffffffff" "02000a2829aa" "0806"      # broadcast, from us, ARP
        "0001" "0800" "06" "04" "0001"            # Ethernet/IPv4, request
        "02000a2829aa" "0afa290a"                 # sender: our MAC, our address
        "000000000000" "0afa290a")                # target: our address
    assert len(frame) == 42


def test_unsolicited_neighbour_advertisement_bytes():
    ip = ipaddress.IPv6Address("2001:db8:a::10")
    frame = announce.unsolicited_na(MAC, ip)
    eth, ip6, icmp = frame[:14], frame[14:54], frame[54:]
    assert eth.hex() == "333300000001" "02000a2829aa" "86dd"
    assert ip6[:8].hex() == "60000000" "0020" "3a" "ff"  # v6, 32 bytes ICMPv6, hop limit 255
    assert ip6[8:24] == ip.packed and ip6[24:40] == ipaddress.IPv6Address("ff02::1").packed
    assert icmp[0] == 136 and icmp[1] == 0
    assert struct.unpack("!I", icmp[4:8])[0] == 0x20000000  # Override, not Solicited, not Router
    assert icmp[8:24] == ip.packed
    assert icmp[24:] == bytes([2, 1]) + MAC  # target link-layer address option
    pseudo = ip.packed + ipaddress.IPv6Address("ff02::1").packed + struct.pack("!I3xB", 32, 58)
    assert announce._checksum(pseudo + icmp) == 0  # a valid checksum sums to zero


def test_frames_per_family():
    out = announce.frames(MAC, [ipaddress.ip_address("10.250.41.10"), ipaddress.ip_address("2001:db8:a::10")])
    assert [f[12:14].hex() for f in out] == ["0806", "86dd"]
    assert announce.mac_bytes("02:00:0a:28:29:aa") == MAC
    with pytest.raises(ValueError):
        announce.mac_bytes("02:00")


def test_foreign_claim_of_our_address():
    ours = ipaddress.IPv4Address("10.250.41.10")
    other = bytes.fromhex("02000a2829bb")
    assert announce.foreign_claim(announce.gratuitous_arp(other, ours), MAC, [ours]) == ours
    assert announce.foreign_claim(announce.gratuitous_arp(MAC, ours), MAC, [ours]) is None  # our own
    assert announce.foreign_claim(announce.gratuitous_arp(other, ipaddress.IPv4Address("10.250.41.11")),
                                  MAC, [ours]) is None
    assert announce.foreign_claim(announce.unsolicited_na(other, ipaddress.IPv6Address("2001:db8::1")),
                                  MAC, [ours]) is None
    assert announce.foreign_claim(b"short", MAC, [ours]) is None
