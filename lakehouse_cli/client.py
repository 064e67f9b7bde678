"""How the `lakehouse` commands reach the API: its URL, the token they send, and errors
as click shows them."""

from __future__ import annotations

import json
import os
from typing import Any

import click
import httpx
from rich.console import Console

from lakehouse.auth.tokens import ADMIN_TOKEN_FILE
from lakehouse.settings import get_settings

console = Console(soft_wrap=True)  # paths and tokens stay whole, to copy from a terminal


def default_api() -> str:
    settings = get_settings()
    return f"http://{settings.api_host}:{settings.api_port}"


api_option = click.option(
    "--api", default=default_api, show_default="from LAKEHOUSE_API_HOST/PORT", help="API URL."
)


def token() -> str | None:
    """The token the commands send: LAKEHOUSE_TOKEN, else the admin token `lakehouse up`
    wrote to the state directory."""
    if given := os.environ.get("LAKEHOUSE_TOKEN"):
        return given.strip()
    path = get_settings().state_dir / ADMIN_TOKEN_FILE
    return path.read_text().strip() if path.exists() else None


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """An API request with the token; a ClickException when the API cannot be reached."""
    headers = dict(kwargs.pop("headers", None) or {})
    if (secret := token()) is not None:
        headers["authorization"] = f"Bearer {secret}"
    try:
        return httpx.request(method, url, timeout=None, headers=headers, **kwargs)
    except httpx.ConnectError as exc:
        raise click.ClickException(f"cannot reach the API at {url}: is `make up` running?") from exc


def fail(response: httpx.Response) -> None:
    detail = response.json().get("detail")
    text = detail if isinstance(detail, str) else json.dumps(detail, indent=2)
    raise click.ClickException(f"{response.status_code}: {text}")
