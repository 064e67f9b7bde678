"""Asset checks on the dataset asset, evaluated on each new manifest *before* it is
committed: if a blocking check fails, the run fails and no new version appears, so the API
keeps serving the previous one. Each check reads object footers and sizes, never rows, so
its cost follows the (bounded) number of objects, not the dataset's size.

`iceberg_snapshot_matches` is evaluated after the Iceberg commit (it checks that commit),
still before the version is emitted."""

from __future__ import annotations

import dagster as dg
import duckdb
from botocore.exceptions import ClientError

from lakehouse.accounting import LineAccount
from lakehouse.catalog import DATASET_ASSET_KEY, Manifest
from lakehouse.duck import sql_string
from lakehouse.iceberg import IcebergTables
from lakehouse.profile import parquet_source
from lakehouse.storage import ObjectStore

check_specs = [
    dg.AssetCheckSpec(
        "schema_matches_contract",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="The Parquet objects have exactly the manifest's columns and types.",
    ),
    dg.AssetCheckSpec(
        "row_count_matches",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="The objects hold the manifest's row count, and it is positive unless "
        "every source file was header-only (or nothing was applied yet).",
    ),
    dg.AssetCheckSpec(
        "rejected_share_under_threshold",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="Rows that could not be read stay under the allowed share.",
    ),
    dg.AssetCheckSpec(
        "every_line_accounted",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="For every file the version applied, rows stored + rows rejected = the "
        "data lines read (nothing vanished between the file and the version).",
    ),
    dg.AssetCheckSpec(
        "objects_exist_with_recorded_sizes",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="Every object the manifest lists is in the bucket with its recorded size.",
    ),
    dg.AssetCheckSpec(
        "iceberg_snapshot_matches",
        asset=DATASET_ASSET_KEY,
        blocking=True,
        description="The Iceberg table's current snapshot is this version: its row count, "
        "its data files (exactly the manifest's objects) and its columns.",
    ),
]

ICEBERG_CHECK = "iceberg_snapshot_matches"


def evaluate(
    manifest: Manifest,
    store: ObjectStore,
    con: duckdb.DuckDBPyConnection,
    max_reject_share: float,
    allow_empty: bool,
    accounts: dict[str, LineAccount] | None = None,
) -> list[dg.AssetCheckResult]:
    """The checks of a version before it is committed; `accounts`: where the lines of each
    file it applied went (None: a version another run built and accounted for)."""
    urls = [store.url(o.key) for o in manifest.objects]
    return [
        _schema(manifest, con, urls),
        _rows(manifest, con, urls, allow_empty or not manifest.objects),
        _rejects(manifest, max_reject_share),
        _lines(accounts),
        _objects(manifest, store),
    ]


def iceberg(manifest: Manifest, tables: IcebergTables) -> dg.AssetCheckResult:
    """Run after the version's Iceberg commit: the table's current snapshot is the version."""
    problems = tables.verify(manifest)
    return _result(
        ICEBERG_CHECK,
        not problems,
        snapshot_id=str(manifest.iceberg.snapshot_id) if manifest.iceberg else "none",
        problems="; ".join(problems) or "none",
    )


def unchanged(manifest: Manifest) -> list[dg.AssetCheckResult]:
    """A run that commits nothing: the current version stands as it was checked."""
    note = f"no new version: v{manifest.version} stands"
    return [_result(str(spec.name), True, note=note) for spec in check_specs]


def _result(name: str, passed: bool, **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=DATASET_ASSET_KEY,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=dict(metadata),  # type: ignore[arg-type]
    )


def _schema(manifest: Manifest, con: duckdb.DuckDBPyConnection, urls: list[str]):
    expected = [(c.name, c.type) for c in manifest.columns]
    if not urls:
        return _result("schema_matches_contract", True, note="no objects yet")
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {parquet_source(urls)}").fetchall()
    except duckdb.Error as exc:
        return _result("schema_matches_contract", False, error=f"objects unreadable: {exc}")
    found = [(name, str(kind)) for name, kind, *_ in described]
    return _result(
        "schema_matches_contract",
        found == expected,
        expected=str(expected),
        found=str(found),
    )


def _rows(manifest: Manifest, con: duckdb.DuckDBPyConnection, urls: list[str], allow_empty: bool):
    counted = 0
    if urls:
        try:
            row = con.execute(
                "SELECT sum(num_rows) FROM "
                f"parquet_file_metadata([{', '.join(sql_string(u) for u in urls)}])"
            ).fetchone()
        except duckdb.Error as exc:
            return _result("row_count_matches", False, error=f"objects unreadable: {exc}")
        counted = int(row[0] or 0) if row else 0
    passed = counted == manifest.row_count and (counted > 0 or allow_empty)
    return _result("row_count_matches", passed, recorded=manifest.row_count, counted=counted)


def _rejects(manifest: Manifest, allowed: float):
    total = manifest.row_count + manifest.rejected_rows
    share = manifest.rejected_rows / total if total else 0.0
    return _result("rejected_share_under_threshold", share <= allowed, share=share, allowed=allowed)


def _lines(accounts: dict[str, LineAccount] | None) -> dg.AssetCheckResult:
    if accounts is None:
        return _result("every_line_accounted", True, note="accounted by the run that built it")
    unbalanced = [i for i, a in accounts.items() if not a.balanced]
    return _result(
        "every_line_accounted",
        not unbalanced,
        files=len(accounts),
        data_lines=sum(a.data_lines for a in accounts.values()),
        rows=sum(a.rows for a in accounts.values()),
        rejected=sum(a.rejected for a in accounts.values()),
        counted_by=", ".join(sorted({a.counted_by for a in accounts.values()})) or "none",
        unbalanced=", ".join(unbalanced) or "none",
    )


def _objects(manifest: Manifest, store: ObjectStore):
    problems = []
    for obj in [*manifest.objects, *manifest.rejects]:
        try:
            size = store.size(obj.key)
        except ClientError:
            problems.append(f"{obj.key}: missing")
            continue
        if size != obj.bytes:
            problems.append(f"{obj.key}: {size} bytes, recorded {obj.bytes}")
    return _result(
        "objects_exist_with_recorded_sizes",
        not problems,
        checked=len(manifest.objects) + len(manifest.rejects),
        problems="; ".join(problems) or "none",
    )
