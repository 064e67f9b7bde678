"""Changing data: what a merge and a delete by key cost next to an append and a replace of
the same dataset, through the API with `wait=true` (upload -> version committed), all in
the same run.

A dataset of `rows` rows (id, name, amount, day) is appended, then compacted sorted by its
key into objects of `OBJECT_MB` (compaction_job, as an operator launches it), and given
its key by a first merge. Then, each the median of `repeats`:
- append `change` new rows; merge `change` rows, half updates of stored ids (a contiguous
  range, as a change feed of recent rows is) and half new ids; replace the dataset;
- delete one key; append 2 rows.
The objects each merge rewrote are printed (the objects it left out of the version).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import duckdb

from bench.report import Figure
from lakehouse.runs import DatasetConfig, submit

if TYPE_CHECKING:
    from pathlib import Path

    from bench.harness import Bench

NAME = "keyed"
OBJECT_MB = 16


def measure(bench: Bench, rows: int, change: int, repeats: int) -> None:

    full = _csv(bench.workdir / "keyed.csv", 0, rows)
    post(bench, full, {})
    compact(bench)
    post(bench, _csv(bench.workdir / "first.csv", rows - 1, 1), {"mode": "merge", "key": "id"})
    appends, merges, rewritten, replaces, deletes, tiny = [], [], [], [], [], []
    next_id = rows
    for i in range(repeats):
        appends.append(post(bench, _csv(bench.workdir / f"a{i}.csv", next_id, change), {}))
        next_id += change
        half = change // 2
        merge = _csv(bench.workdir / f"m{i}.csv", next_id - half, change)
        before = objects(bench)
        merges.append(post(bench, merge, {"mode": "merge"}))
        next_id += half
        rewritten.append(len(before - objects(bench)))
        deletes.append(post(bench, _keys(bench.workdir / f"d{i}.csv", [i * 7]), {"mode": "delete"}))
        tiny.append(post(bench, _csv(bench.workdir / f"t{i}.csv", next_id, 2), {}))
        next_id += 2
    for _ in range(repeats):
        replaces.append(post(bench, full, {"mode": "replace"}))
    append, merged, replaced = (statistics.median(x) for x in (appends, merges, replaces))
    deleted, two = statistics.median(deletes), statistics.median(tiny)
    runs = ", ".join(f"{t:.2f}" for t in merges)
    bench.report.add(
        Figure(
            f"merge {change:,} rows (half updates, half inserts) into {rows:,} clustered by key",
            f"{merged:.2f} s = {merged / append:.2f}x an append, {merged / replaced:.3f}x a "
            f"replace (runs: {runs}; objects rewritten: {', '.join(map(str, rewritten))})",
            f"append of {change:,} rows {append:.2f} s; replace of {rows:,} rows {replaced:.2f} s",
            "<= 3x the append and <= 0.2x the replace",
            merged <= 3 * append and merged <= 0.2 * replaced,
        )
    )
    bench.report.add(
        Figure(
            f"delete one key from {rows:,} rows",
            f"{deleted:.2f} s = {deleted / two:.2f}x a 2-row append "
            f"(runs: {', '.join(f'{t:.2f}' for t in deletes)})",
            f"2-row append {two:.2f} s",
            "<= 3x the 2-row append",
            deleted <= 3 * two,
        )
    )


def post(bench: Bench, path: Path, params: dict[str, str]) -> float:
    """Seconds from the upload's first byte to its version committed (`wait=true`)."""
    started = time.perf_counter()
    response = bench.http.post(
        f"{bench.api}/v1/ingest",
        params={"name": NAME, "wait": "true", **params},
        content=path.read_bytes(),
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert response.json()["status"] == "materialized", response.text
    return elapsed


def compact(bench: Bench) -> None:
    """compaction_job, sorted by the key into small objects, launched as an operator does."""
    version = catalog(bench)["version"]
    config = DatasetConfig(operation="compact", target_file_mb=OBJECT_MB, sort_by=["id"])
    submit(bench.settings.resolved_webserver_url, "compaction_job", NAME, config, None, "bench")
    while catalog(bench)["version"] == version:
        time.sleep(0.5)


def catalog(bench: Bench) -> dict:
    response = bench.http.get(f"{bench.api}/v1/catalog/{NAME}")
    response.raise_for_status()
    return response.json()


def objects(bench: Bench) -> set[str]:
    return {o["key"] for o in catalog(bench)["objects"]}


def _csv(path: Path, first: int, rows: int) -> Path:
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT i AS id, 'name ' || i AS name, (i % 100000) / 100 AS amount, "
            f"DATE '2024-01-01' + (i % 365)::INTEGER AS day FROM range({first}, {first + rows}) "
            f"t(i)) TO '{path}' (HEADER)"
        )
    return path


def _keys(path: Path, ids: list[int]) -> Path:
    path.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    return path
