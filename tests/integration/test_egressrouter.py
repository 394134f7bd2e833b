"""The EgressRouter controller against the real control plane, with `netshift operator` as a process.

The local control plane has no node yet: pods stay Pending/unschedulable, which the conditions must
say. Garbage collection (kube-controller-manager) removes children when a router is deleted.
"""
from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from netshift.egressrouter.reconcile import contains
from netshift.egressrouter.render import RenderSettings, render
from netshift.models.egressrouter import EgressRouter
from netshift.settings import OperatorSettings
from tests.support.cluster import chart_rbac_kubeconfig, start_operator, stop_operator
from tests.support.egressrouters import (
    HASH,
    KINDS,
    NAD_CRD,
    NAD_CRD_NAME,
    SPEC,
    apply_router,
    children_exist,
    conditions,
    get,
    no_nodes,
    operator_writes,
    rbac_denials,
)
from tests.support.metrics import metric_sum, scrape
from tests.support.wait import wait_for


@pytest.fixture
def er_operator(cluster, nad_crd, tmp_path, namespace, request):
    """The operator restricted to the test namespace (other tests' routers are not its business)."""
    op = start_operator(cluster, tmp_path, "--namespace", namespace, env={"NETSHIFT_RESYNC_SECONDS": "3"})
    yield op
    stop_operator(op, request)


def test_create_renders_children_and_honest_conditions(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    router = get(cluster, "egressrouters.network.operator.openshift.io", namespace, "egress")
    for kind in KINDS:
        obj = get(cluster, kind, namespace, "egress")
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == router["metadata"]["uid"] and owner["controller"] is True
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "netshift"
    svc = get(cluster, "Service", namespace, "egress")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("tcp-80", 80), ("tcp-8080", 8080)]
    dep = get(cluster, "Deployment", namespace, "egress")
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    nad = json.loads(get(cluster, "NetworkAttachmentDefinition", namespace, "egress")["spec"]["config"])
    assert nad["plugins"][0]["master"] == "nsext0"

    conds = wait_for("conditions", lambda: (c := conditions(cluster, namespace, "egress"))
                     and {"Available", "Progressing", "Degraded"} <= set(c) and c)
    assert all(c["observedGeneration"] == 1 for c in conds.values())
    if no_nodes(cluster):
        conds = wait_for("PodUnschedulable", lambda: (c := conditions(cluster, namespace, "egress"))
                         and c["Available"]["reason"] == "PodUnschedulable" and c)
        assert conds["Available"]["status"] == "False"
        assert conds["Progressing"]["status"] == "True"
        assert conds["Degraded"]["status"] == "False"
        assert "no nodes available" in conds["Available"]["message"]


