"""Hostile and awkward uploads through POST /v1/ingest, against a real S3 server: each
answer is a 4xx with a `detail` that says what to do, and leaves nothing stored; or the
upload materializes with exactly its values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.upload import wait as upload_wait
from lakehouse.ingest.log import read_receipt
from lakehouse.ingest.records import IngestRecord
from lakehouse.publish.catalog import latest_manifest
from lakehouse.publish.status import IngestStatus
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore
from tests.helpers import data_keys, materialize_csv, materialize_record
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration


def stored(store: ObjectStore) -> list[str]:
    """Every key in the test's bucket: landing files, records, receipts, claims, datasets."""
    return data_keys(store)


def sql(client: TestClient, query: str) -> list[dict[str, Any]]:
    answer = client.post("/v1/sql", json={"sql": query})
    assert answer.status_code == 200, answer.text
    return answer.json()["rows"]


@pytest.fixture
def limited_app(settings: Settings) -> Iterator[FastAPI]:
    limited = settings.model_copy(update={"max_upload_bytes": 1000, "max_concurrent_uploads": 1})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: limited
    app.state.test_headers = admin_headers(limited)
    yield app


# -- refused at upload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # (a blank line above a header that splits is a preamble: skipped, and said)
        (b"\nid\n1\n", "line 1 has no column names (it is blank): put the header"),
        (b",\n1,2\n", "line 1 has no column names"),
        (b'"first\nname",id\nAnn,1\n', "holds a line break: put every column name"),
        (b"id,name\n1,Ann\r\n2,Bo\n", "line 2 ends with CRLF, the header with LF: use one kind"),
        (b"id,name\n1,An\rn\n", "line 2 ends with CR, the header with LF"),
    ],
    ids=["blank-first-line", "blank-names", "line-break-in-name", "mixed-line-ends", "bare-cr"],
)
def test_a_file_the_reader_would_fail_is_400_and_stores_nothing(
    client: TestClient, store: ObjectStore, body: bytes, says: str
) -> None:
    response = client.post("/v1/ingest?name=people", content=body)
    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert stored(store) == []


def test_attack_5000_columns_is_400_naming_the_cap_and_stores_nothing(
    client: TestClient, store: ObjectStore
) -> None:
    """Attack: a very wide file. Each column is carried into the log entry, Parquet, Iceberg
    and the catalog; past `max_columns` (4,096 by default) the upload is refused."""
    header = ",".join(f"c{i}" for i in range(5000))
    row = ",".join("1" for _ in range(5000))
    response = client.post("/v1/ingest?name=wide", content=f"{header}\n{row}\n".encode())
    assert response.status_code == 400
    assert response.json()["detail"] == {
        "message": "the file has 5,000 columns; a dataset may have at most 4,096 (the "
        "max_columns setting, LAKEHOUSE_MAX_COLUMNS): split the file into datasets of fewer "
        "columns, or ask the operator to raise the cap",
        "columns": 5000,
        "max_columns": 4096,
    }
    assert stored(store) == []


def test_an_append_to_a_dataset_at_its_size_cap_is_409_and_a_replace_goes_on(
    settings: Settings, store: ObjectStore
) -> None:
    """Attack: filling one dataset without end. With `max_dataset_bytes` set (off by
    default), an append to a dataset at its cap is refused before its body is read."""
    materialize_csv(settings, "full", b"n\n1\n2\n")
    capped = settings.model_copy(update={"max_dataset_bytes": 1})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: capped
    with TestClient(app, headers=admin_headers(capped)) as client:
        before = stored(store)
        refused = client.post("/v1/ingest?name=full", content=b"n\n3\n")
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert detail["max_dataset_bytes"] == 1 and detail["bytes"] > 1
        assert "LAKEHOUSE_MAX_DATASET_BYTES" in detail["message"]
        assert stored(store) == before
        replaced = client.post("/v1/ingest?name=full&mode=replace", content=b"n\n3\n")
        assert replaced.status_code == 202, replaced.text


