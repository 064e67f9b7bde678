from pathlib import Path

import duckdb

from lakehouse.publish.profile import markdown_table, preview_rows, stats_markdown


def test_preview_over_parquet_as_markdown(tmp_path: Path) -> None:
    con = duckdb.connect()
    path = str(tmp_path / "p.parquet")
    con.execute(
        f"COPY (SELECT * FROM (VALUES (1, 'a|b'), (2, NULL), (3, 'c')) t(n, s)) TO '{path}'"
    )
    columns = [("n", "INTEGER"), ("s", "VARCHAR")]
    assert preview_rows(con, [path], columns, limit=2) == [(1, "a|b"), (2, None)]
    assert markdown_table(["n", "s"], preview_rows(con, [path], columns, limit=2)) == (
        "| n | s |\n|---|---|\n| 1 | a\\|b |\n| 2 | NULL |"
    )
    assert preview_rows(con, [], columns) == []
    # an object written before a column was added: the column reads NULL
    assert preview_rows(con, [path], [*columns, ("added", "DATE")], limit=1) == [(1, "a|b", None)]


def test_stats_as_markdown() -> None:
    stats = [{"column": "n", "nulls": 0, "min": "1", "max": "3"}]
    assert stats_markdown(stats).splitlines() == [
        "| column | nulls | min | max |",
        "|---|---|---|---|",
        "| n | 0 | 1 | 3 |",
    ]
