"""The retention pass over history: what settled ingests and old versions leave behind
is pruned, so the store and Dagster hold O(retained versions), not O(ingests).

A version is retained while it was current at some point within the retention (so is the
one current at its start). For each dataset whose versions are all published, in order:

1. the ingests that the version current at the horizon settled, received before it:
   receipts and landing files, then their log entries (`lakehouse.ingest.prune`), and
   the duplicate marks written before it;
2. the commit records of versions that decided only pruned ingests
   (`commits.prune_records`);
then, for all datasets at once,
3. Dagster's finished runs last updated before the horizon, except those that emitted a
   retained version (`DagsterInstance.delete_run`, public: the run and its events, so the
   versions it emitted leave the catalog with it).

Every step deletes only what no later step and no reader needs, and a pass that dies
anywhere finds what is left next time. Schedule and sensor ticks are Dagster's own
retention (`retention:` in dagster.yaml).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import dagster as dg

from lakehouse.ingest.prune import log_floor, prune_settled
from lakehouse.publish.catalog import current_since
from lakehouse.runs import DATASETS_PARTITIONS
from lakehouse.runtime.compat import remove_run_event_file
from lakehouse.store import ObjectStore
from lakehouse.store.layout import RETENTION_TALLY
from lakehouse.versions import commits

RUNS_PAGE = 500
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass
class Pruned:
    """What one pass deleted."""

    ingests: int = 0  # each a log entry, its receipt and its landing file
    marks: int = 0
    commit_records: int = 0
    runs: int = 0


def prune_history(
    instance: dg.DagsterInstance, store: ObjectStore, now: datetime, retention: timedelta
) -> Pruned:
    """Prune what settled before `now - retention` (see the module's steps)."""
    before = now - retention
    pruned = Pruned()
    retained_runs: set[str] = set()
    for name in instance.get_dynamic_partitions(DATASETS_PARTITIONS):
        versions = current_since(instance, name, before)
        retained_runs |= {v.run_id for v in versions}
        if not versions:
            continue
        current, at_horizon = versions[0].manifest, versions[-1].manifest
        if at_horizon.updated_at >= before:
            continue  # the history does not reach back to the horizon: nothing settled
        if commits.unpublished(store, name, current.version) is not None:
            continue  # a run died after its claim: the next run publishes it first
        ingests = prune_settled(store, name, at_horizon.applied_through, before)
        pruned.ingests += ingests.ingests
        pruned.marks += ingests.marks
        floor = log_floor(store, name)
        pruned.commit_records += commits.prune_records(store, name, floor, current.version)
    pruned.runs = prune_runs(instance, before, retained_runs)
    return pruned


def prune_runs(instance: dg.DagsterInstance, before: datetime, retained: set[str]) -> int:
    """Delete the finished runs last updated before `before`, but not the `retained`:
    found a page at a time (an instance may hold many), then deleted."""
    old_runs = dg.RunsFilter(statuses=FINISHED, updated_before=before)
    old: list[str] = []
    cursor: str | None = None
    while page := instance.get_run_records(old_runs, limit=RUNS_PAGE, cursor=cursor):
        old += [r.dagster_run.run_id for r in page if r.dagster_run.run_id not in retained]
        cursor = page[-1].dagster_run.run_id
    for run_id in old:
        delete_run(instance, run_id)
    return len(old)


def delete_run(instance: dg.DagsterInstance, run_id: str) -> None:
    instance.delete_run(run_id)
    remove_run_event_file(instance, run_id)


def tally(store: ObjectStore, pruned: Pruned, at: datetime) -> dict[str, int | float]:
    """Add a pass to the running totals in the store (`lakehouse_retention_deleted_total`
    in /metrics); returns the totals."""
    totals: dict[str, int | float] = store.get_json_or_none(RETENTION_TALLY) or {}
    for kind, count in asdict(pruned).items():
        totals[kind] = int(totals.get(kind, 0)) + count
    totals["last_pass"] = at.timestamp()
    store.put_json(RETENTION_TALLY, totals)
    return totals
