"""The catalog as the engine offers it (`api.query.views.CatalogViews`): a snapshot is kept,
with the view mappings made from it, until a new version is published, so the guard's
remembered verdicts (keyed by those mappings) hold while other events are logged."""

from __future__ import annotations

import dagster as dg
import pytest

from api.query.views import CatalogViews, Pins
from lakehouse.auth.grants import Principal, Role
from lakehouse.errors import InvalidInput
from lakehouse.formats.csv.types import Column
from lakehouse.runs import DATASETS_PARTITIONS
from tests.unit.lakehouse.publish.test_catalog_trust import materialized_by_a_run, sales

ADMIN = Principal("admin", Role.ADMIN)
READER = Principal("analyst", Role.READER, datasets=("sales",))


@dg.op
def nothing() -> None:
    pass


@dg.job
def unrelated() -> None:
    nothing()


def test_a_snapshot_and_its_views_outlast_events_that_publish_nothing(tmp_path) -> None:
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        columns = [Column("id", "BIGINT", "all integers")]
        instance.add_dynamic_partitions(DATASETS_PARTITIONS, ["sales"])
        materialized_by_a_run(instance, [sales(version=1, columns=columns)])
        views = CatalogViews(instance, "bucket")
        first = views.refresh()
        offered = {who: views.for_query(who, {})[1] for who in (ADMIN, READER)}
        assert "sales" in offered[READER]
        unrelated.execute_in_process(instance=instance)  # moves the event log's mark
        assert views.refresh() is first
        for who in (ADMIN, READER):
            assert views.for_query(who, {})[1] is offered[who]  # the verdicts' key: the same
        materialized_by_a_run(instance, [sales(version=2, columns=columns)])
        latest = views.refresh()
        assert latest is not first and latest.manifests["sales"].version == 2
        assert views.for_query(READER, {})[1] is not offered[READER]


def test_a_querys_own_pins_must_each_be_read_a_sessions_need_not() -> None:
    Pins({"Sales": 1}).check_read(frozenset({"sales__rejects"}))  # read through its rejects
    Pins({}).check_read(frozenset())
    Pins({"teams": 1}, session=True).check_read(frozenset({"sales"}))
    with pytest.raises(InvalidInput, match="as_of pins 'teams', which the query does not read"):
        Pins({"teams": 1, "sales": 2}).check_read(frozenset({"sales"}))
