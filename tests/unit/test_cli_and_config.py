import json
import logging
import pathlib
import re

import kopf
import pytest

from netshift import IMAGE, __version__, cli, logs, settings
from netshift.egressrouter.render import RenderSettings
from netshift.operator import app

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_version_command_prints_version(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"netshift {__version__}"


def test_help_lists_every_contract_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("operator", "agent", "router", "version"):
        assert command in out


@pytest.mark.parametrize("command", ["operator", "agent", "router"])
def test_subcommand_help_names_the_variables(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "[env NETSHIFT_LOG_FORMAT; default json]" in " ".join(capsys.readouterr().out.split())


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: netshift" in capsys.readouterr().err


def test_operator_namespace_flag_is_repeatable_and_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("NETSHIFT_NAMESPACES", "x,y")
    args = cli.build_parser().parse_args(["operator", "-n", "a", "--namespace", "b"])
    assert settings.load(settings.OperatorSettings, args).namespaces == ("a", "b")
    args = cli.build_parser().parse_args(["operator"])
    assert settings.load(settings.OperatorSettings, args).namespaces == ("x", "y")


def test_settings_read_environment_and_keep_defaults(monkeypatch):
    monkeypatch.setenv("NETSHIFT_ROUTER_NAME", "edge")
    monkeypatch.setenv("NETSHIFT_RESYNC_SECONDS", "30")
    monkeypatch.setenv("NETSHIFT_DISABLE_NAMESPACE_OWNERSHIP_CHECK", "true")
    monkeypatch.setenv("NETSHIFT_ROUTER_ALLOWED_DOMAINS", "a.io, b.io,")
    monkeypatch.setenv("NETSHIFT_DEFAULT_MACVLAN_MASTER", "")  # empty means unset
    cfg = settings.OperatorSettings()
    assert cfg.router_name == "edge"
    assert cfg.resync_seconds == 30.0
    assert cfg.disable_namespace_ownership_check is True
    assert cfg.router_allowed_domains == ("a.io", "b.io")
    assert cfg.default_macvlan_master is None
    assert cfg.router_domain == "apps.netshift.local"


def test_one_default_image():
    assert settings.OperatorSettings().agent_image == RenderSettings().agent_image == IMAGE


@pytest.mark.parametrize(("command", "variable", "value"), [
    (["operator"], "NETSHIFT_RESYNC_SECONDS", "soon"),
    (["operator"], "NETSHIFT_METRICS_PORT", "x"),
    (["operator"], "NETSHIFT_ROUTES_ENABLED", "maybe"),
    (["operator"], "NETSHIFT_LOG_FORMAT", "xml"),
    (["agent", "--config", "/x", "--dry-run"], "NETSHIFT_AGENT_HEALTH_PORT", "http"),
    (["router", "--render", "/x"], "NETSHIFT_ROUTER_MAXCONN", "1.5"),
])
def test_invalid_setting_is_one_line_naming_variable_and_value(monkeypatch, capsys, command, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        cli.main(command)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netshift: invalid {variable}={value!r}: ") and err.count("\n") == 1, err


def test_invalid_setting_does_not_break_help_or_version(monkeypatch, capsys):
    monkeypatch.setenv("NETSHIFT_RESYNC_SECONDS", "soon")
    assert cli.main(["version"]) == 0
    with pytest.raises(SystemExit) as exc:
        cli.main(["operator", "--help"])
    assert exc.value.code == 0


def test_docs_list_every_setting():
    documented = set(re.findall(r"`(NETSHIFT_[A-Z0-9_]+)`", DOCS.read_text()))
    for cls in (settings.OperatorSettings, settings.AgentSettings, settings.RouterSettings):
        for field in cls.model_fields:
            assert settings.env_name(field) in documented, field


def test_one_json_log_schema_for_every_process_and_kopf():
    record = logging.LogRecord("kopf.objects", logging.WARNING, __file__, 1, "failed %s", ("x",), None)
    record.k8s_ref = {"namespace": "ns", "name": "r1"}
    line = json.loads(logs.JsonFormatter().format(record))
    assert set(line) == {"time", "level", "logger", "message", "object"}
    assert (line["level"], line["logger"], line["message"]) == ("warning", "kopf.objects", "failed x")
    assert logs.PlainFormatter().format(record).endswith("kopf.objects: failed x [ns/r1]")


def test_registry_follows_the_settings():
    def events(reg: kopf.OperatorRegistry) -> set[str]:
        return {h.id for h in reg._watching.get_all_handlers()}

    def activities(reg: kopf.OperatorRegistry) -> set[str]:
        return {h.id for h in reg._activities.get_all_handlers()}

    with_routes, without = (app.registry(settings.OperatorSettings(routes_enabled=on)) for on in (True, False))
    assert events(with_routes) == events(without)  # Routes are not watched by kopf (netshift.operator.route)
    assert "egressrouter_event" in events(without)
    assert activities(with_routes) - activities(without) == {"netshift-route-index", "netshift-route-watch"}
    assert {"login_via_client", "house-settings", "egressrouter-controller", "malloc-trim"} <= activities(without)


def test_house_settings_use_own_prefix_and_bounded_watches():
    kopf_settings = kopf.OperatorSettings()
    app.configure_settings(kopf_settings)
    assert kopf_settings.persistence.finalizer == "netshift.io/finalizer"
    assert kopf_settings.persistence.progress_storage.prefix == "netshift.io"
    assert kopf_settings.persistence.diffbase_storage.prefix == "netshift.io"
    # Streams are bounded on both sides, so a dead connection cannot hang a watch forever.
    assert kopf_settings.watching.server_timeout and kopf_settings.watching.client_timeout
    assert kopf_settings.watching.client_timeout > kopf_settings.watching.server_timeout
    assert kopf_settings.peering.standalone is True


def test_operator_loads_only_the_parts_of_kubernetes_it_uses():
    """netshift.operator.slim: no generated API classes or models in the operator (~27 MiB), and the
    ApiClient, the config loaders, kopf's login and the watch iterator still work."""
    import subprocess
    import sys
    code = """if True:
        import sys
        from netshift.operator import slim
        slim.load(); slim.load()  # idempotent
        import kopf
        from kopf._core.intents import piggybacking
        from kubernetes.watch.watch import iter_resp_lines
        from netshift.kube import Kube, error_message
        from netshift.kube.api import ApiException
        import kubernetes.client, kubernetes.config
        assert kubernetes.client.Configuration and kubernetes.client.ApiClient and kubernetes.config.load_kube_config
        assert not [m for m in sys.modules if m.startswith(("kubernetes.client.api.", "kubernetes.client.models."))]
        assert "Error" in error_message(ApiException(status=500, reason="Error"))
    """
    subprocess.run([sys.executable, "-c", code], check=True)
    late = "import kubernetes\nfrom netshift.operator import slim\nslim.load()\nkubernetes.client.CoreV1Api"
    subprocess.run([sys.executable, "-c", late], check=True)  # too late: the whole package stays


def test_malloc_settings_run():
    import asyncio

    from netshift.operator import malloc

    malloc.limit_arenas()

    async def trim_a_few_times():
        task = asyncio.create_task(malloc.trim_forever(0.01))
        await asyncio.sleep(0.05)
        assert not task.done()  # glibc here: it keeps trimming
        task.cancel()

    asyncio.run(trim_a_few_times())
