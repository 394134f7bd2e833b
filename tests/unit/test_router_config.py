"""The router's pure parts: endpoints, served routes, annotations, the HAProxy configuration.

The rendered text is checked line by line where the line is the contract (maps, server lines,
annotation effects); `haproxy -c` validates whole configurations when HAProxy is installed.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from netshift.router import annotations as ann
from netshift.router import haproxy_config as hc
from netshift.router.endpoints import Endpoint, endpoint_weights, endpoints_from_slices, select_port, service_of
from netshift.router.routes import served_route
from netshift.router.runtime import Server
from netshift.router.state import RouterState
from tests.support import certs
from tests.support.routes import ROUTER, served_route_obj, slice_obj

CA = certs.make_ca()
LEAF = certs.issue(CA, ["secure.example.com"])
SETTINGS = hc.Settings(files_dir="/cfg", run_dir="/run/r", default_certificate="/cfg/default.pem")
EPS = {("ns", "svc"): [Endpoint("10.0.0.1", 8080, "http", "p1"), Endpoint("10.0.0.2", 8080, "http", "p2")]}


def served(*objs):
    out = [served_route(o, ROUTER) for o in objs]
    assert all(out), "every route of these tests is admitted"
    return out


def render(*objs, endpoints=EPS, settings=SETTINGS) -> hc.Rendered:
    return hc.render(served(*objs), endpoints, settings)


def backend(rendered: hc.Rendered, name: str) -> list[str]:
    """The lines of one backend section (stripped)."""
    lines = rendered.config.splitlines()
    start = lines.index(f"backend {name}")
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def servers(rendered: hc.Rendered, name: str) -> list[str]:
    """The server lines of the slots holding an endpoint."""
    return [line for line in backend(rendered, name) if line.startswith("server ") and not line.endswith(" disabled")]


def map_lines(rendered: hc.Rendered, name: str) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in rendered.files[name].splitlines()]


def lookup(rendered: hc.Rendered, map_name: str, subject: str) -> str | None:
    """What HAProxy's map_reg returns: the value of the first matching line."""
    for regex, value in map_lines(rendered, map_name):
        if re.search(regex, subject):
            return value
    return None


# --- endpoints -----------------------------------------------------------------------------------

def test_endpoints_from_slices_keeps_ready_tcp_ports_and_deduplicates() -> None:
    s1 = slice_obj("svc", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], [("http", 8080), ("metrics", 9090)],
                   ready=[True, False, True])
    s2 = slice_obj("svc", ["10.0.0.3"], [("http", 8080)], name="svc-second")  # duplicate endpoint
    udp = slice_obj("svc", ["10.0.0.9"], [("dns", 53)], name="svc-udp", protocol="UDP")
    fqdn = slice_obj("svc", ["example.com"], [("http", 80)], name="svc-fqdn", address_type="FQDN")
    eps = endpoints_from_slices([s1, s2, udp, fqdn])
    assert [(e.address, e.port, e.port_name) for e in eps] == [
        ("10.0.0.1", 8080, "http"), ("10.0.0.1", 9090, "metrics"),
        ("10.0.0.3", 8080, "http"), ("10.0.0.3", 9090, "metrics")]
    assert eps[0].target == "svc-pod-0"


def test_endpoint_ready_missing_means_ready() -> None:
    s = slice_obj("svc", ["10.0.0.1"], [(None, 80)])
    del s["endpoints"][0]["conditions"]
    assert endpoints_from_slices([s]) == [Endpoint("10.0.0.1", 80, "", "svc-pod-0")]


def test_service_of_needs_the_service_label() -> None:
    s = slice_obj("svc", ["10.0.0.1"], [(None, 80)], namespace="a")
    assert service_of(s) == ("a", "svc")
    del s["metadata"]["labels"]
    assert service_of(s) is None


@pytest.mark.parametrize("target,expected", [
    (None, [8080, 9090]), ("", [8080, 9090]), ("http", [8080]), ("metrics", [9090]),
    (9090, [9090]), ("9090", [9090]), (8081, []), ("nope", []),
])
def test_select_port_by_name_or_number(target, expected) -> None:
    eps = [Endpoint("10.0.0.1", 8080, "http"), Endpoint("10.0.0.1", 9090, "metrics")]
    assert [e.port for e in select_port(eps, target)] == expected


def test_numbered_port_name_matches_as_string() -> None:
    # A Service port named "8443" pointing at pod port 443: targetPort "8443" selects it by name.
    eps = [Endpoint("10.0.0.1", 443, "8443")]
    assert select_port(eps, "8443") == eps


@pytest.mark.parametrize("backends,counts,expected", [
    # OpenShift's own example: A weight 20 on 2 endpoints, B weight 10 on 4 endpoints.
    ([("a", 20), ("b", 10)], {"a": 2, "b": 4}, {"a": 256, "b": 64}),
    ([("a", 100)], {"a": 3}, {"a": 256}),
    ([("a", 1), ("b", 256)], {"a": 100, "b": 1}, {"a": 1, "b": 256}),  # never rounded to 0
    ([("a", 0), ("b", 100)], {"a": 2, "b": 2}, {"a": 0, "b": 256}),
    ([("a", 0), ("b", 0)], {"a": 2, "b": 2}, {"a": 0, "b": 0}),
    ([("a", 100), ("b", 100)], {"a": 0, "b": 2}, {"a": 0, "b": 256}),  # no endpoints: 0
    ([("a", 50), ("a", 50), ("b", 100)], {"a": 1, "b": 1}, {"a": 256, "b": 256}),  # named twice: sum
    ([], {}, {}),
])
def test_endpoint_weights(backends, counts, expected) -> None:
    assert endpoint_weights(backends, counts) == expected


# --- served routes -------------------------------------------------------------------------------

def test_only_routes_admitted_for_this_router_are_served() -> None:
    assert served_route(served_route_obj("r", "a.example.com"), ROUTER) is not None
    assert served_route(served_route_obj("r", "a.example.com", admitted=False), ROUTER) is None
    assert served_route(served_route_obj("r", "a.example.com", admitted=None), ROUTER) is None
    assert served_route(served_route_obj("r", "a.example.com", router="other"), ROUTER) is None
    obj = served_route_obj("r", "a.example.com")
    obj["status"]["ingress"][0]["conditions"] = []
    assert served_route(obj, ROUTER) is None


