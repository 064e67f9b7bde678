"""API tokens: created with a role and grants, shown once, stored only as a digest.

The table lives where every API process looks: the instance's Postgres when one is
configured, else SQLite under the state directory. A token is `lh_` and 43 random URL-safe
characters (256 bits); a SHA-256 digest is all that is kept, which is enough for a secret
that cannot be guessed (no slow hash: there is no password to stretch). Two live tokens
per name let a client rotate without a gap: create the second, switch, revoke the first
(by the last four characters `list` shows).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lakehouse.auth.grants import Principal, Privilege, Role
from lakehouse.errors import Conflict, InvalidInput, NotFound
from lakehouse.settings import Settings, sqlalchemy_url

PREFIX = "lh_"
DAY = 86_400
LIVE_PER_NAME = 2
# The longest a token may live: its expiry must stay a date every reader can write.
MAX_EXPIRY_DAYS = 36_500
TOKEN_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
TOKEN_SHAPE = re.compile(r"lh_[A-Za-z0-9_-]{43}")

_metadata = sa.MetaData()
TOKENS = sa.Table(
    "lakehouse_tokens",
    _metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("allowed", sa.String(200), nullable=False, default=""),
    sa.Column("datasets", sa.Text, nullable=False),
    sa.Column("ending", sa.String(4), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # epoch seconds: one type everywhere
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    """A token as `list` shows it: never the secret."""

    name: str
    role: Role
    allowed: tuple[str, ...]
    datasets: tuple[str, ...]
    ending: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    def principal(self) -> Principal:
        return Principal(
            self.name,
            self.role,
            frozenset(Privilege(p) for p in self.allowed),
            self.datasets,
            self.expires_at,
        )

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at.timestamp() <= now


@dataclass(frozen=True)
class Lookup:
    """What a presented secret names: a live token, or why not (for the 401's detail)."""

    token: Token | None
    refusal: str = ""


class TokenStore:
    def __init__(self, url: str) -> None:
        self.engine = _engine(url)
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> TokenStore:
        return cls(token_db_url(settings))

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def create(
        self,
        name: str,
        role: Role,
        datasets: tuple[str, ...] = ("*",),
        allowed: frozenset[Privilege] = frozenset(),
        expires_in_seconds: float | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret (shown once: only its digest is kept)."""
        if not TOKEN_NAME.fullmatch(name):
            raise InvalidInput(
                f"token name {name!r}: use 1-63 lower-case letters, digits, '_', '.' or '-', "
                "starting with a letter"
            )
        if expires_in_seconds is not None and not 0 < expires_in_seconds <= MAX_EXPIRY_DAYS * DAY:
            raise InvalidInput(
                f"a token expires after more than 0 and at most {MAX_EXPIRY_DAYS} days, "
                "or never: leave the expiry out for a token that never expires"
            )
        now = time.time()
        secret = PREFIX + secrets.token_urlsafe(32)
        row = {
            "digest": digest(secret),
            "name": name,
            "role": role.value,
            "allowed": ",".join(sorted(allowed)),
            "datasets": ",".join(datasets),
            "ending": secret[-4:],
            "created_at": now,
            "expires_at": now + expires_in_seconds if expires_in_seconds else None,
        }
        with self._begin() as conn:
            live = [t for t in self._named(conn, name) if not t.expired(now)]
            if len(live) >= LIVE_PER_NAME:
                endings = ", ".join(t.ending for t in live)
                raise Conflict(
                    f"token {name!r} already has {LIVE_PER_NAME} live tokens (ending {endings}): "
                    f"revoke one first (lakehouse token revoke {name} --ending <last 4>)"
                )
            conn.execute(TOKENS.insert().values(**row))
        return _token(row), secret

    def list_tokens(self) -> list[Token]:
        """Every token not revoked, expired ones included, by name then age."""
        query = TOKENS.select().where(TOKENS.c.revoked_at.is_(None))
        with self._begin() as conn:
            rows = conn.execute(query.order_by(TOKENS.c.name, TOKENS.c.created_at)).mappings()
            return [_token(row) for row in rows]

    def revoke(self, name: str, ending: str | None = None) -> int:
        """Revoke the live tokens of `name` (or the one ending in `ending`): how many."""
        where = sa.and_(TOKENS.c.name == name, TOKENS.c.revoked_at.is_(None))
        if ending is not None:
            where = sa.and_(where, TOKENS.c.ending == ending)
        with self._begin() as conn:
            count = conn.execute(TOKENS.update().where(where).values(revoked_at=time.time()))
        if not count.rowcount:
            which = f" ending {ending!r}" if ending is not None else ""
            raise NotFound(f"no live token {name!r}{which}: `lakehouse token list` shows them")
        return int(count.rowcount)

    def lookup(self, secret: str) -> Lookup:
        if not TOKEN_SHAPE.fullmatch(secret):
            return Lookup(None, "that is not a lakehouse token (they start with lh_)")
        with self._begin() as conn:
            row = conn.execute(TOKENS.select().where(TOKENS.c.digest == digest(secret)))
            found = row.mappings().first()
        if found is None:
            return Lookup(None, "unknown token")
        if found["revoked_at"] is not None:
            return Lookup(None, f"token {found['name']!r} ending {found['ending']} was revoked")
        token = _token(found)
        if token.expired(time.time()):
            assert token.expires_at is not None
            return Lookup(
                None, f"token {token.name!r} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        return Lookup(token)

    def touch(self, secret: str, every_seconds: float = 60) -> None:
        """Record that the token was used, at most once a minute per process."""
        key, now = digest(secret), time.time()
        with self._touch_lock:
            if now - self._touched.get(key, 0) < every_seconds:
                return
            self._touched[key] = now
        with self._begin() as conn:
            conn.execute(TOKENS.update().where(TOKENS.c.digest == key).values(last_used_at=now))

    def _named(self, conn: sa.Connection, name: str) -> list[Token]:
        where = sa.and_(TOKENS.c.name == name, TOKENS.c.revoked_at.is_(None))
        return [_token(row) for row in conn.execute(TOKENS.select().where(where)).mappings()]


def token_db_url(settings: Settings) -> str:
    if settings.postgres_url:
        return sqlalchemy_url(settings.postgres_url)
    return f"sqlite:///{(settings.state_dir / 'auth' / 'tokens.db').absolute()}"


@lru_cache
def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    _metadata.create_all(engine)  # idempotent: CREATE TABLE IF NOT EXISTS
    return engine


def _token(row: Mapping[Any, Any]) -> Token:
    created = _when(row["created_at"])
    assert created is not None
    return Token(
        name=row["name"],
        role=Role(row["role"]),
        allowed=tuple(p for p in row["allowed"].split(",") if p),
        datasets=tuple(row["datasets"].split(",")),
        ending=row["ending"],
        created_at=created,
        expires_at=_when(row["expires_at"]),
        last_used_at=_when(row.get("last_used_at")),
    )


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


ADMIN_TOKEN_FILE = "admin-token"
BOOTSTRAP_NAME = "local-admin"


def ensure_admin_token(store: TokenStore, state_dir: Path) -> Path:
    """The first admin token of a deployment, in <state_dir>/admin-token (its owner alone
    may read it), where the `lakehouse` commands find it. Kept while it is live; a new
    one when it was revoked or deleted."""
    path = state_dir / ADMIN_TOKEN_FILE
    if path.exists() and store.lookup(path.read_text().strip()).token is not None:
        return path
    with contextlib.suppress(NotFound):  # an earlier one, lost with its file
        store.revoke(BOOTSTRAP_NAME)
    _, secret = store.create(BOOTSTRAP_NAME, Role.ADMIN)
    state_dir.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{ADMIN_TOKEN_FILE}.{os.getpid()}")
    draft.touch(mode=0o600)
    draft.write_text(secret + "\n")
    draft.replace(path)
    return path
