"""Secrets generated per state directory: the local S3 server's two secret keys and the
broker's password, made at the first start and kept in <state_dir>/secrets.json (its
owner alone may read it), so that no deployment runs on a secret printed anywhere."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

GENERATED_SECRETS = ("s3_secret_key", "s3_query_secret_key", "broker_password")
# The defaults of earlier versions, printed in their README: never to be trusted.
EXAMPLE_SECRETS = frozenset({"lakehouse-secret-key", "lakehouse-query-secret-key"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
SECRETS_FILE = "secrets.json"


def read_generated_secrets(state_dir: Path) -> dict[str, str]:
    try:
        stored: dict[str, str] = json.loads((state_dir / SECRETS_FILE).read_text())
    except FileNotFoundError:
        return {}
    return stored


def ensure_generated_secrets(state_dir: Path) -> dict[str, str]:
    """The state directory's generated secrets, created at the first call (exclusively:
    processes starting together agree on one set)."""
    path = state_dir / SECRETS_FILE
    stored = read_generated_secrets(state_dir)
    if all(stored.get(name) for name in GENERATED_SECRETS):
        return stored
    fresh = {name: stored.get(name) or secrets.token_urlsafe(24) for name in GENERATED_SECRETS}
    state_dir.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{SECRETS_FILE}.{os.getpid()}")
    draft.write_text(json.dumps(fresh))
    draft.chmod(0o600)
    try:
        os.link(draft, path)  # fails if another process wrote it first: theirs stands
    except FileExistsError:
        if stored:  # an incomplete file of an earlier version: complete it
            draft.replace(path)
    finally:
        draft.unlink(missing_ok=True)
    return read_generated_secrets(state_dir)