def test_other_routers_entries_do_not_matter() -> None:
    obj = served_route_obj("r", "a.example.com")
    obj["status"]["ingress"].insert(0, {"routerName": "other", "host": "a.example.com",
                                        "conditions": [{"type": "Admitted", "status": "False"}]})
    assert served_route(obj, ROUTER).host == "a.example.com"


def test_served_host_comes_from_status() -> None:
    obj = served_route_obj("r", "", status_host="web.apps.example.com")
    del obj["spec"]["host"]
    obj["spec"]["subdomain"] = "web"
    assert served_route(obj, ROUTER).host == "web.apps.example.com"


def test_served_route_fields() -> None:
    obj = served_route_obj("r", "A.Example.com", path="/p", alternates=[("b", 5), ("c", 0)], target_port="http",
                    tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
                    status_host="a.example.com", weight=None)
    r = served_route(obj, ROUTER)
    assert r.host == "a.example.com" and r.path == "/p" and r.termination == "edge"
    assert r.insecure_policy == "Redirect" and r.target_port == "http"
    assert r.backends == (("svc", 100), ("b", 5), ("c", 0))
    assert r.services == ["svc", "b", "c"]


def test_passthrough_never_has_a_path_and_plain_routes_are_http() -> None:
    r = served_route(served_route_obj("r", "a.example.com", path="/x", tls={"termination": "passthrough"}), ROUTER)
    assert r.path == "" and r.insecure_policy == "None"
    plain = served_route(served_route_obj("r", "a.example.com"), ROUTER)
    assert plain.termination == "http" and plain.insecure_policy == "Allow"
    empty_policy = served_route(served_route_obj("r", "a.example.com", tls={
        "termination": "edge", "insecureEdgeTerminationPolicy": ""}), ROUTER)
    assert empty_policy.insecure_policy == "None"


# --- annotations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("5s", "5s"), ("500ms", "500ms"), ("10", "10"), ("2m", "2m"), ("1h", "1h"), ("3d", "3d"),
    ("25d", "2147483647ms"), ("2147483648", "2147483647ms"), ("0s", None), ("-1s", None), ("5 s", None),
    ("5sec", None), ("", None), (None, None), (" 7s ", "7s"),
])
def test_timeout(value, expected) -> None:
    assert ann.timeout(value) == expected


@pytest.mark.parametrize("value,expected", [
    ("10.0.0.1", ("10.0.0.1",)),
    ("10.0.0.1 192.168.0.0/16  fd00::/8", ("10.0.0.1", "192.168.0.0/16", "fd00::/8")),
    ("10.0.0.1 nope", None), ("", None), ("   ", None), ("10.0.0.0/33", None),
])
def test_ip_list(value, expected) -> None:
    assert ann.ip_list(value) == expected


def test_allowlist_wins_over_the_legacy_whitelist() -> None:
    assert ann.parse({ann.IP_WHITELIST: "10.0.0.1"}).allowlist == ("10.0.0.1",)
    assert ann.parse({ann.IP_WHITELIST: "10.0.0.1", ann.IP_ALLOWLIST: "10.0.0.2"}).allowlist == ("10.0.0.2",)


@pytest.mark.parametrize("value,valid", [
    ("max-age=31536000", True), ("max-age=31536000;includeSubDomains;preload", True),
    ("includeSubDomains; max-age=0", True), ('max-age="100"', True), ("MAX-AGE=1", True),
    ("max-age=abc", False), ("includeSubDomains", False), ("max-age=1; evil", False), ("", False),
])
def test_hsts_pattern(value, valid) -> None:
    assert (ann.parse({ann.HSTS_HEADER: value}).hsts is not None) is valid


def test_other_annotations() -> None:
    o = ann.parse({ann.BALANCE: "leastconn", ann.DISABLE_COOKIES: "true", ann.COOKIE_NAME: "my_cookie-1",
                   ann.REWRITE_TARGET: "/v2", ann.POD_CONCURRENT_CONNECTIONS: "7",
                   ann.COOKIE_SAME_SITE: "Lax", ann.HEALTH_CHECK_INTERVAL: "2s"})
    assert (o.balance, o.cookies, o.cookie_name, o.rewrite_target, o.pod_maxconn) == \
        ("leastconn", False, "my_cookie-1", "/v2", 7)
    assert o.cookie_same_site == "Lax" and o.check_interval == "2s"
    bad = ann.parse({ann.BALANCE: "first", ann.DISABLE_COOKIES: "nope", ann.COOKIE_NAME: "a b",
                     ann.REWRITE_TARGET: "v2", ann.POD_CONCURRENT_CONNECTIONS: "x",
                     ann.COOKIE_SAME_SITE: "lax"})
    assert (bad.balance, bad.cookies, bad.cookie_name, bad.rewrite_target, bad.pod_maxconn) == \
        (None, True, None, None, None)
    assert bad.cookie_same_site == "None"


def test_rate_limit_needs_the_switch() -> None:
    values = {ann.RATE_LIMIT_CONCURRENT_TCP: "5", ann.RATE_LIMIT_RATE_TCP: "10", ann.RATE_LIMIT_RATE_HTTP: "x"}
    assert ann.parse(values).rate_limit is None
    rl = ann.parse({**values, ann.RATE_LIMIT: "true"}).rate_limit
    assert rl == ann.RateLimit(concurrent_tcp=5, rate_tcp=10, rate_http=None)


