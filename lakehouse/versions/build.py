"""Which next version a run builds: the pending ingests (apply), the same rows in fewer
files (compact), every source converted again (rebuild), or, with nothing pending and asked
by a person (the UI's Materialize), the current state again (recommit); or none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lakehouse.ingest.log import has_pending, pending_entries
from lakehouse.ingest.prune import log_floor
from lakehouse.manifest import Manifest
from lakehouse.store import ObjectStore
from lakehouse.versions.objects import WriteError
from lakehouse.versions.writer import Built, Writer

Operation = Literal["apply", "compact", "rebuild"]


@dataclass(frozen=True)
class Request:
    """What a run was asked for (the run config of `lakehouse.runs.DatasetConfig`)."""

    operation: Operation = "apply"
    only_if_pending: bool = False  # with nothing pending, commit nothing (API, sensor)
    target_file_mb: int = 256
    sort_by: list[str] = field(default_factory=list)
    batch_max_ingests: int = 1000
    batch_max_bytes: int = 1 << 30


def next_version(writer: Writer, store: ObjectStore, base: Manifest, ask: Request) -> Built | None:
    """The next version on top of `base`, or None when there is nothing to commit.
    `WriteError` if what was asked cannot be done (nothing changed)."""
    if ask.operation == "apply":
        entries = pending_entries(
            store, base.name, base.applied_through, ask.batch_max_ingests, ask.batch_max_bytes
        )
        if entries:
            return writer.apply(base, entries)
        if ask.only_if_pending or base.version == 0:
            return None
        return writer.recommit(base)
    if base.version == 0:
        raise WriteError(f"dataset {base.name!r} has no version to {ask.operation} yet")
    if ask.operation == "compact":
        return writer.compact(base, ask.target_file_mb, ask.sort_by)
    return _rebuild(writer, store, base)


def _rebuild(writer: Writer, store: ObjectStore, base: Manifest) -> Built:
    """A rebuild that would change the columns under pending appends (checked against the
    current ones when they were acknowledged) would make them fail: it waits for a quiet
    moment instead. One whose sources retention has pruned cannot be done."""
    first = max(base.base_seq, 1)
    pruned_through = max(base.pruned_through, log_floor(store, base.name))
    if pruned_through >= first:
        raise WriteError(
            f"cannot rebuild {base.name!r}: its rows come from the ingests since seq {first}, "
            f"and retention has pruned their source files through seq {pruned_through} "
            "(LAKEHOUSE_RETENTION_DAYS); nothing changed"
        )
    built = writer.rebuild(base)
    changed = built.manifest.schema_fingerprint != base.schema_fingerprint
    if changed and has_pending(store, base.name, base.applied_through):
        store.delete(built.written)
        raise WriteError(
            f"rebuilding {base.name!r} would change its columns while ingests checked against "
            "the current ones are pending: run it again once they are applied"
        )
    return built
