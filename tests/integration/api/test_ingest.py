"""POST /v1/ingest against a real S3 server: what lands, and every refusal."""

from __future__ import annotations

import gzip
import hashlib

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from lakehouse.ingest.log import read_receipt
from lakehouse.settings import Settings, get_settings
from lakehouse.store import MultipartUpload, ObjectStore, StoreUnavailable
from lakehouse.store.layout import LANDING, LOG
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration


def stored_keys(store: ObjectStore) -> list[str]:
    return sorted([*store.list_keys(LANDING), *store.list_keys(LOG)])


def test_raw_body_lands_and_is_committed_to_the_log(client: TestClient, store: ObjectStore) -> None:
    body = b"id,name\n1,Ann\n2,Bo\n"
    response = client.post("/v1/ingest?name=people", content=body)
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["dataset"] == "people"
    assert (receipt["status"], receipt["seq"]) == ("queued", 1)
    assert receipt["bytes"] == len(body)
    assert [(c["name"], c["type"]) for c in receipt["inferred_schema"]["columns"]] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
    ]
    landing = f"landing/people/{receipt['ingest_id']}.csv"
    assert store.client.get_object(Bucket=store.bucket, Key=landing)["Body"].read() == body
    [entry] = list(store.list_keys(LOG))
    assert entry == "log/people/000000000001.json"
    record = read_receipt(store, receipt["ingest_id"])
    assert record.ingest_id == receipt["ingest_id"]
    assert record.csv_schema.fingerprint == receipt["inferred_schema"]["fingerprint"]


def test_multipart_field_file_lands(client: TestClient, store: ObjectStore) -> None:
    response = client.post(
        "/v1/ingest?name=people", files={"file": ("people.csv", b"a\n1\n", "text/csv")}
    )
    assert response.status_code == 202, response.text
    key = f"landing/people/{response.json()['ingest_id']}.csv"
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == b"a\n1\n"


def test_a_body_larger_than_a_part_streams_in_parts(settings: Settings, store: ObjectStore) -> None:
    small_parts = settings.model_copy(update={"ingest_part_bytes": 5 * 1024 * 1024})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: small_parts
    body = b"n,text\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(700_000))
    assert len(body) > 2 * small_parts.ingest_part_bytes
    with TestClient(app, headers=admin_headers(small_parts)) as client:
        response = client.post("/v1/ingest?name=big", content=body)
    assert response.status_code == 202, response.text
    assert response.json()["bytes"] == len(body)
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    key = f"landing/big/{response.json()['ingest_id']}.csv"
    head = store.client.head_object(Bucket=store.bucket, Key=key)
    assert head["ContentLength"] == len(body)
    parts = -(-len(body) // small_parts.ingest_part_bytes)  # whole parts, then the rest
    assert head["ETag"].strip('"').endswith(f"-{parts}")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Workers-2024", "workers_2024"), ("1st", "d_1st"), ("a" * 70, "a" * 63)],
)
def test_invalid_dataset_name_is_422_with_a_suggestion(
    client: TestClient, store: ObjectStore, name: str, suggestion: str
) -> None:
    response = client.post("/v1/ingest", params={"name": name}, content=b"a\n1\n")
    assert response.status_code == 422
    assert response.json()["detail"]["suggested_name"] == suggestion
    assert "invalid dataset name" in response.json()["detail"]["message"]
    assert stored_keys(store) == []


def test_missing_name_is_422(client: TestClient) -> None:
    response = client.post("/v1/ingest", content=b"a\n1\n")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "name"]


def test_empty_body_is_400_and_stores_nothing(client: TestClient, store: ObjectStore) -> None:
    response = client.post("/v1/ingest?name=people", content=b"")
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]
    assert stored_keys(store) == []


@pytest.mark.parametrize(
    "body",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", gzip.compress(b"a\n1\n"), b"id\n\xff\xfe\n"],
    ids=["png", "gzip-without-content-encoding", "latin1-bytes"],
)
def test_binary_body_is_400_and_stores_nothing(
    client: TestClient, store: ObjectStore, body: bytes
) -> None:
    response = client.post("/v1/ingest?name=people", content=body)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"] or "not text" in response.json()["detail"]
    assert stored_keys(store) == []


def test_multipart_without_a_file_field_is_400(client: TestClient, store: ObjectStore) -> None:
    response = client.post("/v1/ingest?name=people", files={"data": ("x.csv", b"a\n1\n")})
    assert response.status_code == 400
    assert "'file'" in response.json()["detail"]
    assert stored_keys(store) == []


@pytest.mark.parametrize(
    "parts",
    [
        [("file", ("a.csv", b"a\n1\n")), ("file", ("b.csv", b"a\n2\n"))],
        [("mode", (None, b"replace")), ("file", ("a.csv", b"a\n1\n"))],
        [("file", ("a.csv", b"a\n1\n")), ("delimiter", (None, b";"))],
    ],
    ids=["two-files", "a-field-before", "a-field-after"],
)
def test_a_multipart_part_besides_the_one_file_is_400_not_dropped(
    client: TestClient, store: ObjectStore, parts: list
) -> None:
    """Attack class: parts silently dropped (the second file, a form field)."""
    response = client.post("/v1/ingest?name=people", files=parts)
    assert response.status_code == 400, response.text
    assert "an upload is one part named 'file'" in response.json()["detail"]
    assert stored_keys(store) == []


