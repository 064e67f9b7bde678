"""The guard's remembered verdicts (`api.query.guard.Verdicts`): the same statement over the
same views is answered without parsing it again; anything else is checked afresh."""

from __future__ import annotations

from api.query.guard import Inspection, Verdicts

SALES = Inspection(views=frozenset({"sales"}))


def test_a_verdict_holds_for_the_same_statement_over_the_same_views() -> None:
    verdicts = Verdicts()
    views = {"sales": "CREATE VIEW ..."}
    verdicts.put("SELECT * FROM sales", views, SALES)
    assert verdicts.get("SELECT * FROM sales", views) is SALES
    assert verdicts.get("SELECT * FROM sales ", views) is None  # another statement


def test_other_views_are_a_miss_even_with_equal_contents() -> None:
    """A new catalog snapshot (or another grant) offers another mapping: a dataset that was
    dropped or granted since must be checked again, whatever the mappings hold."""
    verdicts = Verdicts()
    views = {"sales": "CREATE VIEW ..."}
    verdicts.put("SELECT * FROM sales", views, SALES)
    assert verdicts.get("SELECT * FROM sales", dict(views)) is None


def test_long_statements_and_many_view_sets_are_not_kept() -> None:
    verdicts = Verdicts()
    views = {"sales": "CREATE VIEW ..."}
    long = "SELECT * FROM sales WHERE " + " OR ".join(["true"] * Verdicts.MAX_SQL_CHARS)
    verdicts.put(long, views, SALES)
    assert verdicts.get(long, views) is None
    sets = [{"sales": str(i)} for i in range(Verdicts.MAX_VIEW_SETS + 1)]
    for each in sets:
        verdicts.put("SELECT 1", each, SALES)
    assert verdicts.get("SELECT 1", sets[0]) is None  # the oldest set was let go
    assert verdicts.get("SELECT 1", sets[-1]) is SALES
    for i in range(Verdicts.MAX_ENTRIES + 1):
        verdicts.put(f"SELECT {i}", views, SALES)
    assert verdicts.get("SELECT 0", views) is None  # the least recently used
    assert verdicts.get(f"SELECT {Verdicts.MAX_ENTRIES}", views) is SALES
