"""A version's Parquet objects: written once under keys no other run uses, rewritten into
fewer files (compaction, the small ones merged), and their column statistics, which merge
what each new object adds into the previous ones (never a rescan). A keyed dataset's
objects also carry the range of their first key column (`lakehouse.versions.merge`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from lakehouse.duck import conformed, parquet_source, sql_identifier, sql_string
from lakehouse.formats.csv.convert import PARQUET_FORMAT
from lakehouse.formats.csv.types import Column
from lakehouse.manifest import ColumnStats, DataObject
from lakehouse.store import ObjectStore
from lakehouse.store.layout import object_key

log = logging.getLogger(__name__)


class WriteError(ValueError):
    """The version cannot be built (bad request to compact or rebuild): nothing changed."""


class ObjectWriter:
    """Writes the objects of one dataset's versions for one run."""

    def __init__(
        self,
        store: ObjectStore,
        con: duckdb.DuckDBPyConnection,
        dataset: str,
        run_id: str,
        target_mb: int,
        log_line: Callable[[str], None] = log.info,
    ) -> None:
        self.store, self.con, self.name, self.run_id = store, con, dataset, run_id
        self.target_mb, self.log = target_mb, log_line
        self.range_column: str | None = None  # a keyed dataset's first key column

    def write(
        self,
        files: Sequence[Path],
        key: str,
        written: list[str],
        columns: Sequence[Column] | None = None,
    ) -> DataObject:
        """`files` as one object at `key`, rows in order: in `columns` if given (files of
        other columns are conformed: `conformed`), else all with the same columns, and one
        file uploaded as it is (it was written with the same format settings)."""
        written.append(key)
        con = self.con.cursor()  # its own connection: the caller's may be busy meanwhile
        sources = [str(f) for f in files]
        lo, hi = self._range(con, parquet_source(sources))
        if len(files) == 1 and columns is None:
            count = con.execute(f"SELECT count(*) FROM {parquet_source(sources)}")
            rows = int(count.fetchone()[0])  # type: ignore[index]
            size = self.store.put_file(key, files[0])
            return DataObject(key=key, bytes=size, rows=rows, key_min=lo, key_max=hi)
        rows_sql = (
            conformed(con, sources, _typed(columns))
            if columns
            else (f"SELECT * FROM {parquet_source(sources)}")
        )
        copied = con.execute(
            f"COPY ({rows_sql}) TO {sql_string(self.store.url(key))} ({PARQUET_FORMAT})"
        ).fetchone()
        rows = int(copied[0]) if copied else 0
        return DataObject(key=key, bytes=self.store.size(key), rows=rows, key_min=lo, key_max=hi)

    def with_range(self, obj: DataObject, column: str) -> DataObject:
        """`obj` with the range of `column` (read from the store if not known yet)."""
        if obj.key_min is not None:
            return obj
        lo, hi = self._range(self.con, parquet_source([self.store.url(obj.key)]), column)
        return obj.model_copy(update={"key_min": lo, "key_max": hi})

    def _range(
        self, con: duckdb.DuckDBPyConnection, source: str, column: str | None = None
    ) -> tuple[str | None, str | None]:
        """The least and greatest value of the key column in `source` (text), if keyed."""
        column = column or self.range_column
        if column is None:
            return None, None
        q = sql_identifier(column)
        found = con.execute(f"SELECT min({q})::VARCHAR, max({q})::VARCHAR FROM {source}")
        lo, hi = found.fetchone() or (None, None)
        return lo, hi

    def rewrite(
        self,
        objects: Sequence[DataObject],
        columns: Sequence[Column],
        version: int,
        target_mb: int,
        sort_by: Sequence[str],
        written: list[str],
    ) -> list[DataObject]:
        """`objects` rewritten into files of about `target_mb` in `columns`, sorted if
        asked."""
        if not objects:
            return []
        prefix = object_key(self.name, version, self.run_id, part="-compacted").removesuffix(
            ".parquet"
        )
        # An earlier attempt of this run (a step retry) may have left parts there.
        self.store.delete(list(self.store.list_keys(prefix + "/")))
        rows = conformed(self.con, [self.store.url(o.key) for o in objects], _typed(columns))
        order = f" ORDER BY {', '.join(sql_identifier(c) for c in sort_by)}" if sort_by else ""
        self.con.execute(
            f"COPY ({rows}{order}) "
            f"TO {sql_string(self.store.url(prefix + '/'))} (FORMAT parquet, COMPRESSION zstd, "
            f"FILE_SIZE_BYTES '{int(target_mb)}MB', FILENAME_PATTERN 'part-{{i}}')"
        )
        keys = sorted(self.store.list_keys(prefix + "/"))
        written += keys
        urls = ", ".join(sql_string(self.store.url(k)) for k in keys)
        counts = dict(
            self.con.execute(
                f"SELECT file_name, num_rows FROM parquet_file_metadata([{urls}])"
            ).fetchall()
        )
        rewritten = [
            self._ranged(
                DataObject(key=k, bytes=self.store.size(k), rows=int(counts[self.store.url(k)]))
            )
            for k in keys
        ]
        if sum(o.rows for o in rewritten) != sum(o.rows for o in objects):
            self.store.delete(written)
            raise WriteError(
                f"rewriting {len(objects)} objects of {self.name!r} gave "
                f"{sum(o.rows for o in rewritten)} rows, not {sum(o.rows for o in objects)}: "
                "nothing changed"
            )
        return rewritten

    def _ranged(self, obj: DataObject) -> DataObject:
        if self.range_column is None:
            return obj
        return self.with_range(obj, self.range_column)

    def merge_small(
        self,
        objects: list[DataObject],
        columns: Sequence[Column],
        version: int,
        written: list[str],
    ) -> list[DataObject]:
        """Merge the objects under half the target size into one (or a few): the object
        list stays bounded, and the work is proportional to the small objects only."""
        small_bytes = self.target_mb * 1024 * 1024 // 2
        small = [o for o in objects if o.bytes < small_bytes]
        if len(small) < 2:
            return objects
        large = [o for o in objects if o.bytes >= small_bytes]
        self.log(f"{self.name}: merging {len(small)} small objects into fewer")
        merged = self.rewrite(small, columns, version, self.target_mb, [], written)
        return large + merged

    def stats(
        self, files: Sequence[Path | str], columns: Sequence[Column], only: str = ""
    ) -> list[ColumnStats]:
        """Null count, min and max of each column over the rows of `files` (local, or
        objects' URLs); `only`: a join that keeps some of them (a merge's matched rows)."""
        if not columns or not files:
            return []
        parts = []
        for c in columns:
            q = sql_identifier(c.name)
            parts += [f"count(*) - count({q})", f"min({q})::VARCHAR", f"max({q})::VARCHAR"]
        rows = conformed(self.con, [str(f) for f in files], _typed(columns))
        row = self.con.execute(f"SELECT {', '.join(parts)} FROM ({rows}) AS s {only}").fetchone()
        assert row is not None
        return [
            ColumnStats(column=c.name, nulls=row[3 * i], min=row[3 * i + 1], max=row[3 * i + 2])
            for i, c in enumerate(columns)
        ]


