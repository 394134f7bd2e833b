"""Host assignment (what OpenShift's API server does on create) and the keys routes compete on.

Pure functions. The operator cannot default ``spec.host`` at admission time (no webhook), so it
writes the generated host right after the route appears; until then the route is not served.
"""
from __future__ import annotations

import dataclasses

from netshift.models.route import WildcardPolicy

HOST_GENERATED_ANNOTATION = "openshift.io/host.generated"


def generated_host(name: str, namespace: str, domain: str) -> str:
    """``<name with dots as dashes>-<namespace>.<domain>``: the first label stays one DNS label."""
    return f"{name.replace('.', '-')}-{namespace}.{domain}"


def domain_of(host: str) -> str:
    """The domain a wildcard route on ``host`` claims: everything after the first label.

    Empty for a single-label host (OpenShift's GetDomainForHost does the same).
    """
    _, dot, rest = host.partition(".")
    return rest if dot else ""


def served_host(spec_host: str | None, subdomain: str | None, domain: str) -> str:
    """The host the router serves and reports in status: ``spec.host``, else
    ``<spec.subdomain>.<router domain>``, else empty (no host yet)."""
    if spec_host:
        return spec_host
    if subdomain:
        return f"{subdomain}.{domain}"
    return ""


@dataclasses.dataclass(frozen=True)
class HostWrite:
    """A ``spec.host`` to write because the route has none (and may get one)."""

    host: str
    generated: bool  # also set the openshift.io/host.generated annotation


def host_to_write(*, spec_host: str | None, subdomain: str | None, wildcard_policy: str | None,
                  name: str, namespace: str, domain: str, previous_host: str | None,
                  previous_generated: bool = False) -> HostWrite | None:
    """What to write into an empty ``spec.host``, or None when nothing is to be written.

    - a host the user set is never replaced;
    - ``subdomain`` routes are served under the router's domain, their spec stays as written;
    - wildcard (``Subdomain`` policy) routes never get a generated host;
    - an update that clears the host keeps the previous one (``previous_host``, from our memory
      of the route or from the host we reported in status);
    - otherwise the host is generated. A first label over 63 characters is still returned: the
      caller must validate it (it is reported as ``InvalidHost``, never written).
    """
    if spec_host or subdomain or wildcard_policy == WildcardPolicy.SUBDOMAIN:
        return None
    if previous_host:
        return HostWrite(previous_host, generated=previous_generated)
    return HostWrite(generated_host(name, namespace, domain), generated=True)