# --- matching ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,base,matches", [
    ("", "a.example.com/", True), ("", "a.example.com", True), ("", "a.example.com/x/y", True),
    ("/", "a.example.com/anything", True), ("///", "a.example.com/anything", True),
    ("/foo", "a.example.com/foo", True), ("/foo", "a.example.com/foo/", True),
    ("/foo", "a.example.com/foo/bar", True), ("/foo", "a.example.com/foobar", False),
    ("/foo", "a.example.com/", False), ("/foo/", "a.example.com/foo/", True),
    ("/foo/", "a.example.com/foo/x", True), ("/foo/", "a.example.com/foo", False),
    ("/a.b", "a.example.com/a.b", True), ("/a.b", "a.example.com/aXb", False),
    ("/v1(x)", "a.example.com/v1(x)/y", True),
    ("", "a.example.com:8080/x", True), ("/foo", "a.example.com:80/foo", True),
    ("", "b.example.com/", False), ("", "xa.example.com/", False), ("", "a.example.com.evil/", False),
])
def test_route_regex(path, base, matches) -> None:
    assert bool(re.search(hc.route_regex("a.example.com", path), base)) is matches


def test_wildcard_regex_matches_one_label() -> None:
    rx = hc.route_regex("www.example.com", "", wildcard=True)
    assert re.search(rx, "anything.example.com/x") and re.search(rx, "www.example.com")
    assert not re.search(rx, "a.b.example.com/") and not re.search(rx, "example.com/")
    sni = hc.sni_regex("www.example.com", wildcard=True)
    assert re.search(sni, "x.example.com") and not re.search(sni, "x.example.com.evil")


def test_longest_path_first_and_exact_hosts_before_wildcards() -> None:
    r = render(served_route_obj("root", "a.example.com", path="/"),
               served_route_obj("api", "a.example.com", path="/api"),
               served_route_obj("apiv1", "a.example.com", path="/api/v1"),
               served_route_obj("wild", "www.example.com", wildcard=True),
               served_route_obj("other", "b.example.com"))
    assert lookup(r, hc.HTTP_MAP, "a.example.com/api/v1/users") == "be_http:ns:apiv1"
    assert lookup(r, hc.HTTP_MAP, "a.example.com/api/v2") == "be_http:ns:api"
    assert lookup(r, hc.HTTP_MAP, "a.example.com/apix") == "be_http:ns:root"
    assert lookup(r, hc.HTTP_MAP, "a.example.com/") == "be_http:ns:root"
    assert lookup(r, hc.HTTP_MAP, "b.example.com/") == "be_http:ns:other"
    assert lookup(r, hc.HTTP_MAP, "zzz.example.com/") == "be_http:ns:wild"
    assert lookup(r, hc.HTTP_MAP, "c.other.com/") is None
    values = [v for _, v in map_lines(r, hc.HTTP_MAP)]
    assert values.index("be_http:ns:wild") == len(values) - 1


def test_insecure_policies_and_terminations_in_the_maps() -> None:
    tls = lambda t, p=None: {"termination": t, **({"insecureEdgeTerminationPolicy": p} if p else {})}
    r = render(served_route_obj("plain", "plain.example.com"),
               served_route_obj("edge-none", "en.example.com", tls=tls("edge")),
               served_route_obj("edge-allow", "ea.example.com", tls=tls("edge", "Allow")),
               served_route_obj("edge-redirect", "er.example.com", tls=tls("edge", "Redirect")),
               served_route_obj("re-allow", "ra.example.com", tls=tls("reencrypt", "Allow")),
               served_route_obj("re-redirect", "rr.example.com", tls=tls("reencrypt", "Redirect")),
               served_route_obj("pass", "p.example.com", tls=tls("passthrough")),
               served_route_obj("pass-redirect", "pr.example.com", tls=tls("passthrough", "Redirect")))
    http = {v: k for k, v in map_lines(r, hc.HTTP_MAP)}
    assert lookup(r, hc.HTTP_MAP, "plain.example.com/") == "be_http:ns:plain"
    assert lookup(r, hc.HTTP_MAP, "en.example.com/") is None  # 503
    assert lookup(r, hc.HTTP_MAP, "ea.example.com/") == "be_edge_http:ns:edge-allow"
    assert lookup(r, hc.HTTP_MAP, "er.example.com/x") == hc.REDIRECT_BACKEND
    assert lookup(r, hc.HTTP_MAP, "ra.example.com/") == "be_secure:ns:re-allow"
    assert lookup(r, hc.HTTP_MAP, "rr.example.com/") == hc.REDIRECT_BACKEND
    assert lookup(r, hc.HTTP_MAP, "p.example.com/") is None
    assert lookup(r, hc.HTTP_MAP, "pr.example.com/") == hc.REDIRECT_BACKEND
    assert "be_tcp:ns:pass" not in http
    assert lookup(r, hc.HTTPS_MAP, "en.example.com/") == "be_edge_http:ns:edge-none"
    assert lookup(r, hc.HTTPS_MAP, "er.example.com/") == "be_edge_http:ns:edge-redirect"
    assert lookup(r, hc.HTTPS_MAP, "rr.example.com/") == "be_secure:ns:re-redirect"
    assert lookup(r, hc.HTTPS_MAP, "plain.example.com/") is None  # plain routes: no https
    assert lookup(r, hc.HTTPS_MAP, "p.example.com/") is None
    assert map_lines(r, hc.PASSTHROUGH_MAP) == [(r"^p\.example\.com$", "be_tcp:ns:pass"),
                                                (r"^pr\.example\.com$", "be_tcp:ns:pass-redirect")]
    assert "http-request redirect scheme https code 302" in backend(r, hc.REDIRECT_BACKEND)
    assert servers(r, hc.DEFAULT_BACKEND) == []


def test_redirect_only_covers_its_own_path() -> None:
    # A plain route on /plain and an edge route with Redirect on /: /plain stays plain HTTP.
    r = render(served_route_obj("plain", "a.example.com", path="/plain"),
               served_route_obj("secure", "a.example.com", tls={"termination": "edge",
                                                         "insecureEdgeTerminationPolicy": "Redirect"}))
    assert lookup(r, hc.HTTP_MAP, "a.example.com/plain/x") == "be_http:ns:plain"
    assert lookup(r, hc.HTTP_MAP, "a.example.com/other") == hc.REDIRECT_BACKEND


# --- certificates ----------------------------------------------------------------------------------

