"""Route annotations the router honours, parsed and validated (pure).

Like OpenShift's router, an annotation whose value does not match its pattern is ignored (the
route is served as if it were absent); nothing here ever makes a route unservable.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

TIMEOUT = "haproxy.router.openshift.io/timeout"
TIMEOUT_TUNNEL = "haproxy.router.openshift.io/timeout-tunnel"
BALANCE = "haproxy.router.openshift.io/balance"
IP_ALLOWLIST = "haproxy.router.openshift.io/ip_allowlist"
IP_WHITELIST = "haproxy.router.openshift.io/ip_whitelist"  # the legacy name
HSTS_HEADER = "haproxy.router.openshift.io/hsts_header"
DISABLE_COOKIES = "haproxy.router.openshift.io/disable_cookies"
COOKIE_NAME = "router.openshift.io/cookie_name"
COOKIE_SAME_SITE = "router.openshift.io/cookie-same-site"
REWRITE_TARGET = "haproxy.router.openshift.io/rewrite-target"
RATE_LIMIT = "haproxy.router.openshift.io/rate-limit-connections"
RATE_LIMIT_CONCURRENT_TCP = "haproxy.router.openshift.io/rate-limit-connections.concurrent-tcp"
RATE_LIMIT_RATE_TCP = "haproxy.router.openshift.io/rate-limit-connections.rate-tcp"
RATE_LIMIT_RATE_HTTP = "haproxy.router.openshift.io/rate-limit-connections.rate-http"
POD_CONCURRENT_CONNECTIONS = "haproxy.router.openshift.io/pod-concurrent-connections"
HEALTH_CHECK_INTERVAL = "router.openshift.io/haproxy.health.check.interval"

BALANCE_ALGORITHMS = ("roundrobin", "leastconn", "source", "random")
_TIME_RE = re.compile(r"([1-9][0-9]*)(us|ms|s|m|h|d)?")
_COOKIE_RE = re.compile(r"[a-zA-Z0-9_-]+")
_HSTS_TOKEN = r"(?:includeSubDomains|preload)"
_HSTS_RE = re.compile(
    rf"(?:{_HSTS_TOKEN}\s*;\s*)*max-age\s*=\s*(?:\d+|\"\d+\")(?:\s*;\s*{_HSTS_TOKEN})*", re.IGNORECASE)
_REWRITE_RE = re.compile(r"/[^\s\\#]*")
_INT_RE = re.compile(r"[0-9]+")
_TRUE = ("true", "1", "yes", "y", "on")  # Go's strconv.ParseBool accepts more; these cover use
_MS = {"us": 0.001, "ms": 1, "": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_TIMEOUT_MS = 2_147_483_647  # HAProxy's limit for timeouts
INLINE_ALLOWLIST_MAX = 61  # more entries go to a file (HAProxy limits the words of a line)


@dataclasses.dataclass(frozen=True)
class RateLimit:
    concurrent_tcp: int | None = None
    rate_tcp: int | None = None
    rate_http: int | None = None


@dataclasses.dataclass(frozen=True)
class RouteOptions:
    timeout: str | None = None  # HAProxy time ("30s", "2147483647ms")
    timeout_tunnel: str | None = None
    balance: str | None = None
    allowlist: tuple[str, ...] | None = None  # None: not restricted
    hsts: str | None = None
    cookies: bool = True
    cookie_name: str | None = None
    cookie_same_site: str = "None"
    rewrite_target: str | None = None
    rate_limit: RateLimit | None = None
    pod_maxconn: int | None = None
    check_interval: str | None = None


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def timeout(value: str | None) -> str | None:
    """A valid HAProxy time for the annotation, clipped to HAProxy's maximum; None when invalid."""
    m = _TIME_RE.fullmatch((value or "").strip())
    if not m:
        return None
    number, unit = int(m.group(1)), m.group(2) or ""
    if number * _MS[unit] > MAX_TIMEOUT_MS:
        return f"{MAX_TIMEOUT_MS}ms"
    return f"{number}{unit}"


def milliseconds(time: str) -> float:
    """A time as returned by ``timeout()`` (``30s``, ``500us``...) in milliseconds."""
    m = _TIME_RE.fullmatch(time)
    if not m:
        raise ValueError(f"not a HAProxy time: {time!r}")
    return int(m.group(1)) * _MS[m.group(2) or ""]


def ip_list(value: str | None) -> tuple[str, ...] | None:
    """The addresses/networks of an allowlist, or None when absent or any entry is invalid.

    (OpenShift ignores the whole annotation when one entry does not parse.)
    """
    words = (value or "").split()
    if not words:
        return None
    for w in words:
        try:
            if "/" in w:
                ipaddress.ip_network(w, strict=False)
            else:
                ipaddress.ip_address(w)
        except ValueError:
            return None
    return tuple(words)


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if _INT_RE.fullmatch(value) else None


def parse(annotations: Mapping[str, str]) -> RouteOptions:
    a = annotations
    balance = (a.get(BALANCE) or "").strip()
    cookie_name = (a.get(COOKIE_NAME) or "").strip()
    hsts = (a.get(HSTS_HEADER) or "").strip()
    rewrite = (a.get(REWRITE_TARGET) or "").strip()
    same_site = (a.get(COOKIE_SAME_SITE) or "").strip()
    allow = ip_list(a.get(IP_ALLOWLIST)) if IP_ALLOWLIST in a else ip_list(a.get(IP_WHITELIST))
    rate = None
    if is_true(a.get(RATE_LIMIT)):
        rate = RateLimit(concurrent_tcp=_int(a.get(RATE_LIMIT_CONCURRENT_TCP)),
                         rate_tcp=_int(a.get(RATE_LIMIT_RATE_TCP)),
                         rate_http=_int(a.get(RATE_LIMIT_RATE_HTTP)))
    maxconn = _int(a.get(POD_CONCURRENT_CONNECTIONS))
    return RouteOptions(
        timeout=timeout(a.get(TIMEOUT)),
        timeout_tunnel=timeout(a.get(TIMEOUT_TUNNEL)),
        balance=balance if balance in BALANCE_ALGORITHMS else None,
        allowlist=allow,
        hsts=hsts if _HSTS_RE.fullmatch(hsts) else None,
        cookies=not is_true(a.get(DISABLE_COOKIES)),
        cookie_name=cookie_name if _COOKIE_RE.fullmatch(cookie_name) else None,
        cookie_same_site=same_site if same_site in ("Lax", "Strict", "None") else "None",
        rewrite_target=rewrite if _REWRITE_RE.fullmatch(rewrite) else None,
        rate_limit=rate,
        pod_maxconn=maxconn or None,
        check_interval=timeout(a.get(HEALTH_CHECK_INTERVAL)),
    )
