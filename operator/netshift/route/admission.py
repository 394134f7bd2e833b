"""Route admission: which routes a router serves, and why the others are rejected.

Pure. ``candidate()`` checks one route on its own (extended validation, allowed domains, wildcard
permission, host present and valid); ``admit()`` decides a set of competing candidates together,
oldest first, as OpenShift's router does (openshift/router HostAdmitter + UniqueHost):

- the namespace of the oldest admitted route on a host owns it; routes of other namespaces get
  ``HostAlreadyClaimed`` (unless the namespace ownership check is disabled);
- inside that namespace, routes with different paths coexist; with equal paths the older wins;
- a passthrough route conflicts with every other TLS route on the host, whatever the paths;
- a wildcard route (policy ``Subdomain``) claims ``*.<domain of its host>`` against other
  namespaces, in both directions: an older wildcard blocks newer routes of other namespaces under
  that domain, an older route of another namespace under the domain blocks a newer wildcard.

Because decisions are recomputed from the whole competing set, a deletion or change promotes the
next oldest route by itself. ``AdmissionIndex`` keeps the candidates and says which set a change
touches: the routes of its host, or all routes of its domain when that domain has wildcard routes.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable

from netshift.models.route import ADMITTED, Route, TLSTermination, WildcardPolicy
from netshift.settings import OperatorSettings

from . import hosts, tls, validation

NO_HOST_VALUE = "NoHostValue"
INVALID_HOST = "InvalidHost"
ROUTE_NOT_ADMITTED = "RouteNotAdmitted"
HOST_ALREADY_CLAIMED = "HostAlreadyClaimed"
EXTENDED_VALIDATION_FAILED = "ExtendedValidationFailed"


@dataclasses.dataclass(frozen=True)
class Policy:
    domain: str = "apps.netshift.local"
    disable_namespace_ownership_check: bool = False
    allow_wildcard_routes: bool = True
    allowed_domains: frozenset[str] = frozenset()
    denied_domains: frozenset[str] = frozenset()
    extended_validation: bool = True


@dataclasses.dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str | None = None
    message: str | None = None

    @property
    def metric_reason(self) -> str:
        """The metrics label: an admitted route's condition has no reason, so its type stands in."""
        return ADMITTED if self.admitted else (self.reason or "Unknown")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """What admission needs of one route (hashable, comparable: an unchanged candidate means an
    unchanged decision for its whole group)."""

    uid: str
    namespace: str
    name: str
    created: str  # RFC 3339 creationTimestamp; the API server always writes it in UTC, seconds
    host: str  # the served host: spec.host, or <subdomain>.<domain>; "" when none
    path: str = ""
    termination: str | None = None
    wildcard: bool = False
    rejection: Decision | None = None  # set when the route fails on its own

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.uid)

    @property
    def domain(self) -> str:
        return hosts.domain_of(self.host)

    @property
    def competes(self) -> bool:
        """Takes part in host ownership (a route rejected on its own claims nothing)."""
        return self.rejection is None and bool(self.host)


def _in_domains(host: str, domains: frozenset[str]) -> bool:
    # The host itself or any parent domain of it (OpenShift's hostInDomainList).
    while host:
        if host in domains:
            return True
        _, _, host = host.partition(".")
    return False


def reject(reason: str, message: str) -> Decision:
    return Decision(False, reason, message)


def external_certificate(route: Route) -> str | None:
    """The Secret an edge or reencrypt route takes its certificate from, if any."""
    t = route.spec.tls
    if t is None or t.external_certificate is None or t.termination == TLSTermination.PASSTHROUGH:
        return None
    return t.external_certificate.name or None


def own_rejection(route: Route, host: str, policy: Policy,
                  secret_missing: tuple[str, ...] = ()) -> Decision | None:
    """Why the route cannot be admitted whatever the other routes are, or None.

    Order as in the router's plugin chain: extended validation, then the admission function
    (domains, wildcards), then the host checks. ``secret_missing``: the verbs on the route's
    external certificate Secret that the router's ServiceAccount is not granted (OpenShift's
    SubjectAccessReview, asked by the caller).
    """
    if policy.extended_validation:
        errs = (validation.spec_errors(route) + tls.extended_tls_errors(route.spec.tls)
                + validation.external_certificate_access_errors(secret_missing))
        if errs:
            return reject(EXTENDED_VALIDATION_FAILED, validation.aggregate(errs))
    if host:
        if _in_domains(host, policy.denied_domains):
            return reject(ROUTE_NOT_ADMITTED, "host in list of denied domains")
        if policy.allowed_domains and not _in_domains(host, policy.allowed_domains):
            return reject(ROUTE_NOT_ADMITTED, "host not in the allowed list of domains")
    wildcard_policy = route.spec.effective_wildcard_policy
    if wildcard_policy == WildcardPolicy.SUBDOMAIN and not policy.allow_wildcard_routes:
        return reject(ROUTE_NOT_ADMITTED, "wildcard routes are not allowed")
    if wildcard_policy not in tuple(WildcardPolicy):
        return reject(ROUTE_NOT_ADMITTED, f"unknown wildcard policy {wildcard_policy}")
    if not host:
        return reject(NO_HOST_VALUE, "no host value was defined for the route")
    errs = validation.host_errors(
        host, validation.allows_non_dns_compliant_host(route.metadata.annotations))
    if errs:
        return reject(INVALID_HOST, validation.invalid_host_message(errs))
    return None


