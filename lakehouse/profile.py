"""What the Dagster UI shows of a dataset beyond its schema: per-column statistics and a
preview of the first rows, both as Markdown, from one DuckDB pass over its Parquet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from lakehouse.csvschema import Column
from lakehouse.duck import sql_identifier, sql_string

PREVIEW_ROWS = 10


def parquet_source(urls: Sequence[str]) -> str:
    return f"read_parquet([{', '.join(sql_string(u) for u in urls)}])"


def column_stats(
    con: duckdb.DuckDBPyConnection, urls: Sequence[str], columns: Sequence[Column]
) -> list[dict[str, Any]]:
    """Null count, min, max and approximate distinct count of every column, in one scan."""
    if not urls or not columns:
        return []
    parts = []
    for c in columns:
        q = sql_identifier(c.name)
        parts += [
            f"count(*) - count({q})",
            f"CAST(min({q}) AS VARCHAR)",
            f"CAST(max({q}) AS VARCHAR)",
            f"approx_count_distinct({q})",
        ]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {parquet_source(urls)}").fetchone()
    assert row is not None
    return [
        {
            "column": c.name,
            "nulls": row[4 * i],
            "min": row[4 * i + 1],
            "max": row[4 * i + 2],
            "approx_distinct": row[4 * i + 3],
        }
        for i, c in enumerate(columns)
    ]


def preview_rows(
    con: duckdb.DuckDBPyConnection, urls: Sequence[str], limit: int = PREVIEW_ROWS
) -> list[tuple]:
    if not urls:
        return []
    return con.execute(f"SELECT * FROM {parquet_source(urls)} LIMIT {int(limit)}").fetchall()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")[:80]

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def stats_markdown(stats: list[dict[str, Any]]) -> str:
    header = ["column", "nulls", "min", "max", "approx_distinct"]
    return markdown_table(header, [[s[h] for h in header] for s in stats])
