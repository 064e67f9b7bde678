"""What the Dagster UI shows of a dataset beyond its schema: per-column statistics and a
preview of the first rows, both as Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from lakehouse.duck import conformed

PREVIEW_ROWS = 10


def preview_rows(
    con: duckdb.DuckDBPyConnection,
    urls: Sequence[str],
    columns: Sequence[tuple[str, str]],
    limit: int = PREVIEW_ROWS,
) -> list[tuple]:
    """The first rows of the objects at `urls`, in the version's (name, type) `columns`."""
    if not urls:
        return []
    return con.execute(f"{conformed(con, urls, columns)} LIMIT {int(limit)}").fetchall()


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
    header = ["column", "nulls", "min", "max"]
    return markdown_table(header, [[s[h] for h in header] for s in stats])
