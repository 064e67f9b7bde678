"""Session settings, as the Postgres endpoint keeps them: `SET`/`RESET`, `set_config()`,
`current_setting()` and a transaction's modes, each checked the way Postgres checks it.

Nothing is taken and then not applied without a word: a name Postgres does not have is
42704; `lakehouse.datasets` (the server's to set) is 55P02; a stronger isolation or a
read-write transaction than this server gives is 0A000 or 25006; a value the server
cannot send (another client encoding) is 22023. A setting Postgres has that changes
nothing here (`statement_timeout`, another time zone) is kept for `SHOW`, and a NOTICE
says that it is not applied. Custom `prefix.name` settings are kept, as Postgres keeps
them. `lakehouse.as_of` is the one setting of ours a client sets (`commands`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pg_mimic import PgError
from sqlglot import exp

AS_OF = "lakehouse.as_of"
DATASETS = "lakehouse.datasets"
# Session settings a client reads at connect, as a Postgres 16 server answers them.
DEFAULT_SETTINGS = {
    "search_path": '"$user", public',
    "datestyle": "ISO, MDY",
    "intervalstyle": "postgres",
    "client_encoding": "UTF8",
    "server_encoding": "UTF8",
    "extra_float_digits": "1",
    "application_name": "",
    "timezone": "UTC",
    "transaction_isolation": "read committed",
    "default_transaction_read_only": "on",
    "transaction_read_only": "on",
    "max_identifier_length": "63",
    "server_version": "16.0",
    "standard_conforming_strings": "on",
    "integer_datetimes": "on",
    "is_superuser": "off",
    "server_version_num": "160000",
    "client_min_messages": "notice",
    "bytea_output": "hex",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    AS_OF: "",
    DATASETS: "",
}
# Set by the server alone (55P02 for a client's SET, as Postgres answers).
SERVER_SET = frozenset(
    {
        DATASETS,
        "server_encoding",
        "server_version",
        "server_version_num",
        "max_identifier_length",
        "integer_datetimes",
        "is_superuser",
    }
)
READ_ONLY = "the server is read-only: its transactions cannot write"
ONE_SNAPSHOT = (
    "each statement reads the datasets' current versions; to read the same versions "
    "across statements, SET lakehouse.as_of"
)
# Settings Postgres has whose values this server gives as they are (a notice otherwise).
_HONOURED: dict[str, Callable[[str], bool]] = {
    "application_name": lambda value: True,
    # SQL_ASCII: the bytes as they are, which UTF-8 text is (libpq's choice in a C locale).
    "client_encoding": lambda value: _word(value) in ("utf8", "utf-8", "unicode", "sql_ascii"),
    "datestyle": lambda value: _word(value).startswith("iso"),
    "timezone": lambda value: _word(value) in ("utc", "etc/utc", "gmt", "z", "zulu", "0"),
    "extra_float_digits": lambda value: _word(value) in ("1", "2", "3"),
    "search_path": lambda value: (
        set(re.split(r"\s*,\s*", _word(value))) <= {"public", '"$user"', "$user", "pg_catalog"}
    ),
    "standard_conforming_strings": lambda value: _word(value) in ("on", "true", "1"),
    "intervalstyle": lambda value: _word(value) == "postgres",
    "bytea_output": lambda value: _word(value) == "hex",
    "client_min_messages": lambda value: True,
    "transaction_isolation": lambda value: _isolation(value),
    "default_transaction_isolation": lambda value: _isolation(value),
    "transaction_read_only": lambda value: _read_only(value),
    "default_transaction_read_only": lambda value: _read_only(value),
}
# Settings Postgres has that do nothing here: kept for SHOW, with a notice.
_NOT_APPLIED = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "work_mem",
        "maintenance_work_mem",
        "temp_buffers",
        "jit",
        "role",
        "session_authorization",
        "geqo",
        "enable_seqscan",
        "enable_indexscan",
        "enable_bitmapscan",
        "random_page_cost",
        "effective_cache_size",
        "max_parallel_workers_per_gather",
        "synchronous_commit",
        "row_security",
        "lc_messages",
        "lc_monetary",
        "lc_numeric",
        "lc_time",
        "xmloption",
        "gin_fuzzy_search_limit",
        "default_text_search_config",
        "cursor_tuple_fraction",
        "plan_cache_mode",
        "timezone_abbreviations",
        "array_nulls",
        "backslash_quote",
        "escape_string_warning",
        "quote_all_identifiers",
        "check_function_bodies",
        "log_statement",
        "log_min_duration_statement",
        "tcp_keepalives_idle",
        "tcp_keepalives_interval",
        "tcp_keepalives_count",
    }
)


@dataclass(frozen=True)
class Call:
    """A `current_setting` or `set_config` call of a table-less SELECT, with literals for
    arguments: `flag` is missing_ok or is_local; `column`, the answer's column name."""

    function: str
    name: str
    value: str | None
    flag: bool
    column: str


def calls(select: exp.Select) -> list[Call]:
    """The select's `current_setting` and `set_config` calls (0A000 for one whose setting
    is not named by a literal)."""
    found = []
    for node in select.find_all(exp.Anonymous):
        function = str(node.this).lower()
        if function not in ("current_setting", "set_config"):
            continue
        args = node.expressions
        named = bool(args) and isinstance(args[0], exp.Literal)
        valued = function != "set_config" or (
            len(args) > 1 and isinstance(args[1], exp.Literal | exp.Null)
        )
        if not (named and valued):
            raise PgError("0A000", f"{function}() takes its setting and value as literals here")
        value = None
        if function == "set_config" and len(args) > 1 and isinstance(args[1], exp.Literal):
            value = str(args[1].this)
        flag_at = 2 if function == "set_config" else 1
        flag = len(args) > flag_at and isinstance(args[flag_at], exp.Boolean) and args[flag_at].this
        if function == "set_config" and flag:
            raise PgError(
                "0A000",
                "set_config(..., true), for the transaction alone, is not kept apart from the "
                "session here: pass false",
            )
        parent = node.parent
        column = parent.alias if isinstance(parent, exp.Alias) else function
        found.append(Call(function, str(args[0].this), value, bool(flag), column))
    return found


