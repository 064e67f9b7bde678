"""The product's errors as Postgres errors: a SQLSTATE a driver can act on, and the very
message `/v1/sql` gives for the same statement."""

from __future__ import annotations

from pg_mimic import PgError

from api.errors import STATUS
from api.query.engine import QueryError, QueryRefused, QueryTimeout, QueryTooLarge
from lakehouse.errors import (
    Forbidden,
    InvalidInput,
    LakehouseError,
    NotFound,
    Throttled,
    Unauthenticated,
    Unavailable,
)

# DuckDB's message prefix -> the SQLSTATE Postgres gives for the same mistake, the most
# specific first (`duckdb_state`).
_DUCKDB_STATES = (
    ("unrecognized configuration parameter", "42704"),  # undefined_object
    ("Parser Error", "42601"),  # syntax_error
    ("Catalog Error: Table Function", "42883"),  # undefined_function
    ("because schema", "3F000"),  # invalid_schema_name
    ("Catalog Error: Table", "42P01"),  # undefined_table
    ("Catalog Error: Scalar Function", "42883"),
    ("Catalog Error: Schema", "3F000"),  # invalid_schema_name
    ("Catalog Error: Type", "42704"),  # undefined_object
    ("Catalog Error", "42704"),
    ("Binder Error: Referenced column", "42703"),  # undefined_column
    ("does not have a column named", "42703"),  # `t.missing`
    ("Binder Error: No function matches", "42883"),  # undefined_function
    ("must appear in the GROUP BY clause", "42803"),  # grouping_error
    ("Binder Error", "42804"),  # datatype_mismatch (DuckDB's binder errors are mostly types)
    ("out of range for the destination type", "22003"),  # numeric_value_out_of_range
    ("Conversion Error", "22P02"),  # invalid_text_representation
    ("Invalid Input Error: relation", "42P01"),  # a ::regclass of no table
    ("Invalid Input Error: type", "42704"),  # a ::regtype of no type
    ("Invalid Input Error", "22P02"),
    ("Out of Range Error", "22003"),  # numeric_value_out_of_range
    ("Division by zero", "22012"),
    ("Not implemented Error", "0A000"),  # feature_not_supported
    ("INTERRUPT Error", "57014"),  # query_canceled
)


def duckdb_state(text: str, otherwise: str) -> str:
    """The SQLSTATE of a DuckDB error's message; `otherwise` if none matches."""
    return next((state for prefix, state in _DUCKDB_STATES if prefix in text), otherwise)


_KIND_STATES: tuple[tuple[type[LakehouseError], str], ...] = (
    (QueryTimeout, "57014"),  # query_canceled, as statement_timeout reports it
    (QueryTooLarge, "53200"),  # out_of_memory
    (Unauthenticated, "28000"),  # invalid_authorization_specification
    (Forbidden, "42501"),  # insufficient_privilege
    (Throttled, "53400"),  # configuration_limit_exceeded
    (Unavailable, "53300"),  # too_many_connections (every query slot is busy)
    (NotFound, "42P01"),
)


def sqlstate(exc: BaseException) -> str:
    for kind, state in _KIND_STATES:
        if isinstance(exc, kind):
            return state
    if isinstance(exc, QueryRefused):
        # Postgres's own answer to a write on a read-only connection.
        return "25006" if "read-only" in str(exc) else "42501"
    if isinstance(exc, QueryError):
        return duckdb_state(str(exc), "42000")
    if isinstance(exc, InvalidInput | ValueError):
        return "22023"  # invalid_parameter_value
    return "XX000"


def http_status(exc: BaseException) -> int:
    """The status `/v1/sql` would answer, for the audit trail."""
    if isinstance(exc, LakehouseError):
        return next((STATUS[k] for k in type(exc).__mro__ if k in STATUS), 500)
    return 400 if isinstance(exc, ValueError) else 500


def pg_error(exc: BaseException) -> PgError:
    return PgError(sqlstate(exc), str(exc))
