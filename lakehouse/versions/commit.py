"""A new version, committed as one object (after pyiceberg's `Transaction`): built on a base
version, checked, and committed only if its precondition still holds; its `commit` returns
what happened, and the caller (the Dagster asset) only maps that to its own types.

The protocol (docs/PROTOCOL.md), in order:
 1. A commit record past the catalog's latest version (a run died between its claim and
    publishing it) is published first: nothing is built until it is.
 2. The next version is built on the latest one (`Built`), and checked (`checks`). A failed
    check drops what was written: `Blocked`, the dataset as it was.
 3. The bytes it applies are marked applied, and the pending hint is set (a run that dies
    after its claim is then found and published by the next run).
 4. The claim: its commit record is created with a conditional write, the compare-and-set
    that holds the precondition `FromVersion` (no other version was committed on the base).
    Lost: the objects are dropped and the next version is built again on the winner's.
 5. The version is committed to its Iceberg table and checked there (`iceberg` check).
 6. `Published`: the caller emits it into the catalog, then `settle`s: the receipts of the
    ingests it decided, and the pending hint cleared unless more is pending.
Each step is idempotent, so a process that dies anywhere is recovered by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lakehouse.formats.csv.accounting import LineAccount
from lakehouse.ingest.log import record_decided, settle_pending
from lakehouse.ingest.marks import mark_pending, record_applied
from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.store.layout import dataset_prefix
from lakehouse.versions import checks, commits
from lakehouse.versions.checks import CheckResult
from lakehouse.versions.commits import CommitRecord
from lakehouse.versions.tables import Tables
from lakehouse.versions.writer import Built

log = logging.getLogger(__name__)

# How often a run that lost the race for a version number builds again on the winner's.
RACE_ATTEMPTS = 3

Checks = Callable[[Manifest, bool, "dict[str, LineAccount] | None"], list[CheckResult]]


class Catalog(Protocol):
    """Where versions are read back from: the Dagster instance in a run
    (`lakehouse.publish.catalog.InstanceCatalog`), a list in tests."""

    def latest(self, dataset: str) -> Manifest | None: ...

    def is_running(self, run_id: str) -> bool: ...


@dataclass(frozen=True)
class FromVersion:
    """The precondition of a commit: the dataset's latest version is still `version` (held
    by the conditional create of version + 1's commit record)."""

    dataset: str
    version: int


@dataclass(frozen=True)
class Published:
    """Committed (claimed, in Iceberg, checked): the caller emits it, then `settle`s."""

    record: CommitRecord
    checks: list[CheckResult]
    iceberg_seconds: float
    another_run: bool = False  # a version another run committed and died before publishing


@dataclass(frozen=True)
class Unchanged:
    """Nothing to commit (nothing pending): the base stands."""

    base: Manifest


@dataclass(frozen=True)
class Blocked:
    """A check failed: nothing committed, the dataset stays at `base`."""

    base: Manifest
    checks: list[CheckResult]
    another_run: bool = False  # a claimed version of another run, which needs an operator


@dataclass(frozen=True)
class Busy:
    """Another run, still running, is publishing the version it claimed: try again."""

    record: CommitRecord


@dataclass(frozen=True)
class LostRace:
    """Another run committed each version this one built, `attempts` times over."""

    attempts: int


@dataclass(frozen=True)
class IcebergFailed:
    """The claimed version's Iceberg commit failed: the next run publishes it."""

    record: CommitRecord
    error: str


@dataclass(frozen=True)
class IcebergMismatch:
    """After its commit, the Iceberg table is not the version: it needs an operator."""

    record: CommitRecord
    check: CheckResult


Result = Published | Unchanged | Blocked | Busy | LostRace | IcebergFailed | IcebergMismatch


@dataclass
class VersionCommit:
    """Commits the next version of `dataset` for run `run_id`."""

    store: ObjectStore
    tables: Tables
    catalog: Catalog
    dataset: str
    run_id: str
    checks: Checks
    log_line: Callable[[str], None] = field(default=log.info)

    def commit(self, build: Callable[[Manifest], Built | None]) -> Result:
        """Build the next version on the latest (again, if another run committed first)
        and commit it; or publish a version a dead run committed; or nothing."""
        for _ in range(RACE_ATTEMPTS):
            base = self.catalog.latest(self.dataset)
            published = base.version if base else 0
            if (behind := commits.unpublished(self.store, self.dataset, published)) is not None:
                return self.republish(behind)
            base = base or Manifest.empty(
                self.dataset, self.store.url(dataset_prefix(self.dataset))
            )
            built = build(base)
            if built is None:
                settle_pending(self.store, self.dataset, base.applied_through)
                return Unchanged(base)
            result = self.try_commit(FromVersion(self.dataset, base.version), base, built)
            if result is not None:
                return result
        return LostRace(RACE_ATTEMPTS)

    def try_commit(self, requires: FromVersion, base: Manifest, built: Built) -> Result | None:
        """Check `built` and commit it if `requires` still holds; None if it did not (the
        race was lost: its objects are dropped)."""
        results = self.checks(built.manifest, built.allow_empty, built.accounts)
        if checks.failed(results):
            self.store.delete(built.written)
            return Blocked(base, results)
        for entry in built.applied:
            record_applied(self.store, entry)
        mark_pending(self.store, self.dataset)  # a run dying after its claim is found
        record = CommitRecord(
            version=built.manifest.version,  # requires.version + 1
            run_id=self.run_id,
            manifest=built.manifest,
            outcomes=built.outcomes,
        )
        if not commits.claim(self.store, record):
            self.log_line(f"{self.dataset} v{record.version} was committed by another run")
            self.store.delete(built.written)
            return None
        return self._to_iceberg(record, results)

    def republish(self, record: CommitRecord) -> Result:
        """Publish a version another run claimed and did not publish (it died)."""
        if record.run_id != self.run_id and self.catalog.is_running(record.run_id):
            return Busy(record)
        self.log_line(
            f"{record.manifest.name} v{record.version} was committed by run {record.run_id}, "
            "which stopped before publishing it: publishing it now"
        )
        results = self.checks(record.manifest, True, None)
        if checks.failed(results):
            return Blocked(record.manifest, results, another_run=True)
        published = self._to_iceberg(record, results)
        if isinstance(published, Published):
            return Published(published.record, published.checks, published.iceberg_seconds, True)
        return published

    def _to_iceberg(self, record: CommitRecord, results: list[CheckResult]) -> Result:
        """Commit the claimed version to its Iceberg table (or find that commit) and check
        it. Any failure leaves the catalog and the table at the previous version."""
        manifest = record.manifest
        try:
            committed = self.tables.commit(manifest)
        except Exception as exc:  # noqa: BLE001 - the store, the catalog database, pyiceberg
            return IcebergFailed(record, str(exc))
        published = manifest.model_copy(update={"iceberg": committed.snapshot})
        record = record.model_copy(update={"manifest": published})
        check = checks.iceberg(published, self.tables)
        if not check.passed:
            return IcebergMismatch(record, check)
        return Published(record, [*results, check], committed.seconds)

    def settle(self, published: Published) -> None:
        """After the version is in the catalog: its receipts, and the pending hint."""
        manifest = published.record.manifest
        record_decided(
            self.store, manifest.name, published.record.version, published.record.decided
        )
        settle_pending(self.store, manifest.name, manifest.applied_through)