@pytest.mark.parametrize("wait", ["nan", "inf", "1e9", "-1", "soon"])
def test_wait_must_be_finite_seconds_up_to_the_limit(
    client: TestClient, settings: Settings, store: ObjectStore, wait: str
) -> None:
    response = client.post(f"/v1/ingest?name=people&wait={wait}", content=b"id\n1\n")
    assert response.status_code == 422
    longest = f"{settings.ingest_wait_seconds:g}"
    assert response.json()["detail"] == (
        f"wait={wait!r}: use wait=true (waits up to {longest} s), wait=false, or a number of "
        f"seconds from 0 to {longest}, e.g. wait=60"
    )
    assert stored(store) == []


def post_streaming(
    app: FastAPI, headers: dict[str, str], chunks: Iterator[bytes]
) -> tuple[int, dict[str, Any], int]:
    """POST /v1/ingest?name=big straight to the ASGI app, the body in chunks and without a
    Content-Length (as a chunked upload arrives): (status, body, bytes the app read)."""
    read = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(chunks, None)
        read += len(chunk or b"")
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/ingest",
        "raw_path": b"/v1/ingest",
        "query_string": b"name=big",
        "root_path": "",
        "headers": [
            (k.encode(), v.encode()) for k, v in {**app.state.test_headers, **headers}.items()
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(body), read


def endless(head: bytes) -> Iterator[bytes]:
    """`head`, then 100 MB of CSV rows in 64 KiB chunks."""
    yield head
    for _ in range(1600):
        yield b"1234567\n" * 8192


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "raw"])
def test_a_body_past_the_cap_without_content_length_is_413_as_it_streams(
    limited_app: FastAPI, store: ObjectStore, multipart: bool
) -> None:
    # Multipart bodies used to be spooled to disk whole before any limit applied.
    if multipart:
        headers = {"content-type": "multipart/form-data; boundary=xyz"}
        head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n\r\n'
    else:
        headers, head = {"content-type": "text/csv"}, b""
    status, body, read = post_streaming(limited_app, headers, endless(head + b"n\n"))
    assert status == 413
    assert body["detail"] == (
        "the upload is larger than 1000 bytes (decompressed): split the file, or raise "
        "LAKEHOUSE_MAX_UPLOAD_BYTES"
    )
    assert read < 200_000  # of 100 MB offered: stopped at the cap, not at the body's end
    assert stored(store) == []


