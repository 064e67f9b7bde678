"""Dataset names: lowercase SQL identifiers, so they can be views, partitions and key parts."""

from __future__ import annotations

import re

from lakehouse.errors import InvalidInput

DATASET_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# `<name>__rejects` is the view of a dataset's rejected rows, so no dataset may end so.
REJECTS_SUFFIX = "__rejects"


class InvalidName(InvalidInput):
    def __init__(self, name: str) -> None:
        self.name = name
        self.suggestion = suggest_name(name)
        super().__init__(
            f"invalid dataset name {name!r}: use a lowercase letter followed by up to 62 "
            f"lowercase letters, digits or underscores, not ending in {REJECTS_SUFFIX!r}, "
            f"e.g. {self.suggestion!r}"
        )

    def detail(self) -> object:
        return {"message": str(self), "name": self.name, "suggested_name": self.suggestion}


def suggest_name(name: str) -> str:
    """The closest valid name: lowercased, other characters folded into underscores."""
    folded = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    folded = folded.removesuffix(REJECTS_SUFFIX).strip("_")
    if not folded or not folded[0].isalpha():
        folded = f"d_{folded}".rstrip("_")
    return folded[:63]


def validate_name(name: str) -> str:
    if not DATASET_NAME.fullmatch(name) or name.endswith(REJECTS_SUFFIX):
        raise InvalidName(name)
    return name
