"""Every dataset is also an Apache Iceberg table, `lakehouse.<name>`, over the same Parquet
objects: each committed version is one Iceberg snapshot, so Spark, Trino, Snowflake or
DuckDB read exactly the rows the API serves, at any retained version.

- **No second copy.** A snapshot registers the objects a version lists, as they are (their
  Parquet footers give the statistics); the objects carry no Iceberg field ids, so the table
  has a name mapping (`schema.name-mapping.default`) that readers match columns by. Evolving
  columns keeps ids: an added column gets a new one, a widened one keeps its own
  (`_evolve_schema`), so the mapping never sends an old file's column to another field.
- **A version's snapshot.** Committing version v makes the table's data files exactly the
  manifest's objects: a version that only adds objects is an `append`, one that drops some
  (compaction, replace, rebuild, merging small objects) an `overwrite`, one that changes
  nothing (recommit) an empty `append`. The snapshot summary holds `lakehouse.version`, so a
  commit that already happened is found rather than made again: committing v is idempotent,
  which lets a later run finish the commit of a run that died (docs/PROTOCOL.md).
- **Catalog.** pyiceberg's SQL catalog (the tables `iceberg_tables` and
  `iceberg_namespace_properties` of Iceberg's JDBC catalog), named `lakehouse`, on SQLite
  under the state directory or on the Dagster instance's Postgres. Table metadata lives in
  the bucket under `iceberg/<name>/metadata/`, so a reader with S3 access alone can open a
  version from its `metadata_location`.
- **Types.** Each DuckDB column type maps to one Iceberg type (`iceberg_type`); a type
  Iceberg cannot hold exactly fails the commit rather than being approximated.

Cost per version: the current snapshot's manifests (merged once there are 16) and the
footers of the objects the version adds; never the rows.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    ResolveError,
    TableAlreadyExistsError,
)
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile
from pyiceberg.schema import promote
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import (
    IcebergType,
)
from pyiceberg.utils.concurrent import ExecutorFactory

from lakehouse.formats.csv.types import Column
from lakehouse.manifest import IcebergSnapshot, Manifest
from lakehouse.names import validate_name
from lakehouse.publish.iceberg_types import IcebergError, iceberg_schema, iceberg_type, shape
from lakehouse.settings import S3Config, sqlalchemy_url
from lakehouse.store import layout
from lakehouse.versions.tables import Committed

CATALOG_NAME = "lakehouse"
NAMESPACE = "lakehouse"
VERSION_PROPERTY = "lakehouse.version"
DATASET_ID_PROPERTY = "lakehouse.dataset-id"
COMMIT_ATTEMPTS = 3

TABLE_PROPERTIES = {
    TableProperties.FORMAT_VERSION: "2",
    # Appends add a manifest each; merged once there are this many, so a version reads a
    # bounded number of manifests however many versions the table has had.
    TableProperties.MANIFEST_MERGE_ENABLED: "true",
    "commit.manifest.min-count-to-merge": "16",
    # Older metadata.json files go once 100 newer ones exist: snapshots (time travel) are
    # kept in the current metadata until retention expires them.
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "100",
}


def table_identifier(name: str) -> str:
    return f"{NAMESPACE}.{validate_name(name)}"


def io_properties(s3: S3Config) -> dict[str, str]:
    """pyiceberg's FileIO settings (pyarrow's S3 client) for the lakehouse bucket."""
    return {
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        "s3.endpoint": s3.endpoint,
        "s3.access-key-id": s3.access_key,
        "s3.secret-access-key": s3.secret_key,
        "s3.region": s3.region,
        "s3.force-virtual-addressing": str(s3.url_style == "vhost").lower(),
    }


@lru_cache(maxsize=8)
def open_catalog(catalog_url: str, s3: S3Config) -> SqlCatalog:
    """The `lakehouse` SQL catalog (its tables are created on first use), one per process."""
    url = sqlalchemy_url(catalog_url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(CATALOG_NAME, uri=url, **io_properties(s3))
    catalog.create_namespace_if_not_exists(NAMESPACE)
    return catalog


class IcebergTables:
    """The Iceberg tables of the lakehouse bucket's datasets."""

    def __init__(self, catalog_url: str, s3: S3Config) -> None:
        self.s3 = s3
        self.catalog = open_catalog(catalog_url, s3)

    def load(self, name: str) -> Table | None:
        try:
            return self.catalog.load_table(table_identifier(name))
        except NoSuchTableError:
            return None

    def commit(self, manifest: Manifest) -> Committed:
        """Make the table's current snapshot version `manifest.version`: its data files are
        the manifest's objects. Idempotent: if that snapshot exists, it is returned."""
        started = time.perf_counter()
        for attempt in range(COMMIT_ATTEMPTS):
            table = self.load(manifest.name) or self._create(manifest)
            if (done := snapshot_of_version(table, manifest.version)) is not None:
                return Committed(self._ref(table, done), 0.0)
            if (current := table.current_snapshot()) is not None:
                at = version_of(current)
                if at is not None and at > manifest.version:
                    raise IcebergError(
                        f"table {table_identifier(manifest.name)} is at version {at}, past "
                        f"{manifest.version}, without a snapshot of it"
                    )
            try:
                self._commit(table, manifest)
            except CommitFailedException:
                # Someone else moved the table meanwhile (a retried run of the same
                # version): look again; the version may be there now.
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                continue
            # The committed transaction left `table` at the metadata it just wrote.
            snapshot = snapshot_of_version(table, manifest.version)
            assert snapshot is not None
            return Committed(self._ref(table, snapshot), time.perf_counter() - started)
        raise AssertionError("unreachable")

    def _create(self, manifest: Manifest) -> Table:
        try:
            return self.catalog.create_table(
                table_identifier(manifest.name),
                schema=iceberg_schema(manifest.columns),
                location=layout.iceberg_location(self.s3.bucket, manifest.name),
                properties={**TABLE_PROPERTIES, DATASET_ID_PROPERTY: manifest.dataset_id},
            )
        except TableAlreadyExistsError:  # another process created it first: use theirs
            return self.catalog.load_table(table_identifier(manifest.name))

    def _commit(self, table: Table, manifest: Manifest) -> None:
        wanted = {self._url(o.key) for o in manifest.objects}
        live = data_files(table)
        removed = [f for path, f in live.items() if path not in wanted]
        added = sorted(wanted - live.keys())
        properties = {
            VERSION_PROPERTY: str(manifest.version),
            "lakehouse.operation": manifest.operation,
        }
        with table.transaction() as tx:
            _evolve_schema(tx, manifest.columns)
            if tx.table_metadata.name_mapping() is None:
                mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
                tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
            update = tx.update_snapshot(snapshot_properties=properties)
            # Appends merge manifests (TABLE_PROPERTIES), so reading the file list stays cheap.
            producer = update.overwrite() if removed else update.merge_append()
            with producer as snapshot:
                for old in removed:
                    snapshot.delete_data_file(old)
                for path in added:
                    snapshot.append_data_file(
                        parquet_file_to_data_file(table.io, tx.table_metadata, path)
                    )

    def _url(self, key: str) -> str:
        return layout.url(self.s3.bucket, key)

    def _ref(self, table: Table, snapshot: Snapshot) -> IcebergSnapshot:
        return IcebergSnapshot(
            table=".".join(table.name()),
            snapshot_id=snapshot.snapshot_id,
            metadata_location=table.metadata_location,
        )

    def verify(self, manifest: Manifest) -> list[str]:
        """What differs between the table's current snapshot and `manifest` (empty: none):
        the version, the row count, the data files and the columns."""
        table = self.load(manifest.name)
        if table is None:
            return [f"no table {table_identifier(manifest.name)}"]
        current = table.current_snapshot()
        if current is None:
            return ["the table has no snapshot"]
        problems = []
        if version_of(current) != manifest.version:
            problems.append(f"current snapshot is version {version_of(current)}")
        if manifest.iceberg and manifest.iceberg.snapshot_id != current.snapshot_id:
            problems.append(f"current snapshot is {current.snapshot_id}")
        files = data_files(table, current)
        rows = sum(f.record_count for f in files.values())
        if rows != manifest.row_count:
            problems.append(f"{rows} rows, the version has {manifest.row_count}")
        wanted = {self._url(o.key) for o in manifest.objects}
        if extra := sorted(files.keys() - wanted):
            problems.append(f"files the version does not list: {extra}")
        if missing := sorted(wanted - files.keys()):
            problems.append(f"files of the version missing: {missing}")
        found = [(f.name, shape(f.field_type)) for f in table.schema().fields]
        expected = [(c.name, shape(iceberg_type(c.type))) for c in manifest.columns]
        if found != expected:
            problems.append(f"columns {found}, expected {expected}")
        return problems

    def expire(self, name: str, keep_from_version: int) -> list[int]:
        """Expire the snapshots of versions before `keep_from_version` (never the current
        one); the ids expired."""
        table = self.load(name)
        if table is None:
            return []
        current = table.current_snapshot()
        old = [
            s.snapshot_id
            for s in table.snapshots()
            if (v := version_of(s)) is not None
            and v < keep_from_version
            and (current is None or s.snapshot_id != current.snapshot_id)
        ]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        return old

    def referenced(self, name: str) -> tuple[set[str], set[str]]:
        """(data file URLs, metadata file URLs) that the table's retained snapshots need."""
        table = self.load(name)
        if table is None:
            return set(), set()
        data: set[str] = set()
        metadata = {table.metadata_location}
        metadata |= {e.metadata_file for e in table.metadata.metadata_log}
        for snapshot in table.snapshots():
            metadata.add(snapshot.manifest_list)
            for manifest_file in snapshot.manifests(table.io):
                metadata.add(manifest_file.manifest_path)
            data |= data_files(table, snapshot).keys()
        return data, metadata


