"""Settings of the three processes, loaded when a process starts (`load`), never at import: flags
over NETSHIFT_<FIELD> environment variables (empty = unset) over defaults. docs/configuration.md
lists them; flags declared with `flag` name their variable and default in --help."""
from __future__ import annotations

import argparse
import sys
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from netshift import IMAGE, lease

CommaList = Annotated[tuple[str, ...], NoDecode, pydantic.BeforeValidator(
    lambda v: tuple(i.strip() for i in v.split(",") if i.strip()) if isinstance(v, str) else v)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NETSHIFT_", env_ignore_empty=True, frozen=True)

    log_format: Literal["json", "plain"] = "json"


class _RouterIdentity(Settings):
    """Shared by the operator (admission) and the router (serving) of one router name."""

    router_name: str = "default"
    router_domain: str = "apps.netshift.local"  # generated hosts, spec.subdomain, the default certificate


class OperatorSettings(_RouterIdentity):
    namespaces: CommaList = ()  # empty: all namespaces
    metrics_port: int = 9102
    health_port: int = 8081
    bind_address: str = "0.0.0.0"
    resync_seconds: float = 300.0
    # A watch stream with no event (bookmarks included) for this long is restarted (kopf's
    # inactivity_timeout; the API server sends a bookmark about every minute on a healthy stream).
    watch_inactivity_seconds: float = pydantic.Field(50.0, gt=0)

    # Leader election on a coordination.k8s.io/v1 Lease (docs/ha.md); off: this process always writes.
    leader_elect: bool = False
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0
    leader_elect_lease_name: str = "netshift-operator"
    leader_elect_namespace: str | None = None  # the pod's namespace (service account), else "default"

    # EgressRouter
    agent_image: str = IMAGE
    agent_image_pull_policy: str = "IfNotPresent"
    default_macvlan_master: str | None = None  # used when spec.networkInterface.macvlan.master is empty

    # Route admission
    routes_enabled: bool = True  # false: no Route handlers at all (the chart then grants no RBAC)
    router_canonical_hostname: str | None = None
    # <namespace>:<name> of the router's ServiceAccount: routes with spec.tls.externalCertificate are
    # admitted only when it may get/list/watch their Secret (unset: not checked).
    router_service_account: str | None = None
    disable_namespace_ownership_check: bool = False
    # OpenShift 4 rejects wildcard routes unless the IngressController allows them; same default.
    allow_wildcard_routes: bool = False
    # A host matches its own name or any parent domain; empty allowed = all.
    router_allowed_domains: CommaList = ()
    router_denied_domains: CommaList = ()

    # Gateway API mirror (docs/gateway-api.md): keep the admitted Routes' Gateway API objects applied.
    gateway_api_mirror: bool = False
    gateway_api_gateway: Annotated[str, pydantic.StringConstraints(pattern=r"^[^/]+/[^/]+$")] = "default/netshift"
    gateway_api_class: str = "netshift"


    @pydantic.field_validator("leader_elect_retry_period")
    @classmethod
    def _lease_timing(cls, retry: float, info: pydantic.ValidationInfo) -> float:
        duration, deadline = info.data.get("leader_elect_lease_duration"), info.data.get("leader_elect_renew_deadline")
        timing = None if duration is None or deadline is None else lease.Timing.client_go(duration, deadline, retry)
        if timing and (problems := timing.problems()):
            raise ValueError("; ".join(problems))
        return retry


class AgentSettings(Settings):
    agent_health_port: int = 9180
    agent_metrics_port: int = 9181
    agent_bind_address: str = ""  # all addresses, both families


class RouterSettings(_RouterIdentity):
    router_http_port: int = 8080
    router_https_port: int = 8443
    router_public_https_port: int = 443  # where clients reach the HTTPS port: redirects name it
    router_stats_port: int = 1936
    router_metrics_port: int = 9103
    router_bind_address: str = ""  # every IPv4 address
    router_ipv6: bool = False
    router_config_dir: str = "/var/lib/netshift-router"
    router_run_dir: str | None = None  # <config-dir>/run
    haproxy_bin: str = "haproxy"
    router_default_certificate: str | None = None  # a self-signed one for *.<domain>
    router_default_destination_ca: str | None = None  # the system CAs
    router_threads: int = 0  # one per CPU
    router_maxconn: int = 0  # HAProxy's, from the file descriptor limit
    router_reload_interval: float = 5.0  # as openshift/router's ROUTER_RELOAD_INTERVAL
    # Old workers (connections open through a reload) are stopped this long after it; "" = never.
    router_hard_stop_after: str | None = "30m"
    router_shutdown_delay: float = 0.0
    router_access_log: bool = False
    router_error_pages_configmap: str | None = None  # <namespace>/<name>: custom 503/404 pages
    # The router pod's addresses (the chart sets status.podIPs): never served as endpoints.
    router_own_addresses: CommaList = ()


def env_name(field: str) -> str:
    return f"NETSHIFT_{field.upper()}"


def flag(parser: argparse.ArgumentParser, cls: type[Settings], *options: str, field: str, help: str,
         **kwargs: Any) -> None:
    """A flag overriding setting `field` (typed like it); unset flags leave the setting to the environment."""
    default, kind = cls.model_fields[field].default, cls.model_fields[field].annotation
    if kind is bool:
        kwargs["action"] = "store_true"
    elif "choices" not in kwargs:
        kwargs["metavar"] = options[0].lstrip("-").upper().replace("-", "_")
        kwargs.update({"type": kind} if kind in (int, float) else {})
    shown = "unset" if default in (None, "", ()) else default
    parser.add_argument(*options, dest=field, default=argparse.SUPPRESS,
                        help=f"{help} [env {env_name(field)}; default {shown}]", **kwargs)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    flag(parser, Settings, "--log-format", field="log_format", choices=["json", "plain"],
         help="json: one object per line; plain: for humans")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


S = TypeVar("S", bound=Settings)


def load(cls: type[S], args: argparse.Namespace) -> S:
    """The process's settings; an invalid value ends the process with one line naming it (exit 2)."""
    flags = {k: v for k, v in vars(args).items() if k in cls.model_fields}
    try:
        return cls(**flags)
    except pydantic.ValidationError as exc:  # flags were typed by argparse: the value is a variable's
        problems = "; ".join(f"invalid {env_name(str(e['loc'][0]))}={e['input']!r}: {e['msg']}"
                             for e in exc.errors())
        print(f"netshift: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