def test_edge_certificate_files_and_list() -> None:
    r = render(served_route_obj("s", "secure.example.com", tls={
        "termination": "edge", "certificate": LEAF.cert, "key": LEAF.key, "caCertificate": CA.cert}),
        served_route_obj("d", "default.example.com", tls={"termination": "edge"}))
    assert r.files["certs/ns_s.pem"] == LEAF.cert + CA.cert + LEAF.key
    assert r.files[hc.CERT_LIST] == "/cfg/certs/ns_s.pem secure.example.com\n"  # d: default cert
    tls_bind = next(line for line in r.config.splitlines() if "bind unix@" in line)
    assert "accept-proxy ssl crt /cfg/default.pem crt-list /cfg/certs.list" in tls_bind


def test_one_certificate_per_host_and_wildcard_sni() -> None:
    other = certs.issue(CA, ["secure.example.com"])
    r = render(served_route_obj("root", "secure.example.com", tls={
        "termination": "edge", "certificate": LEAF.cert, "key": LEAF.key}),
        served_route_obj("sub", "secure.example.com", path="/sub", tls={
            "termination": "edge", "certificate": other.cert, "key": other.key}),
        served_route_obj("w", "www.wild.example.com", wildcard=True, tls={
            "termination": "edge", "certificate": LEAF.cert, "key": LEAF.key}))
    assert r.files[hc.CERT_LIST].splitlines() == [
        "/cfg/certs/ns_sub.pem secure.example.com", "/cfg/certs/ns_w.pem *.wild.example.com"]


def test_reencrypt_verifies_the_backend() -> None:
    r = render(served_route_obj("r", "r.example.com", tls={"termination": "reencrypt",
                                                    "destinationCACertificate": CA.cert}),
               served_route_obj("n", "n.example.com", tls={"termination": "reencrypt"}))
    assert r.files["cacerts/ns_r.pem"] == CA.cert
    assert all(" ssl verify required ca-file /cfg/cacerts/ns_r.pem" in s for s in servers(r, "be_secure:ns:r"))
    assert all(" ssl verify required ca-file @system-ca" in s for s in servers(r, "be_secure:ns:n"))
    with_default = render(served_route_obj("n", "n.example.com", tls={"termination": "reencrypt"}),
                          settings=hc.Settings(files_dir="/cfg", run_dir="/run", default_certificate="/d.pem",
                                               default_destination_ca="/etc/service-ca.crt"))
    assert all("ca-file /etc/service-ca.crt" in s for s in servers(with_default, "be_secure:ns:n"))
    plain = render(served_route_obj("p", "p.example.com"))
    assert not any(" ssl" in s for s in servers(plain, "be_http:ns:p"))


# --- servers and weights ----------------------------------------------------------------------------

def _weights(lines: list[str]) -> dict[str, int]:
    out = {}
    for s in lines:
        words = s.split()
        out[words[2]] = int(words[words.index("weight") + 1])
    return out


def test_weights_across_backends_down_to_endpoints() -> None:
    eps = {("ns", "a"): [Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)],
           ("ns", "b"): [Endpoint("10.0.1.1", 80), Endpoint("10.0.1.2", 80),
                         Endpoint("10.0.1.3", 80), Endpoint("10.0.1.4", 80)]}
    r = render(served_route_obj("r", "w.example.com", service="a", weight=20, alternates=[("b", 10)]), endpoints=eps)
    assert _weights(servers(r, "be_http:ns:r")) == {
        "10.0.0.1:80": 256, "10.0.0.2:80": 256,
        "10.0.1.1:80": 64, "10.0.1.2:80": 64, "10.0.1.3:80": 64, "10.0.1.4:80": 64}
    assert "balance roundrobin" in backend(r, "be_http:ns:r")  # several active services


def test_weight_zero_is_kept_for_cookies_but_dropped_for_passthrough() -> None:
    eps = {("ns", "a"): [Endpoint("10.0.0.1", 80)], ("ns", "b"): [Endpoint("10.0.1.1", 80)]}
    r = render(served_route_obj("h", "h.example.com", service="a", weight=0, alternates=[("b", 100)]),
               served_route_obj("p", "p.example.com", service="a", weight=0, alternates=[("b", 100)],
                         tls={"termination": "passthrough"}), endpoints=eps)
    assert _weights(servers(r, "be_http:ns:h")) == {"10.0.0.1:80": 0, "10.0.1.1:80": 256}
    assert _weights(servers(r, "be_tcp:ns:p")) == {"10.0.1.1:80": 256}
    assert "balance random" in backend(r, "be_http:ns:h")  # one active service
    assert "balance source" in backend(r, "be_tcp:ns:p")


def test_all_weights_zero_or_no_endpoints_means_no_usable_server() -> None:
    r = render(served_route_obj("z", "z.example.com", weight=0),
               served_route_obj("none", "n.example.com", service="missing"))
    assert _weights(servers(r, "be_http:ns:z")) == {"10.0.0.1:8080": 0, "10.0.0.2:8080": 0}
    assert servers(r, "be_http:ns:none") == []
    assert r.backends["be_http:ns:none"] == 0
    p = render(served_route_obj("z", "z.example.com", weight=0, tls={"termination": "passthrough"}))
    assert servers(p, "be_tcp:ns:z") == []


def test_target_port_selects_endpoint_ports() -> None:
    eps = {("ns", "svc"): [Endpoint("10.0.0.1", 8080, "http", "p"), Endpoint("10.0.0.1", 9090, "metrics", "p")]}
    assert [s.split()[2] for s in servers(render(served_route_obj("r", "r.example.com", target_port="metrics"),
                                                 endpoints=eps), "be_http:ns:r")] == ["10.0.0.1:9090"]
    assert [s.split()[2] for s in servers(render(served_route_obj("r", "r.example.com", target_port=8080),
                                                 endpoints=eps), "be_http:ns:r")] == ["10.0.0.1:8080"]
    assert len(servers(render(served_route_obj("r", "r.example.com"), endpoints=eps), "be_http:ns:r")) == 2