def _evolve_schema(tx: Transaction, columns: list[Column]) -> None:
    """Bring the table's columns to `columns`: a column with the same name keeps its field
    id, its type widened if Iceberg allows it (evolve=widen: old snapshots' files read
    through the promotion); one whose type changed otherwise (only a replace does that) is
    dropped and added again, as new ones are added; then the order is the dataset's."""
    schema = tx.table_metadata.schema()
    have = {f.name: f.field_type for f in schema.fields}
    want = {c.name: iceberg_type(c.type) for c in columns}
    same = [n for n, t in have.items() if n in want and shape(want[n]) == shape(t)]
    widen = [n for n, t in have.items() if n in want and n not in same and _promotes(t, want[n])]
    drop = [n for n in have if n not in same and n not in widen]
    add = [c.name for c in columns if c.name not in have or c.name in drop]
    if widen:
        with tx.update_schema() as update:
            for name in widen:
                update.update_column(name, field_type=want[name])
    if drop:
        with tx.update_schema(allow_incompatible_changes=True) as update:
            for name in drop:
                update.delete_column(name)
    if add:
        with tx.update_schema() as update:
            for name in add:
                update.add_column(name, want[name])
    order = list(want)
    if [f.name for f in tx.table_metadata.schema().fields] != order:
        with tx.update_schema() as update:
            update.move_first(order[0])
            for before, name in zip(order, order[1:], strict=False):
                update.move_after(name, before)


def _promotes(old: IcebergType, new: IcebergType) -> bool:
    try:
        promote(old, new)
    except ResolveError:
        return False
    return True


def version_of(snapshot: Snapshot) -> int | None:
    value = snapshot.summary[VERSION_PROPERTY] if snapshot.summary is not None else None
    return int(value) if value is not None else None


def snapshot_of_version(table: Table, version: int) -> Snapshot | None:
    """The snapshot that committed `version`, looking back from the current one."""
    current = table.current_snapshot()
    if current is not None and version_of(current) == version:
        return current
    return next((s for s in reversed(table.snapshots()) if version_of(s) == version), None)


def data_files(table: Table, snapshot: Snapshot | None = None) -> dict[str, DataFile]:
    """{path: data file} of a snapshot (the current one by default)."""
    snapshot = snapshot or table.current_snapshot()
    if snapshot is None:
        return {}
    entries = ExecutorFactory.get_or_create().map(
        lambda manifest_file: manifest_file.fetch_manifest_entry(table.io, discard_deleted=True),
        snapshot.manifests(table.io),
    )
    return {entry.data_file.file_path: entry.data_file for group in entries for entry in group}
