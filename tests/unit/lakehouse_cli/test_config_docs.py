"""docs/CONFIGURATION.md is generated from the settings object, and kept in step with it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from lakehouse.settings import Settings
from lakehouse_cli.config_docs import render
from lakehouse_cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def test_configuration_md_is_generated_from_the_settings() -> None:
    written = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    assert written == render(), "docs/CONFIGURATION.md is stale: run `make docs`"


def test_every_setting_is_listed_with_its_variable() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"| `LAKEHOUSE_{name.upper()}` |" in text


def test_the_command_prints_it() -> None:
    result = CliRunner().invoke(main, ["config-docs"])
    assert result.exit_code == 0
    assert result.output == render()
