"""`lakehouse token create|list|revoke`: API tokens, through /v1/tokens (an admin token
is needed: the one `lakehouse up` wrote, or LAKEHOUSE_TOKEN)."""

from __future__ import annotations

import json
import re

import click
from rich.table import Column, Table

from lakehouse.auth.grants import Role
from lakehouse.auth.tokens import TokenStore
from lakehouse.settings import get_settings
from lakehouse_cli.client import api_option, console, fail, request

DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([dhm]?)")
PER_DAY = {"d": 1.0, "h": 1 / 24, "m": 1 / 1440, "": 1.0}


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (admins only)."""


@token.command()
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "writer", "admin"]), required=True)
@click.option("--datasets", default="*", show_default=True, help="Patterns: 'sales_*,hr_people'.")
@click.option(
    "--allow",
    default="",
    help="Privileges on top of the role: replace, merge, delete, evolve, purge (comma-separated).",
)
@click.option("--expires", help="Lifetime: 90d, 12h or 30m (default: never).")
@api_option
def create(name: str, role: str, datasets: str, allow: str, expires: str | None, api: str) -> None:
    """Create a token NAME and print its secret, once. A name may hold two live tokens:
    create the second, switch clients to it, revoke the first."""
    payload = {
        "name": name,
        "role": role,
        "datasets": datasets.split(","),
        "allow": [a for a in allow.split(",") if a],
        "expires_in_days": _days(expires) if expires else None,
    }
    response = request("POST", f"{api}/v1/tokens", json=payload)
    if response.status_code >= 400:
        fail(response)
    body = response.json()
    click.echo(body["token"])
    expiry = f"; expires {body['expires_at']}" if body["expires_at"] else ""
    click.echo(
        f"{name} ({role}; datasets {', '.join(body['datasets'])}{expiry}): the token above is "
        "shown this once: store it now",
        err=True,
    )


@token.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@api_option
def list_tokens(fmt: str, api: str) -> None:
    """Every token not revoked: name, role, grants, created, last used, expiry, ending."""
    response = request("GET", f"{api}/v1/tokens")
    if response.status_code >= 400:
        fail(response)
    tokens = response.json()["tokens"]
    if fmt == "json":
        click.echo(json.dumps(tokens, indent=2))
        return
    # Names and endings are what `token revoke` takes: never cut, whatever the width.
    widest = max((len(t["name"]) for t in tokens), default=4)
    name, ending = Column("name", no_wrap=True, min_width=widest), Column("ends", no_wrap=True)
    table = Table(name, "role", "datasets", "allow", "created", "last used", "expires", ending)
    for t in tokens:
        table.add_row(t["name"], t["role"], ",".join(t["datasets"]), ",".join(t["allow"]),
                      t["created_at"][:16], (t["last_used_at"] or "never")[:16],
                      (t["expires_at"] or "never")[:16], t["ending"])  # fmt: skip
    console.print(table)


@token.command()
@click.argument("name")
@click.option("--ending", help="Revoke only the token ending so (`token list` shows it).")
@api_option
def revoke(name: str, ending: str | None, api: str) -> None:
    """Revoke NAME's tokens (or the one ending so): refused by every API process within
    seconds."""
    response = request(
        "DELETE", f"{api}/v1/tokens/{name}", params={"ending": ending} if ending else {}
    )
    if response.status_code >= 400:
        fail(response)
    console.print(f"revoked {response.json()['revoked']} token(s) named {name}")


def _days(text: str) -> float:
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r}: write 90d, 12h or 30m", param_hint="--expires")
    return float(match[1]) * PER_DAY[match[2]]


@token.command()
@click.option("--name", default="admin", show_default=True)
def init(name: str) -> None:
    """Create a deployment's first admin token directly in the token store (the instance's
    Postgres, or the state directory) and print it once: for a deployment that `lakehouse
    up` did not start. Refused once any token exists: then use `token create`."""
    store = TokenStore.for_settings(get_settings())
    if store.list_tokens():
        raise click.ClickException(
            "tokens exist already: create more with `lakehouse token create` and an admin token"
        )
    _, secret = store.create(name, Role.ADMIN)
    click.echo(secret)
    click.echo(f"admin token {name!r}: shown this once, store it now", err=True)
