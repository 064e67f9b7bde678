"""Settings: read from LAKEHOUSE_* variables when asked for, with working defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lakehouse.settings import Settings, get_settings


def test_defaults_run_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAKEHOUSE_S3_ENDPOINT", "LAKEHOUSE_STATE_DIR", "LAKEHOUSE_DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.s3_endpoint == "http://127.0.0.1:8333"
    assert settings.resolved_dagster_home == (Path(".lakehouse") / "dagster").absolute()
    assert settings.resolved_webserver_url == "http://127.0.0.1:3000"
    assert (settings.batch_max_ingests, settings.compaction_max_objects) == (1000, 64)


def test_every_field_comes_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_S3_BUCKET", "elsewhere")
    monkeypatch.setenv("LAKEHOUSE_BATCH_MAX_BYTES", "1024")
    monkeypatch.setenv("LAKEHOUSE_COMPACTION_SORT_KEYS", '{"workers": ["state"]}')
    monkeypatch.setenv("LAKEHOUSE_PUSH_RUNS", "false")
    settings = Settings()
    assert settings.s3_bucket == "elsewhere" and settings.s3().bucket == "elsewhere"
    assert settings.batch_max_bytes == 1024
    assert settings.compaction_sort_keys == {"workers": ["state"]}
    assert settings.push_runs is False


def test_the_query_key_falls_back_to_the_read_write_key() -> None:
    separate = Settings(s3_query_access_key="reader", s3_query_secret_key="reader-secret")
    assert (separate.query_s3().access_key, separate.query_s3().secret_key) == (
        "reader",
        "reader-secret",
    )
    same = Settings(s3_query_access_key="")
    assert same.query_s3() == same.s3()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAKEHOUSE_BATCH_MAX_INGESTS", "0"),
        ("LAKEHOUSE_MAX_REJECT_SHARE", "1.5"),
        ("LAKEHOUSE_INGEST_PART_BYTES", "1024"),
        ("LAKEHOUSE_S3_URL_STYLE", "sideways"),
    ],
)
def test_a_nonsensical_value_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert variable.removeprefix("LAKEHOUSE_").lower() in str(refused.value)


def test_settings_are_read_once_and_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("LAKEHOUSE_S3_BUCKET", "first")
    assert get_settings().s3_bucket == "first"
    monkeypatch.setenv("LAKEHOUSE_S3_BUCKET", "second")
    assert get_settings().s3_bucket == "first"
    get_settings.cache_clear()
