"""Who may do what, on the real stack: every /v1 route refuses a request without a live
token (401) or without the privilege or grant it needs (403), says what to do, and stores
or changes nothing; a reader learns nothing of a dataset outside its grants; a revoke
reaches a second API process; uploads from other sites' pages are refused."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.instance import PROJECT_ROOT, settings_env
from devstack.ports import free_port
from devstack.stack import Stack
from lakehouse.store import ObjectStore, layout
from tests.e2e.conftest import bearer, create_token, start_stack, wait_for_ingest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CSV = b"id,amount\n1,2.50\n2,3.75\n"


def ingest(stack: Stack, name: str, token: str, body: bytes = CSV, **params: str) -> str:
    response = httpx.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": name, **params},
        content=body,
        headers={**bearer(token), "content-type": "text/csv"},
        timeout=60,
    )
    assert response.status_code in (200, 202), response.text
    ingest_id: str = response.json()["ingest_id"]
    return ingest_id


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("identity"), api_workers=2)
    try:
        for name in ("a_1", "b_1"):
            receipt = wait_for_ingest(stack.api_url, ingest(stack, name, stack.admin_token))
            assert receipt["status"] == "materialized", receipt
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    """One credential per way of being refused, and the ingest id of a_1's upload."""
    expired = create_token(stack, "expired", "admin", expires_in_days=1 / 86_400)  # 1 s
    revoked = create_token(stack, "revoked", "admin")
    response = httpx.delete(f"{stack.api_url}/v1/tokens/revoked", headers=bearer(stack.admin_token))
    assert response.json() == {"revoked": 1}
    # Until then an API process may still trust what it read about the token before.
    time.sleep(stack.settings.token_cache_seconds + 1)
    return {
        "no token": "",
        "wrong token": "lh_" + secrets.token_urlsafe(32),
        "expired": expired,
        "revoked": revoked,
        "reader without the grant": create_token(stack, "reader-c", "reader", datasets=["c_*"]),
        "writer without replace": create_token(stack, "writer-a", "writer", datasets=["a_*"]),
        "reader of a_*": create_token(stack, "reader-a", "reader", datasets=["a_*"]),
    }