def test_server_lines() -> None:
    eps = {("ns", "svc"): [Endpoint("10.0.0.1", 8080, "http", "pod-a"), Endpoint("fd00::5", 8080, "http", "pod-b")]}
    r = render(served_route_obj("r", "r.example.com"), endpoints=eps)
    lines = backend(r, "be_http:ns:r")
    slots = [line for line in lines if line.startswith("server ")]
    assert slots[0] == (f"server s1 10.0.0.1:8080 cookie {hc.short_hash('be_http:ns:r/s1')} "
                        "weight 256 check inter 5000ms")
    assert slots[1].split()[2] == "ipv6@fd00::5:8080"
    # Eight slots (the minimum); the empty ones wait in maintenance for the runtime API.
    assert len(slots) == 8 and slots[7] == (f"server s8 {hc.EMPTY_SLOT_ADDRESS} cookie "
                                            f"{hc.short_hash('be_http:ns:r/s8')} weight 0 check inter 5000ms disabled")
    assert r.servers["be_http:ns:r"][:2] == (Server("10.0.0.1", 8080, 256), Server("fd00::5", 8080, 256))


def test_slots_keep_servers_in_place_and_the_shape_ignores_endpoints() -> None:
    def eps(*last: int) -> dict:
        return {("ns", "svc"): [Endpoint(f"10.0.0.{n}", 80) for n in last]}
    route = served(served_route_obj("r", "r.example.com"))
    first = hc.render(route, eps(1, 2, 3), SETTINGS)
    later = hc.render(route, eps(3, 4), SETTINGS, first.servers)
    # 3 stays in its slot, 4 takes the lowest free one (1's).
    assert later.servers["be_http:ns:r"][:4] == (Server("10.0.0.4", 80, 256), None, Server("10.0.0.3", 80, 256), None)
    assert later.shape == first.shape and later.config != first.config
    grown = hc.render(route, eps(*range(1, 10)), SETTINGS, later.servers)  # 9 > 8 slots: 16, a new shape
    assert len(grown.servers["be_http:ns:r"]) == 16 and grown.shape != first.shape
    assert grown.servers["be_http:ns:r"][2] == Server("10.0.0.3", 80, 256)  # still in its slot


# --- annotations in the backends -----------------------------------------------------------------

