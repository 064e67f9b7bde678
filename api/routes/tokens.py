"""/v1/tokens: an admin creates, lists and revokes API tokens (`lakehouse token` calls
these). The secret is in the answer to its creation and nowhere else, ever."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep, token_cache
from api.deps import SettingsDep
from lakehouse.auth.grants import Privilege, Role, grant_patterns, parse_privileges
from lakehouse.auth.tokens import DAY, MAX_EXPIRY_DAYS, Token

router = APIRouter(prefix="/tokens", tags=["tokens"])


class TokenRequest(BaseModel):
    # A misspelt field (`dataset`) would otherwise leave its default, every dataset.
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Who or what uses it: it names the caller in the audit trail.")
    role: Role = Field(description="reader, writer or admin.")
    datasets: list[str] = Field(
        ["*"], description="Patterns of the datasets it may use, e.g. ['sales_*', 'hr_people']."
    )
    allow: list[str] = Field(
        [], description="Privileges on top of the role: replace, merge, delete, evolve, purge."
    )
    expires_in_days: float | None = Field(
        None, gt=0, le=MAX_EXPIRY_DAYS, description="None: never expires."
    )


class TokenInfo(BaseModel):
    name: str
    role: Role
    datasets: list[str]
    allow: list[str]
    ending: str = Field(description="The token's last four characters, to tell two apart.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: Token) -> TokenInfo:
        return cls(
            name=token.name,
            role=token.role,
            datasets=list(token.datasets),
            allow=list(token.allowed),
            ending=token.ending,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
        )


class CreatedToken(TokenInfo):
    token: str = Field(description="The secret: shown this once, store it now.")


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class Revoked(BaseModel):
    revoked: int


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(
    body: TokenRequest, principal: PrincipalDep, settings: SettingsDep
) -> CreatedToken:
    """Create a token; a name may have two live tokens at once, for rotation."""
    principal.require(Privilege.ADMIN)
    datasets, allowed = grant_patterns(body.role, body.datasets), parse_privileges(body.allow)
    expires = body.expires_in_days * DAY if body.expires_in_days else None
    store = token_cache(settings).store
    token, secret = await run_in_threadpool(
        store.create, body.name, body.role, datasets, allowed, expires
    )
    return CreatedToken(**TokenInfo.of(token).model_dump(), token=secret)


@router.get("")
async def list_tokens(principal: PrincipalDep, settings: SettingsDep) -> TokenList:
    """Every token not revoked (expired ones too), without secrets."""
    principal.require(Privilege.ADMIN)
    tokens = await run_in_threadpool(token_cache(settings).store.list_tokens)
    return TokenList(tokens=[TokenInfo.of(t) for t in tokens])


@router.delete("/{name}")
async def revoke_token(
    name: str,
    principal: PrincipalDep,
    settings: SettingsDep,
    ending: str | None = Query(
        None, min_length=4, max_length=4, description="Revoke only the token ending so."
    ),
) -> Revoked:
    """Revoke a name's tokens (or one of them): refused everywhere within
    LAKEHOUSE_TOKEN_CACHE_SECONDS."""
    principal.require(Privilege.ADMIN)
    count = await run_in_threadpool(token_cache(settings).store.revoke, name, ending)
    return Revoked(revoked=count)
