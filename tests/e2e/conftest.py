"""Helpers for tests on the whole stack, each process real and separate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from devstack.ports import free_port
from devstack.stack import Stack
from lakehouse.settings import Settings

# Each started stack's API URL -> its admin token, for `http`.
_TOKENS: dict[str, str] = {}


def _auth(url: str) -> dict[str, str]:
    token = next((t for api, t in _TOKENS.items() if url.startswith(api + "/")), None)
    return {"authorization": f"Bearer {token}"} if token else {}


class _Http:
    """httpx's request functions (`http.get`, `http.post`, `http.stream`...), sending the
    admin token of the stack whose API the URL names (other URLs go as they are)."""

    def __getattr__(self, method: str) -> Any:
        send = getattr(httpx, method)

        def call(*args: Any, headers: dict[str, str] | None = None, **kw: Any) -> Any:
            url = args[1] if method in ("stream", "request") else args[0]  # after the method
            return send(*args, headers={**_auth(str(url)), **(headers or {})}, **kw)

        return call


http = _Http()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def create_token(stack: Stack, name: str, role: str, **fields: Any) -> str:
    """A new token of `role` made through /v1/tokens with the stack's admin token."""
    response = httpx.post(
        f"{stack.api_url}/v1/tokens",
        json={"name": name, "role": role, **fields},
        headers=bearer(stack.admin_token),
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


# A stack for tests that race nothing between processes: one run worker and one API worker
# rather than the two of each `lakehouse up` starts, which cost ~6 CPU-s more at each start
# (the tests of races, restarts and per-process bounds keep two).
ONE_OF_EACH = {"workers": 1, "api_workers": 1}


def e2e_settings(state_dir: Path, **settings: Any) -> Settings:
    """A stack's settings: its own state directory and free ports, then `settings`. No
    Postgres endpoint unless `settings` give it a port (its tests do): each stack would
    spend ~8 CPU-s starting one that only they use."""
    settings = {"pg_port": 0, **settings}
    return Settings(
        state_dir=state_dir,
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        s3_access_key="e2e-access",
        s3_secret_key="e2e-secret-key",
        api_port=free_port(),
        webserver_port=free_port(),
        broker_port=free_port(),
        **settings,
    )


def start_stack(state_dir: Path, *, webserver: bool = False, **settings: Any) -> Stack:
    stack = Stack(e2e_settings(state_dir, **settings), with_webserver=webserver)
    stack.start()
    _TOKENS[stack.api_url] = stack.admin_token
    return stack


def file_chunks(path: Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(size):
            yield chunk


def wait_for_version(api: str, name: str, version: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(f"{api}/v1/catalog/{name}", timeout=10)
        if response.status_code == 200 and response.json()["version"] >= version:
            return response.json()
        time.sleep(0.5)
    raise AssertionError(f"{name} did not reach version {version} in {timeout}s")


def wait_for_ingest(api: str, ingest_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = http.get(f"{api}/v1/ingest/{ingest_id}", timeout=10).json()
        if receipt["status"] in {"materialized", "failed"}:
            return receipt
        time.sleep(0.5)
    raise AssertionError(f"ingest {ingest_id} not materialized or failed in {timeout}s")


def sql_rows(api: str, query: str) -> list[dict]:
    response = http.post(f"{api}/v1/sql", json={"sql": query}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["rows"]
