"""An in-memory stand-in for the EgressRouter reconcile's cache and API client (unit tests of what the
reconcile writes; the integration tier runs the same code against the real API server)."""
import copy

from netshift.egressrouter.render import AGENT_CONFIG_HASH_ANNOTATION, digest
from netshift.kube import ApiError


class FakeCache:
    def __init__(self, router):
        self.routers = {("ns", "egress"): router}
        self.children = {}
        self.pod_list = []

    def router(self, ns, name):
        return self.routers.get((ns, name))

    def child(self, kind, ns, name):
        return self.children.get((kind, ns, name))

    def pods(self, ns, name):
        return self.pod_list


class FakeKube:
    """Records writes; 'the watch' copies applied objects into the cache (plus server defaults)."""

    def __init__(self, cache):
        self.cache = cache
        self.writes = []
        self.rv = 100
        self.refuse = {}   # kind -> HTTP status of the API server's answer to applying it
        self.invalid = set()  # kinds whose rendered object is invalid on its own (dry-run create)

    def _stamp(self, obj):
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return obj

    def apply(self, kind, obj):
        self.writes.append(("apply", kind))
        if kind in self.refuse and (kind, "ns", "egress") in self.cache.children:
            raise ApiError(self.refuse[kind], "Invalid")
        stored = self._stamp(obj)
        stored["metadata"]["uid"] = f"uid-{self.rv}"
        stored.setdefault("spec", {})
        if kind == "Deployment":  # a few server-side defaults
            stored["spec"]["progressDeadlineSeconds"] = 600
            stored["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
        self.cache.children[(kind, "ns", "egress")] = stored
        return stored

    def dry_run_create(self, kind, obj):
        self.writes.append(("dry-run", kind))
        raise ApiError(422 if kind in self.invalid else 409, "dry run")

    def delete(self, kind, ns, name, uid=None, foreground=False):
        self.writes.append(("delete", kind))
        self.cache.children.pop((kind, ns, name), None)

    def merge_patch(self, kind, ns, name, patch, sub=None):
        if kind == "Pod":
            self.writes.append(("annotate", "Pod"))
            return {}
        self.writes.append(("status", None))
        body = self._stamp(self.cache.routers[(ns, name)])
        body["status"] = patch["status"]
        self.cache.routers[(ns, name)] = body
        return body

    def warning_events(self, *_):
        return []

    def post_event(self, *_, reason, **__):
        self.writes.append(("event", reason))


def ready_pod(cache):
    dep = cache.children[("Deployment", "ns", "egress")]
    template = dep["spec"]["template"]["metadata"]
    dep["metadata"]["generation"] = 1
    dep["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                     "availableReplicas": 1}
    annotations = {**template["annotations"],
                   AGENT_CONFIG_HASH_ANNOTATION: digest(cache.children[("ConfigMap", "ns", "egress")]["data"])}
    cache.pod_list = [{"metadata": {"name": "egress-1", "uid": "p1", "annotations": annotations,
                                    "creationTimestamp": "2026-01-01T00:00:00Z"},
                       "spec": {"nodeName": "n1"},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "containerStatuses": [{"name": "agent", "state": {"running": {}}}]}}]
