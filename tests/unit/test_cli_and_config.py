import kopf
import pytest

from netshift import __version__, cli, config, operator


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


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: netshift" in capsys.readouterr().err


def test_operator_namespace_flag_is_repeatable():
    args = cli.build_parser().parse_args(["operator", "-n", "a", "--namespace", "b"])
    assert args.namespaces == ["a", "b"]


def test_config_reads_environment_and_keeps_defaults():
    cfg = config.from_env({"NETSHIFT_ROUTER_NAME": "edge", "NETSHIFT_RESYNC_SECONDS": "30",
                           "NETSHIFT_DISABLE_NAMESPACE_OWNERSHIP_CHECK": "true"})
    assert cfg.router_name == "edge"
    assert cfg.resync_seconds == 30.0
    assert cfg.disable_namespace_ownership_check is True
    assert cfg.router_domain == config.OperatorConfig().router_domain


def test_config_rejects_nonsense_with_field_name():
    with pytest.raises(ValueError, match="resync_seconds"):
        config.from_env({"NETSHIFT_RESYNC_SECONDS": "soon"})


def test_house_settings_use_own_prefix_and_bounded_watches():
    settings = kopf.OperatorSettings()
    operator.configure_settings(settings)
    assert settings.persistence.finalizer == "netshift.io/finalizer"
    assert settings.persistence.progress_storage.prefix == "netshift.io"
    assert settings.persistence.diffbase_storage.prefix == "netshift.io"
    # Streams are bounded on both sides, so a dead connection cannot hang a watch forever.
    assert settings.watching.server_timeout and settings.watching.client_timeout
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.peering.standalone is True
