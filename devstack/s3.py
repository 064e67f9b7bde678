"""The local S3 server (SeaweedFS `weed mini`): its identities file and command line."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from devstack.ports import free_port
from devstack.processes import executable
from lakehouse.settings import Settings
from lakehouse.store import layout

# Ports `weed mini` opens besides S3's; each gets a free one so that stacks side by side
# (the tests) do not collide.
INTERNAL_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


def identities(settings: Settings) -> dict:
    """The read-write key of the lakehouse and, when configured, the SQL engine's
    read-only key."""
    found = [_identity("lakehouse", settings.s3_access_key, settings.s3_secret_key,
                       ["Admin", "Read", "List", "Tagging", "Write"])]  # fmt: skip
    if settings.s3_query_access_key:
        # The SQL engine's key: read datasets/, nothing else, never write.
        found.append(
            _identity(
                "lakehouse-query",
                settings.s3_query_access_key,
                settings.s3_query_secret_key,
                layout.query_key_actions(settings.s3_bucket),
            )
        )
    return {"identities": found}


def _identity(name: str, access_key: str, secret_key: str | None, actions: list) -> dict:
    return {
        "name": name,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": actions,
    }


def command(settings: Settings, s3_dir: Path) -> list[str]:
    """Write the identities file into `s3_dir` (owner-readable only) and return the
    command line that serves S3 from `s3_dir/data` on loopback."""
    (s3_dir / "data").mkdir(parents=True, exist_ok=True)
    config = s3_dir / "s3.json"
    config.write_text(json.dumps(identities(settings)))
    config.chmod(0o600)
    port = urlsplit(settings.s3_endpoint).port or 8333
    return [
        executable("weed"), "mini", f"-dir={s3_dir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-s3.port={port}", f"-s3.config={config}", f"-bucket={settings.s3_bucket}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Objects under 64 KiB (log entries, receipts, marks, small files) are kept in
        # the filer's own store, not each assigned a volume and written to it: ~23% less
        # of the server's CPU through a burst of small uploads.
        "-filer.saveToFilerLimit=65536",
        *sorted(f"-{flag}={free_port()}" for flag in INTERNAL_PORTS),
    ]  # fmt: skip
