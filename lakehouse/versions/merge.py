"""Merge and delete by key: what a keyed ingest does to the rows already there.

A merge file's rows replace the stored rows with the same key and add the new keys; its
rows whose `_deleted` is true (and every row of a delete file) only take their key's rows
out. Within one apply, each keyed file acts on everything before it in log order: the
rows earlier entries of the batch add (local files, filtered in place) and the objects of
the version it builds on. Of those, only the objects whose key range (`DataObject.key_min`,
`key_max`, of the first key column) holds one of the file's keys are read; an object that
holds one is left out of the version and its other rows become an object of their own
(uploaded as they were written), so a merge's cost follows the objects it touches, not the
dataset's size.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import duckdb

from lakehouse.duck import sql_identifier, sql_string
from lakehouse.formats.csv.convert import PARQUET_FORMAT
from lakehouse.ingest.changes import key_faults
from lakehouse.ingest.records import DELETED, IngestRecord
from lakehouse.manifest import DataObject
from lakehouse.store import ObjectStore
from lakehouse.versions.batch import Batch, Carried, ConvertedFile
from lakehouse.versions.commits import RowChanges
from lakehouse.versions.objects import ObjectWriter

log = logging.getLogger(__name__)


class ChangeRefused(ValueError):
    """The keyed file cannot be applied (a NULL or repeated key): nothing of it is."""


class Merger:
    """Applies keyed files to a batch, in DuckDB over local files; `scratch` holds them."""

    def __init__(
        self,
        store: ObjectStore,
        con: duckdb.DuckDBPyConnection,
        objects: ObjectWriter,
        scratch: Path,
        log_line: Callable[[str], None] = log.info,
    ) -> None:
        self.store, self.con, self.objects = store, con, objects
        self.scratch, self.log = scratch, log_line
        self._names = itertools.count(1)

    def apply(self, state: Batch, converted: ConvertedFile) -> RowChanges:
        """Apply one keyed file (converted) to `state`; `ChangeRefused` leaves it as it was."""
        entry = converted.record
        key = [sql_identifier(k) for k in state.key]
        assert converted.data is not None
        upserts = self._load(entry, converted.data, key, state)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE matched AS SELECT {', '.join(key)} FROM change_keys "
            "LIMIT 0"
        )
        for file in state.converted:  # the rows earlier entries of this batch add
            if file.data is not None:
                file.data = self._without_keys(file.data, key) or file.data
        state.carried = [  # and those earlier merges of this batch kept of objects
            replace(c, path=self._without_keys(c.path, key) or c.path) for c in state.carried
        ]
        self._rewrite_objects(state, key)
        changes = self._counted(key, upserts)
        converted.data = self._upserts_file(entry, state) if upserts else None
        state.changed_rows = state.changed_rows or changes.updated + changes.deleted > 0
        return changes

    def _load(self, entry: IngestRecord, data: Path, key: list[str], state: Batch) -> int:
        """The file's rows (`change_rows`, one per key) and its keys with whether each is a
        delete (`change_keys`); the number of rows to upsert."""
        order = "file_row_number DESC" if entry.dedup == "last" else "file_row_number"
        keep_one = (
            f" QUALIFY row_number() OVER (PARTITION BY {', '.join(key)} ORDER BY {order}) = 1"
            if entry.dedup != "none"
            else ""
        )
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE change_rows AS SELECT * EXCLUDE (file_row_number) "
            f"FROM read_parquet({sql_string(str(data))}, file_row_number = true){keep_one} "
            "ORDER BY file_row_number"
        )
        self._refuse_bad_keys(state.key)
        names = {c.name for c in entry.csv_schema.columns}
        if entry.mode == "delete":
            deleted = "true"
        elif DELETED in names:
            deleted = f"coalesce({sql_identifier(DELETED)}, false)"
        else:
            deleted = "false"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE change_keys AS SELECT {', '.join(key)}, "
            f"{deleted} AS _deleted FROM change_rows"
        )
        found = self.con.execute("SELECT count(*) FILTER (WHERE NOT _deleted) FROM change_keys")
        return int(found.fetchone()[0])  # type: ignore[index]

    def _refuse_bad_keys(self, key: list[str]) -> None:
        """The API refused these before the commit point; a run checks again all the same
        (`ingest.changes.key_faults`, the one check)."""
        nulls, repeated, examples = key_faults(self.con, "change_rows", key)
        if nulls:
            raise ChangeRefused(f"{nulls} rows have no value in a key column")
        if repeated:
            raise ChangeRefused(
                f"{repeated} keys occur more than once in the file (e.g. {examples}): send "
                "each key once, or dedup=last or dedup=first"
            )

    def _without_keys(self, source: Path, key: list[str]) -> Path | None:
        """`source` without the rows whose key the file changes (a new local file), their
        keys noted in `matched`; None when it holds none."""
        src = f"read_parquet({sql_string(str(source))})"
        before = self._count("SELECT count(*) FROM matched")
        self.con.execute(
            f"INSERT INTO matched SELECT {', '.join(key)} FROM {src} "
            f"SEMI JOIN change_keys USING ({', '.join(key)})"
        )
        if self._count("SELECT count(*) FROM matched") == before:
            return None
        kept = self.scratch / f"kept-{next(self._names)}.parquet"
        self.con.execute(
            f"COPY (SELECT * FROM {src} ANTI JOIN change_keys USING ({', '.join(key)})) "
            f"TO {sql_string(str(kept))} ({PARQUET_FORMAT})"
        )
        return kept

    def _rewrite_objects(self, state: Batch, key: list[str]) -> None:
        """Leave out of the version each object that holds a changed key; carry its other
        rows into an object of their own. The statistics lose the rows taken out."""
        touched = self._candidates(state, key[0])
        for obj in touched:
            local = self.scratch / f"object-{next(self._names)}.parquet"
            self.store.get_file(obj.key, local)
            kept = self._without_keys(local, key)
            if kept is None:
                continue
            state.objects.remove(obj)
            matched = f"SEMI JOIN change_keys USING ({', '.join(key)})"
            state.removed += self.objects.stats([local], state.columns, matched)
            written_as = obj.schema_fingerprint or state.base.schema_fingerprint
            state.carried.append(Carried(kept, written_as))
        self.log(f"{state.base.name}: {len(touched)} of the objects can hold the changed keys")

    def _candidates(self, state: Batch, first_key: str) -> list[DataObject]:
        """The objects whose key range holds one of the changed keys (ranges not known yet
        are read first, and kept in the manifest)."""
        state.objects = [self.objects.with_range(o, state.key[0]) for o in state.objects]
        ranged = [(i, o) for i, o in enumerate(state.objects) if o.key_min is not None]
        if not ranged:
            return []
        key_type = next(c.type for c in state.columns if c.name == state.key[0])
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE object_ranges (i INTEGER, lo {key_type}, hi {key_type})"
        )
        self.con.executemany(
            "INSERT INTO object_ranges VALUES (?, ?, ?)",
            [(i, o.key_min, o.key_max) for i, o in ranged],
        )
        hits = self.con.execute(
            "SELECT DISTINCT r.i FROM object_ranges r JOIN change_keys c "
            f"ON c.{first_key} BETWEEN r.lo AND r.hi ORDER BY 1"
        ).fetchall()
        return [state.objects[i] for (i,) in hits]

    def _counted(self, key: list[str], upserts: int) -> RowChanges:
        joined = self.con.execute(
            "SELECT count(*) FILTER (WHERE NOT c._deleted), count(*) FILTER (WHERE c._deleted), "
            f"count(DISTINCT ({', '.join(f'm.{k}' for k in key)})) FILTER (WHERE NOT c._deleted)"
            f" FROM matched m JOIN change_keys c USING ({', '.join(key)})"
        ).fetchone()
        assert joined is not None
        updated, deleted, updated_keys = (int(n) for n in joined)
        return RowChanges(inserted=upserts - updated_keys, updated=updated, deleted=deleted)

    def _upserts_file(self, entry: IngestRecord, state: Batch) -> Path:
        """The rows the file adds: its rows that are not deletes, in the dataset's columns."""
        target = self.scratch / f"{entry.seq}.upserts.parquet"
        columns = ", ".join(f"r.{sql_identifier(c.name)}" for c in state.columns)
        key = ", ".join(sql_identifier(k) for k in state.key)
        self.con.execute(
            f"COPY (SELECT {columns} FROM change_rows r JOIN change_keys c USING ({key}) "
            f"WHERE NOT c._deleted) TO {sql_string(str(target))} ({PARQUET_FORMAT})"
        )
        return target

    def _count(self, query: str) -> int:
        found = self.con.execute(query).fetchone()
        return int(found[0]) if found else 0
