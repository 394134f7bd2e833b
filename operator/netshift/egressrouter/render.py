"""Pure rendering of an EgressRouter's children (DESIGN.md section 3).

For a router `<name>` in `<ns>`, four objects named `<name>`, each controlled by the router:
- NetworkAttachmentDefinition: macvlan + static IPAM with every address, then tuning (forwarding
  sysctls in the pod's namespace, so the agent needs no privileged container);
- ConfigMap: the agent configuration (the router's spec as JSON). It is mounted as a directory
  (never subPath), so the kubelet refreshes it and the agent hot-reloads rule changes without a
  restart;
- Deployment: one `netshift agent` pod, `Recreate`, attached to the NAD as `net1`. The pod template
  carries `netshift.io/config-hash` over everything that needs a new pod (the NAD config and the
  template itself): address or interface changes roll the pod, rule-only changes do not;
- Service: one port per (port, protocol) of the rules, or headless without ports when only a
  fallbackIP is set (any port of the pod IP is redirected).

An HA router (`netshift.io/replicas` > 1, see `ha` and docs/egressrouter.md) runs that many pods
(rolling update, spread across nodes) and has five more children, all named `<name>`: the Lease
the agents elect the active pod with (created here, without a holder: so the agents need no `create`),
a ServiceAccount, a Role allowing only that Lease, its RoleBinding and a PodDisruptionBudget that lets
a drain evict the active pod only while a standby on another node can take over (`build_pdb`).

The builders return plain dicts ready for server-side apply; no defaults the API server fills in are
rendered, so "rendered ⊆ observed" holds on an unchanged cluster (see `reconcile.contains`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from netshift import IMAGE
from netshift.models.egressrouter import API_VERSION, KIND, NAD_GROUP, NAD_KIND, NAD_VERSION, EgressRouter

NAD_API_VERSION = f"{NAD_GROUP}/{NAD_VERSION}"
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
CONFIG_HASH_ANNOTATION = "netshift.io/config-hash"
# Set by the operator on the running pod (not the template) when the agent config changes: a pod
# update makes the kubelet sync the pod at once, refreshing the mounted ConfigMap within seconds
# instead of at its next periodic sync (up to a minute or more).
AGENT_CONFIG_HASH_ANNOTATION = "netshift.io/agent-config-hash"

EGRESS_INTERFACE = "net1"
POD_INTERFACE = "eth0"
CONTAINER_NAME = "agent"
CONFIG_DIR = "/etc/netshift"
CONFIG_KEY = "egressrouter.json"
# Agent endpoints: `netshift agent --health-port/--metrics-port` (operator/netshift/agent/cli.py).
AGENT_HEALTH_PORT = 9180
AGENT_METRICS_PORT = 9181
CNI_VERSION = "0.4.0"  # understood by every CNI plugin release since 0.8 and by Multus 3/4

MANAGED_BY = {"app.kubernetes.io/managed-by": "netshift"}


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    agent_image: str = IMAGE
    agent_image_pull_policy: str = "IfNotPresent"
    default_macvlan_master: str | None = None


HA_KINDS = ("Lease", "ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget")


@dataclasses.dataclass(frozen=True)
class Children:
    network_attachment_definition: dict[str, Any]
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    ha: tuple[tuple[str, dict[str, Any]], ...] = ()  # (kind, object) of HA_KINDS, for an HA router

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind, object) in apply order: what a pod needs (NAD, ConfigMap, its Lease and RBAC) first."""
        return [(NAD_KIND, self.network_attachment_definition), ("ConfigMap", self.config_map),
                *self.ha, ("Deployment", self.deployment), ("Service", self.service)]

    @property
    def config_hash(self) -> str:
        return str(self.deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    @property
    def agent_config_hash(self) -> str:
        return digest(self.config_map["data"])


def labels(name: str) -> dict[str, str]:
    """Labels of every child: the recommended app.kubernetes.io set."""
    return {**selector(name), **MANAGED_BY}


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "egress-router", "app.kubernetes.io/instance": name}


def pod_labels(name: str) -> dict[str, str]:
    # `app: egress-router-cni` is what OpenShift's pods carry; hand-written Services keep working.
    return {**labels(name), "app": "egress-router-cni"}


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _name(router: EgressRouter) -> str:
    # The API server never stores an object without a name; a model built by hand must have one too.
    if not router.name:
        raise ValueError("an EgressRouter to render needs metadata.name")
    return router.name


