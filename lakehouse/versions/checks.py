"""The checks of a version, evaluated *before* it is committed: if one fails, no new version
appears and readers keep the previous one. Each reads object footers and sizes, never
rows, so its cost follows the (bounded) number of objects, not the dataset's size.

`iceberg_snapshot_matches` is evaluated after the Iceberg commit (it checks that commit),
still before the version is published. The Dagster asset shows each as a blocking asset
check (`lakehouse_assets.checks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from lakehouse.duck import parquet_source, sql_string
from lakehouse.errors import NotFound
from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.formats.evolution import is_widening
from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.versions.tables import Tables

# Each check's name, and what it holds true.
CHECKS = {
    "schema_matches_contract": "The Parquet objects have exactly the manifest's columns and types.",
    "row_count_matches": "The objects hold the manifest's row count, and it is positive unless "
    "every source file was header-only (or nothing was applied yet).",
    "rejected_share_under_threshold": "Rows that could not be read stay under the allowed share.",
    "every_line_accounted": "For every file the version applied, rows stored + rows rejected = "
    "the data lines read (nothing vanished between the file and the version).",
    "objects_exist_with_recorded_sizes": "Every object the manifest lists is in the bucket with "
    "its recorded size.",
    "iceberg_snapshot_matches": "The Iceberg table's current snapshot is this version: its row "
    "count, its data files (exactly the manifest's objects) and its columns.",
}
ICEBERG_CHECK = "iceberg_snapshot_matches"


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    metadata: dict[str, object] = field(default_factory=dict)


def evaluate(
    manifest: Manifest,
    store: ObjectStore,
    con: duckdb.DuckDBPyConnection,
    max_reject_share: float,
    allow_empty: bool,
    accounts: dict[str, LineAccount] | None = None,
) -> list[CheckResult]:
    """The checks of a version before it is committed; `accounts`: where the lines of each
    file it applied went (None: a version another run built and accounted for)."""
    urls = [store.url(o.key) for o in manifest.objects]
    return [
        _schema(manifest, con, urls),
        _rows(manifest, con, urls, allow_empty or not manifest.objects),
        _rejects(manifest, max_reject_share),
        lines(accounts),
        _objects(manifest, store),
    ]


def iceberg(manifest: Manifest, tables: Tables) -> CheckResult:
    """Run after the version's Iceberg commit: the table's current snapshot is the version."""
    problems = tables.verify(manifest)
    return CheckResult(
        ICEBERG_CHECK,
        not problems,
        {
            "snapshot_id": str(manifest.iceberg.snapshot_id) if manifest.iceberg else "none",
            "problems": "; ".join(problems) or "none",
        },
    )


def unchanged(manifest: Manifest) -> list[CheckResult]:
    """A run that commits nothing: the current version stands as it was checked."""
    note = f"no new version: v{manifest.version} stands"
    return [CheckResult(name, True, {"note": note}) for name in CHECKS]


def failed(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if not r.passed]


def _schema(manifest: Manifest, con: duckdb.DuckDBPyConnection, urls: list[str]) -> CheckResult:
    """The objects have the manifest's columns; one written before they evolved, some of
    them, each of its type or one it widens to."""
    name = "schema_matches_contract"
    expected = [(c.name, c.type) for c in manifest.columns]
    current = [u for u, o in zip(urls, manifest.objects, strict=True) if not o.schema_fingerprint]
    older = [u for u, o in zip(urls, manifest.objects, strict=True) if o.schema_fingerprint]
    if not urls:
        return CheckResult(name, True, {"note": "no objects yet"})
    try:
        found = _described(con, current) if current else expected
        misfits = [u for u in older if not _evolves_into(_described(con, [u]), expected)]
    except duckdb.Error as exc:
        return CheckResult(name, False, {"error": f"objects unreadable: {exc}"})
    return CheckResult(
        name,
        found == expected and not misfits,
        {
            "expected": str(expected),
            "found": str(found),
            "older_objects": len(older),
            "misfits": ", ".join(misfits) or "none",
        },
    )


def _described(con: duckdb.DuckDBPyConnection, urls: list[str]) -> list[tuple[str, str]]:
    described = con.execute(f"DESCRIBE SELECT * FROM {parquet_source(urls)}").fetchall()
    return [(column, str(kind)) for column, kind, *_ in described]


def _evolves_into(found: list[tuple[str, str]], expected: list[tuple[str, str]]) -> bool:
    types = dict(expected)
    return all(n in types and (types[n] == t or is_widening(t, types[n])) for n, t in found)


def _rows(
    manifest: Manifest, con: duckdb.DuckDBPyConnection, urls: list[str], allow_empty: bool
) -> CheckResult:
    name = "row_count_matches"
    counted = 0
    if urls:
        try:
            row = con.execute(
                "SELECT sum(num_rows) FROM "
                f"parquet_file_metadata([{', '.join(sql_string(u) for u in urls)}])"
            ).fetchone()
        except duckdb.Error as exc:
            return CheckResult(name, False, {"error": f"objects unreadable: {exc}"})
        counted = int(row[0] or 0) if row else 0
    passed = counted == manifest.row_count and (counted > 0 or allow_empty)
    return CheckResult(name, passed, {"recorded": manifest.row_count, "counted": counted})


def _rejects(manifest: Manifest, allowed: float) -> CheckResult:
    total = manifest.row_count + manifest.rejected_rows
    share = manifest.rejected_rows / total if total else 0.0
    return CheckResult(
        "rejected_share_under_threshold", share <= allowed, {"share": share, "allowed": allowed}
    )


def lines(accounts: dict[str, LineAccount] | None) -> CheckResult:
    """Every applied file's lines are rows or rejects (None: accounted by another run)."""
    name = "every_line_accounted"
    if accounts is None:
        return CheckResult(name, True, {"note": "accounted by the run that built it"})
    unbalanced = [i for i, a in accounts.items() if not a.balanced]
    return CheckResult(
        name,
        not unbalanced,
        {
            "files": len(accounts),
            "data_lines": sum(a.data_lines for a in accounts.values()),
            "rows": sum(a.rows for a in accounts.values()),
            "rejected": sum(a.rejected for a in accounts.values()),
            "counted_by": ", ".join(sorted({a.counted_by for a in accounts.values()})) or "none",
            "unbalanced": ", ".join(unbalanced) or "none",
        },
    )


def _objects(manifest: Manifest, store: ObjectStore) -> CheckResult:
    problems = []
    for obj in [*manifest.objects, *manifest.rejects]:
        try:
            size = store.size(obj.key)
        except NotFound:
            problems.append(f"{obj.key}: missing")
            continue
        if size != obj.bytes:
            problems.append(f"{obj.key}: {size} bytes, recorded {obj.bytes}")
    return CheckResult(
        "objects_exist_with_recorded_sizes",
        not problems,
        {
            "checked": len(manifest.objects) + len(manifest.rejects),
            "problems": "; ".join(problems) or "none",
        },
    )