def candidate(route: Route, policy: Policy, host: str | None = None,
              secret_missing: tuple[str, ...] = ()) -> Candidate:
    """The candidate of a route; ``host`` overrides the served host (e.g. a generated host that
    is reported but cannot be written); ``secret_missing`` as in ``own_rejection``."""
    meta = route.metadata
    if host is None:
        host = hosts.served_host(route.spec.host, route.spec.subdomain, policy.domain)
    return Candidate(
        uid=meta.uid or f"{meta.namespace}/{meta.name}",
        namespace=meta.namespace or "",
        name=meta.name or "",
        created=meta.creation_timestamp or "",
        host=host,
        path=route.spec.path or "",
        termination=route.spec.termination,
        wildcard=route.spec.effective_wildcard_policy == WildcardPolicy.SUBDOMAIN,
        rejection=own_rejection(route, host, policy, secret_missing),
    )


def _conflicts(older: Candidate, newer: Candidate) -> bool:
    """Same host, same namespace (or ownership check off): can both be served?"""
    if older.path == newer.path:
        return True
    # SNI passthrough takes every TLS connection for the host: no other TLS route can share it.
    # (OpenShift only checks the older route for passthrough; either way is a conflict here.)
    both_tls = older.termination is not None and newer.termination is not None
    return both_tls and TLSTermination.PASSTHROUGH in (older.termination, newer.termination)


def admit(candidates: Iterable[Candidate], policy: Policy) -> dict[str, Decision]:
    """Decisions (by uid) for a set of routes that compete only among themselves.

    Greedy, oldest first: each route is checked against the routes already admitted, which are
    all older. The result depends only on the set, never on the order events arrived in.
    """
    ownership = not policy.disable_namespace_ownership_check
    decisions: dict[str, Decision] = {}
    by_host: dict[str, list[Candidate]] = defaultdict(list)
    wildcards: dict[str, list[Candidate]] = defaultdict(list)  # admitted wildcard routes by domain
    plain_ns: dict[str, dict[str, int]] = defaultdict(dict)  # admitted plain routes: domain -> ns -> n

    for c in sorted(candidates, key=lambda c: c.order):
        if not c.competes:
            decisions[c.uid] = c.rejection or reject(NO_HOST_VALUE, "no host value was defined for the route")
            continue
        decision = _wildcard_conflict(c, wildcards, plain_ns, ownership) or \
            _host_conflict(c, by_host[c.host], ownership)
        decisions[c.uid] = decision or Decision(True)
        if decision is None:
            by_host[c.host].append(c)
            if c.wildcard:
                wildcards[c.domain].append(c)
            else:
                counts = plain_ns[c.domain]
                counts[c.namespace] = counts.get(c.namespace, 0) + 1
    return decisions


def _other_namespace(host: str) -> Decision:
    return reject(HOST_ALREADY_CLAIMED, f"a route in another namespace holds host {host}")


def _wildcard_conflict(c: Candidate, wildcards: dict[str, list[Candidate]],
                       plain_ns: dict[str, dict[str, int]], ownership: bool) -> Decision | None:
    domain = c.domain
    for w in wildcards.get(domain, ()):
        if ownership and w.namespace != c.namespace:
            return _other_namespace(c.host)
        # Same namespace: a plain route may live under a wildcard; two wildcards with one path not.
        if c.wildcard and w.path == c.path:
            if w.namespace != c.namespace:
                return _other_namespace(c.host)
            return reject(HOST_ALREADY_CLAIMED, f"wildcard route {w.namespace}/{w.name} has host "
                                                f"*.{domain}, blocking {c.host}")
    if c.wildcard and ownership:
        counts = plain_ns.get(domain, {})
        if any(ns != c.namespace for ns in counts):
            return _other_namespace(c.host)
    return None


