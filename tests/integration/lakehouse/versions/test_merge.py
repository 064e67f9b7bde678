"""Merge and delete by key, through the one commit path (`VersionCommit`, a real S3 server
and Iceberg catalog): the table a merge gives is the one DuckDB's own `MERGE INTO` gives on
the same inputs; it reads only the objects whose key range can hold its keys; and for each
step of a run where the process dies, then recovers, every acknowledged change is in the
dataset once, and an upload sent again changes nothing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lakehouse.ingest.records import Mode
from lakehouse.manifest import Manifest
from lakehouse.publish.iceberg import IcebergTables
from lakehouse.store import ObjectStore
from lakehouse.versions import merge
from lakehouse.versions.build import Request, next_version
from lakehouse.versions.commit import Published, Result, Unchanged
from lakehouse.versions.commits import RowChanges
from lakehouse.versions.writer import Writer
from tests.helpers import land_csv
from tests.integration.lakehouse.versions.harness import (
    STEP_IDS,
    STEPS,
    Died,
    ListCatalog,
    assert_consistent,
    con,
    dies,
    run,
    tables,
)

pytestmark = pytest.mark.integration
__all__ = ["con", "tables"]  # fixtures

BASE = b"id,name,score\n1,a,10\n2,b,20\n3,c,30\n4,d,40\n5,e,50\n6,f,60\n"
MERGE = b"id,name,score,_deleted\n2,B,21,false\n3,,,true\n7,g,70,\n"
DELETE = b"id\n4\n5\n99\n"
EXPECTED: dict[Mode, list[tuple[Any, ...]]] = {
    "merge": [(1, "a", 10), (2, "B", 21), (4, "d", 40), (5, "e", 50), (6, "f", 60), (7, "g", 70)],
    "delete": [(1, "a", 10), (2, "b", 20), (3, "c", 30), (6, "f", 60)],
}
CHANGES = {
    "merge": RowChanges(inserted=1, updated=1, deleted=1),
    "delete": RowChanges(inserted=0, updated=0, deleted=2),
}
FILES = {"merge": MERGE, "delete": DELETE}


def table(con: duckdb.DuckDBPyConnection, store: ObjectStore, manifest: Manifest | None) -> list:
    if manifest is None or not manifest.objects:
        return []
    urls = [store.url(o.key) for o in manifest.objects]
    return con.execute("SELECT * FROM read_parquet(?) ORDER BY ALL", [urls]).fetchall()


def outcome_changes(result: Result) -> list[RowChanges | None]:
    assert isinstance(result, Published)
    return [o.changes for o in result.record.outcomes]


def test_a_merge_gives_the_table_duckdbs_merge_into_gives(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Updates, inserts, `_deleted` rows (of stored keys and of unknown ones), NULL values
    in other columns: the same files through DuckDB's `MERGE INTO` give the same table."""
    rng = random.Random(27)
    base = ["id,name,score"] + [f"{i},n{i},{rng.randint(0, 999)}" for i in range(1, 2001)]
    change = ["id,name,score,_deleted"]
    for i in rng.sample(range(1, 3001), 900):
        deleted = rng.choice(["true", "false", ""])
        score = "" if rng.random() < 0.1 else str(rng.randint(0, 999))
        change.append(f"{i},m{i},{score},{deleted}")
    files = {}
    for name, lines in (("base", base), ("change", change)):
        files[name] = tmp_path / f"{name}.csv"
        files[name].write_text("\n".join(lines) + "\n")

    catalog = ListCatalog()
    land_csv(store, "events", files["base"].read_bytes())
    run(store, tables, catalog, con, tmp_path)
    data = files["change"].read_bytes()
    land_csv(store, "events", data, mode="merge", key=["id"], current=catalog.latest("events"))
    result = run(store, tables, catalog, con, tmp_path)

    with duckdb.connect() as duck:
        duck.execute(f"CREATE TABLE t AS FROM read_csv('{files['base']}')")
        duck.execute(f"CREATE TABLE s AS FROM read_csv('{files['change']}')")
        duck.execute(
            "MERGE INTO t USING s ON t.id = s.id "
            "WHEN MATCHED AND coalesce(s._deleted, false) THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET name = s.name, score = s.score "
            "WHEN NOT MATCHED AND NOT coalesce(s._deleted, false) "
            "THEN INSERT (id, name, score) VALUES (s.id, s.name, s.score)"
        )
        expected = duck.execute("FROM t ORDER BY ALL").fetchall()
        counts = duck.execute(
            "SELECT count(*) FILTER (WHERE t.id IS NULL AND NOT coalesce(s._deleted, false)), "
            "count(*) FILTER (WHERE t.id IS NOT NULL AND NOT coalesce(s._deleted, false)), "
            "count(*) FILTER (WHERE t.id IS NOT NULL AND coalesce(s._deleted, false)) "
            f"FROM s LEFT JOIN read_csv('{files['base']}') t USING (id)"
        ).fetchone()
    assert table(con, store, catalog.latest("events")) == expected
    assert counts is not None
    assert outcome_changes(result) == [
        RowChanges(inserted=counts[0], updated=counts[1], deleted=counts[2])
    ]
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.key == ["id"] and manifest.row_count == len(expected)
    nulls = {s.column: s.nulls for s in manifest.stats}  # rows out, rows in: counted exactly
    assert nulls == {"id": 0, "name": 0, "score": sum(1 for r in expected if r[2] is None)}
    assert_consistent(store, tables, catalog)