def test_a_multipart_file_streams_without_spooling(
    client: TestClient, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spooling(*_: object, **__: object) -> None:
        raise AssertionError("the multipart body was parsed into a spooled form")

    monkeypatch.setattr("starlette.requests.Request.form", no_spooling)
    body = b'id,note\r\n1,"a\r\nb"\r\n'
    response = client.post("/v1/ingest?name=people", files={"file": ("p.csv", body, "text/csv")})
    assert response.status_code == 202, response.text
    key = f"landing/people/{response.json()['ingest_id']}.csv"
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == body


def test_the_upload_slot_is_given_back_before_waiting_for_the_run(
    limited_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One slot. While the first upload waits for its (slow) run, another upload lands.
    slots_taken_while_waiting: list[int] = []

    def slow_run(_: dg.DagsterInstance, store: ObjectStore, record: IngestRecord) -> IngestStatus:
        slots_taken_while_waiting.append(limited_app.state.upload_slots.in_flight)
        return IngestStatus(status="running", run_id="r")

    monkeypatch.setattr(upload_wait, "ingest_status", slow_run)
    with TestClient(limited_app, headers=limited_app.state.test_headers) as client:
        waited = client.post("/v1/ingest?name=people&wait=0.3", content=b"id\n1\n")
        assert waited.status_code == 202, waited.text
        assert waited.json()["status"] == "running"
        assert client.post("/v1/ingest?name=people", content=b"id\n2\n").status_code == 202
    assert slots_taken_while_waiting and set(slots_taken_while_waiting) == {0}
    assert limited_app.state.upload_slots.in_flight == 0


# -- accepted, and materialized exactly ----------------------------------------------------


def test_a_200_kb_field_lands_and_materializes(client: TestClient, settings: Settings) -> None:
    body = b"id,blob\n1," + b"x" * 200_000 + b"\n2,short\n"
    response = client.post("/v1/ingest?name=blobs", content=body)
    assert response.status_code == 202, response.text
    materialize_csv(settings, "blobs2", body)
    assert sql(client, "SELECT id, length(blob) AS n FROM blobs2 ORDER BY id") == [
        {"id": 1, "n": 200_000},
        {"id": 2, "n": 5},
    ]


def test_names_that_differ_only_in_case_are_renamed_and_materialize(
    client: TestClient, settings: Settings
) -> None:
    body = b"id,ID\n1,2\n"
    response = client.post("/v1/ingest?name=cases", content=body)
    assert response.status_code == 202, response.text
    schema = response.json()["inferred_schema"]
    assert [c["name"] for c in schema["columns"]] == ["id", "ID_2"]
    assert schema["renamed"] == {"ID_2": "ID"}
    materialize_csv(settings, "cases2", body)
    assert sql(client, 'SELECT id, "ID_2" AS upper FROM cases2') == [{"id": 1, "upper": 2}]


def quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def test_awkward_but_valid_csv_round_trips_exactly(client: TestClient, settings: Settings) -> None:
    values = [
        "a, b",
        'say "hi"',
        "two\r\nlines",
        "lf\nonly",
        "Zoë 日本",
        '{"a": [1, "x,y"], "b": null}',
        None,  # an empty field
    ]
    lines = [f"{i},{quoted(v)}" if v else f"{i}," for i, v in enumerate(values)]
    body = ("id,value\r\n" + "\r\n".join(lines) + "\r\n").encode()
    response = client.post("/v1/ingest?name=awkward", content=body)
    assert response.status_code == 202, response.text
    materialize_csv(settings, "awkward2", body)
    rows = sql(client, "SELECT id, value FROM awkward2 ORDER BY id")
    assert [r["value"] for r in rows] == values


def test_big_integers_decimals_and_other_scripts_digits_keep_their_exact_value(
    client: TestClient, settings: Settings
) -> None:
    body = "mixed,big,digits\n9007199254740993,99999999999999999999,١٢\n1.5,-1,٣\n".encode()
    response = client.post("/v1/ingest?name=numbers", content=body)
    assert response.status_code == 202, response.text
    types = {c["name"]: c["type"] for c in response.json()["inferred_schema"]["columns"]}
    assert types == {"mixed": "DECIMAL(18,1)", "big": "DECIMAL(38,0)", "digits": "VARCHAR"}
    materialize_csv(settings, "numbers2", body)
    rows = sql(client, "SELECT mixed, big, digits FROM numbers2 ORDER BY mixed DESC")
    assert rows == [
        {"mixed": "9007199254740993.0", "big": "99999999999999999999", "digits": "١٢"},
        {"mixed": "1.5", "big": "-1", "digits": "٣"},
    ]
    manifest = client.get("/v1/catalog/numbers2").json()
    assert (manifest["row_count"], manifest.get("rejected_rows", 0)) == (2, 0)


def test_a_bad_line_is_one_reject_row_with_all_its_reasons(
    client: TestClient, settings: Settings
) -> None:
    materialize_csv(settings, "pairs", b"a,b\n" + b"x,y\n" * 1200 + b"oops,1,2,3\n")
    rows = sql(client, "SELECT line, error_type, error_message, csv_line FROM pairs__rejects")
    assert rows == [
        {
            "line": 1202,
            "error_type": "TOO MANY COLUMNS",
            "error_message": "Expected Number of Columns: 2 Found: 4",
            "csv_line": "oops,1,2,3",
        }
    ]
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        manifest = latest_manifest(instance, "pairs")
    assert manifest is not None and manifest.rejected_rows == 1


def test_a_file_the_reader_refuses_fails_alone_without_retries(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    # Past the 1 MiB sample a CRLF line end among LF ones: DuckDB refuses the whole file.
    body = b"n\n" + b"1\n" * 600_000 + b"2\r\n"
    response = client.post("/v1/ingest?name=counts", content=body)
    assert response.status_code == 202, response.text
    ingest_id = response.json()["ingest_id"]
    result = materialize_record(settings, read_receipt(store, ingest_id), raise_on_error=False)
    assert result.success  # the run decided: this ingest failed, and recorded why
    retried = dg.DagsterEventType.STEP_UP_FOR_RETRY
    assert [e for e in result.all_events if e.event_type == retried] == []
    receipt = client.get(f"/v1/ingest/{ingest_id}").json()
    assert receipt["status"] == "failed"
    assert "fix the file and upload it again" in receipt["error"]["message"]
    assert client.get("/v1/catalog/counts").json()["row_count"] == 0


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("delimiter=ab", "delimiter='ab': send one character"),
        ("quote=@", "quote='@': send quote=\", quote=' or quote=none"),
        ("escape=^", "escape='^': send escape="),
        ("header=maybe", "header='maybe': send header=true or header=false"),
        ("skip=-1", "skip='-1': send a number of lines from 0 to 10000"),
        ("skip=%D9%A1", "send a number of lines"),  # an Arabic-Indic digit
        ("encoding=cp1252", "encoding='cp1252': send one of utf-8, latin-1, utf-16"),
        ("quote=none&escape=%5C", "with quote=none: nothing is quoted"),
    ],
)
def test_a_dialect_parameter_that_cannot_be_used_is_400_naming_it(
    client: TestClient, store: ObjectStore, query: str, says: str
) -> None:
    response = client.post(f"/v1/ingest?name=people&{query}", content=b"id\n1\n")
    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert stored(store) == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"Sales, Q3\nid,name,amount\n1,a,2\n", "send skip=1"),  # a title with a comma
        (b"a b c\n1 2 3\n4 5 6\n", "send delimiter=%20"),  # aligned columns
        (b"id,txt\n1,item #5\n# note\n2,b\n", "send comment=#"),  # '#' in values too
        (b'id,t\n1,"open\n', "a quoted value is never closed"),
        (b"id,t\n1,\xe9t\xe9\n", "send encoding=latin-1"),
        (b"i\x00d\x00\n\x001\x00", "encoding=utf-16"),
    ],
    ids=[
        "title-with-comma",
        "aligned-columns",
        "comment-ambiguous",
        "open-quote",
        "latin-1",
        "nul",
    ],
)
def test_a_file_that_allows_two_readings_is_400_saying_which_parameter_decides(
    client: TestClient, store: ObjectStore, body: bytes, says: str
) -> None:
    response = client.post("/v1/ingest?name=people", content=body)
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    assert stored(store) == []


