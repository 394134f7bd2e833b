"""The Route data plane with real HAProxy (master-worker) and real backends on loopback.

Every configuration is produced by the router's renderer and applied by the router's own process
code (store, start after `haproxy -c`, reloads, runtime API updates of the server slots). Backends are
Python HTTP(S) servers on 127.0.0.x; certificates are generated here. Loopback only, bounded.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import pathlib
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from cryptography.x509.oid import NameOID

from netshift.router import annotations as ann
from netshift.router.routes import served_route
from tests.support import certs
from tests.support.cluster import failed
from tests.support.router_harness import HAPROXY, Backend, Load, Router, get
from tests.support.routes import served_route_obj

pytestmark = pytest.mark.timeout(120)

CA = certs.make_ca("route CA")
BACKEND_CA = certs.make_ca("backend CA")


@pytest.fixture(scope="module", autouse=True)
def _haproxy() -> None:
    if not HAPROXY:
        pytest.skip("haproxy is not installed (Debian package haproxy)")


@pytest.fixture
def router(tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Router]:
    r = Router(tmp_path)
    yield r
    r.close()
    if failed(request):
        print(f"--- haproxy log ---\n{r.logs()[-6000:]}")


class Backends:
    """Backends made by a test, closed after it."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.made: list[Backend] = []

    def make(self, name: str, address: str = "127.0.0.1", tls: certs.Pem | None = None) -> Backend:
        b = Backend(name, address, tls=tls, tmp=self.tmp)
        self.made.append(b)
        return b


@pytest.fixture
def backends(tmp_path: pathlib.Path) -> Iterator[Backends]:
    made = Backends(tmp_path)
    yield made
    for b in made.made:
        b.close()


def eps(*pairs: tuple[str, Backend], namespace: str = "ns") -> dict:
    out: dict = {}
    for service, b in pairs:
        out.setdefault((namespace, service), []).append(b.endpoint())
    return out


def cn(cert) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# --- plain HTTP, paths, 503 ------------------------------------------------------------------------

