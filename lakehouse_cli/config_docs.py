"""docs/CONFIGURATION.md, generated from the settings object (`lakehouse.settings.Settings`)
so that the list of variables cannot drift from the code: `make docs` writes it, and a
test fails while the file differs from `render()`."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from lakehouse.settings import Settings

PREAMBLE = """\
# Configuration

<!-- Generated from lakehouse/settings.py by `make docs` (lakehouse_cli/config_docs.py):
edit the field descriptions there, or the text in config_docs.py, not this file. -->

Every setting is an environment variable, read once per process when the settings are
first needed: one settings object, `lakehouse/settings.py`, shared by the API, the Dagster
code and `lakehouse up`. The defaults run the local stack as it is; the S3 keys' defaults
are the keys `make up` gives its own S3 server.

`lakehouse up` passes these on to every process it starts (and sets `DAGSTER_HOME`).
Secrets set in the environment (`LAKEHOUSE_S3_ACCESS_KEY`, `LAKEHOUSE_S3_SECRET_KEY`,
`LAKEHOUSE_POSTGRES_URL`) reach Dagster resources as `EnvVar` references, so the UI shows
the variable's name, never its value.

The Dagster instance settings are in `dagster.yaml`, which `lakehouse up` writes into
`DAGSTER_HOME` at start with the broker URL and the number of run slots filled in, adding
Postgres storage when `LAKEHOUSE_POSTGRES_URL` is set (nothing else changes: switching to
Postgres needs only that variable). Pointing at a real MinIO, and going past one machine
(Postgres, separate Dagster services, API replicas, run workers elsewhere):
[DEPLOY.md](DEPLOY.md).

## Settings

"""

# Variables the project reads that are not settings: (variable, read by, meaning).
OTHERS = [
    (
        "DAGSTER_HOME",
        "Dagster's own processes (daemon, webserver, code server, run workers), and the run "
        "coordinator (`lakehouse_assets/coordinator.py`, for its `queue-changed` file)",
        "the Dagster instance directory. `lakehouse up` and `lakehouse worker` set it to "
        "`LAKEHOUSE_DAGSTER_HOME` for what they start; set it yourself for Dagster processes "
        "you start without them. The API opens the instance at `LAKEHOUSE_DAGSTER_HOME`",
    ),
    (
        "LAKEHOUSE_TEST_POSTGRES_URL",
        "the tests (`tests/conftest.py`)",
        "a Postgres server (`postgresql://user@host:5432`) the Postgres tests create their "
        "databases on; unset: they start one from the `pgserver` wheel",
    ),
]

DAGSTER_YAML = """
The project's `dagster.yaml`, as Dagster processes you start yourself read it, takes the
run launcher's broker and result backend from `LAKEHOUSE_BROKER_URL`; `lakehouse up` and
`lakehouse worker` write the values into the copy in `DAGSTER_HOME` instead.
"""

MIB = 1024 * 1024


def render() -> str:
    """The whole text of docs/CONFIGURATION.md."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        cells = (
            f"`{env_name(name, field)}`",
            kind(name, field),
            default(name, field),
            meaning(field),
        )
        rows.append("| " + " | ".join(cells) + " |")
    others = ["| variable | read by | meaning |", "|---|---|---|"]
    others += [f"| `{name}` | {by} | {what} |" for name, by, what in OTHERS]
    return (
        PREAMBLE
        + "\n".join(rows)
        + "\n\n## Other environment variables\n\nNot settings, but read by the project:\n\n"
        + "\n".join(others)
        + "\n"
        + DAGSTER_YAML
    )


def env_name(name: str, field: FieldInfo) -> str:
    """The variable pydantic-settings reads the field from (case does not matter)."""
    alias = field.validation_alias or field.alias
    if alias is None:
        return (str(Settings.model_config.get("env_prefix", "")) + name).upper()
    if isinstance(alias, str):  # an alias replaces the prefixed name
        return alias.upper()
    raise NotImplementedError(f"{name}: render alias {alias!r}")


def kind(name: str, field: FieldInfo) -> str:
    """The value's type, and its bounds."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):  # Path | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{choice}`" for choice in get_args(annotation))
    names: dict[Any, str] = {
        bool: "`true` or `false`", int: "integer", float: "number", str: "text", Path: "path",
        dict: "JSON object", list: "JSON list",
    }  # fmt: skip
    text = names.get(annotation) or names.get(get_origin(annotation))
    if text is None:
        raise NotImplementedError(f"{name}: render type {annotation!r}")
    bounds = []
    for limit in field.metadata:
        if isinstance(limit, Ge):
            bounds.append(f"at least {_number(limit.ge, name)}")
        elif isinstance(limit, Gt):
            bounds.append(f"above {_number(limit.gt, name)}")
        elif isinstance(limit, Le):
            bounds.append(f"at most {_number(limit.le, name)}")
        elif isinstance(limit, Lt):
            bounds.append(f"below {_number(limit.lt, name)}")
    return ", ".join([text, *bounds])


def default(name: str, field: FieldInfo) -> str:
    """The default as the variable would spell it; what an empty one means is in the
    field's description."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`" + _size(value, name)


def meaning(field: FieldInfo) -> str:
    """The description, with the settings it names (`workers`, sql_queue_seconds) as their
    variables, and placeholders (<state_dir>) as code."""
    if not field.description:
        raise ValueError("every setting needs a description (lakehouse/settings.py)")
    fields = Settings.model_fields
    quoted = "|".join(fields)
    bare = "|".join(n for n in fields if "_" in n)  # a one-word name may be prose
    pattern = rf"`({quoted})`|(?<![<\w])({bare})(?![>\w])"

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return f"`{env_name(name, fields[name])}`"

    text = re.sub(pattern, variable, " ".join(field.description.split()))
    # Code, so that Markdown shows a placeholder rather than taking it for an HTML tag.
    text = re.sub(r"(?<![\w`:/.=-])([\w:/.=-]*<\w+>(?:[\w/.-]*[\w/-])?)(?!`)", r"`\1`", text)
    return text.replace("|", "\\|")


def _number(value: Any, name: str) -> str:
    return f"{value}{_size(value, name)}"


def _size(value: Any, name: str) -> str:
    """` (8 MiB)` after a byte count that is a whole number of MiB or GiB."""
    if not (name.endswith("_bytes") and isinstance(value, int)):
        return ""
    if value >= 1024 * MIB and value % (1024 * MIB) == 0:
        return f" ({value // (1024 * MIB)} GiB)"
    if value >= MIB and value % MIB == 0:
        return f" ({value // MIB} MiB)"
    return ""
