"""A burst of small files read together: plain CSV appends of the dataset's columns, read
alike, become one DuckDB read and one local file, with each file still decided on its own
(duplicates in log order, its own line account); a file with a line that does not become
a row sends the whole batch back to one file at a time, which says which and why; and a
run dying at each step of the batched path, then recovering, applies every file once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from lakehouse.versions import reading
from lakehouse.versions.commit import Published, Unchanged
from tests.helpers import land_csv
from tests.integration.lakehouse.versions.harness import (
    STEP_IDS,
    STEPS,
    Died,
    ListCatalog,
    assert_consistent,
    con,
    dies,
    rows,
    run,
    tables,
)

pytestmark = pytest.mark.integration
__all__ = ["con", "tables"]  # fixtures


def small(first: int, count: int = 3) -> bytes:
    return b"n,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(first, first + count))


def test_clean_appends_are_read_together_each_decided_in_log_order(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", small(0))
    run(store, tables, catalog, con, tmp_path)
    sent = [land_csv(store, "events", small(first)) for first in (10, 20, 30)]
    again = land_csv(store, "events", small(20))  # the same bytes as one before it
    applied_before = land_csv(store, "events", small(0))  # the bytes of version 1
    monkeypatch.setattr(reading, "csv_to_parquet", dies(reading.csv_to_parquet, after=False))
    result = run(store, tables, catalog, con, tmp_path)
    assert isinstance(result, Published)
    statuses = {o.ingest_id: (o.status, o.duplicate_of) for o in result.record.outcomes}
    assert statuses == {
        **{record.ingest_id: ("applied", None) for record in sent},
        again.ingest_id: ("duplicate", sent[1].ingest_id),
        applied_before.ingest_id: ("duplicate", catalog.versions["events"][0].added_ingest_ids[0]),
    }
    assert rows(con, store, catalog) == [*range(3), *range(10, 13), *range(20, 23), *range(30, 33)]
    manifest = catalog.latest("events")
    assert manifest is not None and len(manifest.objects) == 2  # v1's, and one for the batch
    assert_consistent(store, tables, catalog)


def test_a_new_datasets_first_file_defines_its_columns_and_the_rest_are_read_together(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst to a dataset that does not exist yet: its first file is read alone (it
    says what the columns are), the others in one read; a replace after them starts over
    on its own, and the appends after it are read together again."""
    catalog = ListCatalog()
    reads: list[str] = []
    for name in ("csv_to_parquet", "csv_files_to_parquet"):
        real = getattr(reading, name)
        monkeypatch.setattr(reading, name, _counted(real, name, reads))
    sent = [land_csv(store, "events", small(first)) for first in (0, 10, 20, 30)]
    replaced = land_csv(store, "events", small(100), mode="replace")
    after = [land_csv(store, "events", small(first)) for first in (110, 120)]
    result = run(store, tables, catalog, con, tmp_path)
    assert isinstance(result, Published)
    assert {o.ingest_id: o.status for o in result.record.outcomes} == {
        r.ingest_id: "applied" for r in [*sent, replaced, *after]
    }
    assert rows(con, store, catalog) == [*range(100, 103), *range(110, 113), *range(120, 123)]
    assert reads == ["csv_to_parquet", "csv_files_to_parquet"] * 2
    assert_consistent(store, tables, catalog)


def _counted(real: Any, name: str, calls: list[str]) -> Any:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(*args, **kwargs)

    return counted


def test_a_file_with_a_bad_line_sends_the_batch_back_to_one_at_a_time(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
) -> None:
    """A value past the sampled lines that is no number: read together, its line would be
    one row short, so each file is read alone, and that line is a reject of its file."""
    catalog = ListCatalog()
    land_csv(store, "events", small(0))
    run(store, tables, catalog, con, tmp_path)
    good = [land_csv(store, "events", small(first)) for first in (10, 20)]
    values = [b"%d" % n for n in range(1000, 2100)]
    values[1050] = b"forty-one"
    bad = land_csv(store, "events", b"n,name\n" + b"".join(b"%s,x\n" % v for v in values))
    result = run(store, tables, catalog, con, tmp_path)
    assert isinstance(result, Published)
    assert {o.ingest_id: o.status for o in result.record.outcomes} == {
        good[0].ingest_id: "applied",
        good[1].ingest_id: "applied",
        bad.ingest_id: "applied",  # 1 bad row of 1,100: within the share of rejects
    }
    assert rows(con, store, catalog) == sorted(
        [*range(3), *range(10, 13), *range(20, 23), *(n for n in range(1000, 2100) if n != 2050)]
    )
    manifest = catalog.latest("events")
    assert manifest is not None and len(manifest.rejects) == 1
    [(line,)] = con.execute(
        "SELECT csv_line FROM read_parquet(?)", [store.url(manifest.rejects[0].key)]
    ).fetchall()
    assert line == "forty-one,x"
    assert_consistent(store, tables, catalog)


TOGETHER_STEPS = [(reading, "csv_files_to_parquet", False), *STEPS[1:]]


@pytest.mark.parametrize(("module", "step", "after"), TOGETHER_STEPS, ids=STEP_IDS)
def test_reading_together_dying_at_each_step_then_recovering_applies_once(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
    after: bool,
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", small(0))
    run(store, tables, catalog, con, tmp_path)
    for first in (10, 20, 30):
        land_csv(store, "events", small(first))
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        run(store, tables, catalog, con, tmp_path)
    for _ in range(2):
        assert isinstance(run(store, tables, catalog, con, tmp_path), Published | Unchanged)
    assert rows(con, store, catalog) == [*range(3), *range(10, 13), *range(20, 23), *range(30, 33)]
    assert_consistent(store, tables, catalog)
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.version == 2