def _meta(router: EgressRouter) -> dict[str, Any]:
    return {
        "name": router.name,
        "namespace": router.namespace,
        "labels": labels(_name(router)),
        "ownerReferences": [{
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": router.name,
            "uid": router.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }],
    }


def cni_config(router: EgressRouter, settings: RenderSettings) -> dict[str, Any]:
    """The NAD's CNI conflist (as a dict; the NAD carries it as a JSON string)."""
    spec = router.spec
    macvlan: dict[str, Any] = {"type": "macvlan", "mode": spec.macvlan.effective_mode.lower()}
    master = spec.macvlan.master or settings.default_macvlan_master
    if master:  # omitted: the plugin uses the node's default-route interface
        macvlan["master"] = master
    addresses = []
    for addr in spec.addresses:
        entry = {"address": addr.ip.strip()}
        if addr.gateway:
            entry["gateway"] = addr.gateway.strip()
        addresses.append(entry)
    # No `routes`: the pod keeps its default route on eth0 (replies to clients and Services stay on
    # the pod network); the agent adds host routes to the destinations via the gateway on net1.
    macvlan["ipam"] = {"type": "static", "addresses": addresses}
    sysctl = {"net.ipv4.ip_forward": "1"}
    if any(":" in a.ip for a in spec.addresses):
        # Only with an IPv6 address: the key does not exist where IPv6 is disabled, and tuning fails.
        sysctl["net.ipv6.conf.all.forwarding"] = "1"
    return {"cniVersion": CNI_VERSION, "name": router.name, "plugins": [macvlan, {"type": "tuning", "sysctl": sysctl}]}


def build_network_attachment_definition(router: EgressRouter, settings: RenderSettings) -> dict[str, Any]:
    config = json.dumps(cni_config(router, settings), sort_keys=True, separators=(",", ":"))
    return {"apiVersion": NAD_API_VERSION, "kind": NAD_KIND, "metadata": _meta(router), "spec": {"config": config}}


def build_agent_config(router: EgressRouter) -> dict[str, Any]:
    """The ConfigMap the agent reads: the whole router (name, namespace, spec) as JSON."""
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": router.name, "namespace": router.namespace},
        "spec": router.spec.to_dict(),
    }
    text = json.dumps(document, sort_keys=True, indent=2) + "\n"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(router), "data": {CONFIG_KEY: text}}


def build_deployment(router: EgressRouter, settings: RenderSettings,
                     nad: dict[str, Any] | None = None, replicas: int = 1) -> dict[str, Any]:
    name = _name(router)
    nad = nad or build_network_attachment_definition(router, settings)
    networks = json.dumps([{"name": name, "namespace": router.namespace, "interface": EGRESS_INTERFACE}],
                          separators=(",", ":"))
    container = {
        "name": CONTAINER_NAME,
        "image": settings.agent_image,
        "imagePullPolicy": settings.agent_image_pull_policy,
        "command": ["netshift", "agent"],
        "args": [
            "--config", f"{CONFIG_DIR}/{CONFIG_KEY}",
            "--pod-interface", POD_INTERFACE,
            "--egress-interface", EGRESS_INTERFACE,
            "--health-port", str(AGENT_HEALTH_PORT),
            "--metrics-port", str(AGENT_METRICS_PORT),
        ],
        "ports": [
            {"name": "health", "containerPort": AGENT_HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": AGENT_METRICS_PORT, "protocol": "TCP"},
        ],
        # Ready = the agent installed the rules of its current config.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "health"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "48Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {
            # Root inside the pod's own network namespace, but with NET_ADMIN only (nftables and
            # routes); no privilege escalation, nothing writable but /tmp.
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec = {
        "automountServiceAccountToken": False,  # the agent never talks to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": name}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        ],
    }
    if replicas > 1:
        _make_ha(name, container, pod_spec)
    template: dict[str, Any] = {
        "metadata": {
            "labels": pod_labels(name),
            "annotations": {NETWORKS_ANNOTATION: networks},
        },
        "spec": pod_spec,
    }
    # Everything that needs a new pod: the interface (NAD config) and the template itself.
    template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] = digest(
        {"nad": nad["spec"]["config"], "template": template})
    # Single pod: never two pods with one address, the old pod is gone before the new one starts.
    # HA: only the active pod is ever Ready, so a rollout could never wait for new pods to become
    # Ready: all old pods go at once (maxUnavailable = replicas) while a new one already starts.
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": replicas}} \
        if replicas > 1 else {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(router),
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector(name)},
            "template": template,
        },
    }


