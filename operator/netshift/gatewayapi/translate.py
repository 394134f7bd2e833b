"""Routes -> Gateway API objects (pure): one Gateway, and per Route an HTTPRoute or TLSRoute with the
Secret, ConfigMap and BackendTLSPolicy it needs. Every Route field or annotation that cannot be
carried over exactly becomes a ``Note`` (the CLI's table, the objects' annotation).

Only admitted Routes are exported: a Route's admission is read from its ``status.ingress`` entry of
the router name; Routes without one (files never applied) go through netshift's own admission
(host ownership, validation), so that two Routes never fight over one host in the output.
docs/gateway-api.md has the field-by-field table.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from netshift.models.route import DEFAULT_WEIGHT, HeaderActionType, Route, RouteHTTPHeader, WildcardPolicy
from netshift.models.route import InsecureEdgeTerminationPolicy as Insecure
from netshift.models.route import TLSTermination as Termination
from netshift.route import admission, hosts
from netshift.router import annotations as ann

from . import objects as o


@dataclasses.dataclass(frozen=True)
class Options:
    gateway_name: str = "netshift"
    gateway_namespace: str = "default"
    gateway_class: str = "netshift"
    router_name: str = "default"  # whose status.ingress entry says a Route is admitted
    domain: str = "apps.netshift.local"  # hosts of spec.subdomain and generated hosts
    default_certificate: str = "netshift-default-certificate"  # Secret (Gateway namespace) for TLS without one
    owner_references: bool = False  # the live mirror: objects of a Route are owned by it
    # The live mirror: a Route without a status entry of the router name waits for the operator's
    # admission (instead of netshift's admission run here, as for files).
    status_only: bool = False


@dataclasses.dataclass(frozen=True)
class Note:
    """Something of a Route that is not translated (or only approximately)."""

    namespace: str
    route: str
    field: str
    detail: str

    def text(self) -> str:
        return f"{self.field}: {self.detail}"


NoteFn = Callable[[str, str], None]  # (field, detail) about the route being translated


@dataclasses.dataclass(frozen=True)
class Export:
    objects: tuple[dict[str, Any], ...]
    notes: tuple[Note, ...]


# Route annotations the translation carries over; every other router annotation is reported.
TRANSLATED_ANNOTATIONS = frozenset({ann.TIMEOUT, ann.REWRITE_TARGET, ann.COOKIE_NAME, ann.DISABLE_COOKIES})
ROUTER_ANNOTATION_PREFIXES = ("haproxy.router.openshift.io/", "router.openshift.io/")
_DYNAMIC = re.compile(r"%\[")
# Gateway API's path rules (CEL on HTTPRoute matches): no //, /./, /../, %2f, %2F, # and no /. or /.. at the end.
_BAD_PATH = re.compile(r"//|/\./|/\.\./|%2[fF]|#|/\.\.?$")


@dataclasses.dataclass
class _Listeners:
    """Listeners by (protocol, hostname); an HTTPS listener keeps the first certificate it got."""

    certs: dict[tuple[str, str], list[dict[str, str]]] = dataclasses.field(default_factory=dict)

    def need(self, protocol: str, hostname: str, cert: dict[str, str] | None = None) -> tuple[str, bool]:
        """The section name, and False when the listener already serves another certificate."""
        key = (protocol, hostname)
        refs = self.certs.setdefault(key, [cert] if cert else [])
        return o.listener_name(protocol, hostname), cert is None or refs == [cert]


def admitted(routes: Iterable[Route], opts: Options) -> tuple[list[tuple[Route, str]], list[Note]]:
    """The admitted routes (oldest first) with their served host, and notes for the others."""
    out: list[tuple[Route, str]] = []
    notes: list[Note] = []
    pending: dict[str, tuple[Route, admission.Candidate]] = {}
    policy = admission.Policy(domain=opts.domain)
    for r in routes:
        entry = r.status.for_router(opts.router_name) if r.status else None
        if entry is None and opts.status_only:
            continue
        if entry is None:
            spec = r.spec
            write = hosts.host_to_write(spec_host=spec.host, subdomain=spec.subdomain,
                                        wildcard_policy=spec.wildcard_policy, name=r.name or "",
                                        namespace=r.namespace or "", domain=opts.domain, previous_host=None)
            host = write.host if write else hosts.served_host(spec.host, spec.subdomain, opts.domain)
            c = admission.candidate(r, policy, host)
            pending[c.uid] = (r, c)
            continue
        cond = entry.condition()
        if cond is not None and cond.status == "True" and (entry.host or r.spec.host):
            out.append((r, entry.host or r.spec.host or ""))
        else:
            reason = (cond.reason or "not admitted") if cond else "no Admitted condition"
            notes.append(_note(r, "route", f"not exported: router {opts.router_name} did not admit it ({reason})"))
    for uid, d in admission.admit((c for _, c in pending.values()), policy).items():
        r, c = pending[uid]
        if d.admitted:
            out.append((r, c.host))
        else:
            notes.append(_note(r, "route", f"not exported: {d.reason} ({d.message})"))
    out.sort(key=lambda rh: (rh[0].metadata.creation_timestamp or "", rh[0].metadata.uid or "",
                             rh[0].namespace or "", rh[0].name or ""))
    return out, notes


def export(routes: Iterable[Route], services: Mapping[tuple[str, str], Mapping[str, Any]],
           opts: Options) -> Export:
    """The Gateway API objects for the admitted ``routes``; ``services`` (by namespace, name) give the
    Service ports that ``spec.port.targetPort`` names."""
    served, notes = admitted(routes, opts)
    listeners = _Listeners()
    per_route: list[dict[str, Any]] = []
    grants: dict[str, list[str]] = {}
    for route, host in served:
        objs, route_notes = _translate(route, host, services, opts, listeners, grants)
        notes.extend(route_notes)
        text = "; ".join(n.text() for n in route_notes)
        for obj in objs:
            if text:
                obj["metadata"].setdefault("annotations", {})[o.NOT_TRANSLATED_ANNOTATION] = text
        per_route.extend(objs)
    out: list[dict[str, Any]] = []
    shards = _shards(listeners, opts.gateway_name)
    for gateway_name, keys in shards.items():
        out.append(o.gateway(gateway_name, opts.gateway_namespace, opts.gateway_class,
                             [o.listener(p, h, listeners.certs[(p, h)]) for p, h in keys]))
    gateway_of = {o.listener_name(p, h): g for g, keys in shards.items() for p, h in keys}
    for obj in per_route:
        for ref in (obj.get("spec") or {}).get("parentRefs") or []:
            ref["name"] = gateway_of[ref["sectionName"]]
    out.extend(o.reference_grant(f"netshift-{opts.gateway_name}", ns, opts.gateway_namespace, secrets)
               for ns, secrets in sorted(grants.items()))
    out.extend(per_route)
    return Export(tuple(out), tuple(notes))


def _shards(listeners: _Listeners, name: str) -> dict[str, list[tuple[str, str]]]:
    """Listeners by Gateway: ``name``, then ``name-2``, ``name-3``... each with at most the CRD's 64
    listeners; the listeners of one hostname stay together, hostnames in sorted order."""
    by_host: dict[str, list[tuple[str, str]]] = {}
    for protocol, hostname in listeners.certs:
        by_host.setdefault(hostname, []).append((protocol, hostname))
    shards: list[list[tuple[str, str]]] = []
    for hostname in sorted(by_host):
        if not shards or len(shards[-1]) + len(by_host[hostname]) > o.MAX_LISTENERS:
            shards.append([])
        shards[-1].extend(by_host[hostname])
    return {name if i == 0 else f"{name}-{i + 1}": keys for i, keys in enumerate(shards)}


def _note(route: Route, field: str, detail: str) -> Note:
    return Note(route.namespace or "", route.name or "", field, detail)


def _translate(route: Route, host: str, services: Mapping[tuple[str, str], Mapping[str, Any]], opts: Options,
               listeners: _Listeners, grants: dict[str, list[str]]) -> tuple[list[dict[str, Any]], list[Note]]:
    ns, name, spec = route.namespace or "", route.name or "", route.spec
    notes: list[Note] = []

    def note(field: str, detail: str) -> None:
        notes.append(_note(route, field, detail))

    path = spec.path or "/"
    if _BAD_PATH.search(path):
        note("spec.path", f"not exported: Gateway API refuses the path {path!r}")
        return [], notes
    backends = _backend_refs(route, services, note)
    if backends is None:
        return [], notes
    if backends and not any(b["weight"] for b in backends):
        note("spec.to.weight", "all weights are 0: OpenShift answers 503, Gateway API implementations 500")
    termination = spec.termination or "http"
    policy = (spec.tls.insecure_edge_termination_policy if spec.tls else None) or Insecure.NONE
    hostname = f"*.{hosts.domain_of(host)}" if spec.effective_wildcard_policy == WildcardPolicy.SUBDOMAIN else host
    annotations = {o.ROUTE_ANNOTATION: f"{ns}/{name}"}
    owners = [{"apiVersion": route.api_version or "route.openshift.io/v1", "kind": "Route", "name": name,
               "uid": route.metadata.uid, "controller": True}] if opts.owner_references and route.metadata.uid else []

    def meta(suffix: str = "") -> dict[str, Any]:
        return o.metadata(name + suffix, ns, annotations, owners)

    def parent(protocol: str, cert: dict[str, str] | None = None) -> dict[str, str]:
        section, same = listeners.need(protocol, hostname, cert)
        if not same:
            note("spec.tls.certificate", f"listener {section} serves the certificate of an older route of {hostname}")
        return o.parent_ref(opts.gateway_name, opts.gateway_namespace, section)

    out: list[dict[str, Any]] = []
    options = ann.parse(route.metadata.annotations or {})
    _annotation_notes(route, termination, options, note)
    if termination == Termination.PASSTHROUGH:
        out.append(o.tls_route(meta(), [parent(o.TLS)], hostname, backends))
        if policy == Insecure.ALLOW:  # the CRD refuses it; OpenShift would serve nothing on HTTP
            note("spec.tls.insecureEdgeTerminationPolicy", "Allow is not valid for passthrough")
    else:
        rule = _http_rule(route, path, backends, options, note)
        parents = []
        if termination == "http":
            parents.append(parent(o.HTTP))
        else:
            cert, extra = _certificate(route, opts, meta("-tls"), note)
            out.extend(extra)
            if cert.get("namespace"):
                grants.setdefault(ns, []).append(cert["name"])
            parents.append(parent(o.HTTPS, cert))
            if policy == Insecure.ALLOW:
                parents.append(parent(o.HTTP))
        out.append(o.http_route(meta(), parents, hostname, rule))
        if termination == Termination.REENCRYPT:
            out.extend(_backend_tls(route, backends, meta, note))
    if termination != "http" and policy == Insecure.REDIRECT:
        out.append(o.http_route(meta("-redirect"), [parent(o.HTTP)], hostname,
                                {"matches": [o.path_match(path)], "filters": [o.https_redirect()]}))
    return out, notes


def _backend_refs(route: Route, services: Mapping[tuple[str, str], Mapping[str, Any]],
                  note: NoteFn) -> list[dict[str, Any]] | None:
    """``to`` + ``alternateBackends`` as weighted backendRefs (weight 0 kept), or None when a Service port
    cannot be known (a backendRef to a Service needs one)."""
    ns = route.namespace or ""
    target = route.spec.port.target_port if route.spec.port else None
    refs = []
    for b in route.spec.backends:
        if (b.kind or "Service") != "Service":
            note("spec.to.kind", f"backend {b.name} of kind {b.kind} is not a Service")
            continue
        port = _service_port(services.get((ns, b.name)), target)
        if port is None:
            if not isinstance(target, int):
                note("spec.port.targetPort", f"not exported: Service {b.name} is not among the inputs, so the "
                                             f"port of {target or 'its first endpoint'} is unknown")
                return None
            port = target
            note("spec.port.targetPort", f"Service {b.name} not among the inputs: its port is assumed to be {target}")
        refs.append({"name": b.name, "port": port, "weight": DEFAULT_WEIGHT if b.weight is None else b.weight})
    return refs


def _service_port(service: Mapping[str, Any] | None, target: int | str | None) -> int | None:
    """The Service port whose endpoints the route's targetPort names (by port name, or by the pod
    port number), or the first port when the route names none."""
    ports = ((service or {}).get("spec") or {}).get("ports") or []
    for p in ports:
        if target is None or p.get("name") == target or p.get("targetPort", p.get("port")) == target:
            return int(p["port"])
    return None


def _annotation_notes(route: Route, termination: str, options: ann.RouteOptions, note: NoteFn) -> None:
    a = route.metadata.annotations or {}
    for key in sorted(a):
        if not key.startswith(ROUTER_ANNOTATION_PREFIXES):
            continue
        if key not in TRANSLATED_ANNOTATIONS:
            note(f"annotation {key}", "no Gateway API equivalent")
        elif termination == Termination.PASSTHROUGH and key != ann.DISABLE_COOKIES:
            note(f"annotation {key}", "not translatable for a passthrough route (TLSRoute)")
    if a.get(ann.TIMEOUT) and not options.timeout:
        note(f"annotation {ann.TIMEOUT}", "invalid value, ignored (as OpenShift does)")
    if a.get(ann.REWRITE_TARGET) and not options.rewrite_target:
        note(f"annotation {ann.REWRITE_TARGET}", "invalid value, ignored (as OpenShift does)")


def _http_rule(route: Route, path: str, backends: list[dict[str, Any]], options: ann.RouteOptions,
               note: NoteFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [o.path_match(path)]}
    filters = []
    actions = route.spec.http_headers.actions if route.spec.http_headers else None
    for kind, items, field in (("RequestHeaderModifier", actions.request if actions else None, "request"),
                               ("ResponseHeaderModifier", actions.response if actions else None, "response")):
        set_, remove = _header_actions(items or [], f"spec.httpHeaders.actions.{field}", note)
        if set_ or remove:
            filters.append(o.header_modifier(kind, set_, remove))
    if options.rewrite_target:
        filters.append(o.prefix_rewrite(options.rewrite_target))
    if filters:
        rule["filters"] = filters
    if backends:
        rule["backendRefs"] = backends
    if options.timeout:
        rule["timeouts"] = {"request": o.duration(ann.milliseconds(options.timeout))}
    if options.cookies and options.cookie_name:
        rule[o.SESSION_PERSISTENCE] = {"sessionName": options.cookie_name, "type": "Cookie"}
        note(f"annotation {ann.COOKIE_NAME}", "translated to sessionPersistence: experimental channel only")
    return rule


def _header_actions(items: list[RouteHTTPHeader], field: str, note: NoteFn) -> tuple[list[tuple[str, str]], list[str]]:
    """Set/Delete actions applied in order (the last action on a header wins), as set and remove lists.
    HAProxy's dynamic values (``%[...]``) have no Gateway API form."""
    final: dict[str, tuple[str, str | None]] = {}  # lower-cased name -> (name, value or None to remove)
    for item in items:
        kind = item.action.type
        if kind == HeaderActionType.DELETE:
            final[item.name.lower()] = (item.name, None)
        elif kind == HeaderActionType.SET:
            value = (item.action.set.value if item.action.set else None) or ""
            if _DYNAMIC.search(value):
                note(f"{field}[{item.name}]", f"dynamic value {value!r} (HAProxy sample fetch) is not translatable")
                continue
            final[item.name.lower()] = (item.name, value.replace("%%", "%"))
    set_ = [(n, v) for n, v in final.values() if v is not None]
    remove = [n for n, v in final.values() if v is None]
    return set_, remove