def test_cookies_by_default_secure_for_tls_and_none_for_passthrough() -> None:
    r = render(served_route_obj("h", "h.example.com"),
               served_route_obj("e", "e.example.com", tls={"termination": "edge"}),
               served_route_obj("ea", "ea.example.com",
                                tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Allow"}),
               served_route_obj("re", "re.example.com",
                                tls={"termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect"}),
               served_route_obj("p", "p.example.com", tls={"termination": "passthrough"}),
               served_route_obj("named", "n.example.com", annotations={ann.COOKIE_NAME: "sticky"}),
               served_route_obj("off", "o.example.com", annotations={ann.DISABLE_COOKIES: "true"}))
    cookie = lambda name: [line for line in backend(r, name) if line.startswith("cookie ")]
    default_name = hc.short_hash("ns:h")
    assert cookie("be_http:ns:h") == [f"cookie {default_name} insert indirect nocache httponly"]
    assert cookie("be_edge_http:ns:e")[0].endswith("insert indirect nocache httponly secure attr SameSite=None")
    assert "secure" not in cookie("be_edge_http:ns:ea")[0]  # also served over plain HTTP
    assert cookie("be_secure:ns:re")[0].endswith("secure attr SameSite=None")
    assert cookie("be_tcp:ns:p") == []
    assert cookie("be_http:ns:named") == ["cookie sticky insert indirect nocache httponly"]
    assert cookie("be_http:ns:off") == []
    assert all(" cookie " not in s for s in servers(r, "be_http:ns:off"))
    assert all(" cookie " in s for s in servers(r, "be_http:ns:h"))
    assert all(" cookie " not in s for s in servers(r, "be_tcp:ns:p"))


def test_timeout_balance_and_tunnel() -> None:
    r = render(served_route_obj("h", "h.example.com", annotations={ann.TIMEOUT: "90s", ann.BALANCE: "leastconn"}),
               served_route_obj("p", "p.example.com", tls={"termination": "passthrough"},
                         annotations={ann.TIMEOUT: "90s"}),
               served_route_obj("t", "t.example.com", tls={"termination": "passthrough"},
                         annotations={ann.TIMEOUT: "90s", ann.TIMEOUT_TUNNEL: "2h"}),
               served_route_obj("bad", "b.example.com", annotations={ann.TIMEOUT: "soon", ann.BALANCE: "first"}))
    assert "timeout server 90s" in backend(r, "be_http:ns:h")
    assert "balance leastconn" in backend(r, "be_http:ns:h")
    assert "timeout tunnel 90s" in backend(r, "be_tcp:ns:p")
    assert "timeout tunnel 2h" in backend(r, "be_tcp:ns:t")
    assert not any(line.startswith("timeout server") for line in backend(r, "be_http:ns:bad"))
    assert "balance random" in backend(r, "be_http:ns:bad")


def test_ip_allowlist_inline_and_in_a_file() -> None:
    many = " ".join(f"10.0.{i}.0/24" for i in range(70))
    r = render(served_route_obj("a", "a.example.com", annotations={ann.IP_ALLOWLIST: "127.0.0.1 10.0.0.0/8"}),
               served_route_obj("w", "w.example.com", annotations={ann.IP_WHITELIST: "192.168.1.1"}),
               served_route_obj("m", "m.example.com", annotations={ann.IP_ALLOWLIST: many}),
               served_route_obj("p", "p.example.com", tls={"termination": "passthrough"},
                         annotations={ann.IP_ALLOWLIST: "127.0.0.2"}),
               served_route_obj("bad", "b.example.com", annotations={ann.IP_ALLOWLIST: "127.0.0.1 what"}))
    assert backend(r, "be_http:ns:a")[3:5] == ["acl allowlist src 127.0.0.1 10.0.0.0/8",
                                               "tcp-request content reject if !allowlist"]
    assert "acl allowlist src 192.168.1.1" in backend(r, "be_http:ns:w")
    assert "acl allowlist src -f /cfg/allowlists/ns_m.txt" in backend(r, "be_http:ns:m")
    assert r.files["allowlists/ns_m.txt"].splitlines()[69] == "10.0.69.0/24"
    assert "acl allowlist src 127.0.0.2" in backend(r, "be_tcp:ns:p")
    assert not any("allowlist" in line for line in backend(r, "be_http:ns:bad"))


def test_hsts_only_for_edge_and_reencrypt() -> None:
    h = {ann.HSTS_HEADER: "max-age=31536000;includeSubDomains;preload"}
    r = render(served_route_obj("e", "e.example.com", tls={"termination": "edge"}, annotations=h),
               served_route_obj("re", "r.example.com", tls={"termination": "reencrypt"}, annotations=h),
               served_route_obj("h", "h.example.com", annotations=h),
               served_route_obj("p", "p.example.com", tls={"termination": "passthrough"}, annotations=h))
    line = ("http-response set-header Strict-Transport-Security "
            "'max-age=31536000;includeSubDomains;preload' if { ssl_fc }")
    assert line in backend(r, "be_edge_http:ns:e") and line in backend(r, "be_secure:ns:re")
    assert not any("Strict-Transport" in x for x in backend(r, "be_http:ns:h") + backend(r, "be_tcp:ns:p"))


@pytest.mark.parametrize("path,target,expected", [
    ("/foo", "/", r"http-request replace-path '^/foo/?(.*)$' '/\1'"),
    ("/foo/", "/", r"http-request replace-path '^/foo/?(.*)$' '/\1'"),
    ("/foo", "/bar", r"http-request replace-path '^/foo(.*)$' '/bar\1'"),
    ("", "/", r"http-request replace-path '^/?(.*)$' '/\1'"),
    ("/a.b", "/x'y", r"http-request replace-path '^/a\.b(.*)$' '/x'\''y\1'"),
])
def test_rewrite_target(path, target, expected) -> None:
    r = render(served_route_obj("r", "r.example.com", path=path or None, annotations={ann.REWRITE_TARGET: target}))
    assert expected in backend(r, "be_http:ns:r")


def test_rate_limit_lines() -> None:
    a = {ann.RATE_LIMIT: "true", ann.RATE_LIMIT_CONCURRENT_TCP: "3", ann.RATE_LIMIT_RATE_TCP: "20",
         ann.RATE_LIMIT_RATE_HTTP: "50"}
    r = render(served_route_obj("h", "h.example.com", annotations=a),
               served_route_obj("p", "p.example.com", tls={"termination": "passthrough"}, annotations=a))
    expected = ["stick-table type ip size 100k expire 30s store conn_cur,conn_rate(3s),http_req_rate(10s)",
                "tcp-request content track-sc2 src",
                "tcp-request content reject if { sc2_conn_cur gt 3 }",
                "tcp-request content reject if { sc2_conn_rate gt 20 }"]
    h = backend(r, "be_http:ns:h")
    assert all(x in h for x in expected) and "tcp-request content reject if { sc2_http_req_rate ge 50 }" in h
    p = backend(r, "be_tcp:ns:p")
    assert all(x in p for x in expected) and not any("http_req_rate ge" in x for x in p)


def test_pod_concurrent_connections_and_check_interval() -> None:
    r = render(served_route_obj("r", "r.example.com", annotations={ann.POD_CONCURRENT_CONNECTIONS: "10",
                                                            ann.HEALTH_CHECK_INTERVAL: "1s"}))
    assert all(s.endswith("check inter 1s maxconn 10") for s in servers(r, "be_http:ns:r"))


# --- the whole text --------------------------------------------------------------------------------

def test_frontends_and_settings() -> None:
    s = hc.Settings(files_dir="/cfg", run_dir="/run/r", default_certificate="/d.pem", http_port=80,
                    https_port=443, stats_port=0, bind_ipv6=True, threads=2, maxconn=5000,
                    hard_stop_after="30m", access_log=True)
    text = hc.render([], {}, s).config
    for line in ("bind :80", "bind :::80 v6only", "bind :443", "bind :::443 v6only", "nbthread 2",
                 "maxconn 5000", "hard-stop-after 30m", "log stdout format raw local0 info",
                 "stats socket /run/r/haproxy.sock mode 600 level admin expose-fd listeners",
                 "server fe_tls unix@/run/r/fe_tls.sock send-proxy-v2"):
        assert f"  {line}\n" in text, line
    assert "frontend stats" not in text
    default = hc.render([], {}, SETTINGS).config
    assert "  http-request use-service prometheus-exporter if { path /metrics }\n" in default
    assert "  bind :1936\n" in default and "nbthread" not in default


def test_rendering_is_deterministic() -> None:
    objs = [served_route_obj(f"r{i}", f"h{i % 3}.example.com", path=f"/p{i}") for i in range(12)]
    a = hc.render(served(*objs), EPS, SETTINGS)
    b = hc.render(served(*reversed(objs)), EPS, SETTINGS)
    assert a == b


def test_empty_router_has_empty_maps() -> None:
    r = hc.render([], {}, SETTINGS)
    assert all(r.files[f] == "" for f in (hc.HTTP_MAP, hc.HTTPS_MAP, hc.PASSTHROUGH_MAP, hc.CERT_LIST))
    assert r.backends == {}


# --- state ---------------------------------------------------------------------------------------

def test_state_tracks_routes_and_their_endpoints() -> None:
    st = RouterState(ROUTER)
    assert st.apply_slice("ADDED", slice_obj("svc", ["10.0.0.1"], [("http", 80)])) is False  # unused
    assert st.apply_route("ADDED", served_route_obj("r", "r.example.com")) is True
    assert st.apply_route("MODIFIED", served_route_obj("r", "r.example.com")) is False
    routes, eps = st.snapshot()
    assert [r.name for r in routes] == ["r"] and eps == {("ns", "svc"): [Endpoint("10.0.0.1", 80, "http", "svc-pod-0")]}
    assert st.apply_slice("MODIFIED", slice_obj("svc", ["10.0.0.1", "10.0.0.2"], [("http", 80)])) is True
    assert st.apply_slice("MODIFIED", slice_obj("svc", ["10.0.0.1", "10.0.0.2"], [("http", 80)])) is False
    assert st.apply_slice("ADDED", slice_obj("other", ["10.0.0.9"], [("http", 80)])) is False
    assert len(st.snapshot()[1][("ns", "svc")]) == 2
    assert st.apply_slice("DELETED", slice_obj("svc", [], [])) is True
    assert st.snapshot()[1][("ns", "svc")] == []
    assert st.apply_route("MODIFIED", served_route_obj("r", "r.example.com", admitted=False)) is True
    assert st.snapshot() == ([], {})
    assert st.apply_route("DELETED", served_route_obj("r", "r.example.com")) is False


def test_state_full_relist() -> None:
    st = RouterState(ROUTER)
    assert st.replace_routes([served_route_obj("a", "a.example.com"),
                              served_route_obj("b", "b.example.com", admitted=False)])
    assert [r.name for r in st.snapshot()[0]] == ["a"]
    assert not st.replace_routes([served_route_obj("a", "a.example.com")])
    assert st.replace_slices([slice_obj("svc", ["10.0.0.1"], [(None, 80)])])
    assert not st.replace_slices([slice_obj("svc", ["10.0.0.1"], [(None, 80)])])
    assert not st.replace_slices([slice_obj("svc", ["10.0.0.1"], [(None, 80)]),
                                  slice_obj("unused", ["10.0.0.2"], [(None, 80)])])


# --- spec.httpHeaders.actions ----------------------------------------------------------------------

def _actions(request=(), response=()) -> dict:
    def item(name, value=None):
        if value is None:
            return {"name": name, "action": {"type": "Delete"}}
        return {"name": name, "action": {"type": "Set", "set": {"value": value}}}
    return {"actions": {"request": [item(*i) for i in request], "response": [item(*i) for i in response]}}


def _with_headers(obj: dict, headers: dict) -> dict:
    obj["spec"]["httpHeaders"] = headers
    return obj


def test_header_actions_are_parsed_in_order_and_bad_items_dropped() -> None:
    headers = _actions(request=[("X-A", "1"), ("X-Gone",), ("", "x"), ("X-Nl", "a\nb"), ("X-Empty", "")],
                       response=[("X-R", "%[res.hdr(server)]")])
    headers["actions"]["request"].append({"name": "X-Odd", "action": {"type": "Append"}})
    (r,) = served(_with_headers(served_route_obj("h", "h.example.com"), headers))
    assert r.request_headers == (("set", "X-A", "1"), ("del", "X-Gone", ""))
    assert r.response_headers == (("set", "X-R", "%[res.hdr(server)]"),)
    (p,) = served(_with_headers(served_route_obj("p", "p.example.com", tls={"termination": "passthrough"}), headers))
    assert p.request_headers == () and p.response_headers == ()


def test_header_actions_render_in_the_backend_after_forwarded_headers() -> None:
    headers = _actions(
        request=[("X-Forwarded-Proto", "custom"), ("X-Client-Cert", "%{+Q}[ssl_c_der,base64]"),
                 ("X-Host", "%[req.hdr(host),lower]"), ("X-Quote", "it's a \"value\" # with $HOME and 100%%"),
                 ("User-Agent",)],
        response=[("X-Frame-Options", "DENY"), ("Server",)])
    rendered = render(_with_headers(served_route_obj("h", "h.example.com", tls={"termination": "edge"}), headers))
    lines = backend(rendered, "be_edge_http:ns:h")
    ours = [line for line in lines if ("set-header '" in line or "del-header '" in line)
            and "Forwarded" not in line]
    assert ours == [
        "http-request set-header 'X-Client-Cert' '%{+Q}[ssl_c_der,base64]'",
        "http-request set-header 'X-Host' '%[req.hdr(host),lower]'",
        "http-request set-header 'X-Quote' 'it'\\''s a \"value\" # with $HOME and 100%%'",
        "http-request del-header 'User-Agent'",
        "http-response set-header 'X-Frame-Options' 'DENY'",
        "http-response del-header 'Server'",
    ]
    # The route's own rules come after the router's forwarded headers, so they win.
    override = lines.index("http-request set-header 'X-Forwarded-Proto' 'custom'")
    assert override > max(i for i, line in enumerate(lines) if line.startswith("http-request add-header"))
    assert not [line for line in render(served_route_obj("n", "n.example.com")).config.splitlines()
                if "set-header '" in line or "del-header '" in line]


# --- spec.tls.externalCertificate --------------------------------------------------------------------

def _secret(name: str, cert: str, key: str, namespace: str = "ns", type_: str = "kubernetes.io/tls") -> dict:
    import base64
    enc = {k: base64.b64encode(v.encode()).decode() for k, v in (("tls.crt", cert), ("tls.key", key)) if v}
    return {"apiVersion": "v1", "kind": "Secret", "type": type_,
            "metadata": {"name": name, "namespace": namespace}, "data": enc}


def test_tls_secret_and_pair_checks() -> None:
    from netshift.router import secrets as sec
    other = certs.issue(CA, ["other.example.com"])
    ok = sec.tls_secret(_secret("s", LEAF.cert + CA.cert, LEAF.key))
    assert ok.problem == "" and sec.pair_problem(ok.cert, ok.key) == ""
    assert "type" in sec.tls_secret(_secret("s", LEAF.cert, LEAF.key, type_="Opaque")).problem
    assert sec.tls_secret(_secret("s", LEAF.cert, "")).problem == "no tls.key"
    bad_b64 = _secret("s", LEAF.cert, LEAF.key)
    bad_b64["data"]["tls.crt"] = "%%%"
    assert "base64" in sec.tls_secret(bad_b64).problem
    assert "certificate" in sec.pair_problem("garbage", LEAF.key)
    assert "private key" in sec.pair_problem(LEAF.cert, "garbage")
    assert "does not match" in sec.pair_problem(LEAF.cert, other.key)


def test_external_certificate_from_the_secret_or_the_default() -> None:
    tls = {"termination": "edge", "externalCertificate": {"name": "web-tls"}}
    st = RouterState(ROUTER)
    assert st.apply_route("ADDED", served_route_obj("ext", "secure.example.com", tls=tls))
    routes, _ = st.snapshot()
    assert routes[0].external_certificate == "web-tls" and routes[0].certificate == ""
    assert st.certificate_problems and "not found" in st.certificate_problems[0]
    assert "ns/ext" in st.certificate_problems[0]
    assert not st.apply_secret("ADDED", _secret("unrelated", LEAF.cert, LEAF.key))
    assert not st.apply_secret("ADDED", _secret("web-tls", LEAF.cert, LEAF.key, namespace="elsewhere"))
    assert st.apply_secret("ADDED", _secret("web-tls", LEAF.cert, LEAF.key))
    routes, eps = st.snapshot()
    assert st.certificate_problems == [] and routes[0].certificate == LEAF.cert
    rendered = hc.render(routes, eps, SETTINGS)
    assert rendered.files[hc.CERT_LIST] == "/cfg/certs/ns_ext.pem secure.example.com\n"
    assert rendered.files["certs/ns_ext.pem"] == LEAF.cert + LEAF.key
    # Bad content: the route keeps no certificate (HAProxy's default one serves its host).
    assert st.apply_secret("MODIFIED", _secret("web-tls", LEAF.cert, certs.issue(CA, ["x.example.com"]).key))
    routes, eps = st.snapshot()
    assert "does not match" in st.certificate_problems[0] and routes[0].certificate == ""
    assert hc.render(routes, eps, SETTINGS).files[hc.CERT_LIST] == ""
    assert st.apply_secret("DELETED", _secret("web-tls", "", ""))
    assert st.replace_secrets([_secret("web-tls", LEAF.cert, LEAF.key)])
    assert not st.replace_secrets([_secret("web-tls", LEAF.cert, LEAF.key), _secret("x", LEAF.cert, LEAF.key)])
    # Only edge and reencrypt routes use it.
    (p,) = served(served_route_obj("p", "p.example.com", tls={"termination": "passthrough",
                                                       "externalCertificate": {"name": "web-tls"}}))
    assert p.external_certificate == ""


# --- haproxy -c ---------------------------------------------------------------------------------

HAPROXY = shutil.which("haproxy") or (shutil.which("haproxy", path="/usr/sbin:/sbin"))


@pytest.mark.skipif(not HAPROXY, reason="haproxy is not installed (Debian package haproxy)")
def test_haproxy_accepts_every_feature(tmp_path: pathlib.Path) -> None:
    run = pathlib.Path("/tmp") / f"nsr-{tmp_path.name[-12:]}"
    files = tmp_path / "cfg"
    default = files / "default.pem"
    settings = hc.Settings(files_dir=str(files), run_dir=str(run), default_certificate=str(default),
                           bind_ipv6=True, threads=2, hard_stop_after="1h", access_log=True)
    many = " ".join(f"10.1.{i}.0/24" for i in range(80))
    objs = [
        served_route_obj("plain", "plain.example.com", path="/a.b(c)", annotations={
            ann.TIMEOUT: "5s", ann.BALANCE: "leastconn", ann.IP_ALLOWLIST: "127.0.0.1 10.0.0.0/8 fd00::/8",
            ann.REWRITE_TARGET: "/it's", ann.RATE_LIMIT: "true", ann.RATE_LIMIT_CONCURRENT_TCP: "5",
            ann.RATE_LIMIT_RATE_TCP: "10", ann.RATE_LIMIT_RATE_HTTP: "20", ann.COOKIE_NAME: "c",
            ann.POD_CONCURRENT_CONNECTIONS: "3"}),
        served_route_obj("many", "many.example.com", annotations={ann.IP_WHITELIST: many, ann.DISABLE_COOKIES: "1"}),
        served_route_obj("edge", "secure.example.com", tls={
            "termination": "edge", "certificate": LEAF.cert, "key": LEAF.key, "caCertificate": CA.cert,
            "insecureEdgeTerminationPolicy": "Redirect"}, annotations={ann.HSTS_HEADER: "max-age=1"}),
        served_route_obj("edge-default", "ed.example.com",
                  tls={"termination": "edge", "insecureEdgeTerminationPolicy": "Allow"}),
        served_route_obj("re", "re.example.com", tls={"termination": "reencrypt", "destinationCACertificate": CA.cert}),
        served_route_obj("re-sys", "rs.example.com", tls={"termination": "reencrypt"}),
        served_route_obj("pass", "p.example.com", tls={"termination": "passthrough"}, annotations={
            ann.TIMEOUT: "1h", ann.IP_ALLOWLIST: "127.0.0.1", ann.RATE_LIMIT: "true",
            ann.RATE_LIMIT_CONCURRENT_TCP: "2"}),
        served_route_obj("wild", "www.wild.example.com", wildcard=True, alternates=[("b", 50), ("c", 0)]),
        served_route_obj("empty", "empty.example.com", service="nothing"),
        _with_headers(served_route_obj("headers", "headers.example.com", tls={"termination": "reencrypt"}), _actions(
            request=[("X-Client-Cert", "%{+Q}[ssl_c_der,base64]"), ("X-Host", "%[req.hdr(host),lower]"),
                     ("X-Quote", "it's a \"value\" # with $HOME, \\ and 100%%"), ("User-Agent",)],
            response=[("X-Frame-Options", "DENY"), ("X-Echo", "%[res.hdr(server)]"), ("Server",)])),
    ]
    eps = {("ns", "svc"): [Endpoint("127.0.0.1", 8080, "http", "p1"), Endpoint("::1", 8080, "http", "p2")],
           ("ns", "b"): [Endpoint("127.0.0.2", 80, "", "")], ("ns", "c"): [Endpoint("127.0.0.3", 80, "", "")]}
    rendered = hc.render(served(*objs), eps, settings)
    for rel, content in rendered.files.items():
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_text(content)
    default.write_text(certs.self_signed(["*.example.com"]).bundle)
    cfg = files / "haproxy.cfg"
    cfg.write_text(rendered.config)
    proc = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
