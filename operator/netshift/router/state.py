"""What the router knows of the cluster: Routes, EndpointSlices, the Secrets served routes name and
the error pages ConfigMap, fed by watch events (pure).

``RouterState.apply_route`` / ``apply_slice`` take the objects of watch events (or of the initial
listing) and say whether the served configuration may have changed; ``snapshot()`` gives the served
routes and the endpoints of their services, the input of ``haproxy_config.render``. Only routes
admitted for this router name are kept; only slices of services some served route uses matter.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .endpoints import Endpoint, endpoints_from_slices, service_of
from .error_pages import error_pages
from .routes import ServedRoute, served_route
from .secrets import TLSSecret, resolve, tls_secret


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class RouterState:
    def __init__(self, router_name: str, own_addresses: Sequence[str] = ()) -> None:
        self.router_name = router_name
        self.own_addresses = frozenset(own_addresses)  # never served as endpoints
        self.routes: dict[tuple[str, str], ServedRoute] = {}
        self.slices: dict[tuple[str, str], tuple[tuple[str, str], dict[str, Any]]] = {}
        self._by_service: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        self._endpoints: dict[tuple[str, str], list[Endpoint]] = {}
        self.secrets: dict[tuple[str, str], TLSSecret] = {}
        self.certificate_problems: list[str] = []  # of the last snapshot
        self.error_pages: dict[int, str] = {}  # from the error pages ConfigMap (when one is named)
        self.error_page_problems: list[str] = []

    # --- routes -------------------------------------------------------------------------------

    def apply_route(self, event: str, obj: Mapping[str, Any]) -> bool:
        """ADDED / MODIFIED / DELETED of a Route; True when what is served may have changed."""
        key = _key(obj)
        new = None if event == "DELETED" else served_route(obj, self.router_name)
        old = self.routes.get(key)
        if new is None:
            self.routes.pop(key, None)
        else:
            self.routes[key] = new
        return old != new

    def replace_routes(self, objs: Sequence[Mapping[str, Any]]) -> bool:
        """A full listing (after a watch restart): replaces every route."""
        fresh = {}
        for obj in objs:
            served = served_route(obj, self.router_name)
            if served is not None:
                fresh[_key(obj)] = served
        changed = fresh != self.routes
        self.routes = fresh
        return changed

    # --- endpoint slices ----------------------------------------------------------------------

    def _used(self, service: tuple[str, str]) -> bool:
        ns, name = service
        return any(r.namespace == ns and name in r.services for r in self.routes.values())

    def apply_slice(self, event: str, obj: Mapping[str, Any]) -> bool:
        """ADDED / MODIFIED / DELETED of an EndpointSlice; True when a served route is affected."""
        key = _key(obj)
        service = service_of(obj)
        previous = self.slices.pop(key, None)
        if previous is not None:
            self._by_service[previous[0]].discard(key)
        if event != "DELETED" and service is not None:
            self.slices[key] = (service, dict(obj))
            self._by_service[service].add(key)
        changed = False
        for svc in {s for s in (service, previous[0] if previous else None) if s is not None}:
            before = self._endpoints.pop(svc, None)
            after = self.endpoints(svc)
            if before is None or before != after:
                changed = changed or self._used(svc)
        return changed

    def replace_slices(self, objs: Sequence[Mapping[str, Any]]) -> bool:
        before = {svc: self.endpoints(svc) for svc in self._by_service}
        self.slices.clear()
        self._by_service.clear()
        self._endpoints.clear()
        for obj in objs:
            service = service_of(obj)
            if service is not None:
                self.slices[_key(obj)] = (service, dict(obj))
                self._by_service[service].add(_key(obj))
        services = set(before) | set(self._by_service)
        return any(before.get(s, []) != self.endpoints(s) and self._used(s) for s in services)

    def endpoints(self, service: tuple[str, str]) -> list[Endpoint]:
        cached = self._endpoints.get(service)
        if cached is None:
            cached = endpoints_from_slices((self.slices[k][1] for k in sorted(self._by_service.get(service, ()))),
                                           self.own_addresses)
            self._endpoints[service] = cached
        return cached

    # --- TLS secrets (spec.tls.externalCertificate) ---------------------------------------------

    def _secret_used(self, key: tuple[str, str]) -> bool:
        return any((r.namespace, r.external_certificate) == key for r in self.routes.values())

    def apply_secret(self, event: str, obj: Mapping[str, Any]) -> bool:
        """ADDED / MODIFIED / DELETED of a TLS Secret; True when a served route names it."""
        key = _key(obj)
        old = self.secrets.pop(key, None)
        new = None if event == "DELETED" else tls_secret(obj)
        if new is not None:
            self.secrets[key] = new
        return old != new and self._secret_used(key)

    def wanted_secrets(self) -> set[tuple[str, str]]:
        """The Secrets served routes name: the router watches these (and may read only these)."""
        return {(r.namespace, r.external_certificate) for r in self.routes.values() if r.external_certificate}

    def replace_secret(self, key: tuple[str, str], objs: Sequence[Mapping[str, Any]]) -> bool:
        """A full listing of one Secret's watch (the Secret, or nothing)."""
        old = self.secrets.pop(key, None)
        if objs:
            self.secrets[key] = tls_secret(objs[0])
        return old != self.secrets.get(key) and self._secret_used(key)

    def forget_secret(self, key: tuple[str, str]) -> None:
        """No served route names it any more (its watch has stopped)."""
        self.secrets.pop(key, None)

    # --- custom error pages (one ConfigMap, watched by name) -------------------------------------

    def apply_error_pages(self, event: str, obj: Mapping[str, Any]) -> bool:
        """ADDED / MODIFIED / DELETED of the error pages ConfigMap; True when the pages changed."""
        pages, self.error_page_problems = error_pages(None if event == "DELETED" else obj)
        changed = pages != self.error_pages
        self.error_pages = pages
        return changed

    def replace_error_pages(self, objs: Sequence[Mapping[str, Any]]) -> bool:
        return self.apply_error_pages("DELETED", {}) if not objs else self.apply_error_pages("ADDED", objs[0])

    # --- output ---------------------------------------------------------------------------------

    def snapshot(self) -> tuple[list[ServedRoute], dict[tuple[str, str], list[Endpoint]]]:
        """Served routes (external certificates resolved; problems in ``certificate_problems``)."""
        routes, self.certificate_problems = resolve(self.routes.values(), self.secrets)
        eps = {}
        for r in routes:
            for svc in r.services:
                eps[(r.namespace, svc)] = self.endpoints((r.namespace, svc))
        return routes, eps
