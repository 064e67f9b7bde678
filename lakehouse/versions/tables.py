"""What a commit needs of the Iceberg tables (`lakehouse.publish.iceberg.IcebergTables`):
to commit a version as a snapshot, and to say how the table differs from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lakehouse.manifest import IcebergSnapshot, Manifest


@dataclass(frozen=True)
class Committed:
    snapshot: IcebergSnapshot
    seconds: float  # time the commit took (0 when it had already happened)


class Tables(Protocol):
    def commit(self, manifest: Manifest) -> Committed:
        """Make the table's current snapshot `manifest`'s version (idempotent)."""
        ...

    def verify(self, manifest: Manifest) -> list[str]:
        """What differs between the table's current snapshot and `manifest` (empty: none)."""
        ...
