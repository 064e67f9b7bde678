"""Schema evolution on purpose: what an append whose columns differ from its dataset's may
change, by the `evolve` it was sent with.

    strict       (the default) nothing: other columns are a conflict (409, with the diff).
    add_columns  the upload's new columns are added, nullable, after the dataset's (older
                 rows read NULL); a dataset column the upload lacks is NULL in its rows.
    widen        that, and a column type widened as Iceberg allows it, keeping its field
                 id: DECIMAL(p,s) to DECIMAL(p',s) with p' > p, INTEGER to BIGINT, FLOAT to
                 DOUBLE.

Never a variant column, never a narrower type: any other difference is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lakehouse.formats.csv.types import Column

Evolve = Literal["strict", "add_columns", "widen"]

# Iceberg's type promotions between the types DuckDB writes (the decimal one is by rule).
_PROMOTIONS = {("INTEGER", "BIGINT"), ("FLOAT", "DOUBLE")}


def is_widening(old: str, new: str) -> bool:
    """Whether Iceberg allows a column of type `old` to become `new` (its values unchanged)."""
    if (old, new) in _PROMOTIONS:
        return True
    if old.startswith("DECIMAL(") and new.startswith("DECIMAL("):
        (p, s), (q, t) = (_precision_scale(old), _precision_scale(new))
        return t == s and q > p
    return False


def _precision_scale(decimal: str) -> tuple[int, int]:
    p, s = decimal.removeprefix("DECIMAL(").removesuffix(")").split(",")
    return int(p), int(s)


def by_name(upload: Sequence[Column], current: Sequence[Column]) -> list[Column]:
    """The types an upload's columns should be read as: the dataset's column of the same
    name where there is one (taken only where the sampled values fit it)."""
    known = {c.name: c for c in current}
    return [known.get(c.name, c) for c in upload]


def evolved(
    current: Sequence[Column], upload: Sequence[Column], evolve: Evolve
) -> list[Column] | None:
    """The dataset's columns once the upload is appended, or None if `evolve` does not
    allow the upload's columns."""
    if evolve == "strict":
        same = [(c.name, c.type) for c in upload] == [(c.name, c.type) for c in current]
        return list(current) if same else None
    sent = {c.name: c for c in upload}
    columns: list[Column] = []
    for column in current:
        new = sent.get(column.name)
        if new is None or new.type == column.type:
            columns.append(column)  # (an upload without it: NULL in its rows)
        elif evolve == "widen" and is_widening(column.type, new.type):
            reason = f"widened from {column.type} (evolve=widen): {new.reason}"
            columns.append(Column(column.name, new.type, reason))
        else:
            return None
    names = {c.name for c in current}
    folded = {c.name.casefold() for c in current}
    added = [c for c in upload if c.name not in names]
    if any(c.name.casefold() in folded for c in added):
        return None  # `ID` beside `id`: readers that ignore case could not tell them apart
    return columns + added