def _make_ha(name: str, container: dict[str, Any], pod_spec: dict[str, Any]) -> None:
    """An HA router's pod: a candidate for the router's Lease, with the token of its ServiceAccount."""
    container["args"] += ["--lease-name", name]
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    # Ready = active: checked every second, so the Service follows a takeover within a second.
    container["readinessProbe"].update(periodSeconds=1, failureThreshold=1)
    # NET_RAW: gratuitous ARP and neighbour advertisements after a takeover (a packet socket).
    container["securityContext"]["capabilities"]["add"] = ["NET_ADMIN", "NET_RAW"]
    pod_spec["serviceAccountName"] = name
    pod_spec["automountServiceAccountToken"] = True
    pod_spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"labelSelector": {"matchLabels": selector(name)},
                            "topologyKey": "kubernetes.io/hostname"},
    }]}}


def service_ports(router: EgressRouter) -> list[dict[str, Any]]:
    """One port per (port, protocol) of the rules, in rule order (IPv4 and IPv6 rules may share one)."""
    ports: dict[tuple[int, str], dict[str, Any]] = {}
    for rule in router.spec.redirect_rules:
        proto = rule.protocol.upper()
        ports.setdefault((rule.port, proto), {
            "name": f"{proto.lower()}-{rule.port}",
            "port": rule.port,
            "protocol": proto,
            "targetPort": rule.port,  # the agent DNATs on the router's port to destination:targetPort
        })
    return list(ports.values())


def build_service(router: EgressRouter) -> dict[str, Any]:
    ports = service_ports(router)
    spec: dict[str, Any] = {"selector": selector(_name(router))}
    if ports:
        spec["type"] = "ClusterIP"
        spec["ports"] = ports
    else:
        # Fallback only: every port is redirected, so a headless Service (DNS gives the pod IP).
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(router), "spec": spec}


def is_headless(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def build_ha_children(router: EgressRouter, spare: bool = False) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The Lease, the pods' ServiceAccount, a Role on exactly that Lease, its binding and a PDB."""
    name, meta = _name(router), _meta(router)
    rbac = "rbac.authorization.k8s.io"
    return (
        ("Lease", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta}),
        ("ServiceAccount", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}),
        ("Role", {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": meta, "rules": [{
            # No `create` (it cannot be limited by resourceNames): the operator creates the Lease.
            "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [name],
            "verbs": ["get", "list", "watch", "update", "patch"],
        }]}),
        ("RoleBinding", {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": meta,
                         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": name},
                         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": router.namespace}]}),
        ("PodDisruptionBudget", build_pdb(router, spare)),
    )


def build_pdb(router: EgressRouter, spare: bool) -> dict[str, Any]:
    """The PodDisruptionBudget of an HA router: the active pod is evictable only while a spare exists.

    A PDB counts Ready pods and only the active is Ready, so a fixed `minAvailable: 1` would never let
    a drain evict the active. `spare` (see `conditions.has_spare`): a running standby on another node
    than the active's, which takes over on the active's graceful stop. Standbys are never Ready:
    `AlwaysAllow` keeps them evictable at any time.
    """
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(router),
            "spec": {"minAvailable": 0 if spare else 1, "selector": {"matchLabels": selector(_name(router))},
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


def render(router: EgressRouter, settings: RenderSettings, replicas: int = 1, spare: bool = False) -> Children:
    """The children; `replicas` from `ha.replicas` (the caller refuses an invalid annotation), `spare`
    for the PodDisruptionBudget (`build_pdb`)."""
    nad = build_network_attachment_definition(router, settings)
    return Children(network_attachment_definition=nad, config_map=build_agent_config(router),
                    deployment=build_deployment(router, settings, nad, replicas), service=build_service(router),
                    ha=build_ha_children(router, spare) if replicas > 1 else ())