def _host_conflict(c: Candidate, admitted: list[Candidate], ownership: bool) -> Decision | None:
    for a in admitted:
        if a.namespace != c.namespace and (ownership or _conflicts(a, c)):
            return reject(HOST_ALREADY_CLAIMED,
                          f"a route in another namespace holds {c.host} and is older than {c.name}")
        if _conflicts(a, c):
            return reject(HOST_ALREADY_CLAIMED, f"route {a.name} already exposes {c.host} and is older")
    return None


class AdmissionIndex:
    """The current candidates, indexed by host and by domain, and the groups a change touches.

    A route's decision depends on the routes of its host and on the wildcard routes of its domain;
    a wildcard route's on every route of its domain. So a change re-evaluates the host group of the
    old and the new candidate, widened to the whole domain when that domain has wildcard routes.
    """

    def __init__(self) -> None:
        self.candidates: dict[str, Candidate] = {}
        self._by_host: dict[str, set[str]] = defaultdict(set)
        self._by_domain: dict[str, set[str]] = defaultdict(set)
        self._wildcards: dict[str, int] = defaultdict(int)  # competing wildcard routes by domain

    def get(self, uid: str) -> Candidate | None:
        return self.candidates.get(uid)

    def _add(self, c: Candidate) -> None:
        self.candidates[c.uid] = c
        if c.host:
            self._by_host[c.host].add(c.uid)
            self._by_domain[c.domain].add(c.uid)
            if c.wildcard and c.competes:
                self._wildcards[c.domain] += 1

    def _remove(self, c: Candidate) -> None:
        del self.candidates[c.uid]
        if c.host:
            for table, key in ((self._by_host, c.host), (self._by_domain, c.domain)):
                members = table[key]
                members.discard(c.uid)
                if not members:
                    del table[key]
            if c.wildcard and c.competes:
                self._wildcards[c.domain] -= 1
                if not self._wildcards[c.domain]:
                    del self._wildcards[c.domain]

    def put(self, c: Candidate) -> tuple[Candidate | None, bool]:
        """Insert or replace; returns the previous candidate and whether anything changed."""
        old = self.candidates.get(c.uid)
        if old == c:
            return old, False
        if old is not None:
            self._remove(old)
        self._add(c)
        return old, True

    def discard(self, uid: str) -> Candidate | None:
        old = self.candidates.get(uid)
        if old is not None:
            self._remove(old)
        return old

    def group_keys(self, c: Candidate) -> set[tuple[str, str]]:
        """The groups a (past or present) candidate belongs to: ("host", h) or ("domain", d)."""
        if not c.host:
            return {("uid", c.uid)}
        if self._wildcards.get(c.domain) or (c.wildcard and c.competes):
            return {("domain", c.domain)}
        return {("host", c.host)}

    def members(self, key: tuple[str, str]) -> list[Candidate]:
        kind, value = key
        if kind == "uid":
            c = self.candidates.get(value)
            return [c] if c else []
        table = self._by_host if kind == "host" else self._by_domain
        return [self.candidates[u] for u in table.get(value, ())]

    def widen(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Host groups of domains that now have wildcard routes become their domain group."""
        out = set()
        for kind, value in keys:
            if kind == "host" and self._wildcards.get(hosts.domain_of(value)):
                out.add(("domain", hosts.domain_of(value)))
            else:
                out.add((kind, value))
        # A domain group includes its host groups.
        domains = {v for k, v in out if k == "domain"}
        return {(k, v) for k, v in out if not (k == "host" and hosts.domain_of(v) in domains)}

    def evaluate(self, keys: Iterable[tuple[str, str]], policy: Policy) -> dict[str, Decision]:
        """Decisions for every member of the given groups (widened as needed)."""
        decisions: dict[str, Decision] = {}
        for key in self.widen(keys):
            decisions.update(admit(self.members(key), policy))
        return decisions


def policy_from_config(cfg: OperatorSettings) -> Policy:
    def domains(names: tuple[str, ...]) -> frozenset[str]:
        return frozenset(d.lower().strip(".") for d in names)
    return Policy(
        domain=cfg.router_domain,
        disable_namespace_ownership_check=cfg.disable_namespace_ownership_check,
        allow_wildcard_routes=cfg.allow_wildcard_routes,
        allowed_domains=domains(cfg.router_allowed_domains),
        denied_domains=domains(cfg.router_denied_domains),
    )
