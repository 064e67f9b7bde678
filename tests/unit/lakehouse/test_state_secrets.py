import stat
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from lakehouse.state_secrets import EXAMPLE_SECRETS, GENERATED_SECRETS, SECRETS_FILE


def test_no_secret_has_a_default() -> None:
    for name, field in Settings.model_fields.items():
        if any(word in name for word in ("secret", "password")):
            assert field.default == "", name


def test_secrets_are_generated_once_per_state_dir_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path).with_generated_secrets()
    values = {name: getattr(settings, name) for name in GENERATED_SECRETS}
    assert all(len(v) >= 32 for v in values.values()) and len(set(values.values())) == 3
    assert stat.S_IMODE((tmp_path / SECRETS_FILE).stat().st_mode) == 0o600
    again = Settings(state_dir=tmp_path)  # another process, later: the same secrets
    assert {name: getattr(again, name) for name in GENERATED_SECRETS} == values
    assert (
        Settings(state_dir=tmp_path / "other").with_generated_secrets().s3_secret_key
        != (values["s3_secret_key"])
    )


def test_a_secret_given_is_kept(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, s3_secret_key="mine").with_generated_secrets()
    assert settings.s3_secret_key == "mine"


@pytest.mark.parametrize("example", sorted(EXAMPLE_SECRETS))
def test_the_old_example_secrets_are_refused_beyond_loopback(example: str) -> None:
    local = Settings(s3_secret_key=example, s3_query_secret_key="x", broker_password="y")
    local.refuse_example_secrets()  # loopback only: allowed
    exposed = local.model_copy(update={"api_host": "0.0.0.0"})
    with pytest.raises(ValueError, match="LAKEHOUSE_S3_SECRET_KEY hold the well-known"):
        exposed.refuse_example_secrets()


def test_the_broker_url_carries_the_password() -> None:
    settings = Settings(broker_password="p@ss/word", broker_port=6390)
    assert settings.resolved_broker_url == "redis://:p%40ss%2Fword@127.0.0.1:6390/0"