def _certificate(route: Route, opts: Options, meta: dict[str, Any],
                 note: NoteFn) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The listener certificate of an edge/reencrypt route, and the Secret generated for it."""
    tls = route.spec.tls
    ns = route.namespace or ""
    if tls and tls.certificate and tls.key:
        chain = tls.certificate.rstrip("\n") + "\n"
        if tls.ca_certificate:
            chain += tls.ca_certificate.rstrip("\n") + "\n"
        secret = o.tls_secret(meta, chain, tls.key)
        return o.secret_ref(meta["name"], ns, opts.gateway_namespace), [secret]
    if tls and tls.external_certificate and tls.external_certificate.name:
        return o.secret_ref(tls.external_certificate.name, ns, opts.gateway_namespace), []
    note("spec.tls.certificate", f"none: the router's default certificate; the listener uses Secret "
                                 f"{opts.gateway_namespace}/{opts.default_certificate}, which must exist")
    return o.secret_ref(opts.default_certificate, opts.gateway_namespace, opts.gateway_namespace), []


def _backend_tls(route: Route, backends: list[dict[str, Any]], meta: Callable[[str], dict[str, Any]],
                 note: NoteFn) -> list[dict[str, Any]]:
    """reencrypt: a BackendTLSPolicy for the route's Services (CA from destinationCACertificate)."""
    tls = route.spec.tls
    services = list(dict.fromkeys(b["name"] for b in backends))
    if not services:
        return []
    ns = route.namespace or ""
    hostname = f"{services[0]}.{ns}.svc"
    note("spec.tls.destinationCACertificate",
         f"OpenShift checks no backend hostname; BackendTLSPolicy requires one: {hostname}")
    out = []
    ca_name = None
    if tls and tls.destination_ca_certificate:
        ca_name = meta("-destination-ca")["name"]
        out.append(o.ca_config_map(meta("-destination-ca"), tls.destination_ca_certificate))
    else:
        note("spec.tls.destinationCACertificate", "none: the implementation's system CAs "
                                                  "(OpenShift uses the service-serving CA)")
    out.append(o.backend_tls_policy(meta(""), services, hostname, ca_name))
    return out