def test_wrong_s3_keys_make_ingest_503_not_500(settings: Settings, store: ObjectStore) -> None:
    wrong = settings.model_copy(update={"s3_secret_key": "not-the-secret"})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: wrong
    with TestClient(app, headers=admin_headers(wrong)) as client:
        response = client.post("/v1/ingest?name=people", content=b"a\n1\n")
    assert response.status_code == 503
    assert "object store refused" in response.json()["detail"]
    assert "retry" in response.json()["detail"]
    assert stored_keys(store) == []


@pytest.mark.parametrize("parts", [1, 3])
def test_a_duplicate_lands_and_leaves_nothing(
    settings: Settings, store: ObjectStore, parts: int
) -> None:
    """The file lands while its duplicates are looked up (one round trip): bytes the
    dataset has pending answer with the ingest that has them, and nothing of the second
    upload stays in the landing area, whether it came in one part or in several."""
    small_parts = settings.model_copy(update={"ingest_part_bytes": 5 * 1024 * 1024})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: small_parts
    rows = 10 if parts == 1 else 700_000
    body = b"n,text\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(rows))
    with TestClient(app, headers=admin_headers(small_parts)) as client:
        first = client.post("/v1/ingest?name=twice", content=body)
        second = client.post("/v1/ingest?name=twice", content=body)
    assert (first.status_code, second.status_code) == (202, 200), second.text
    assert second.json()["duplicate"] is True
    assert second.json()["ingest_id"] == first.json()["ingest_id"]
    assert list(store.list_keys("landing/twice/")) == [
        f"landing/twice/{first.json()['ingest_id']}.csv"
    ]
    assert len(list(store.list_keys("log/twice/"))) == 1


@pytest.mark.parametrize("failing", ["first-part", "middle-part", "last-part", "completion"])
def test_the_store_failing_while_parts_are_sent_leaves_nothing_and_a_retry_lands_once(
    settings: Settings, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Each part goes out as soon as it is whole (the last beside those in flight): the
    store failing at any of those sends, or at the upload's completion, answers 503 and
    leaves no object, no unfinished multipart upload and no log entry; the same upload
    sent again is committed once."""
    small_parts = settings.model_copy(update={"ingest_part_bytes": 5 * 1024 * 1024})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: small_parts
    body = b"n,text\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(700_000))
    parts = -(-len(body) // small_parts.ingest_part_bytes)
    assert parts == 4  # three whole parts, then the last
    failing_part = {"first-part": 1, "middle-part": 2, "last-part": parts}.get(failing)
    real_write, real_complete = MultipartUpload.write_part, MultipartUpload.complete

    def write_part(upload: MultipartUpload, number: int, data: bytes) -> None:
        if number == failing_part:
            raise StoreUnavailable(f"object store unreachable (injected at part {number})")
        real_write(upload, number, data)

    def complete(upload: MultipartUpload) -> None:
        if failing == "completion":
            raise StoreUnavailable("object store unreachable (injected at the completion)")
        real_complete(upload)

    monkeypatch.setattr(MultipartUpload, "write_part", write_part)
    monkeypatch.setattr(MultipartUpload, "complete", complete)
    with TestClient(app, headers=admin_headers(small_parts)) as client:
        failed = client.post("/v1/ingest?name=big", content=body)
        assert failed.status_code == 503, failed.text
        assert "injected" in failed.json()["detail"]
        assert stored_keys(store) == []
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix="landing/")
        assert not uploads.get("Uploads")
        monkeypatch.undo()
        again = client.post("/v1/ingest?name=big", content=body)
    assert again.status_code == 202, again.text
    assert again.json()["seq"] == 1
    assert stored_keys(store) == [
        f"landing/big/{again.json()['ingest_id']}.csv",
        "log/big/000000000001.json",
    ]


def test_a_refused_upload_in_parts_leaves_nothing(settings: Settings, store: ObjectStore) -> None:
    """Parts are sent while they are taken in and while the next ones arrive: when the first
    part is refused (binary, not CSV) after it was sent, the parts under way finish, the
    upload is aborted, and nothing of it stays (no object, no unfinished multipart upload)."""
    small_parts = settings.model_copy(update={"ingest_part_bytes": 5 * 1024 * 1024})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: small_parts
    body = bytes(range(256)) * (3 * small_parts.ingest_part_bytes // 256)
    with TestClient(app, headers=admin_headers(small_parts)) as client:
        refused = client.post("/v1/ingest?name=binary", content=body)
    assert 400 <= refused.status_code < 500, refused.text
    assert not list(store.list_keys("landing/binary/"))
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix="landing/binary/")
    assert not uploads.get("Uploads")
    assert not list(store.list_keys(LOG))