def test_http_host_and_path_precedence(router: Router, backends) -> None:
    root, api, v1 = backends.make("root"), backends.make("api", "127.0.0.2"), backends.make("v1", "127.0.0.3")
    router.apply([served_route_obj("root", "app.example.com", service="root", path="/"),
                  served_route_obj("api", "app.example.com", service="api", path="/api"),
                  served_route_obj("v1", "app.example.com", service="v1", path="/api/v1")],
                 eps(("root", root), ("api", api), ("v1", v1)))
    p = router.http_port
    assert get(p, "app.example.com", "/").backend == "root"
    assert get(p, "app.example.com", "/apiary").backend == "root"  # not a subpath of /api
    assert get(p, "app.example.com", "/api").backend == "api"
    assert get(p, "app.example.com", "/api/v2/x?q=1").backend == "api"
    assert get(p, "app.example.com", "/api/v1/users").backend == "v1"
    assert get(p, "APP.Example.COM", "/api/v1").backend == "v1"  # hosts are case-insensitive
    assert get(p, f"app.example.com:{p}", "/api").backend == "api"  # Host with a port
    # Forwarded headers reach the backend.
    h = get(p, "app.example.com", "/").json["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "app.example.com" and h["forwarded"].startswith("for=127.0.0.1;")


def test_503_cases(router: Router, backends) -> None:
    a, b = backends.make("a"), backends.make("b", "127.0.0.2")
    router.apply([served_route_obj("ok", "ok.example.com", service="a"),
                  served_route_obj("noeps", "noeps.example.com", service="nothing"),
                  served_route_obj("zero", "zero.example.com", service="a", weight=0, alternates=[("b", 0)]),
                  served_route_obj("path", "path.example.com", service="a", path="/only"),
                  served_route_obj("rejected", "rejected.example.com", service="a", admitted=False),
                  served_route_obj("elsewhere", "other.example.com", service="a", router="another")],
                 eps(("a", a), ("b", b)))
    p = router.http_port
    assert get(p, "ok.example.com").status == 200
    for host, path in (("unknown.example.com", "/"), ("noeps.example.com", "/"), ("zero.example.com", "/"),
                       ("path.example.com", "/other"), ("rejected.example.com", "/"),
                       ("other.example.com", "/")):
        assert get(p, host, path).status == 503, (host, path)
    assert get(p, "path.example.com", "/only/x").status == 200


def test_target_port_by_name_and_number(router: Router, backends) -> None:
    web, metrics = backends.make("web"), backends.make("metrics")
    endpoints = {("ns", "svc"): [web.endpoint("http"), metrics.endpoint("metrics")]}
    router.apply([served_route_obj("byname", "name.example.com", target_port="metrics"),
                  served_route_obj("bynumber", "number.example.com", target_port=web.port)], endpoints)
    assert {get(router.http_port, "name.example.com").backend for _ in range(6)} == {"metrics"}
    assert {get(router.http_port, "number.example.com").backend for _ in range(6)} == {"web"}


# --- TLS -------------------------------------------------------------------------------------------

def test_edge_with_route_certificate_and_default_certificate(router: Router, backends) -> None:
    b = backends.make("b")
    leaf = certs.issue(CA, ["secure.example.com"])
    router.apply([served_route_obj("s", "secure.example.com", tls={
        "termination": "edge", "certificate": leaf.cert, "key": leaf.key, "caCertificate": CA.cert},
        annotations={ann.HSTS_HEADER: "max-age=31536000;includeSubDomains;preload"}),
        served_route_obj("d", "plain-cert.example.com", tls={"termination": "edge"})], eps(("svc", b)))
    r = get(router.https_port, "secure.example.com", "/x", tls=True, ca=CA.cert)  # verifies the chain + name
    assert r.status == 200 and r.backend == "b" and r.json["tls"] is False  # edge: plain HTTP behind
    assert r.json["headers"]["x-forwarded-proto"] == "https"
    assert r.headers["strict-transport-security"] == "max-age=31536000;includeSubDomains;preload"
    assert "secure" in r.headers["set-cookie"].lower() and "samesite=none" in r.headers["set-cookie"].lower()
    d = get(router.https_port, "plain-cert.example.com", tls=True)
    assert d.status == 200 and cn(d.peer_cert) == "default.router.test"
    assert "strict-transport-security" not in d.headers
    # No SNI: the default certificate, routed by the Host header.
    nosni = get(router.https_port, "plain-cert.example.com", tls=True, sni=None)
    assert nosni.status == 200 and cn(nosni.peer_cert) == "default.router.test"
    # The source address survives the internal TLS hop (PROXY protocol).
    assert r.json["headers"]["x-forwarded-for"] == "127.0.0.1"


def test_insecure_edge_termination_policies(router: Router, backends) -> None:
    b = backends.make("b")
    routes = [served_route_obj(name, f"{name}.example.com", tls={"termination": "edge", **(
        {"insecureEdgeTerminationPolicy": policy} if policy else {})})
        for name, policy in (("none", "None"), ("unset", None), ("allow", "Allow"), ("redirect", "Redirect"))]
    router.apply(routes, eps(("svc", b)))
    p = router.http_port
    assert get(p, "none.example.com").status == 503
    assert get(p, "unset.example.com").status == 503
    allowed = get(p, "allow.example.com", "/a")
    assert allowed.status == 200 and allowed.json["headers"]["x-forwarded-proto"] == "http"
    assert "secure" not in allowed.headers["set-cookie"].lower()
    redirected = get(p, "redirect.example.com", "/some/path?q=1")
    assert redirected.status == 302
    assert redirected.headers["location"].startswith("https://redirect.example.com")
    assert redirected.headers["location"].endswith("/some/path?q=1")
    for name in ("none", "unset", "allow", "redirect"):
        assert get(router.https_port, f"{name}.example.com", tls=True).status == 200


def test_passthrough_reaches_the_backend_tls(router: Router, backends) -> None:
    backend_cert = certs.issue(BACKEND_CA, ["pass.example.com"])
    b = backends.make("tlsbackend", "127.0.0.2", tls=backend_cert)
    router.apply([served_route_obj("p", "pass.example.com", tls={"termination": "passthrough",
                                                          "insecureEdgeTerminationPolicy": "Redirect"})],
                 eps(("svc", b)))
    r = get(router.https_port, "pass.example.com", "/x", tls=True, ca=BACKEND_CA.cert)
    assert r.status == 200 and r.backend == "tlsbackend" and r.json["tls"] is True
    assert cn(r.peer_cert) == "pass.example.com"  # the backend's certificate, not the router's
    assert "set-cookie" not in r.headers and "x-forwarded-for" not in r.json["headers"]
    assert get(router.http_port, "pass.example.com").status == 302
    # Without SNI the connection is terminated by the router (default certificate): no route.
    nosni = get(router.https_port, "pass.example.com", tls=True, sni=None)
    assert nosni.status == 503 and cn(nosni.peer_cert) == "default.router.test"


def test_reencrypt_verifies_the_backend_certificate(router: Router, backends) -> None:
    b = backends.make("secure-backend", "127.0.0.2", tls=certs.issue(BACKEND_CA, ["svc.ns.svc"]))
    leaf = certs.issue(CA, ["re.example.com"])
    router.apply([
        served_route_obj("good", "re.example.com", tls={"termination": "reencrypt", "certificate": leaf.cert,
                                                 "key": leaf.key, "destinationCACertificate": BACKEND_CA.cert}),
        served_route_obj("wrong", "wrong.example.com", tls={"termination": "reencrypt",
                                                     "destinationCACertificate": CA.cert})],
        eps(("svc", b)))
    r = get(router.https_port, "re.example.com", "/r", tls=True, ca=CA.cert)
    assert r.status == 200 and r.json["tls"] is True and r.json["path"] == "/r"
    assert get(router.https_port, "wrong.example.com", tls=True).status == 503  # verification fails


# --- weights and cookies -----------------------------------------------------------------------------

def test_weights_distribution(router: Router, backends) -> None:
    a1, a2 = backends.make("a1"), backends.make("a2", "127.0.0.2")
    b1, z1 = backends.make("b1", "127.0.0.3"), backends.make("z1", "127.0.0.4")
    # to: a (weight 3, two endpoints); alternates: b (weight 1, one endpoint), z (weight 0).
    router.apply([served_route_obj("w", "w.example.com", service="a", weight=3, alternates=[("b", 1), ("z", 0)])],
                 eps(("a", a1), ("a", a2), ("b", b1), ("z", z1)))
    n = 400
    seen = Counter(get(router.http_port, "w.example.com").backend for _ in range(n))  # new connections, no cookie
    assert seen["z1"] == 0
    share_a = (seen["a1"] + seen["a2"]) / n
    assert abs(share_a - 0.75) < 0.06, seen
    assert abs(seen["a1"] - seen["a2"]) / n < 0.08, seen


def test_sticky_cookie_and_disable_cookies(router: Router, backends) -> None:
    one, two = backends.make("one"), backends.make("two", "127.0.0.2")
    router.apply([served_route_obj("sticky", "sticky.example.com"),
                  served_route_obj("free", "free.example.com", annotations={ann.DISABLE_COOKIES: "true"}),
                  served_route_obj("named", "named.example.com", annotations={ann.COOKIE_NAME: "my_session"})],
                 eps(("svc", one), ("svc", two)))
    first = get(router.http_port, "sticky.example.com")
    cookie = first.headers["set-cookie"].split(";")[0]
    assert "httponly" in first.headers["set-cookie"].lower()
    followers = {get(router.http_port, "sticky.example.com", headers={"Cookie": cookie}).backend
                 for _ in range(20)}
    assert followers == {first.backend}
    free = [get(router.http_port, "free.example.com") for _ in range(20)]
    assert all("set-cookie" not in r.headers for r in free)
    assert {r.backend for r in free} == {"one", "two"}
    assert get(router.http_port, "named.example.com").headers["set-cookie"].startswith("my_session=")


# --- parity with OpenShift's router (issue 13) ---------------------------------------------------------

def test_fully_qualified_host_with_trailing_dot(router: Router, backends) -> None:
    b = backends.make("b")
    pass_b = backends.make("p", "127.0.0.2", tls=certs.issue(BACKEND_CA, ["pass.example.com"]))
    leaf = certs.issue(CA, ["secure.example.com"])
    router.apply([served_route_obj("plain", "plain.example.com"),
                  served_route_obj("s", "secure.example.com", tls={
                      "termination": "edge", "certificate": leaf.cert, "key": leaf.key}),
                  served_route_obj("p", "pass.example.com", tls={"termination": "passthrough"}),
                  served_route_obj("w", "www.wild.example.com", wildcard=True)],
                 {**eps(("svc", b)), ("ns", "pass"): [pass_b.endpoint()]})
    assert get(router.http_port, "plain.example.com.").backend == "b"
    assert get(router.http_port, f"plain.example.com.:{router.http_port}", "/x").backend == "b"
    assert get(router.http_port, "any.wild.example.com.").backend == "b"
    assert get(router.http_port, "plain.example.com..").status == 503
    # TLS: the SNI and the Host header both carry the dot.
    edge = get(router.https_port, "secure.example.com.", tls=True)
    assert edge.status == 200 and edge.backend == "b" and cn(edge.peer_cert) == "secure.example.com"


def test_fully_qualified_sni_reaches_a_passthrough_route(router: Router, backends) -> None:
    b = backends.make("p", "127.0.0.2", tls=certs.issue(BACKEND_CA, ["pass.example.com"]))
    router.apply([served_route_obj("p", "pass.example.com", tls={"termination": "passthrough"})],
                 eps(("svc", b)))
    r = get(router.https_port, "pass.example.com.", tls=True)
    assert r.status == 200 and r.backend == "p" and cn(r.peer_cert) == "pass.example.com"


def test_redirect_to_https_drops_the_http_port(router: Router, backends, tmp_path: pathlib.Path) -> None:
    b = backends.make("b")
    routes = [served_route_obj("r", "redirect.example.com", tls={
                  "termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}),
              served_route_obj("h", "hsts.example.com", annotations={ann.HSTS_HEADER: "max-age=600"}, tls={
                  "termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect"})]
    router.apply(routes, eps(("svc", b)))
    for host in ("redirect.example.com", "hsts.example.com"):
        r = get(router.http_port, f"{host}:8080", "/some/path?q=1")
        assert r.status == 302 and r.headers["location"] == f"https://{host}/some/path?q=1"
        assert get(router.http_port, host, "/a").headers["location"] == f"https://{host}/a"
    # Published on another HTTPS port: the redirect names that port.
    (tmp_path / "other").mkdir()
    other = Router(tmp_path / "other", public_https_port=8443)
    try:
        other.apply(routes, eps(("svc", b)))
        r = get(other.http_port, "redirect.example.com:8080", "/p")
        assert r.headers["location"] == "https://redirect.example.com:8443/p"
    finally:
        other.close()


def test_sticky_cookie_is_named_as_openshift_names_it(router: Router, backends) -> None:
    one, two = backends.make("one"), backends.make("two", "127.0.0.2")
    router.apply([served_route_obj("sticky", "sticky.example.com")], eps(("svc", one), ("svc", two)))
    # OpenShift's router names the cookie MD5(" <namespace>:<route>"). (Its values, the MD5 of each
    # endpoint ID, cannot follow the runtime API's server slots: values are per slot here.)
    name = hashlib.md5(b" ns:sticky").hexdigest()
    first = get(router.http_port, "sticky.example.com")
    assert first.headers["set-cookie"].startswith(f"{name}=")
    cookie = first.headers["set-cookie"].split(";")[0]
    assert {get(router.http_port, "sticky.example.com", headers={"Cookie": cookie}).backend
            for _ in range(10)} == {first.backend}


# --- custom error pages ---------------------------------------------------------------------------------

PAGE_503 = ("HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\nConnection: close\r\n"
            "Cache-Control: no-store\r\n\r\n<html>custom 503</html>\n")
PAGE_404 = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\ncustom 404\n"


def test_custom_error_pages(tmp_path: pathlib.Path, backends) -> None:
    b = backends.make("b")
    routes = [served_route_obj("up", "up.example.com"), served_route_obj("down", "down.example.com", service="none"),
              served_route_obj("e", "edge.example.com", tls={"termination": "edge"})]
    only_503 = Router(tmp_path, error_pages={503: PAGE_503})
    try:
        only_503.apply(routes, eps(("svc", b)))
        down = get(only_503.http_port, "down.example.com")  # a route without endpoints
        assert down.status == 503 and down.body == b"<html>custom 503</html>\n"
        assert down.headers["cache-control"] == "no-store"
        unknown = get(only_503.http_port, "nobody.example.com")  # no 404 page: no route is a 503
        assert unknown.status == 503 and b"custom 503" in unknown.body
        assert get(only_503.https_port, "nobody.example.com", tls=True).body == b"<html>custom 503</html>\n"
        assert get(only_503.http_port, "up.example.com").backend == "b"
    finally:
        only_503.close()
    (tmp_path / "both").mkdir()
    both = Router(tmp_path / "both", error_pages={503: PAGE_503, 404: PAGE_404})
    try:
        both.apply(routes, eps(("svc", b)))
        unknown = get(both.http_port, "nobody.example.com")
        assert unknown.status == 404 and unknown.body == b"custom 404\n"
        assert get(both.https_port, "nobody.example.com", tls=True).status == 404
        assert get(both.http_port, "edge.example.com").status == 404  # not served on HTTP: no route
        assert get(both.http_port, "down.example.com").body == b"<html>custom 503</html>\n"
    finally:
        both.close()


# --- annotations ------------------------------------------------------------------------------------

def test_timeout_annotation(router: Router, backends) -> None:
    b = backends.make("slow")
    router.apply([served_route_obj("fast", "fast.example.com", annotations={ann.TIMEOUT: "500ms"}),
                  served_route_obj("patient", "patient.example.com", annotations={ann.TIMEOUT: "5s"})],
                 eps(("svc", b)))
    t0 = time.monotonic()
    assert get(router.http_port, "fast.example.com", "/sleep/1.5").status == 504
    assert time.monotonic() - t0 < 1.4
    assert get(router.http_port, "patient.example.com", "/sleep/1").status == 200


def test_ip_allowlist(router: Router, backends) -> None:
    b = backends.make("b")
    router.apply([served_route_obj("allow", "allow.example.com",
                                   annotations={ann.IP_ALLOWLIST: "127.0.0.2 10.0.0.0/8"}),
                  served_route_obj("legacy", "legacy.example.com", annotations={ann.IP_WHITELIST: "127.0.0.3/32"}),
                  served_route_obj("pass", "pass.example.com", tls={"termination": "passthrough"},
                            annotations={ann.IP_ALLOWLIST: "127.0.0.2"})],
                 eps(("svc", b)))
    assert get(router.http_port, "allow.example.com", source="127.0.0.2").status == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(router.http_port, "allow.example.com", source="127.0.0.1")
    assert get(router.http_port, "legacy.example.com", source="127.0.0.3").status == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        get(router.http_port, "legacy.example.com", source="127.0.0.2")
    # Passthrough: the TCP connection is refused before any TLS byte reaches the backend.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(router.https_port, "pass.example.com", tls=True, source="127.0.0.1")


def test_rewrite_target(router: Router, backends) -> None:
    b = backends.make("b")
    router.apply([served_route_obj("root", "rw.example.com", path="/app", annotations={ann.REWRITE_TARGET: "/"}),
                  served_route_obj("v2", "rw.example.com", path="/old", annotations={ann.REWRITE_TARGET: "/new"}),
                  served_route_obj("q", "q.example.com", path="/x", annotations={ann.REWRITE_TARGET: "/it's"})],
                 eps(("svc", b)))
    p = router.http_port
    assert get(p, "rw.example.com", "/app").json["path"] == "/"
    assert get(p, "rw.example.com", "/app/").json["path"] == "/"
    assert get(p, "rw.example.com", "/app/a/b?c=1").json["path"] == "/a/b?c=1"
    assert get(p, "rw.example.com", "/old/thing").json["path"] == "/new/thing"
    assert get(p, "q.example.com", "/x/y").json["path"] == "/it's/y"


def test_rate_limit_connections(router: Router, backends) -> None:
    b = backends.make("b")
    router.apply([served_route_obj("limited", "limited.example.com", annotations={
        ann.RATE_LIMIT: "true", ann.RATE_LIMIT_RATE_HTTP: "5"}),
        served_route_obj("tcprate", "tcprate.example.com", annotations={
            ann.RATE_LIMIT: "true", ann.RATE_LIMIT_RATE_TCP: "3"}),
        served_route_obj("concurrent", "concurrent.example.com", annotations={
            ann.RATE_LIMIT: "true", ann.RATE_LIMIT_CONCURRENT_TCP: "2"})],
        eps(("svc", b)))

    def attempt(host: str, path: str = "/") -> int | str:
        try:
            return get(router.http_port, host, path).status
        except (http.client.RemoteDisconnected, ConnectionError):
            return "rejected"

    # At most 5 requests per 10 s, at most 3 new connections per 3 s.
    assert [attempt("limited.example.com") for _ in range(8)] == [200] * 5 + ["rejected"] * 3
    assert [attempt("tcprate.example.com") for _ in range(5)] == [200] * 3 + ["rejected"] * 2
    # concurrent-tcp counts what is tracked at once: in HTTP mode the tracking lives as long as a
    # request is in flight (as in OpenShift). Two slow requests in flight: the third is refused.
    slow_results: list = []
    slow = [threading.Thread(target=lambda: slow_results.append(attempt("concurrent.example.com", "/sleep/1.5")))
            for _ in range(2)]
    for t in slow:
        t.start()
    try:
        time.sleep(0.5)
        assert attempt("concurrent.example.com") == "rejected"
    finally:
        for t in slow:
            t.join(timeout=10)
    assert slow_results == [200, 200]
    assert attempt("concurrent.example.com") == 200


def test_metrics_and_health(router: Router, backends) -> None:
    b = backends.make("b")
    router.apply([served_route_obj("m", "m.example.com")], eps(("svc", b)))
    get(router.http_port, "m.example.com")
    with urllib.request.urlopen(f"http://127.0.0.1:{router.stats_port}/healthz", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{router.stats_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "haproxy_process_uptime_seconds" in text
    assert 'haproxy_backend_http_responses_total{proxy="be_http:ns:m",code="2xx"} 1' in text


# --- reload ---------------------------------------------------------------------------------------

def test_reload_only_when_changed_and_under_load_without_failures(router: Router, backends) -> None:
    one, two = backends.make("one"), backends.make("two", "127.0.0.2")
    routes = [served_route_obj("load", "load.example.com")]
    endpoints = eps(("svc", one), ("svc", two))
    assert router.apply(routes, endpoints) is True
    assert router.apply(routes, endpoints) is False  # same input: no reload
    assert router.haproxy.reloads == 0

    load = Load(router.http_port, "load.example.com")
    try:
        time.sleep(0.5)
        for i in range(6):
            # A real change each time: another route (and the endpoint set flips).
            routes.append(served_route_obj(f"extra{i}", f"extra{i}.example.com"))
            assert router.apply(routes, endpoints if i % 2 else eps(("svc", one), ("svc", two), ("other", one)))
            time.sleep(0.4)
    finally:
        results = load.stop()
    assert router.haproxy.reloads == 6
    total = sum(results.values())
    assert total > 200, results
    failed = {k: v for k, v in results.items() if k != 200}
    assert not failed, f"{sum(failed.values())} failed of {total}: {failed}"
    assert len(router.haproxy.workers()) == 1


def test_http_header_actions(router: Router, backends) -> None:
    b = backends.make("b")
    obj = served_route_obj("h", "headers.example.com", service="b")

    def item(name: str, value: str | None = None) -> dict:
        if value is None:
            return {"name": name, "action": {"type": "Delete"}}
        return {"name": name, "action": {"type": "Set", "set": {"value": value}}}

    obj["spec"]["httpHeaders"] = {"actions": {
        "request": [item("X-Seen-Host", "%[req.hdr(host)]"), item("X-Quoted", "it's \"quoted\" # 100%%"),
                    item("X-Secret")],
        "response": [item("X-Frame-Options", "DENY"), item("X-Backend-Server", "%[res.hdr(server)]"),
                     item("Server")]}}
    router.apply([obj], eps(("b", b)))
    r = get(router.http_port, "headers.example.com", "/", headers={"X-Secret": "s3cret", "X-Keep": "k"})
    assert r.status == 200 and r.backend == "b"
    seen = r.json["headers"]
    assert seen["x-seen-host"] == "headers.example.com"  # Set, with a dynamic value
    assert seen["x-quoted"] == "it's \"quoted\" # 100%"
    assert "x-secret" not in seen and seen["x-keep"] == "k"  # Delete
    assert r.headers["X-Frame-Options"] == "DENY"  # response Set
    assert r.headers["X-Backend-Server"].startswith("BaseHTTP")  # evaluated before the Delete below
    assert r.headers.get("Server") is None  # response Delete


# --- endpoint changes without reload, bounded old workers ------------------------------------------

def _only_first_two_take_traffic(pods: list[Backend]) -> None:
    before = [p.hits for p in pods]
    time.sleep(1.0)
    after = [p.hits for p in pods]
    assert after[2:] == before[2:] and after[0] > before[0] and after[1] > before[1], (before, after)


def test_scaling_under_load_updates_servers_without_reload(router: Router, backends) -> None:
    pods = [backends.make(f"pod{i}", f"127.0.0.{i + 1}") for i in range(5)]
    routes = [served_route_obj("scale", "scale.example.com")]

    def scale(n: int) -> str:
        router.apply(routes, {("ns", "svc"): [p.endpoint() for p in pods[:n]]} if n else {})
        return router.outcomes[-1]

    assert scale(1) == "started"
    load = Load(router.http_port, "scale.example.com")
    try:
        time.sleep(0.5)
        assert scale(5) == "runtime"
        time.sleep(1.0)
        assert all(p.hits > 0 for p in pods), [p.hits for p in pods]  # new servers take traffic at once
        before_zero = load.snapshot()
        assert scale(0) == "runtime"
        time.sleep(0.5)
        assert get(router.http_port, "scale.example.com").status == 503
        pods = pods[3:] + pods[:3]  # two other pods come back (in slots the first ones had)
        assert scale(2) == "runtime"
        time.sleep(0.2)  # requests sent while it had no endpoint may still be answered
        after_zero = load.snapshot()
        _only_first_two_take_traffic(pods)
        # A route change still reloads; the servers the runtime API set survive it.
        routes.append(served_route_obj("other", "other.example.com"))
        assert scale(2) == "reloaded"
        _only_first_two_take_traffic(pods)
        assert scale(2) == "unchanged"
        assert scale(3) == "runtime"  # the new worker's admin socket
        time.sleep(0.5)
        assert pods[2].hits > 0
    finally:
        results = load.stop()
    assert router.haproxy.reloads == 1
    failed = results - Counter({503: after_zero[503] - before_zero[503]}) - Counter({200: results[200]})
    assert sum(results.values()) > 200 and not failed, (results, before_zero, after_zero)
    assert router.router.metrics.runtime_updates.labels("ok")._value.get() == 4


def _haproxy_processes(master: int) -> int:
    """HAProxy processes in the master's session (it runs in a session of its own)."""
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                count += os.getsid(int(pid)) == master
    return count


def test_hard_stop_after_bounds_old_workers(tmp_path: pathlib.Path, backends) -> None:
    """20 route changes while 50 connections stay open: old workers die after hard-stop-after, so
    at most N = 5 HAProxy processes (master, current worker, the old ones of the last second) ever run
    (measured: 3; without hard-stop-after: 10)."""
    router = Router(tmp_path, hard_stop_after="1s")
    slow = backends.make("slow")
    routes = [served_route_obj("long", "long.example.com", annotations={ann.TIMEOUT: "10m"})]
    endpoints = eps(("svc", slow))
    stop = threading.Event()

    def long_lived(i: int) -> None:
        # One connection always open, for 8 s, then another (through the current worker): every
        # worker a reload retires still has some; staggered starts.
        stop.wait(i * 0.1)
        while not stop.is_set():
            with contextlib.suppress(Exception):
                get(router.http_port, "long.example.com", "/sleep/8", timeout=60)

    threads = [threading.Thread(target=long_lived, args=(i,), daemon=True) for i in range(50)]
    try:
        router.apply(routes, endpoints)
        for t in threads:
            t.start()
        time.sleep(5.0)
        most = 0
        for i in range(20):
            routes.append(served_route_obj(f"r{i}", f"r{i}.example.com"))
            assert router.apply(routes, endpoints)
            for _ in range(3):
                most = max(most, _haproxy_processes(router.haproxy.proc.pid))
                time.sleep(0.1)
        assert router.haproxy.reloads == 20
        assert most <= 5, most
    finally:
        stop.set()
        router.close()


def test_a_configuration_haproxy_refuses_keeps_the_previous_one(router: Router, backends) -> None:
    b = backends.make("b")
    routes = [served_route_obj("ok", "ok.example.com")]
    router.apply(routes, eps(("svc", b)))
    before = (router.tmp / "config" / "haproxy.cfg").read_text()
    broken = served_route_obj("broken", "broken.example.com", tls={
        "termination": "edge",
        "certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----",
        "key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"})
    served = [r for r in (served_route(o, "default") for o in [*routes, broken]) if r is not None]
    assert len(served) == 2
    assert router.router.install(served, eps(("svc", b))) == "invalid"  # the master refused the reload
    assert (router.tmp / "config" / "haproxy.cfg").read_text() == before
    assert get(router.http_port, "ok.example.com").status == 200
    assert router.router.metrics.reloads.labels("refused", "config")._value.get() == 1
    # While the broken route is still there, endpoint changes still reach HAProxy.
    c = backends.make("c", "127.0.0.2")
    assert router.router.install(served, eps(("svc", c))) == "invalid"
    assert get(router.http_port, "ok.example.com").backend == "c"
    routes.append(served_route_obj("next", "next.example.com"))  # the next good change reloads
    assert router.apply(routes, eps(("svc", c))) and router.outcomes[-1] == "reloaded"
    assert get(router.http_port, "next.example.com").status == 200