@dataclass(frozen=True)
class Checked:
    """A setting a client may set: its name as kept, and the notice to send, if any."""

    name: str
    notice: str | None = None


def check(name: str, value: str | None) -> Checked:
    """Whether `name` may be set to `value` (None: reset to its default): a PgError as
    Postgres would give one, or the notice its value calls for."""
    key = name.lower()
    if key in SERVER_SET:
        said = "the versions the last query read" if key == DATASETS else "the server's"
        raise PgError("55P02", f'parameter "{name}" cannot be changed: it is {said}')
    if key.startswith("lakehouse.") and key != AS_OF:
        raise _unknown(name)
    if "." in key:  # ours (as_of, checked by `commands`), or a custom setting: kept
        return Checked(key)
    if value is None:
        return Checked(key)
    honoured = _HONOURED.get(key)
    if honoured is not None:
        _refuse_what_is_not_given(key, value)
        if honoured(value):
            return Checked(key)
        return Checked(key, f"{key} = {value} is kept for SHOW, but not applied: {_GIVEN[key]}")
    if key in _NOT_APPLIED:
        return Checked(key, f"{key} is kept for SHOW, but this server does not apply it")
    raise _unknown(name)


def parse_as_of(text: str) -> dict[str, int]:
    """`'{"sales": 3}'` (quoted, as SET takes it) -> {"sales": 3}, or 22023 saying what to
    send."""
    try:
        value = json.loads(unquoted(text))
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for k, v in value.items()
    ):
        raise PgError(
            "22023",
            f"{AS_OF} takes a JSON object of dataset -> version, e.g. "
            f"SET {AS_OF} = '{{\"sales\": 3}}', not {text}",
        )
    return value


def current(kept: Mapping[str, str], name: str, missing_ok: bool) -> str | None:
    """`current_setting(name, missing_ok)`: the session's value; for a name it does not
    have, 42704, or NULL when `missing_ok`."""
    value = kept.get(name.lower())
    if value is None and not missing_ok:
        raise _unknown(name)
    return value


def reset(kept: dict[str, str], name: str) -> None:
    """`RESET name`: back to the value at connect (a custom setting: gone)."""
    if name in DEFAULT_SETTINGS:
        kept[name] = DEFAULT_SETTINGS[name]
    else:
        kept.pop(name, None)


def unquoted(value: str) -> str:
    """A SET's value as SHOW gives it back: `'ISO, MDY'` -> `ISO, MDY`."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def startup(params: Mapping[str, str]) -> list[tuple[Checked, str]]:
    """The settings a client sent at connect (`-c name=value` in `options` too), each
    checked as a SET is: a PgError refuses the connection, as Postgres refuses it."""
    given = [(k.lower(), v) for k, v in params.items() if k.lower() not in _NOT_SETTINGS]
    for option in re.findall(r"(?:-c\s*|--)(\S+)", params.get("options", "")):
        name, _, value = option.partition("=")
        given.append((name.lower().replace("-", "_"), value))
    if re.sub(r"(?:-c\s*|--)\S+", "", params.get("options", "")).strip():
        raise PgError("0A000", "options at connect are read as -c name=value only")
    return [(check(name, value), value) for name, value in given if not name.startswith("_pq_.")]


# Startup parameters that are not settings.
_NOT_SETTINGS = frozenset({"user", "database", "options", "replication"})


def check_modes(modes: str) -> None:
    """A transaction's modes (`BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE`): 0A000 or
    25006 for what this server does not give."""
    text = _word(modes)
    if re.search(r"\bread\s+write\b", text):
        raise PgError("25006", READ_ONLY)
    level = re.search(r"\bisolation\s+level\s+(read\s+\w+|repeatable\s+read|serializable)", text)
    if level is not None and not _isolation(level[1]):
        raise PgError("0A000", f"isolation level {level[1]} is not given here: {ONE_SNAPSHOT}")


def _refuse_what_is_not_given(key: str, value: str) -> None:
    if key == "client_encoding" and not _HONOURED[key](value):
        raise PgError("22023", f"client_encoding {value}: this server sends UTF8 only")
    if key.endswith("transaction_isolation") and not _isolation(value):
        raise PgError("0A000", f"{key} = {value} is not given here: {ONE_SNAPSHOT}")
    if key.endswith("transaction_read_only") and not _read_only(value):
        raise PgError("25006", READ_ONLY)


# What this server gives, for the notice of a value it does not apply.
_GIVEN = {
    "datestyle": "dates are sent as ISO (2024-01-31)",
    "timezone": "timestamps with a time zone are sent in UTC (+00): the same instants",
    "extra_float_digits": "floats are sent in their shortest exact form",
    "search_path": "the datasets are in schema public",
    "standard_conforming_strings": "backslashes in strings are plain characters",
    "intervalstyle": "intervals are sent in the postgres style",
    "bytea_output": "bytea is sent as hex",
}


def _unknown(name: str) -> PgError:
    return PgError("42704", f'unrecognized configuration parameter "{name}"')


def _word(value: str) -> str:
    """A setting's value as compared: unquoted, lower-case, spaces made single."""
    return " ".join(unquoted(value).lower().split())


def _isolation(value: str) -> bool:
    return _word(value) in ("read committed", "read uncommitted")


def _read_only(value: str) -> bool:
    return _word(value) in ("on", "true", "1", "yes")
