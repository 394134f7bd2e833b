"""Builders of EgressRouter objects (plain dicts, as the API has them, and the parsed model), and
helpers that read and write them on a real cluster."""
from __future__ import annotations

import copy
import json
import re
from typing import Any

from netshift.models.egressrouter import EgressRouter
from tests.support.cluster import ROOT
from tests.support.metrics import metric_sum, scrape

BASE: dict[str, Any] = {
    "apiVersion": "network.operator.openshift.io/v1",
    "kind": "EgressRouter",
    "metadata": {"name": "egress", "namespace": "ns", "uid": "uid-1", "generation": 1,
                 "resourceVersion": "10"},
    "spec": {
        "mode": "Redirect",
        "networkInterface": {"macvlan": {"mode": "Bridge", "master": "ens4"}},
        "addresses": [{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"}],
        "redirect": {
            "redirectRules": [
                {"destinationIP": "10.0.0.99", "port": 80, "protocol": "TCP"},
                {"destinationIP": "203.0.113.25", "port": 8080, "protocol": "TCP", "targetPort": 80},
            ],
            "fallbackIP": "192.168.12.50",
        },
    },
}


def router_obj(**spec_changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    for key, value in spec_changes.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    return obj


def router(**spec_changes: Any) -> EgressRouter:
    return EgressRouter.from_obj(router_obj(**spec_changes))


# Against a real cluster (`tests.support.cluster.Cluster`): the integration tier's helpers.
NAD_CRD = ROOT / "tests" / "integration" / "manifests" / "nad-crd.yaml"
NAD_CRD_NAME = "network-attachment-definitions.k8s.cni.cncf.io"
HASH = "netshift.io/config-hash"
ROUTER_RESOURCE = "egressrouters.network.operator.openshift.io"
KINDS = {"NetworkAttachmentDefinition": NAD_CRD_NAME, "ConfigMap": "configmaps",
         "Deployment": "deployments.apps", "Service": "services"}

# The unit tests' EgressRouter, on the macvlan master the integration tier creates.
SPEC: dict[str, Any] = router_obj(networkInterface={"macvlan": {"mode": "Bridge", "master": "nsext0"}})["spec"]


def get(cluster, kind: str, ns: str, name: str) -> dict | None:
    out = cluster.kubectl("get", KINDS.get(kind, kind), name, "-n", ns, "-o", "json",
                          "--ignore-not-found").stdout
    return json.loads(out) if out.strip() else None


def apply_router(cluster, ns: str, name: str, spec: dict) -> None:
    obj = {"apiVersion": "network.operator.openshift.io/v1", "kind": "EgressRouter",
           "metadata": {"name": name, "namespace": ns}, "spec": spec}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def conditions(cluster, ns: str, name: str) -> dict[str, dict]:
    obj = get(cluster, ROUTER_RESOURCE, ns, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def children_exist(cluster, ns: str, name: str) -> bool:
    return all(get(cluster, kind, ns, name) for kind in KINDS)


def no_nodes(cluster) -> bool:
    return not json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]


def operator_writes(op) -> float:
    return metric_sum(scrape(op.metrics_url), "netshift_api_requests_total",
                      lambda labels: labels.get("verb") != "GET", controller="EgressRouter")


def rbac_denials(op) -> list[str]:
    # RBAC denials read "User ... cannot <verb> resource ..." (other 403s, such as a terminating
    # namespace of another test, are not about our permissions)
    return [line for line in op.logs().splitlines() if re.search(r"cannot \w+ resource", line)]
