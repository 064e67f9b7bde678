"""The Dagster instance every process of the stack shares: its dagster.yaml, written from
the project's with this deployment's values, and the environment children inherit."""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from lakehouse.settings import Settings, sqlalchemy_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the LAKEHOUSE_* variables that reproduce them in a child process
    (paths made absolute: children run in the project directory)."""
    env = {
        f"LAKEHOUSE_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }
    env["LAKEHOUSE_STATE_DIR"] = str(settings.state_dir.absolute())
    env["LAKEHOUSE_DAGSTER_HOME"] = env["DAGSTER_HOME"] = str(settings.resolved_dagster_home)
    return env


def write_instance_yaml(home: Path, settings: Settings) -> None:
    """The project's dagster.yaml with this deployment's values written in: the broker,
    the number of run slots, how long ticks are kept (the retention, at least a day), and
    Postgres storage when a URL is configured.

    The values are written into the file (readable by its owner only) rather than
    referenced as environment variables, so every process that opens this Dagster home
    (daemon, webserver, API, run workers, a shell) finds the same instance without more
    set-up.
    """
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    config["run_coordinator"]["config"]["max_concurrent_runs"] = settings.run_slots
    launcher = config["run_launcher"]["config"]
    launcher["broker"] = settings.resolved_broker_url
    launcher["backend"] = settings.resolved_backend_url
    days = max(1, math.ceil(settings.retention_days))
    for ticks in config["retention"].values():
        ticks["purge_after_days"] = {status: days for status in ticks["purge_after_days"]}
    if settings.postgres_url:
        config["storage"] = {"postgres": {"postgres_url": sqlalchemy_url(settings.postgres_url)}}
    # Written aside and renamed: a process starting meanwhile reads the old or the new.
    draft = home / f".dagster.yaml.{os.getpid()}"
    draft.write_text(
        "# Written by `lakehouse up` from the project's dagster.yaml (its comments say why).\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    draft.chmod(0o600)
    draft.replace(home / "dagster.yaml")


def prepare_dagster_home(settings: Settings) -> None:
    """Write dagster.yaml into the Dagster home and create the instance's storage once,
    here: processes that find a fresh SQLite home at the same moment race to create its
    tables."""
    from dagster import DagsterInstance  # heavy import, only where needed

    home = settings.resolved_dagster_home
    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home, settings)
    with DagsterInstance.from_config(str(home)):
        pass
