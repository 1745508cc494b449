"""Every service's command line: `burst service NAME --help` shows that service's own usage."""

from __future__ import annotations

import importlib

import pytest
from click.testing import CliRunner

from services.cli.main import cli

OPTIONS = {
    "schedd": ["--name NAME"],
    "negotiator": [],
    "frontend": ["--name NAME"],
    "factory": ["--name NAME"],
    "glidein": ["--context FILE"],
    "web": ["--host ADDR", "--port N", "--since T"],
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_help_names_the_service_and_its_options(name):
    result = CliRunner().invoke(cli, ["service", name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: burst service {name} [OPTIONS]")
    for option in [*OPTIONS[name], "-h, --help"]:
        assert option in result.stdout


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_wrong_option_is_a_usage_error_before_anything_starts(name, capsys):
    module = importlib.import_module(f"services.{name}.__main__")  # python -m services.NAME
    assert module.main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option '--bogus'" in err and f"burst service {name} --help" in err
