"""Rendering of the children: names, owners, labels, NAD conflist, Deployment, Service, hashes."""
import json

from netshift.egressrouter import render as r
from netshift.egressrouter.reconcile import contains
from tests.support.egressrouters import router

SETTINGS = r.RenderSettings(agent_image="netshift:test", agent_image_pull_policy="IfNotPresent")


def children(**changes):
    return r.render(router(**changes), SETTINGS)


def test_every_child_is_named_like_the_router_and_controlled_by_it():
    for kind, obj in children().items():
        meta = obj["metadata"]
        assert (meta["name"], meta["namespace"]) == ("egress", "ns"), kind
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "netshift"
        assert meta["labels"]["app.kubernetes.io/instance"] == "egress"
        (owner,) = meta["ownerReferences"]
        assert owner == {"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
                         "name": "egress", "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}


def test_nad_conflist_has_every_address_master_mode_and_tuning():
    nad = children(addresses=[{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"},
                              {"ip": "fd00::99/64", "gateway": "fd00::1"}],
                   networkInterface={"macvlan": {"mode": "VEPA", "master": "ens4"}}
                   ).network_attachment_definition
    assert nad["apiVersion"] == "k8s.cni.cncf.io/v1" and nad["kind"] == "NetworkAttachmentDefinition"
    conf = json.loads(nad["spec"]["config"])
    macvlan, tuning = conf["plugins"]
    assert conf["name"] == "egress"
    assert macvlan["type"] == "macvlan" and macvlan["master"] == "ens4" and macvlan["mode"] == "vepa"
    assert macvlan["ipam"] == {"type": "static", "addresses": [
        {"address": "192.168.12.99/24", "gateway": "192.168.12.1"},
        {"address": "fd00::99/64", "gateway": "fd00::1"}]}
    assert "routes" not in macvlan["ipam"]  # eth0 keeps the default route
    assert tuning == {"type": "tuning", "sysctl": {"net.ipv4.ip_forward": "1",
                                                   "net.ipv6.conf.all.forwarding": "1"}}


def test_nad_master_defaults():
    spec_iface = {"macvlan": {"mode": "Bridge"}}
    conf = json.loads(children(networkInterface=spec_iface).network_attachment_definition["spec"]["config"])
    assert "master" not in conf["plugins"][0]  # the plugin picks the default-route interface
    assert "net.ipv6.conf.all.forwarding" not in conf["plugins"][1]["sysctl"]
    with_default = r.render(router(networkInterface=spec_iface),
                            r.RenderSettings(default_macvlan_master="eth9"))
    assert json.loads(with_default.network_attachment_definition["spec"]["config"])["plugins"][0]["master"] == "eth9"


def test_deployment_shape():
    dep = children().deployment
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    tpl = spec["template"]
    assert contains(spec["selector"]["matchLabels"], tpl["metadata"]["labels"])
    assert tpl["metadata"]["labels"]["app"] == "egress-router-cni"
    networks = json.loads(tpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert networks == [{"name": "egress", "namespace": "ns", "interface": "net1"}]
    (c,) = tpl["spec"]["containers"]
    assert c["image"] == "netshift:test"
    assert c["command"] + c["args"][:2] == ["netshift", "agent", "--config", "/etc/netshift/egressrouter.json"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert tpl["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "config", "configMap": {"name": "egress"}} in tpl["spec"]["volumes"]
    assert not any("subPath" in m for m in c["volumeMounts"])  # subPath mounts never refresh


def test_config_hash_rolls_on_address_and_interface_changes_only():
    base = children()
    rules_only = children(redirect={"redirectRules": [{"destinationIP": "10.0.0.7", "port": 443,
                                                       "protocol": "TCP"}]})
    address = children(addresses=[{"ip": "192.168.12.98/24", "gateway": "192.168.12.1"}])
    mode = children(networkInterface={"macvlan": {"mode": "Private", "master": "ens4"}})
    assert rules_only.config_hash == base.config_hash
    assert rules_only.deployment == base.deployment  # the Deployment is not even re-applied
    assert rules_only.config_map != base.config_map
    assert rules_only.agent_config_hash != base.agent_config_hash
    assert address.config_hash != base.config_hash
    assert mode.config_hash != base.config_hash
    assert r.render(router(), r.RenderSettings(agent_image="netshift:other")).config_hash != base.config_hash


def test_agent_config_is_the_router_spec():
    cm = children().config_map
    doc = json.loads(cm["data"]["egressrouter.json"])
    assert doc["metadata"] == {"name": "egress", "namespace": "ns"}
    assert doc["spec"]["redirect"]["redirectRules"][1] == {
        "destinationIP": "203.0.113.25", "port": 8080, "protocol": "TCP", "targetPort": 80}
    from netshift.agent.config import parse_text

    cfg = parse_text(cm["data"]["egressrouter.json"])
    assert len(cfg.rules) == 2 and str(cfg.fallback) == "192.168.12.50"


def test_service_one_port_per_rule():
    svc = children().service
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "tcp-80", "port": 80, "protocol": "TCP", "targetPort": 80},
        {"name": "tcp-8080", "port": 8080, "protocol": "TCP", "targetPort": 8080},
    ]
    assert svc["spec"]["selector"] == r.selector("egress")
    assert not r.is_headless(svc)


def test_service_dedupes_dual_stack_rules_and_keeps_protocols_apart():
    svc = children(
        addresses=[{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"}, {"ip": "fd00::99/64", "gateway": "fd00::1"}],
        redirect={"redirectRules": [
            {"destinationIP": "10.0.0.1", "port": 53, "protocol": "UDP"},
            {"destinationIP": "2001:db8::1", "port": 53, "protocol": "UDP"},
            {"destinationIP": "10.0.0.1", "port": 53, "protocol": "TCP"}]}).service
    assert [p["name"] for p in svc["spec"]["ports"]] == ["udp-53", "tcp-53"]


def test_fallback_only_service_is_headless_without_ports():
    svc = children(redirect={"fallbackIP": "192.168.12.50"}).service
    assert svc["spec"]["clusterIP"] == "None" and "ports" not in svc["spec"]
    assert r.is_headless(svc)


def test_two_routers_do_not_collide():
    a = r.render(router(), SETTINGS)
    other = router().model_copy(update={"metadata": router().metadata.model_copy(update={"name": "other"})})
    b = r.render(other, SETTINGS)
    for (_, x), (_, y) in zip(a.items(), b.items(), strict=False):
        assert x["metadata"]["name"] != y["metadata"]["name"]
    assert a.deployment["spec"]["selector"] != b.deployment["spec"]["selector"]
    assert a.service["spec"]["selector"] != b.service["spec"]["selector"]
