"""Every CSV is read as its author meant it, or refused, through the run that applies it
(against a real S3 server): the header decides the shape, preambles and comments are
skipped and said, escapes and single quotes are read, types come from the whole file, money
is exact, and nothing vanishes between the file and the version."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from lakehouse.duck import attach_s3
from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.formats.csv.convert import Converted
from lakehouse.formats.csv.options import CsvOptions
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest
from lakehouse.publish.status import ingest_status
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.versions import reading
from tests.helpers import land_csv, run_dataset

pytestmark = pytest.mark.integration


def current(instance: dg.DagsterInstance, name: str) -> Manifest:
    manifest = latest_manifest(instance, name)
    assert manifest is not None
    return manifest


def rows(settings: Settings, store: ObjectStore, manifest: Manifest) -> list[tuple]:
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    urls = ", ".join(f"'{store.url(o.key)}'" for o in manifest.objects)
    return con.sql(f"SELECT * FROM read_parquet([{urls}])").fetchall()


def error_of(instance: dg.DagsterInstance, store: ObjectStore, record) -> str:
    state = ingest_status(instance, store, record)
    assert state.status == "failed" and state.error is not None
    return state.error.message


def test_header_defined_shape_rows_of_another_width_are_bad_rows_not_one_column(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    """`a,b` then `1,2` then 50 lines `x,y,z`: two columns and 50 bad rows, over the
    threshold, so the file fails (never a one-column table named `a,b`)."""
    record = land_csv(store, "shape", b"a,b\n1,2\n" + b"x,y,z\n" * 50)
    assert record.csv_schema.delimiter == "," and len(record.csv_schema.columns) == 2
    run_dataset(instance, settings, "shape")
    message = error_of(instance, store, record)
    assert "50 of 51 rows" in message and "send delimiter=, quote=, escape= or skip=" in message
    assert not current(instance, "shape").contains(record.seq)  # the version decided it


def test_a_preamble_is_skipped_and_said(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    data = b"Quarterly report\nGenerated 2026-12-01\n\nid,amount\n1,10.50\n2,3.25\n"
    record = land_csv(store, "report", data)
    assert (
        record.csv_schema.skip == 3 and "lines 1-3 are a preamble" in record.csv_schema.why["skip"]
    )
    assert run_dataset(instance, settings, "report").success
    manifest = current(instance, "report")
    assert manifest.dialect["skipped_lines"] == 3  # the catalog says how it was read, and why
    assert "lines 1-3 are a preamble" in manifest.dialect["dialect_reasons"]["skip"]
    assert rows(settings, store, manifest) == [
        (1, Decimal("10.50")),
        (2, Decimal("3.25")),
    ]


def test_comment_lines_are_skipped_and_said(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    data = b"# exported by a tool\nid,name\n1,a\n# a note\n2,b\n"
    record = land_csv(store, "notes", data)
    assert record.csv_schema.comment == "#" and "comments" in record.csv_schema.why["comment"]
    assert run_dataset(instance, settings, "notes").success
    manifest = current(instance, "notes")
    assert rows(settings, store, manifest) == [(1, "a"), (2, "b")]


def test_backslash_escapes_and_single_quotes_are_read(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    escaped = land_csv(store, "quotes", b'id,said\n1,"he said \\"hi\\""\n2,"plain"\n')
    assert escaped.csv_schema.escape == "\\"
    assert run_dataset(instance, settings, "quotes").success
    assert rows(settings, store, current(instance, "quotes")) == [(1, 'he said "hi"'), (2, "plain")]
    single = land_csv(store, "single", b"id,v\n1,'a,b'\n2,'c'\n")
    assert single.csv_schema.quote == "'"
    assert run_dataset(instance, settings, "single").success
    assert rows(settings, store, current(instance, "single")) == [(1, "a,b"), (2, "c")]


def test_dialect_parameters_read_what_no_sniffer_can_know(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    options = CsvOptions.parse(delimiter=";", header="false", nulls=["NA"], encoding="latin-1")
    record = land_csv(store, "given", "1;Zoë;NA\n2;Li;3\n".encode("latin-1"), options=options)
    assert record.csv_schema.why["delimiter"] == "given"
    assert run_dataset(instance, settings, "given").success
    manifest = current(instance, "given")
    assert [c.name for c in manifest.columns] == ["column_1", "column_2", "column_3"]
    assert rows(settings, store, manifest) == [(1, "Zoë", None), (2, "Li", 3)]


def late_change(tail: bytes, count: int = 3000) -> bytes:
    return b"id,v\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(count)) + tail


def test_a_late_type_change_widens_a_first_upload(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    """Past the sampled rows, `v` turns decimal (DuckDB would round 3.75 to 4) and then, in
    half the rows, text: the first upload widens it, saying so, and keeps every row."""
    decimals = land_csv(store, "late", late_change(b"3000,3.75\n3001,0.5\n"))
    assert [c.type for c in decimals.csv_schema.columns] == ["BIGINT", "BIGINT"]
    assert run_dataset(instance, settings, "late").success
    manifest = current(instance, "late")
    assert [c.type for c in manifest.columns] == ["BIGINT", "DECIMAL(18,2)"]
    assert "widened from BIGINT over the whole file" in manifest.columns[1].reason
    assert (manifest.row_count, manifest.rejected_rows) == (3002, 0)
    values = {r[0]: r[1] for r in rows(settings, store, manifest)}
    assert values[3000] == Decimal("3.75") and values[7] == Decimal("7.00")

    text = late_change(b"".join(b"%d,n/a\n" % i for i in range(3000, 6000)))
    land_csv(store, "texty", text)
    assert run_dataset(instance, settings, "texty").success
    texty = current(instance, "texty")
    assert texty.columns[1].type == "VARCHAR" and texty.row_count == 6000


def test_a_late_misfit_in_an_append_is_a_rejected_row_never_rounded(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "counts", b"id,v\n1,1\n")
    assert run_dataset(instance, settings, "counts").success
    land_csv(store, "counts", late_change(b"3000,3.75\n", count=3000), instance=instance)
    assert run_dataset(instance, settings, "counts").success
    manifest = current(instance, "counts")
    assert [c.type for c in manifest.columns] == ["BIGINT", "BIGINT"]
    assert (manifest.row_count, manifest.rejected_rows) == (3001, 1)
    assert 3000 not in {r[0] for r in rows(settings, store, manifest)}


def test_a_batch_of_first_uploads_reads_later_ones_with_the_widened_columns(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "pair", late_change(b"3000,3.75\n"))
    land_csv(store, "pair", late_change(b""))  # checked against no dataset: BIGINT
    assert run_dataset(instance, settings, "pair").success
    manifest = current(instance, "pair")
    assert manifest.columns[1].type == "DECIMAL(18,2)"
    assert (manifest.row_count, manifest.rejected_rows) == (6001, 0)


def test_money_sums_exactly(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    prices = [b"24386.67", b"0.10", b"0.20", b"901.01"] * 50
    land_csv(store, "money", b"price\n" + b"\n".join(prices) + b"\n")
    assert run_dataset(instance, settings, "money").success
    manifest = current(instance, "money")
    assert manifest.columns[0].type == "DECIMAL(18,2)"
    con = duckdb.connect()
    attach_s3(con, settings.s3())
    [(total,)] = con.sql(
        f"SELECT sum(price) FROM '{store.url(manifest.objects[0].key)}'"
    ).fetchall()
    assert total == sum(Decimal(p.decode()) for p in prices)


def test_a_zero_row_file_with_data_lines_fails_and_nothing_is_committed(
    instance: dg.DagsterInstance,
    settings: Settings,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader that returned no rows and no rejects for a file with data lines (the bug
    this guards against: a quoted header read strictly) fails that file, by its lines."""
    good = land_csv(store, "vanish", b"id\n1\n")
    lost = land_csv(store, "vanish", b"id\n2\n3\n")
    real = reading.csv_to_parquet

    def reader_that_drops_everything(con, source, target, schema, **kwargs) -> Converted:
        converted = real(con, source, target, schema, **kwargs)
        if not source.endswith(lost.landing_key):
            return converted
        return replace(converted, rows=0, account=LineAccount(2, 0, 0, "reading"))

    monkeypatch.setattr(reading, "csv_to_parquet", reader_that_drops_everything)
    result = run_dataset(instance, settings, "vanish")
    assert result.success
    assert "of its 2 data lines, 0 were read as rows and 0 rejected: 2 would vanish" in error_of(
        instance, store, lost
    )
    manifest = current(instance, "vanish")
    assert manifest.row_count == 1 and manifest.contains(good.seq)
    [check] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "every_line_accounted"
    ]
    assert check.passed and check.metadata["data_lines"].value == 1


def test_every_applied_file_accounts_for_its_lines(
    instance: dg.DagsterInstance, settings: Settings, store: ObjectStore
) -> None:
    land_csv(store, "lines", b'id,note\n1,"two\nlines"\n\n2,x\n')  # a quoted break, a blank
    land_csv(store, "lines", b"id,note\n3,y\n4,z,extra\n" + b"5,w\n" * 200)
    result = run_dataset(instance, settings, "lines")
    assert result.success
    [check] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "every_line_accounted"
    ]
    assert check.passed
    meta = {k: v.value for k, v in check.metadata.items()}
    assert (meta["data_lines"], meta["rows"], meta["rejected"]) == (204, 203, 1)
    assert meta["counted_by"] == "line ends, reading"
