from pathlib import Path

import duckdb

from lakehouse.csvschema import Column
from lakehouse.profile import column_stats, markdown_table, preview_rows


def test_stats_and_preview_over_parquet(tmp_path: Path) -> None:
    con = duckdb.connect()
    path = str(tmp_path / "p.parquet")
    con.execute(
        f"COPY (SELECT * FROM (VALUES (1, 'a|b'), (2, NULL), (3, 'c')) t(n, s)) TO '{path}'"
    )
    stats = column_stats(con, [path], [Column("n", "BIGINT", ""), Column("s", "VARCHAR", "")])
    assert stats == [
        {"column": "n", "nulls": 0, "min": "1", "max": "3", "approx_distinct": 3},
        {"column": "s", "nulls": 1, "min": "a|b", "max": "c", "approx_distinct": 2},
    ]
    assert preview_rows(con, [path], limit=2) == [(1, "a|b"), (2, None)]
    assert markdown_table(["n", "s"], preview_rows(con, [path], limit=2)) == (
        "| n | s |\n|---|---|\n| 1 | a\\|b |\n| 2 | NULL |"
    )
    assert column_stats(con, [], []) == []