def _typed(columns: Sequence[Column]) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in columns]


def merge_stats(previous: list[ColumnStats], new: list[ColumnStats]) -> list[ColumnStats]:
    """Column statistics of the union of two sets of rows (min/max compared as numbers
    where both sides are numbers, else as text)."""
    before = {s.column: s for s in previous}
    merged = []
    for stats in new:
        old = before.get(stats.column)
        if old is None:
            merged.append(stats)
            continue
        merged.append(
            ColumnStats(
                column=stats.column,
                nulls=old.nulls + stats.nulls,
                min=_pick(old.min, stats.min, min),
                max=_pick(old.max, stats.max, max),
            )
        )
    return merged


def _pick(a: str | None, b: str | None, choose: Callable) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    try:
        return a if choose(float(a), float(b)) == float(a) else b
    except ValueError:  # not numbers: dates and timestamps in ISO form compare as text
        return choose(a, b)


def without_rows(stats: list[ColumnStats], removed: list[ColumnStats]) -> list[ColumnStats]:
    """Statistics once rows whose statistics are `removed` are taken out (a merge): null
    counts drop; min and max stay, still bounds of every value left, if no longer reached."""
    nulls: dict[str, int] = {}
    for gone in removed:
        nulls[gone.column] = nulls.get(gone.column, 0) + gone.nulls
    return [s.model_copy(update={"nulls": s.nulls - nulls.get(s.column, 0)}) for s in stats]
