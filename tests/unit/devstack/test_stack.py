from pathlib import Path

import pytest

from devstack.instance import settings_env
from lakehouse.settings import Settings


def test_children_get_absolute_paths_whatever_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = settings_env(Settings(state_dir=Path("state")))
    assert env["LAKEHOUSE_STATE_DIR"] == str(tmp_path / "state")
    assert env["DAGSTER_HOME"] == env["LAKEHOUSE_DAGSTER_HOME"] == str(tmp_path / "state/dagster")
    assert env["LAKEHOUSE_S3_BUCKET"] == "lakehouse"
