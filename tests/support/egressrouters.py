"""Builders of EgressRouter objects (plain dicts, as the API has them, and the parsed model)."""
from __future__ import annotations

import copy
from typing import Any

from netshift.models.egressrouter import EgressRouter

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
