"""An HA EgressRouter's children (`netshift.io/replicas`) against the real API server, with the operator
run as its chart's ServiceAccount: server-side apply of the Role and RoleBinding passes the RBAC
escalation check only if the operator holds what it grants.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from netshift.egressrouter.ha import REPLICAS_ANNOTATION
from netshift.egressrouter.render import HA_KINDS, selector
from tests.support.cluster import chart_rbac_kubeconfig, start_operator, stop_operator
from tests.support.egressrouters import (
    KINDS,
    SPEC,
    children_exist,
    conditions,
    get,
    rbac_denials,
)
from tests.support.wait import wait_for

HA_RESOURCES = {"Lease": "leases.coordination.k8s.io", "ServiceAccount": "serviceaccounts",
                "Role": "roles.rbac.authorization.k8s.io", "RoleBinding": "rolebindings.rbac.authorization.k8s.io",
                "PodDisruptionBudget": "poddisruptionbudgets.policy"}
ROUTER = "egressrouters.network.operator.openshift.io"


def ha_get(cluster, kind: str, ns: str, name: str = "egress") -> dict | None:
    return get(cluster, HA_RESOURCES.get(kind, kind), ns, name)


def apply_router(cluster, ns: str, replicas: str | None, name: str = "egress") -> None:
    annotations = {REPLICAS_ANNOTATION: replicas} if replicas is not None else None
    obj = {"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations}, "spec": SPEC}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ha_children(cluster, ns: str) -> dict[str, dict | None]:
    return {kind: ha_get(cluster, kind, ns) for kind in HA_KINDS}


def replicas(cluster, ns: str) -> int | None:
    dep = get(cluster, "Deployment", ns, "egress")
    return dep["spec"]["replicas"] if dep else None


@pytest.fixture
def ha_operator(cluster, nad_crd, tmp_path, namespace, request):
    """The operator as its chart's ServiceAccount (cluster-wide, as installed by default)."""
    with chart_rbac_kubeconfig(cluster, namespace, tmp_path) as kubeconfig:
        op = start_operator(cluster, tmp_path, env={"KUBECONFIG": str(kubeconfig),
                                                   "NETSHIFT_RESYNC_SECONDS": "3"})
        yield op
        stop_operator(op, request)


def test_replicas_1_to_2_creates_the_ha_children_and_2_to_1_removes_them(cluster, namespace, ha_operator):
    apply_router(cluster, namespace, None)
    wait_for("children", lambda: children_exist(cluster, namespace, "egress"))
    assert replicas(cluster, namespace) == 1
    assert not any(ha_children(cluster, namespace).values())

    apply_router(cluster, namespace, "2")
    children = wait_for("HA children", lambda: (c := ha_children(cluster, namespace)) and all(c.values()) and c,
                        timeout=20)
    wait_for("2 replicas", lambda: replicas(cluster, namespace) == 2, timeout=10)
    router = get(cluster, ROUTER, namespace, "egress")
    for obj in children.values():
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == router["metadata"]["uid"] and owner["controller"] is True
    (rule,) = children["Role"]["rules"]
    assert rule["resources"] == ["leases"] and rule["resourceNames"] == ["egress"]
    assert "create" not in rule["verbs"] and "update" in rule["verbs"]
    assert children["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "egress",
                                                    "namespace": namespace}]
    pdb = children["PodDisruptionBudget"]["spec"]
    # no spare standby on another node here (no node, or hack/cluster's single one)
    assert pdb["minAvailable"] == 1 and pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["selector"] == {"matchLabels": selector("egress")}
    pod = get(cluster, "Deployment", namespace, "egress")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "egress" and pod["automountServiceAccountToken"] is True

    apply_router(cluster, namespace, "1")
    wait_for("HA children gone", lambda: not any(ha_children(cluster, namespace).values()), timeout=20)
    wait_for("1 replica", lambda: replicas(cluster, namespace) == 1, timeout=10)
    assert get(cluster, "Deployment", namespace, "egress")["spec"]["strategy"]["type"] == "Recreate"
    assert not rbac_denials(ha_operator)


def test_invalid_replicas_is_degraded_naming_the_annotation_and_applies_nothing(cluster, namespace, ha_operator):
    apply_router(cluster, namespace, "five")
    degraded = wait_for("Degraded", lambda: (c := conditions(cluster, namespace, "egress").get("Degraded"))
                        and c["status"] == "True" and c, timeout=20)
    assert degraded["reason"] == "InvalidReplicas"
    assert f"metadata.annotations[{REPLICAS_ANNOTATION}]" in degraded["message"]
    assert not any(get(cluster, kind, namespace, "egress") for kind in KINDS)
    assert not any(ha_children(cluster, namespace).values())


def merge(patch: dict[str, Any], repaired: Callable[[dict], bool]) -> tuple[str, Callable[[dict], bool]]:
    return json.dumps(patch), repaired


UNLABEL = {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}
HA_EDITS = {
    "Lease": merge(UNLABEL, lambda o: o["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "netshift"),
    "ServiceAccount": merge(UNLABEL,
                            lambda o: o["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "netshift"),
    "Role": merge({"rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]}]},
                  lambda o: [r.get("resourceNames") for r in o["rules"]] == [["egress"]]),
    "RoleBinding": merge({"subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]},
                         lambda o: [s["name"] for s in o["subjects"]] == ["egress"]),
    "PodDisruptionBudget": merge({"spec": {"minAvailable": 2}}, lambda o: o["spec"]["minAvailable"] == 1),
    "Deployment": merge({"spec": {"replicas": 3}}, lambda o: o["spec"]["replicas"] == 2),
}


@pytest.mark.parametrize("kind", list(HA_EDITS))
def test_ha_child_edit_is_repaired(cluster, namespace, ha_operator, kind):
    apply_router(cluster, namespace, "2")
    wait_for("HA children", lambda: all(ha_children(cluster, namespace).values())
             and replicas(cluster, namespace) == 2, timeout=20)
    patch, repaired = HA_EDITS[kind]
    cluster.kubectl("patch", HA_RESOURCES.get(kind, KINDS.get(kind, kind)), "egress", "-n", namespace,
                    "--type", "merge", "-p", patch)
    wait_for(f"{kind} repaired", lambda: (o := ha_get(cluster, kind, namespace)) and repaired(o), timeout=15)
    assert not rbac_denials(ha_operator)