def routes(stack: Stack) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Every /v1 route, by label, each with a request that would change or read a_1."""
    receipts = list(ObjectStore(stack.settings.s3()).list_keys(layout.RECEIPTS))
    ingest_id = receipts[0].rsplit("/", 1)[-1].removesuffix(".json")
    upload = {"content": CSV, "headers": {"content-type": "text/csv"}}
    return {
        "append": ("POST", "/v1/ingest?name=a_1", upload),
        "replace": ("POST", "/v1/ingest?name=a_1&mode=replace", upload),
        "receipt": ("GET", f"/v1/ingest/{ingest_id}", {}),
        "sql": ("POST", "/v1/sql", {"json": {"sql": "SELECT count(*) AS n FROM a_1"}}),
        "catalog": ("GET", "/v1/catalog", {}),
        "dataset": ("GET", "/v1/catalog/a_1", {}),
        "versions": ("GET", "/v1/catalog/a_1/versions", {}),
        "create token": ("POST", "/v1/tokens", {"json": {"name": "sneaky", "role": "admin"}}),
        "list tokens": ("GET", "/v1/tokens", {}),
        "revoke token": ("DELETE", "/v1/tokens/reader-a", {}),
    }


# What each credential refused for who it is finds in every route's detail.
UNAUTHENTICATED = {
    "no token": "no token: send `Authorization: Bearer <token>`",
    "wrong token": "unknown token",
    "expired": "expired",
    "revoked": "was revoked",
}
# The routes a credential refused for what it may do can still use (tested below).
ALLOWED = {
    "reader without the grant": {"catalog"},  # answered, listing nothing
    "writer without replace": {"append", "receipt", "sql", "catalog", "dataset", "versions"},
}


def state(stack: Stack) -> tuple[list[str], list[dict], list[dict]]:
    """What a refused request must not change: the bucket (but the audit trail, which
    records the refusals), the catalog and the tokens."""
    store = ObjectStore(stack.settings.s3())
    keys = sorted(k for k in store.list_keys("") if not k.startswith(layout.AUDIT))
    admin = bearer(stack.admin_token)
    catalog = httpx.get(f"{stack.api_url}/v1/catalog", headers=admin).json()["datasets"]
    listed = httpx.get(f"{stack.api_url}/v1/tokens", headers=admin).json()["tokens"]
    return keys, catalog, [{k: t[k] for k in ("name", "ending")} for t in listed]


@pytest.mark.parametrize(
    "who", [*UNAUTHENTICATED, "reader without the grant", "writer without replace"]
)
def test_every_route_refuses_and_changes_nothing(
    stack: Stack, tokens: dict[str, str], who: str
) -> None:
    before = state(stack)
    headers = bearer(tokens[who]) if tokens[who] else {}
    answers = {}
    for label, (method, path, request) in routes(stack).items():
        if label in ALLOWED.get(who, ()):
            continue
        sent = {**headers, **request.get("headers", {})}
        body = {k: v for k, v in request.items() if k != "headers"}
        answers[label] = httpx.request(
            method, f"{stack.api_url}{path}", headers=sent, timeout=60, **body
        )
    for label, response in answers.items():
        detail = response.json()["detail"]
        if who in UNAUTHENTICATED:
            assert response.status_code == 401, (label, response.text)
            assert UNAUTHENTICATED[who] in detail, (label, detail)
            assert "lakehouse token create" in detail, (label, detail)  # what to do
            assert response.headers["www-authenticate"] == "Bearer"
        elif label.endswith("token") or label.endswith("tokens"):
            assert response.status_code == 403, (label, response.text)
            assert "may not manage tokens" in detail and "--role admin" in detail, detail
        elif who == "writer without replace":
            assert (label, response.status_code) == ("replace", 403), response.text
            assert "may not replace dataset 'a_1'" in detail and "--allow replace" in detail
        elif label == "receipt":
            assert response.status_code == 404, response.text  # as if it did not exist
        else:
            assert response.status_code == 403, (label, response.text)
            assert "is not granted dataset 'a_1'" in detail and "c_*" in detail, detail
    assert state(stack) == before


def test_what_a_privilege_allows_it_does(stack: Stack, tokens: dict[str, str]) -> None:
    """The other side of the refusals: the writer of a_* appends, the reader of c_* sees
    an empty catalog, and an admin may replace."""
    writer = tokens["writer without replace"]
    assert wait_for_ingest(stack.api_url, ingest(stack, "a_1", writer))["status"] == "materialized"
    listing = httpx.get(
        f"{stack.api_url}/v1/catalog", headers=bearer(tokens["reader without the grant"])
    )
    assert listing.status_code == 200 and listing.json() == {"datasets": []}
    replaced = ingest(stack, "a_1", stack.admin_token, mode="replace")
    assert wait_for_ingest(stack.api_url, replaced)["status"] == "materialized"


def test_a_reader_learns_nothing_of_a_dataset_outside_its_grants(
    stack: Stack, tokens: dict[str, str]
) -> None:
    """b_1 exists, b_9 does not: for a reader of a_* every answer about them is the same
    403, but the name; the refusal is decided from the token alone, before any lookup."""
    api, headers = stack.api_url, bearer(tokens["reader of a_*"])
    names = httpx.get(f"{api}/v1/catalog", headers=headers).json()["datasets"]
    assert [d["name"] for d in names] == ["a_1"]

    def answers(name: str) -> list[tuple[int, str]]:
        asked = [
            httpx.get(f"{api}/v1/catalog/{name}", headers=headers),
            httpx.get(f"{api}/v1/catalog/{name}/versions", headers=headers),
            httpx.post(f"{api}/v1/sql", json={"sql": f"SELECT * FROM {name}"}, headers=headers),
            httpx.post(
                f"{api}/v1/sql",
                json={"sql": f"SELECT * FROM {name}__rejects"},
                headers=headers,
            ),
            httpx.post(
                f"{api}/v1/sql",
                json={"sql": "SELECT * FROM a_1", "as_of": {name: 1}},
                headers=headers,
            ),
        ]
        return [(r.status_code, r.json()["detail"].replace(name, "<name>")) for r in asked]

    existing, missing = answers("b_1"), answers("b_9")
    assert existing == missing
    assert {status for status, _ in existing} == {403}
    # A granted name that does not exist is the ordinary 400 of an unknown dataset.
    unknown = httpx.post(f"{api}/v1/sql", json={"sql": "SELECT * FROM a_9"}, headers=headers)
    assert unknown.status_code == 400 and "unknown dataset 'a_9'" in unknown.json()["detail"]
    # The audit trail is the admins' alone.
    audit = httpx.post(f"{api}/v1/sql", json={"sql": "SELECT * FROM _audit"}, headers=headers)
    assert audit.status_code == 403


def test_an_ingest_id_of_another_dataset_answers_as_unknown(
    stack: Stack, tokens: dict[str, str]
) -> None:
    b_ingest = ingest(stack, "b_1", stack.admin_token, body=b"id,amount\n7,1.00\n")
    headers = bearer(tokens["reader of a_*"])
    theirs = httpx.get(f"{stack.api_url}/v1/ingest/{b_ingest}", headers=headers)
    unknown_id = b_ingest[:-8] + "00000000"
    nobody = httpx.get(f"{stack.api_url}/v1/ingest/{unknown_id}", headers=headers)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["detail"].replace(b_ingest, "<id>") == nobody.json()["detail"].replace(
        unknown_id, "<id>"
    )


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_cross_site_request_forgery_of_an_upload_is_refused(
    stack: Stack, content_type: str
) -> None:
    """A page of another site can make a browser POST text/plain or a form without asking
    (no CORS preflight): with a browser's Origin, only CSV, gzip and multipart pass, even
    with a valid token."""
    before = state(stack)
    response = httpx.post(
        f"{stack.api_url}/v1/ingest",
        params={"name": "a_1", "mode": "replace"},
        content=CSV,
        headers={
            **bearer(stack.admin_token),
            "origin": "https://evil.example",
            "content-type": content_type,
        },
    )
    assert response.status_code == 403, response.text
    assert "must be sent as text/csv" in response.json()["detail"]
    assert state(stack) == before


def test_revoking_reaches_a_second_api_process(stack: Stack, tmp_path: Path) -> None:
    """Two API processes of one deployment share the token store: a token revoked through
    one is refused by the other once its cache has expired (token_cache_seconds, 2 s by
    default, well within the 5 s promised)."""
    port = free_port()
    log = (tmp_path / "api-2.log").open("wb")
    second = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log"],
        cwd=PROJECT_ROOT,
        env={**settings_env(stack.settings), "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        other = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{other}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        token = create_token(stack, "rotated", "reader")
        query = {"sql": "SELECT 1 AS one"}
        assert httpx.post(f"{other}/v1/sql", json=query, headers=bearer(token)).status_code == 200
        response = httpx.delete(
            f"{stack.api_url}/v1/tokens/rotated", headers=bearer(stack.admin_token)
        )
        assert response.status_code == 200
        time.sleep(stack.settings.token_cache_seconds)
        refused = httpx.post(f"{other}/v1/sql", json=query, headers=bearer(token))
        assert refused.status_code == 401 and "was revoked" in refused.json()["detail"]
    finally:
        second.terminate()
        second.wait(timeout=30)
        log.close()