def test_rule_only_update_reaches_config_without_rolling(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    dep = get(cluster, "Deployment", namespace, "egress")
    before = dep["spec"]["template"]["metadata"]["annotations"][HASH]
    spec = json.loads(json.dumps(SPEC))
    spec["redirect"]["redirectRules"].append({"destinationIP": "10.0.0.7", "port": 443, "protocol": "TCP"})
    apply_router(cluster, namespace, "egress", spec)

    def config_updated():
        cm = get(cluster, "ConfigMap", namespace, "egress")
        return "10.0.0.7" in cm["data"]["egressrouter.json"]
    wait_for("new rule in the ConfigMap", config_updated, timeout=10)
    wait_for("Service port 443", lambda: any(p["port"] == 443 for p in
                                             get(cluster, "Service", namespace, "egress")["spec"]["ports"]))
    after = get(cluster, "Deployment", namespace, "egress")
    assert after["spec"]["template"]["metadata"]["annotations"][HASH] == before
    assert after["metadata"]["generation"] == dep["metadata"]["generation"]
    wait_for("observedGeneration 2", lambda: all(c["observedGeneration"] == 2 for c in
                                                 conditions(cluster, namespace, "egress").values()))


def test_address_update_rolls_the_pod(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    before = get(cluster, "Deployment", namespace, "egress")["spec"]["template"]["metadata"]["annotations"][HASH]
    spec = {**SPEC, "addresses": [{"ip": "192.168.12.98/24", "gateway": "192.168.12.1"},
                                  {"ip": "192.168.12.97/24"}]}
    apply_router(cluster, namespace, "egress", spec)
    wait_for("new hash", lambda: get(cluster, "Deployment", namespace, "egress")["spec"]["template"]
             ["metadata"]["annotations"][HASH] != before, timeout=10)
    nad = json.loads(get(cluster, "NetworkAttachmentDefinition", namespace, "egress")["spec"]["config"])
    assert [a["address"] for a in nad["plugins"][0]["ipam"]["addresses"]] == ["192.168.12.98/24", "192.168.12.97/24"]


def test_delete_garbage_collects_children(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    cluster.kubectl("delete", "egressrouter", "egress", "-n", namespace, "--wait=true")
    wait_for("children gone", lambda: not any(get(cluster, k, namespace, "egress") for k in KINDS), timeout=60)


@pytest.mark.parametrize("kind", list(KINDS))
def test_deleted_child_is_recreated_within_seconds(cluster, namespace, er_operator, kind):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    uid = get(cluster, kind, namespace, "egress")["metadata"]["uid"]
    started = time.monotonic()
    cluster.kubectl("delete", KINDS[kind], "egress", "-n", namespace, "--wait=true")
    wait_for(f"{kind} recreated", lambda: (o := get(cluster, kind, namespace, "egress"))
             and o["metadata"]["uid"] != uid, timeout=15)
    assert time.monotonic() - started < 15


EDITS = {
    "ConfigMap": ('{"data":{"egressrouter.json":"{}"}}',
                  lambda o: "10.0.0.99" in o["data"]["egressrouter.json"]),
    "Service": ('{"spec":{"ports":[{"name":"tcp-80","port":80,"protocol":"TCP","targetPort":9999}]}}',
                lambda o: o["spec"]["ports"][0]["targetPort"] == 80),
    "Deployment": ('{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}},"spec":{"replicas":3}}',
                   lambda o: o["spec"]["replicas"] == 1
                   and o["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "netshift"),
    "NetworkAttachmentDefinition": ('{"spec":{"config":"{}"}}', lambda o: "macvlan" in o["spec"]["config"]),
}


@pytest.mark.parametrize("kind", list(EDITS))
def test_edited_child_is_repaired_within_seconds(cluster, namespace, er_operator, kind):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    patch, repaired = EDITS[kind]
    cluster.kubectl("patch", KINDS[kind], "egress", "-n", namespace, "--type", "merge", "-p", patch)
    wait_for(f"{kind} repaired", lambda: repaired(get(cluster, kind, namespace, "egress")), timeout=10)


# -- every kind of child edit, repaired (issue 10) ----------------------------------------------------
def rendered(cluster, ns: str, name: str) -> dict[str, dict]:
    """The children as the operator renders them for the router as it is now (same configuration)."""
    router = get(cluster, "egressrouters.network.operator.openshift.io", ns, name)
    cfg = OperatorSettings()
    settings = RenderSettings(agent_image=cfg.agent_image, agent_image_pull_policy=cfg.agent_image_pull_policy,
                              default_macvlan_master=cfg.default_macvlan_master)
    return dict(render(EgressRouter.from_obj(router), settings).items())


def owned_copy(cluster, ns: str, kind: str, **spec: Any) -> dict:
    """A user's replacement of a child: same name, labels and owner, other immutable fields."""
    obj = rendered(cluster, ns, "egress")[kind]
    return {**obj, "spec": {**obj["spec"], **spec}}


def replace_while_paused(op, cluster, ns: str, kind: str, obj: dict) -> None:
    """Delete and re-create a child between two reconciles (the operator is stopped meanwhile)."""
    op.proc.send_signal(signal.SIGSTOP)
    try:
        cluster.kubectl("delete", KINDS[kind], "egress", "-n", ns, "--cascade=orphan", "--wait=true")
        cluster.kubectl("create", "-f", "-", input=json.dumps(obj))
    finally:
        op.proc.send_signal(signal.SIGCONT)


def json_patch(kind: str, *ops: dict) -> Callable:
    return lambda op, cluster, ns: cluster.kubectl("patch", KINDS[kind], "egress", "-n", ns, "--type", "json",
                                                   "-p", json.dumps(list(ops)))


def foreign_apply(kind: str, api_version: str, spec: dict, key: str = "spec") -> Callable:
    """Another field manager takes fields over (kubectl apply --server-side --force-conflicts)."""
    def edit(op, cluster, ns):
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "egress", "namespace": ns},
               key: spec}
        cluster.kubectl("apply", "--server-side", "--field-manager=intruder", "--force-conflicts", "-f", "-",
                        input=json.dumps(obj))
    return edit


CHILD_EDITS: dict[str, tuple[str, Callable]] = {
    # a list-map key changed by kubectl: applying port 80 back would duplicate the name "tcp-80"
    "service-port-key": ("Service", json_patch("Service", {"op": "replace", "path": "/spec/ports/0/port",
                                                           "value": 81})),
    "service-port-foreign-manager": ("Service", foreign_apply("Service", "v1", {"ports": [
        {"port": 80, "protocol": "TCP", "targetPort": 9999}]})),
    # immutable: a headless Service cannot get a cluster IP
    "service-clusterip-immutable": ("Service", lambda op, cluster, ns: replace_while_paused(
        op, cluster, ns, "Service", owned_copy(cluster, ns, "Service", clusterIP="None"))),
    "service-labels-removed": ("Service", lambda op, cluster, ns: cluster.kubectl(
        "label", "service", "egress", "-n", ns, "app.kubernetes.io/managed-by-", "app.kubernetes.io/name-")),
    # a container port's key: applying 9180 back would duplicate the port name "health"
    "deployment-container-port-key": ("Deployment", json_patch("Deployment", {
        "op": "replace", "path": "/spec/template/spec/containers/0/ports/0/containerPort", "value": 9999})),
    # immutable: spec.selector of a Deployment a user re-created (applying ours would change it)
    "deployment-selector-immutable": ("Deployment", lambda op, cluster, ns: replace_while_paused(
        op, cluster, ns, "Deployment", owned_copy(cluster, ns, "Deployment", selector={"matchLabels": {
            "app": "egress-router-cni"}}))),
    "deployment-annotation-removed": ("Deployment", json_patch("Deployment", {
        "op": "remove", "path": "/spec/template/metadata/annotations/netshift.io~1config-hash"})),
    "configmap-key-removed": ("ConfigMap", json_patch("ConfigMap", {"op": "remove",
                                                                    "path": "/data/egressrouter.json"})),
    "configmap-labels-removed": ("ConfigMap", lambda op, cluster, ns: cluster.kubectl(
        "label", "configmap", "egress", "-n", ns, "app.kubernetes.io/managed-by-")),
    "nad-config-foreign-manager": ("NetworkAttachmentDefinition", foreign_apply(
        "NetworkAttachmentDefinition", "k8s.cni.cncf.io/v1", {"config": "{}"})),
    "nad-deleted": ("NetworkAttachmentDefinition", lambda op, cluster, ns: cluster.kubectl(
        "delete", KINDS["NetworkAttachmentDefinition"], "egress", "-n", ns, "--wait=true")),
}


@pytest.mark.parametrize("edit", list(CHILD_EDITS))
def test_child_edit_is_repaired_within_seconds(cluster, namespace, er_operator, edit):
    """The child returns to its rendered state and the edit leaves no trace in the conditions.

    No pods (a quota): the router settles on PodCreateFailed whether or not the cluster has a node,
    so "no trace" means the same Degraded condition as before the edit, never ApplyFailed.
    """
    kind, do_edit = CHILD_EDITS[edit]
    cluster.kubectl("create", "quota", "no-pods", "--hard=pods=0", "-n", namespace)
    apply_router(cluster, namespace, "egress", SPEC)
    before = wait_for("settled", lambda: (d := conditions(cluster, namespace, "egress").get("Degraded"))
                      and d["reason"] == "PodCreateFailed" and d)
    desired = rendered(cluster, namespace, "egress")[kind]

    def applied() -> float:  # the repair is faster than reading the edit back: count the operator's applies
        return metric_sum(scrape(er_operator.metrics_url), "netshift_children_applied_total", child=kind)

    applied_before = applied()
    started = time.monotonic()
    do_edit(er_operator, cluster, namespace)
    wait_for(f"{kind} back in its rendered state", lambda: applied() > applied_before
             and (o := get(cluster, kind, namespace, "egress")) and contains(desired, o), timeout=30)
    took = time.monotonic() - started
    print(f"\n{edit}: {kind} repaired in {took:.1f}s")
    time.sleep(2)  # conditions and events of the repair
    after = conditions(cluster, namespace, "egress")["Degraded"]
    assert (after["status"], after["reason"]) == (before["status"], before["reason"])
    reasons = [e["reason"] for e in cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector",
                                                         "involvedObject.kind=EgressRouter")["items"]]
    assert "ApplyFailed" not in reasons
    assert took < 15


def test_two_routers_in_one_namespace(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "one", SPEC)
    apply_router(cluster, namespace, "two", {**SPEC, "addresses": [{"ip": "192.168.12.98/24",
                                                                     "gateway": "192.168.12.1"}]})
    for name in ("one", "two"):
        wait_for(f"children of {name}", lambda name=name: children_exist(cluster, namespace, name))
    one, two = (get(cluster, "Service", namespace, n) for n in ("one", "two"))
    assert one["spec"]["selector"] != two["spec"]["selector"]
    d1, d2 = (get(cluster, "Deployment", namespace, n) for n in ("one", "two"))
    assert d1["spec"]["selector"] != d2["spec"]["selector"]


def test_invalid_spec_is_degraded_names_the_field_and_applies_nothing(cluster, namespace, er_operator):
    spec = {**SPEC, "addresses": [{"ip": "10.0.0.5", "gateway": "10.0.0.1"}]}
    apply_router(cluster, namespace, "bad", spec)
    conds = wait_for("Degraded", lambda: (c := conditions(cluster, namespace, "bad")) and "Degraded" in c and c)
    assert conds["Degraded"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "InvalidAddress"
    assert conds["Degraded"]["message"].startswith('spec.addresses[0].ip: "10.0.0.5" is not a CIDR')
    assert conds["Available"]["status"] == "False"
    time.sleep(2)
    assert not any(get(cluster, k, namespace, "bad") for k in KINDS)
    events = cluster.kubectl_json("get", "events", "-n", namespace,
                                  "--field-selector", "involvedObject.name=bad,reason=InvalidAddress")
    assert events["items"] and events["items"][0]["type"] == "Warning"

    apply_router(cluster, namespace, "bad", SPEC)  # fixed
    wait_for("children after the fix", lambda: children_exist(cluster, namespace, "bad"))
    # (with a node, the pod may then fail for other reasons: no Multus master "nsext0" here)
    wait_for("spec problem cleared", lambda: conditions(cluster, namespace, "bad")["Degraded"]["reason"]
             != "InvalidAddress")


def test_idle_operator_makes_zero_writes(cluster, namespace, er_operator):
    # No pods (the node, when there is one, would run them through image/sandbox retries, which are
    # real changes); the routers settle on PodCreateFailed.
    cluster.kubectl("create", "quota", "no-pods", "--hard=pods=0", "-n", namespace)
    for name in ("idle-a", "idle-b"):
        apply_router(cluster, namespace, name, SPEC)
    for name in ("idle-a", "idle-b"):
        wait_for("PodCreateFailed", lambda name=name: conditions(cluster, namespace, name).get("Degraded", {})
                 .get("reason") == "PodCreateFailed")
    time.sleep(5)  # let replica set events settle
    before = operator_writes(er_operator)
    reconciles = metric_sum(scrape(er_operator.metrics_url), "netshift_reconcile_total")
    time.sleep(10)  # three resyncs (NETSHIFT_RESYNC_SECONDS=3)
    assert metric_sum(scrape(er_operator.metrics_url), "netshift_reconcile_total") > reconciles  # it did run
    assert operator_writes(er_operator) == before


def test_metrics_by_condition(cluster, namespace, er_operator):
    apply_router(cluster, namespace, "egress", SPEC)
    wait_for("conditions", lambda: "Degraded" in conditions(cluster, namespace, "egress"))
    text = scrape(er_operator.metrics_url)
    assert metric_sum(text, "netshift_objects_by_condition", kind="EgressRouter", type="Degraded") >= 1
    assert metric_sum(text, "netshift_reconcile_total", kind="EgressRouter") >= 1


def test_nad_crd_absent_then_present(cluster, namespace, tmp_path, nad_crd, request):
    crd = json.loads(cluster.kubectl("get", "crd", NAD_CRD_NAME, "-o", "json", "--ignore-not-found").stdout or "{}")
    if crd and (crd["metadata"].get("labels") or {}).get("netshift.io/test-manifest") != "true":
        pytest.skip("a real Multus CRD is installed; not removing it")  # never on the test clusters
    cluster.kubectl("delete", "crd", NAD_CRD_NAME, "--wait=true", "--ignore-not-found")
    wait_for("NADs not served", lambda: cluster.kubectl("api-resources", "--api-group=k8s.cni.cncf.io",
                                                        "-o", "name").stdout.strip() == "", timeout=30)
    op = start_operator(cluster, tmp_path, "--namespace", namespace)
    try:
        apply_router(cluster, namespace, "egress", SPEC)
        conds = wait_for("Degraded NetworkAttachmentDefinitionsNotServed",
                         lambda: (c := conditions(cluster, namespace, "egress")) and "Degraded" in c
                         and c["Degraded"]["reason"] == "NetworkAttachmentDefinitionsNotServed" and c)
        assert conds["Degraded"]["status"] == "True"
        assert "Multus" in conds["Degraded"]["message"]
        assert get(cluster, "Deployment", namespace, "egress") is None

        cluster.kubectl("apply", "--server-side", "-f", str(NAD_CRD))
        wait_for("children after Multus appeared", lambda: children_exist(cluster, namespace, "egress"), timeout=60)
        wait_for("NotServed cleared", lambda: conditions(cluster, namespace, "egress")["Degraded"]["reason"]
                 != "NetworkAttachmentDefinitionsNotServed", timeout=30)
    finally:
        cluster.kubectl("apply", "--server-side", "-f", str(NAD_CRD))
        stop_operator(op, request)


def test_operator_works_with_only_its_rbac(cluster, namespace, nad_crd, tmp_path, request):
    """The operator as its ServiceAccount, with exactly manifests/rbac-*.yaml: no Forbidden anywhere."""
    with chart_rbac_kubeconfig(cluster, namespace, tmp_path) as kc_path:
        # cluster-wide, as installed by default (a namespaced kopf also lists namespaces, which the
        # chart grants only when it is configured to watch some namespaces)
        op = start_operator(cluster, tmp_path, env={"KUBECONFIG": str(kc_path)})
        try:
            apply_router(cluster, namespace, "egress", SPEC)
            wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
            wait_for("conditions", lambda: "Degraded" in conditions(cluster, namespace, "egress"))
            cluster.kubectl("delete", "service", "egress", "-n", namespace)
            wait_for("Service recreated", lambda: get(cluster, "Service", namespace, "egress"), timeout=15)
            spec = {**SPEC, "redirect": {"fallbackIP": "192.168.12.50"}}  # headless: delete + apply
            apply_router(cluster, namespace, "egress", spec)
            wait_for("headless Service", lambda: (s := get(cluster, "Service", namespace, "egress"))
                     and s["spec"].get("clusterIP") == "None", timeout=15)
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
                "metadata": {"name": "bad", "namespace": namespace},
                "spec": {**SPEC, "addresses": []}}))
            wait_for("Degraded event", lambda: cluster.kubectl_json(
                "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=bad")["items"])
            time.sleep(2)
            assert not rbac_denials(op)
        finally:
            stop_operator(op, request)