def test_a_merge_reads_only_the_objects_whose_key_range_holds_its_keys(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    for first in (1, 11, 21):  # one object per run: ids 1-10, 11-20, 21-30
        land_csv(
            store,
            "events",
            b"id,v\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(first, first + 10)),
        )
        run(store, tables, catalog, con, tmp_path)
    before = catalog.latest("events")
    assert before is not None and len(before.objects) == 3
    land_csv(store, "events", b"id,v\n15,-15\n31,31\n", mode="merge", key=["id"], current=before)
    run(store, tables, catalog, con, tmp_path)

    after = catalog.latest("events")
    assert after is not None
    kept = {o.key for o in after.objects} & {o.key for o in before.objects}
    assert kept == {before.objects[0].key, before.objects[2].key}  # the middle one rewritten
    assert all(o.key_min is not None for o in after.objects)
    assert after.row_count == 31
    assert table(con, store, after)[14] == (15, -15)
    assert_consistent(store, tables, catalog)


def test_a_key_given_twice_fails_the_ingest_unless_dedup_says_which_row_wins(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", b"id,v\n1,1\n")
    run(store, tables, catalog, con, tmp_path)
    twice = b"id,v\n1,10\n1,11\n2,20\n"
    land_csv(
        store,
        "events",
        twice,
        mode="merge",
        key=["id"],
        dedup="last",
        current=catalog.latest("events"),
    )
    land_csv(
        store,
        "events",
        twice + b"3,30\n",
        mode="merge",
        key=["id"],
        dedup="first",
        current=catalog.latest("events"),
    )
    result = run(store, tables, catalog, con, tmp_path)
    assert outcome_changes(result) == [
        RowChanges(inserted=1, updated=1),
        RowChanges(inserted=1, updated=2),
    ]
    assert table(con, store, catalog.latest("events")) == [(1, 10), (2, 20), (3, 30)]


@pytest.mark.parametrize("mode", ["merge", "delete"])
@pytest.mark.parametrize(
    ("module", "step", "after"),
    [*STEPS, (ObjectStore, "get_file", True), (merge.Merger, "_counted", False)],
    ids=[*STEP_IDS, "object-read", "rows-merged"],
)
def test_a_keyed_change_dying_at_each_step_then_recovering_applies_once(
    store: ObjectStore,
    tables: IcebergTables,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: Mode,
    module: Any,
    step: str,
    after: bool,
) -> None:
    catalog = ListCatalog()
    land_csv(store, "events", BASE)
    run(store, tables, catalog, con, tmp_path)
    land_csv(store, "events", FILES[mode], mode=mode, key=["id"], current=catalog.latest("events"))
    with monkeypatch.context() as patch, pytest.raises(Died):
        patch.setattr(module, step, dies(getattr(module, step), after=after))
        run(store, tables, catalog, con, tmp_path)

    for _ in range(2):  # recovery: whatever runs next, as often as it likes
        result = run(store, tables, catalog, con, tmp_path)
        assert isinstance(result, Published | Unchanged), result
    assert table(con, store, catalog.latest("events")) == EXPECTED[mode]
    assert_consistent(store, tables, catalog)
    decided = [o for m in catalog.versions["events"] for o in _outcomes(store, m)]
    assert [o.changes for o in decided if o.seq == 2] == [CHANGES[mode]]  # decided once

    again = land_csv(store, "events", FILES[mode], mode=mode, current=catalog.latest("events"))
    assert again.seq == 2  # sent again: the ingest that has these bytes, nothing committed
    assert run(store, tables, catalog, con, tmp_path).__class__ is Unchanged


def _outcomes(store: ObjectStore, manifest: Manifest) -> list:
    from lakehouse.versions.commits import read_commit

    record = read_commit(store, manifest.name, manifest.version)
    return record.outcomes if record else []


def test_a_merge_racing_an_append_commits_each_change_once(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Run A builds the merge; meanwhile an append lands and run B commits both. A's claim
    finds the version taken; built again on B's, nothing is left: the merge counted once,
    the append after it kept."""
    catalog = ListCatalog()
    land_csv(store, "events", BASE)
    run(store, tables, catalog, con, tmp_path)
    land_csv(store, "events", MERGE, mode="merge", key=["id"], current=catalog.latest("events"))
    raced = False

    def build_while_b_commits(writer_a: Writer, base: Manifest) -> Any:
        nonlocal raced
        built = next_version(writer_a, store, base, Request(only_if_pending=True))
        if not raced:
            raced = True
            land_csv(store, "events", b"id,name,score\n8,h,80\n", current=catalog.latest("events"))
            assert isinstance(run(store, tables, catalog, con, tmp_path / "b"), Published)
        return built

    (tmp_path / "b").mkdir()
    result = run(store, tables, catalog, con, tmp_path, build=build_while_b_commits)
    assert isinstance(result, Unchanged) and result.base.version == 2
    assert table(con, store, catalog.latest("events")) == [*EXPECTED["merge"], (8, "h", 80)]
    assert_consistent(store, tables, catalog)


def test_a_delete_racing_a_compaction_deletes_once_from_the_compacted_objects(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Run A builds the delete on version 1; meanwhile run B compacts version 1 into
    version 2. A's claim finds version 2 taken: A builds again on B's objects, and the
    delete takes the keys out of those."""
    catalog = ListCatalog()
    land_csv(store, "events", BASE)
    run(store, tables, catalog, con, tmp_path)
    land_csv(store, "events", b"id,name,score\n9,i,90\n")  # a second object to compact
    run(store, tables, catalog, con, tmp_path)
    land_csv(store, "events", DELETE, mode="delete", key=["id"], current=catalog.latest("events"))
    raced = False

    def build_while_b_compacts(writer_a: Writer, base: Manifest) -> Any:
        nonlocal raced
        built = next_version(writer_a, store, base, Request(only_if_pending=True))
        if not raced:
            raced = True
            compacted = run(
                store,
                tables,
                catalog,
                con,
                tmp_path / "b",
                build=lambda w, b: next_version(w, store, b, Request(operation="compact")),
            )
            assert isinstance(compacted, Published)
        return built

    (tmp_path / "b").mkdir()
    result = run(store, tables, catalog, con, tmp_path, build=build_while_b_compacts)
    assert isinstance(result, Published) and result.record.version == 4
    assert table(con, store, catalog.latest("events")) == [*EXPECTED["delete"], (9, "i", 90)]
    assert outcome_changes(result) == [CHANGES["delete"]]
    assert_consistent(store, tables, catalog)


def test_merges_in_one_batch_each_see_the_rows_the_one_before_kept(
    store: ObjectStore, tables: IcebergTables, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """The first merge leaves the object out and keeps its other rows; the second merge's
    key is among those kept rows: it must replace it there, not add a second row."""
    catalog = ListCatalog()
    land_csv(store, "events", BASE)
    run(store, tables, catalog, con, tmp_path)
    current = catalog.latest("events")
    land_csv(store, "events", b"id,name,score\n1,A,11\n", mode="merge", key=["id"], current=current)
    land_csv(store, "events", b"id,name,score\n2,B,22\n", mode="merge", key=["id"], current=current)
    land_csv(store, "events", b"id\n3\n", mode="delete", key=["id"], current=current)
    result = run(store, tables, catalog, con, tmp_path)
    assert outcome_changes(result) == [
        RowChanges(updated=1),
        RowChanges(updated=1),
        RowChanges(deleted=1),
    ]
    assert table(con, store, catalog.latest("events")) == [
        (1, "A", 11),
        (2, "B", 22),
        (4, "d", 40),
        (5, "e", 50),
        (6, "f", 60),
    ]
    manifest = catalog.latest("events")
    assert manifest is not None and manifest.stats[0].nulls == 0
    assert_consistent(store, tables, catalog)