def test_a_raw_bodys_charset_is_its_encoding(client: TestClient) -> None:
    """A latin-1 file said so in its Content-Type is read as latin-1, not as UTF-8."""
    headers = {"content-type": "text/csv; charset=ISO-8859-1"}
    response = client.post(
        "/v1/ingest?name=people", content=b"id,t\n1,\xe9t\xe9\n", headers=headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["inferred_schema"]["encoding"] == "latin-1"
    plain = {"content-type": "text/csv; charset=utf-8"}
    assert (
        client.post("/v1/ingest?name=other", content=b"id\n1\n", headers=plain).status_code == 202
    )


@pytest.mark.parametrize(
    ("query", "charset", "status", "says"),
    [
        ("", "shift_jis", 415, "charset=shift_jis: the text is read as one of utf-8, latin-1"),
        ("&encoding=latin-1", "utf-8", 400, "charset=utf-8 but encoding=latin-1: send one"),
    ],
    ids=["unread-charset", "charset-against-encoding"],
)
def test_a_charset_not_read_here_or_against_encoding_is_refused(
    client: TestClient, store: ObjectStore, query: str, charset: str, status: int, says: str
) -> None:
    """Attack class: two declarations of a file's encoding, one silently preferred."""
    headers = {"content-type": f"text/csv; charset={charset}"}
    response = client.post(f"/v1/ingest?name=people{query}", content=b"id\n1\n", headers=headers)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert stored(store) == []


def test_the_receipt_says_how_the_file_was_read_and_why(client: TestClient) -> None:
    body = b"Export of 2026-12-01\n\nid;name;amount\n1;Ann;10,5\n"
    response = client.post("/v1/ingest?name=people&null=n/a&null=NA", content=body)
    assert response.status_code == 202, response.text
    schema = response.json()["inferred_schema"]
    assert (schema["delimiter"], schema["skipped_lines"], schema["header"]) == (";", 2, True)
    assert (schema["quote"], schema["escape"], schema["comment"]) == ('"', '"', "")
    assert (schema["null"], schema["encoding"]) == (["n/a", "NA"], "utf-8")
    reasons = schema["dialect_reasons"]
    assert reasons["null"] == "given" and "lines 1-2 are a preamble" in reasons["skip"]
    assert "splits line 3 into 3 names" in reasons["delimiter"]
