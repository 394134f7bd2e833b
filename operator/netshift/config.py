"""Operator configuration: one frozen object, read from the environment (the Helm chart sets it).

Every setting has a NETSHIFT_* environment variable; defaults are documented in docs/configuration.md.
"""
from __future__ import annotations

import functools
import os

from pydantic import BaseModel, ConfigDict

from netshift import __version__


class OperatorConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    # EgressRouter
    # The tag hack/build-image.sh builds and imports; the chart sets the image it deploys itself.
    agent_image: str = f"localhost/netshift:{__version__}"
    agent_image_pull_policy: str = "IfNotPresent"
    default_macvlan_master: str | None = None  # used when spec.networkInterface.macvlan.master is empty

    # Route admission
    routes_enabled: bool = True  # false: no Route handlers at all (the chart then grants no RBAC)
    router_name: str = "default"
    router_domain: str = "apps.netshift.local"
    router_canonical_hostname: str | None = None
    disable_namespace_ownership_check: bool = False
    # OpenShift 4 rejects wildcard routes unless the IngressController allows them; same default.
    allow_wildcard_routes: bool = False
    # Comma-separated domains (a host matches its own name or any parent domain); empty = all.
    router_allowed_domains: str = ""
    router_denied_domains: str = ""

    # Reconcile
    resync_seconds: float = 300.0


_ENV = {
    "agent_image": "NETSHIFT_AGENT_IMAGE",
    "agent_image_pull_policy": "NETSHIFT_AGENT_IMAGE_PULL_POLICY",
    "default_macvlan_master": "NETSHIFT_DEFAULT_MACVLAN_MASTER",
    "routes_enabled": "NETSHIFT_ROUTES_ENABLED",
    "router_name": "NETSHIFT_ROUTER_NAME",
    "router_domain": "NETSHIFT_ROUTER_DOMAIN",
    "router_canonical_hostname": "NETSHIFT_ROUTER_CANONICAL_HOSTNAME",
    "disable_namespace_ownership_check": "NETSHIFT_DISABLE_NAMESPACE_OWNERSHIP_CHECK",
    "allow_wildcard_routes": "NETSHIFT_ALLOW_WILDCARD_ROUTES",
    "router_allowed_domains": "NETSHIFT_ROUTER_ALLOWED_DOMAINS",
    "router_denied_domains": "NETSHIFT_ROUTER_DENIED_DOMAINS",
    "resync_seconds": "NETSHIFT_RESYNC_SECONDS",
}


def from_env(environ: dict[str, str] | os._Environ = os.environ) -> OperatorConfig:
    values = {field: environ[var] for field, var in _ENV.items() if environ.get(var, "") != ""}
    return OperatorConfig.model_validate(values)


@functools.cache
def current() -> OperatorConfig:
    """The process-wide configuration (read once)."""
    return from_env()
