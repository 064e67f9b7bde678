"""The query processes' share of the memory budget (docs/API.md, "The bound")."""

from __future__ import annotations

import pytest

from lakehouse.settings import Settings

MIB = 1024 * 1024


def memory(**settings: object):
    return Settings(**settings).query_memory  # type: ignore[arg-type]


def test_the_default_budget_keeps_the_apis_queries_within_2_gib_above_idle() -> None:
    found = memory()
    workers, at_once = Settings().api_workers, Settings().sql_max_concurrent
    assert found.budget_mb <= 1024 * (workers + 1)  # + the Postgres endpoint
    answers = 2 * Settings().sql_max_result_bytes / MIB
    assert workers * at_once * (found.process_mb + answers) <= 2048
    endpoint = Settings().pg_workers * Settings().pg_max_concurrent
    assert (workers * at_once + endpoint) * (found.process_mb + answers) <= found.budget_mb
    assert "an eighth of the machine" in found.why


def test_a_budget_given_is_split_over_every_query_process_less_their_answers() -> None:
    found = memory(sql_memory_budget_mb=4096, api_workers=2, sql_max_concurrent=2)
    assert found.process_mb == 4096 // 6 - 64  # 2 x 2 of the API's, 2 x 1 of the endpoint's
    assert "pg_workers x pg_max_concurrent" in found.why
    without_postgres = memory(sql_memory_budget_mb=4096, api_workers=2, pg_port=0)
    assert without_postgres.process_mb == 4096 // 4 - 64
    assert found.duckdb_limit == f"{found.process_mb * 3 // 4}MB"
    assert "LAKEHOUSE_SQL_MEMORY_BUDGET_MB" in found.why


def test_the_share_is_capped_by_the_per_process_setting_and_floored() -> None:
    assert memory(sql_memory_budget_mb=100_000, sql_process_memory_mb=512).process_mb == 512
    floored = memory(sql_memory_budget_mb=300)
    assert floored.process_mb == 256
    assert "raised to the 256 MiB floor" in floored.why  # said, never silent


def test_duckdbs_own_limit_wins_when_it_is_lower() -> None:
    assert memory(sql_memory_budget_mb=4096, duckdb_memory_limit="256MiB").duckdb_limit == "256MB"


def test_a_duckdb_limit_in_another_spelling_is_refused_with_what_to_write() -> None:
    with pytest.raises(ValueError, match="write it like 1GB"):
        Settings(duckdb_memory_limit="lots")
