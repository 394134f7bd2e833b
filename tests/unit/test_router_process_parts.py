"""The router process's helpers that need no cluster: master CLI parsing, the config store, the
default certificate, the CLI (`--render`, the file descriptor fit of --maxconn), reload coalescing."""
from __future__ import annotations

import json
import pathlib
import resource
import threading
import time

from cryptography import x509

from netshift.cli import build_parser, main
from netshift.router import haproxy_config as hc
from netshift.router.haproxy import Proc, fit_maxconn, parse_show_proc
from netshift.router.runner import Router, default_certificate
from netshift.router.store import ConfigStore
from netshift.settings import RouterSettings, load
from tests.support import certs
from tests.support.routes import served_route_obj

SHOW_PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
1162            master          5 [failed: 0]   0d00h02m07s     2.6.12
# workers
1271            worker          0               0d00h00m00s     2.6.12
# old workers
1233            worker          3               0d00h00m43s     2.6.12
# programs

"""


def test_parse_show_proc() -> None:
    assert parse_show_proc(SHOW_PROC) == [Proc(1162, "master", 5), Proc(1271, "worker", 0),
                                          Proc(1233, "worker", 3, old=True)]
    assert parse_show_proc(SHOW_PROC.replace("[failed: 0]", "[failed: 2]"))[0] == Proc(1162, "master", 5, failed=2)
    assert parse_show_proc("") == []


def test_store_swaps_slots_and_detects_changes(tmp_path: pathlib.Path) -> None:
    store = ConfigStore(tmp_path)

    def rendered(files_dir: str, route: str) -> hc.Rendered:
        settings = hc.Settings(files_dir=files_dir, run_dir="/run/x", default_certificate="/d.pem")
        from netshift.router.routes import served_route
        return hc.render([served_route(served_route_obj(route, f"{route}.example.com"), "default")], {}, settings)

    first_dir = store.next_dir()
    assert first_dir.endswith("/a")
    r1 = rendered(first_dir, "one")
    assert store.changed(r1, first_dir)
    staged = store.stage(r1, first_dir)
    assert pathlib.Path(staged).read_text() == r1.config
    assert (pathlib.Path(first_dir) / hc.HTTP_MAP).read_text() == r1.files[hc.HTTP_MAP]
    store.commit(r1, first_dir)
    assert pathlib.Path(store.config_path).read_text() == r1.config
    second_dir = store.next_dir()
    assert second_dir.endswith("/b")
    # The same routes rendered for the other slot: unchanged (no reload).
    assert not store.changed(rendered(second_dir, "one"), second_dir)
    r2 = rendered(second_dir, "two")
    assert store.changed(r2, second_dir)
    store.stage(r2, second_dir)
    store.commit(r2, second_dir)
    assert store.next_dir() == first_dir
    assert oct((tmp_path / "haproxy.cfg").stat().st_mode & 0o777) == "0o600"


def test_default_certificate(tmp_path: pathlib.Path) -> None:
    made = pathlib.Path(default_certificate(None, str(tmp_path), ["*.apps.example.com", "apps.example.com"]))
    cert = x509.load_pem_x509_certificate(made.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["*.apps.example.com", "apps.example.com"]
    assert "PRIVATE KEY" in made.read_text()
    # A kubernetes.io/tls Secret mounted as a directory.
    pem = certs.self_signed(["given.example.com"])
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "tls.crt").write_text(pem.cert)
    (secret / "tls.key").write_text(pem.key)
    joined = pathlib.Path(default_certificate(str(secret), str(tmp_path), ["x"]))
    assert joined.read_text() == pem.cert.strip() + "\n" + pem.key.strip() + "\n"
    # A PEM file is used as it is.
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(pem.bundle)
    assert default_certificate(str(bundle), str(tmp_path), ["x"]) == str(bundle)


def test_cli_arguments_and_render(tmp_path: pathlib.Path, capsys) -> None:
    args = build_parser().parse_args(["router", "--router-name", "r1", "--http-port", "80", "--https-port", "443",
                                      "--stats-port", "0", "--config-dir", "/x", "--haproxy-bin", "/bin/h",
                                      "--default-certificate", "/c.pem", "--threads", "2"])
    s = load(RouterSettings, args)
    assert (s.router_name, s.router_http_port, s.router_https_port, s.router_stats_port, s.router_config_dir,
            s.haproxy_bin, s.router_default_certificate, s.router_threads) == ("r1", 80, 443, 0, "/x", "/bin/h",
                                                                              "/c.pem", 2)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"kind": "List", "items": [served_route_obj("web", "web.example.com", router="r1"),
                                                            served_route_obj("other", "o.example.com")]}))
    assert main(["router", "--router-name", "r1", "--config-dir", str(tmp_path), "--render", str(routes)]) == 0
    out = capsys.readouterr().out
    assert "backend be_http:ns:web" in out and "be_http:ns:other" not in out


def test_fit_maxconn() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fit_maxconn(10) == 10
    if hard != resource.RLIM_INFINITY:
        assert fit_maxconn(hard) == (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1024) // 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_reloads_at_once_when_idle_then_coalesced_within_the_interval(tmp_path: pathlib.Path) -> None:
    router = Router(router_name="r", settings=hc.Settings(files_dir="", run_dir=str(tmp_path), default_certificate=""),
                    config_dir=str(tmp_path / "config"), haproxy_bin="haproxy", min_interval=1.0)
    reloads: list[float] = []
    syncs: list[bool] = []

    def sync(reload_ok: bool = True) -> str:  # every change needs a reload; HAProxy is not involved
        router.dirty.clear()
        syncs.append(reload_ok)
        if not reload_ok:
            return "deferred"
        reloads.append(time.monotonic())
        router._last_reload = reloads[-1]
        router.synced_once.set()
        return "reloaded"

    router.sync = sync  # type: ignore[method-assign]
    ready = threading.Event()
    ready.set()
    loop = threading.Thread(target=router.run_loop, args=([ready],))
    loop.start()
    try:
        time.sleep(1.2)  # the first configuration, then quiet
        assert len(reloads) == 1
        changed = time.monotonic()
        router.dirty.set()
        time.sleep(0.2)
        assert len(reloads) == 2 and reloads[1] - changed < 0.2  # after a quiet period: at once
        for _ in range(10):  # a burst within the interval: one more reload, at the end of the interval
            router.dirty.set()
            time.sleep(0.03)
        time.sleep(0.9)
        assert len(reloads) == 3 and reloads[2] - reloads[1] >= 1.0
        assert syncs.count(False) >= 2  # deferred renders in between (the runtime API's turn)
    finally:
        router.stop.set()
        loop.join(timeout=5)
