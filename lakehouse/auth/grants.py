"""What a token may do: its role's privileges (plus any granted on top), on the datasets
its patterns match.

    reader  read the granted datasets (/v1/sql, /v1/catalog, receipts of their ingests)
    writer  and append to them
    admin   everything, on every dataset: replace, tokens, the audit trail

Replacing a dataset, merging into it by key, deleting from it by key, changing its columns
(evolve) and purging its earlier versions are privileges of their own (`--allow replace,
merge,delete,evolve,purge` on a writer): a
writer that feeds a dataset cannot throw it away or rewrite its rows by accident. Patterns
are dataset names with `*` for any run of characters (`sales_*`), so a team is granted its
prefix once.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lakehouse.errors import Forbidden, InvalidInput


class Privilege(StrEnum):
    READ = "read"
    APPEND = "append"
    REPLACE = "replace"
    MERGE = "merge"
    DELETE = "delete"
    EVOLVE = "evolve"  # an append that adds columns or widens types (evolve=)
    PURGE = "purge"  # erase now what earlier versions hold (`lakehouse.publish.purge`)
    ADMIN = "admin"  # tokens, the audit trail, every dataset


class Role(StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


ROLE_PRIVILEGES: dict[Role, frozenset[Privilege]] = {
    Role.READER: frozenset({Privilege.READ}),
    Role.WRITER: frozenset({Privilege.READ, Privilege.APPEND}),
    Role.ADMIN: frozenset(Privilege),
}
# Privileges that may be granted on top of a role (`--allow`).
GRANTABLE = frozenset(
    {Privilege.REPLACE, Privilege.MERGE, Privilege.DELETE, Privilege.EVOLVE, Privilege.PURGE}
)

# A dataset name, with `*` for any run of name characters.
PATTERN = re.compile(r"[a-z*][a-z0-9_*]{0,62}")


def parse_patterns(text: str | Iterable[str]) -> tuple[str, ...]:
    """'sales_*,hr_people' (or a list of them) as patterns; 400 naming a bad one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    patterns = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    for pattern in patterns:
        if not PATTERN.fullmatch(pattern):
            raise InvalidInput(
                f"dataset pattern {pattern!r} is not a dataset name with `*` wildcards "
                "(lower-case letters, digits and `_`, e.g. sales_*)"
            )
    if not patterns:
        raise InvalidInput(
            "no dataset pattern given: name the datasets (e.g. sales_*,hr_people), or `*` "
            "for every dataset"
        )
    return patterns


def grant_patterns(role: Role, text: str | Iterable[str]) -> tuple[str, ...]:
    """`parse_patterns` for a token of `role`: an admin's token is granted every dataset,
    so patterns that would narrow it are refused rather than shown and ignored."""
    patterns = parse_patterns(text)
    if role is Role.ADMIN and patterns != ("*",):
        raise InvalidInput(
            f"an admin token is granted every dataset, not only {', '.join(patterns)}: leave "
            "the datasets out (or `*`), or make it a reader or writer token"
        )
    return patterns


def parse_privileges(text: str | Iterable[str]) -> frozenset[Privilege]:
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = {item.strip() for item in items if item.strip()}
    unknown = sorted(chosen - {p.value for p in GRANTABLE})
    if unknown:
        raise InvalidInput(
            f"cannot grant {', '.join(map(repr, unknown))}: grantable on top of a role: "
            f"{', '.join(sorted(GRANTABLE))}"
        )
    return frozenset(Privilege(item) for item in chosen)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name, its role, extra privileges and grants."""

    name: str
    role: Role
    allowed: frozenset[Privilege] = frozenset()
    datasets: tuple[str, ...] = ("*",)
    expires_at: datetime | None = None

    @property
    def privileges(self) -> frozenset[Privilege]:
        return ROLE_PRIVILEGES[self.role] | self.allowed

    @property
    def is_admin(self) -> bool:
        return Privilege.ADMIN in self.privileges

    def granted(self, dataset: str) -> bool:
        """Whether the token's patterns cover `dataset` (an admin's cover every one)."""
        return self.is_admin or any(fnmatch.fnmatchcase(dataset, p) for p in self.datasets)

    def can(self, privilege: Privilege, dataset: str | None = None) -> bool:
        return privilege in self.privileges and (dataset is None or self.granted(dataset))

    def require(self, privilege: Privilege, dataset: str | None = None) -> None:
        """Forbidden, saying what is missing and how to get it, unless allowed."""
        if dataset is not None and not self.granted(dataset):
            raise Forbidden(
                f"token {self.name!r} is not granted dataset {dataset!r} (it is granted "
                f"{', '.join(self.datasets)}): ask an admin for a token whose --datasets "
                "cover it"
            )
        if privilege not in self.privileges:
            raise Forbidden(
                f"token {self.name!r} ({self.role}) may not {_verb(privilege, dataset)}: "
                f"{_how_to_get(privilege)}"
            )


def _verb(privilege: Privilege, dataset: str | None) -> str:
    target = f"dataset {dataset!r}" if dataset else "datasets"
    return {
        Privilege.READ: f"read {target}",
        Privilege.APPEND: f"append to {target}",
        Privilege.REPLACE: f"replace {target} (mode=replace)",
        Privilege.MERGE: f"merge rows by key into {target} (mode=merge)",
        Privilege.DELETE: f"delete rows by key from {target} (mode=delete)",
        Privilege.EVOLVE: f"change the columns of {target} (evolve=)",
        Privilege.PURGE: f"purge the earlier versions of {target}",
        Privilege.ADMIN: "manage tokens or read the audit trail",
    }[privilege]


def _how_to_get(privilege: Privilege) -> str:
    if privilege in GRANTABLE:
        return f"it needs a token created with --allow {privilege.value}"
    needed = next(role for role in Role if privilege in ROLE_PRIVILEGES[role])
    return f"it needs a token with --role {needed.value} or above"


# The project's own callers (the bench, tests of the engine): every dataset, no token.
EVERYTHING = Principal("internal", Role.ADMIN)
