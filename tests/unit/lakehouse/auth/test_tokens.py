import hashlib
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from lakehouse.auth.grants import Privilege, Role
from lakehouse.auth.tokens import (
    TokenStore,
    digest,
    ensure_admin_token,
)
from lakehouse.errors import Conflict, InvalidInput, NotFound


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(f"sqlite:///{tmp_path / 'tokens.db'}")


def test_only_a_digest_of_a_token_is_stored(store: TokenStore, tmp_path: Path) -> None:
    token, secret = store.create("loader", Role.WRITER, ("sales_*",))
    assert secret.startswith("lh_") and len(secret) == 46
    assert token.ending == secret[-4:]
    with sqlite3.connect(tmp_path / "tokens.db") as db:
        rows = db.execute("SELECT * FROM lakehouse_tokens").fetchall()
    stored = " ".join(str(v) for row in rows for v in row)
    assert secret not in stored and secret[3:20] not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() == digest(secret) in stored
    assert store.lookup(secret).token == token


def test_two_live_tokens_per_name_allow_rotation_without_a_gap(store: TokenStore) -> None:
    first, old = store.create("loader", Role.WRITER)
    second, new = store.create("loader", Role.WRITER)
    with pytest.raises(Conflict, match=rf"ending {re.escape(first.ending)}.*revoke one first"):
        store.create("loader", Role.WRITER)
    assert store.revoke("loader", ending=first.ending) == 1
    assert store.lookup(old).token is None and "was revoked" in store.lookup(old).refusal
    assert store.lookup(new).token == second
    store.create("loader", Role.WRITER)  # room again


def test_an_expired_a_revoked_and_an_unknown_token_say_why(store: TokenStore) -> None:
    _, expired = store.create("brief", Role.READER, expires_in_seconds=1e-6)
    assert "expired at" in store.lookup(expired).refusal
    _, revoked = store.create("gone", Role.READER)
    store.revoke("gone")
    assert "'gone'" in store.lookup(revoked).refusal
    assert store.lookup("lh_" + "A" * 43).refusal == "unknown token"
    assert "not a lakehouse token" in store.lookup("Basic abc").refusal
    with pytest.raises(NotFound, match="lakehouse token list"):
        store.revoke("nobody")


def test_a_token_holds_its_role_grants_and_extra_privileges(store: TokenStore) -> None:
    token, _ = store.create(
        "loader", Role.WRITER, ("sales_*", "hr_people"), frozenset({Privilege.REPLACE})
    )
    principal = token.principal()
    assert principal.can(Privilege.REPLACE, "sales_eu")
    assert not principal.can(Privilege.READ, "marketing")
    assert [t.name for t in store.list_tokens()] == ["loader"]


@pytest.mark.parametrize("name", ["", "Admin", "a b", "a/b", "x" * 64, "1st"])
def test_a_token_name_is_checked(store: TokenStore, name: str) -> None:
    with pytest.raises(InvalidInput, match="token name"):
        store.create(name, Role.READER)


@pytest.mark.parametrize("seconds", [0, -1, 36_501 * 86_400, 1e308, float("inf")])
def test_an_expiry_outside_0_to_100_years_is_refused_before_it_is_stored(
    store: TokenStore, seconds: float
) -> None:
    with pytest.raises(InvalidInput, match="at most 36500 days"):
        store.create("far", Role.READER, expires_in_seconds=seconds)
    assert store.list_tokens() == []


def test_the_first_admin_token_is_kept_private_and_replaced_once_revoked(
    store: TokenStore, tmp_path: Path
) -> None:
    path = ensure_admin_token(store, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert store.lookup(secret).token is not None
    assert ensure_admin_token(store, tmp_path).read_text().strip() == secret  # kept
    store.revoke("local-admin")
    renewed = ensure_admin_token(store, tmp_path).read_text().strip()
    assert renewed != secret and store.lookup(renewed).token is not None
