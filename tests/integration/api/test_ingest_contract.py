"""The ingest contract at the API boundary, against a real S3 server: schema contract,
duplicates, limits, gzip, receipts. Each refusal checks its status, its body and that
nothing landed."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.upload.slots import largest_reservation
from lakehouse.ingest.landing import Landing
from lakehouse.ingest.log import read_receipt
from lakehouse.publish.catalog import latest_manifest
from lakehouse.publish.status import ingest_status
from lakehouse.settings import Settings, get_settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING, LOG
from tests.helpers import materialize_csv, materialize_record, run_dataset
from tests.integration.api.conftest import admin_headers

pytestmark = pytest.mark.integration

PEOPLE = b"id,name,score\n1,Ann,2.5\n2,Bo,3.75\n"


def landed(store: ObjectStore) -> list[str]:
    return sorted([*store.list_keys(LANDING), *store.list_keys(LOG)])


@pytest.fixture
def small_limits(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_upload_bytes": 1000})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: limited
    with TestClient(app, headers=admin_headers(limited)) as client:
        yield client


# -- schema contract ---------------------------------------------------------------------


def test_a_different_schema_is_409_with_a_per_column_diff(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    materialize_csv(settings, "people", PEOPLE)
    before = landed(store)
    response = client.post("/v1/ingest?name=people", content=b"id,name,score,age\n3,Cy,x,40\n")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "mode=replace" in detail["message"]
    assert detail["added"] == [{"name": "age", "type": "BIGINT"}]
    assert detail["removed"] == []
    [changed] = detail["type_changed"]
    assert (changed["name"], changed["dataset_type"], changed["upload_type"]) == (
        "score",
        "DECIMAL(18,2)",
        "VARCHAR",
    )
    assert landed(store) == before


def test_mode_replace_accepts_another_schema(client: TestClient, settings: Settings) -> None:
    materialize_csv(settings, "people", PEOPLE)
    response = client.post("/v1/ingest?name=people&mode=replace", content=b"id,email\n1,a@b\n")
    assert response.status_code == 202, response.text
    assert response.json()["mode"] == "replace"


def test_an_upload_whose_values_fit_the_datasets_types_takes_them(
    client: TestClient, settings: Settings
) -> None:
    # `score` holds only integers here: alone it would be BIGINT; the dataset says DECIMAL.
    first = materialize_csv(settings, "people", PEOPLE)
    response = client.post("/v1/ingest?name=people", content=b"id,name,score\n3,Cy,4\n4,,\n")
    assert response.status_code == 202, response.text
    schema = response.json()["inferred_schema"]
    assert schema["fingerprint"] == first.csv_schema.fingerprint
    score = next(c for c in schema["columns"] if c["name"] == "score")
    assert score["type"] == "DECIMAL(18,2)" and "dataset's type" in score["reason"]


# -- idempotency -------------------------------------------------------------------------


def test_the_same_bytes_twice_land_once(client: TestClient, store: ObjectStore) -> None:
    first = client.post("/v1/ingest?name=people", content=PEOPLE)
    second = client.post("/v1/ingest?name=people", content=PEOPLE)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["ingest_id"] == first.json()["ingest_id"]
    assert len(list(store.list_keys(LANDING))) == len(list(store.list_keys(LOG))) == 1


def test_identical_uploads_racing_are_applied_exactly_once(
    store: ObjectStore, settings: Settings, instance: dg.DagsterInstance
) -> None:
    def upload(_: int):
        return Landing(store, "people").finish(PEOPLE)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(upload, range(8)))
    # Each racer either committed or was told which ingest has the bytes; the run applies
    # the first committed and finds the others duplicates of it.
    committed = [r.record for r in results if not r.duplicate]
    assert {r.record.ingest_id for r in results} == {r.ingest_id for r in committed}
    assert run_dataset(instance, settings, "people").success
    manifest = latest_manifest(instance, "people")
    assert manifest is not None and manifest.row_count == 2
    first = min(committed, key=lambda r: r.seq)
    assert manifest.added_ingest_ids == [first.ingest_id]
    for later in committed:
        if later is not first:
            status = ingest_status(instance, store, later)
            assert (status.status, status.duplicate_of) == ("materialized", first.ingest_id)


def test_the_same_bytes_to_another_dataset_are_not_a_duplicate(client: TestClient) -> None:
    assert client.post("/v1/ingest?name=people", content=PEOPLE).status_code == 202
    assert client.post("/v1/ingest?name=people_copy", content=PEOPLE).status_code == 202


# -- limits ------------------------------------------------------------------------------


def test_over_the_size_cap_is_413_and_nothing_stays(
    small_limits: TestClient, store: ObjectStore
) -> None:
    body = b"n\n" + b"12345\n" * 200  # 1202 bytes > 1000
    response = small_limits.post("/v1/ingest?name=big", content=body)
    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["detail"]
    assert landed(store) == []


def test_a_gzip_bomb_is_413_by_its_decompressed_size(
    small_limits: TestClient, store: ObjectStore
) -> None:
    bomb = gzip.compress(b"n\n" + b"0\n" * 5_000_000)  # ~10 MB inflated, ~10 KB sent
    assert len(bomb) < 1000 * 50
    response = small_limits.post(
        "/v1/ingest?name=big", content=bomb, headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "decompressed" in response.json()["detail"]
    assert landed(store) == []


def test_all_upload_slots_taken_is_503_with_retry_after(
    settings: Settings, store: ObjectStore
) -> None:
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, headers=admin_headers(settings)) as client:
        slots = app.state.upload_slots
        slots.reserved = settings.max_concurrent_uploads * largest_reservation(settings)
        response = client.post("/v1/ingest?name=people", content=PEOPLE)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert "retry" in response.json()["detail"]
        slots.reserved = 0
        assert client.post("/v1/ingest?name=people", content=PEOPLE).status_code == 202
    assert len(list(store.list_keys(LOG))) == 1


def test_small_files_land_beside_large_uploads_that_a_gzip_or_chunked_body_must_wait_for(
    settings: Settings, store: ObjectStore
) -> None:
    """The large uploads landing leave 2 MiB of the budget: a plain 100-row file, which says
    its length, lands; the same rows gzip-encoded (they may inflate to any size) or sent
    chunked (no length) count as large, and get 503 with nothing stored."""
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    budget = settings.max_concurrent_uploads * largest_reservation(settings)
    with TestClient(app, headers=admin_headers(settings)) as client:
        app.state.upload_slots.reserved = budget - 2 * 1024 * 1024
        assert client.post("/v1/ingest?name=people", content=PEOPLE).status_code == 202
        gzipped = client.post(
            "/v1/ingest?name=people",
            content=gzip.compress(PEOPLE),
            headers={"content-encoding": "gzip"},
        )
        chunked = client.post("/v1/ingest?name=people", content=iter([PEOPLE]))
        assert [gzipped.status_code, chunked.status_code] == [503, 503]
        assert app.state.upload_slots.reserved == budget - 2 * 1024 * 1024
    assert len(list(store.list_keys(LOG))) == 1


# -- gzip and dialects -------------------------------------------------------------------


def test_gzip_by_content_encoding_lands_decompressed(
    client: TestClient, store: ObjectStore
) -> None:
    response = client.post(
        "/v1/ingest?name=people",
        content=gzip.compress(PEOPLE),
        headers={"content-encoding": "gzip"},
    )
    assert response.status_code == 202, response.text
    key = f"landing/people/{response.json()['ingest_id']}.csv"
    assert store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read() == PEOPLE


@pytest.mark.parametrize("encoding", ["x-gzip", " GZIP "])
def test_gzip_by_its_other_spellings_lands_decompressed(client: TestClient, encoding: str) -> None:
    response = client.post(
        "/v1/ingest?name=people",
        content=gzip.compress(PEOPLE),
        headers={"content-encoding": encoding},
    )
    assert response.status_code == 202, response.text
    assert response.json()["bytes"] == len(PEOPLE)


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "zstd"])
def test_a_content_encoding_not_read_here_is_415_and_lands_nothing(
    client: TestClient, store: ObjectStore, encoding: str
) -> None:
    """Attack class: an encoded body read as sent (with encoding=latin-1, compressed bytes
    could have landed as text)."""
    response = client.post(
        "/v1/ingest?name=people&encoding=latin-1",
        content=b"\x1f\x8b compressed bytes",
        headers={"content-encoding": encoding},
    )
    assert response.status_code == 415, response.text
    assert "Content-Encoding: gzip" in response.json()["detail"]
    assert landed(store) == []


@pytest.mark.parametrize("filename", ["people.csv.gz", "PEOPLE.CSV.GZ"])
def test_gzip_by_file_name_in_multipart(client: TestClient, filename: str) -> None:
    response = client.post(
        "/v1/ingest?name=people", files={"file": (filename, gzip.compress(PEOPLE))}
    )
    assert response.status_code == 202, response.text
    assert response.json()["bytes"] == len(PEOPLE)


def test_broken_gzip_is_400(client: TestClient, store: ObjectStore) -> None:
    response = client.post(
        "/v1/ingest?name=people", content=b"not gzip", headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 400
    assert "gzip" in response.json()["detail"]
    assert landed(store) == []


@pytest.mark.parametrize(
    ("body", "columns"),
    [
        (b"a;b\n1;x\n", ["a", "b"]),
        (b"a\tb\n1\tx\n", ["a", "b"]),
        (b"a|b\n1|x\n", ["a", "b"]),
        (b'a,b\n1,"x, ""y""\nz"\n', ["a", "b"]),
        (b"\xef\xbb\xbfa,b\r\n1,x\r\n", ["a", "b"]),
        (b"a,b\n", ["a", "b"]),
        (b"a,,a\n1,2,3\n", ["a", "column_2", "a_2"]),
    ],
    ids=["semicolon", "tab", "pipe", "quoted", "bom-crlf", "header-only", "dup-blank-header"],
)
def test_dialects_are_accepted(client: TestClient, body: bytes, columns: list[str]) -> None:
    response = client.post("/v1/ingest?name=dialects", content=body)
    assert response.status_code == 202, response.text
    assert [c["name"] for c in response.json()["inferred_schema"]["columns"]] == columns


# -- receipts ----------------------------------------------------------------------------


def test_receipt_follows_an_ingest_to_materialized(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    ingest_id = client.post("/v1/ingest?name=people", content=PEOPLE).json()["ingest_id"]
    receipt = client.get(f"/v1/ingest/{ingest_id}").json()
    assert (receipt["status"], receipt["dataset"], receipt["run_id"]) == ("queued", "people", None)

    materialize_record(settings, read_receipt(store, ingest_id))
    receipt = client.get(f"/v1/ingest/{ingest_id}").json()
    assert (receipt["status"], receipt["version"]) == ("materialized", 1)
    assert receipt["run_id"]


def test_receipt_of_a_failed_ingest_has_the_reason_and_bad_rows(
    client: TestClient, settings: Settings
) -> None:
    # Past the 1000-row sample, 20 of 1220 rows (1.6%) have two fields: more than the 1%
    # allowed (values that do not fit would widen the column of a first upload instead).
    body = b"n\n" + b"1\n" * 1200 + b"oops,1\n" * 20
    record = materialize_csv(settings, "counts", body, raise_on_error=False)
    receipt = client.get(f"/v1/ingest/{record.ingest_id}").json()
    assert receipt["status"] == "failed"
    error = receipt["error"]
    assert "20 of 1220 rows" in error["message"] and "unchanged" in error["message"]
    assert (error["rejected_rows"], error["total_rows"]) == (20, 1220)
    assert [s["line"] for s in error["samples"]] == list(range(1202, 1212))
    assert error["samples"][0]["csv_line"] == "oops,1"


@pytest.mark.parametrize(
    ("ingest_id", "status", "says"),
    [
        ("29991122T020428428745-c917ac03", 404, "no ingest"),  # within any retention
        # Older than the retention: pruned once settled, or never committed (410 either way).
        ("20201122T020428428745-c917ac03", 410, "retention prunes the receipt"),
        ("nope", 422, "invalid ingest id"),
        ("20261122T020428428745-ZZZZZZZZ", 422, "invalid ingest id"),
        ("receipts.json", 422, "invalid ingest id"),
    ],
)
def test_unknown_or_malformed_ingest_ids(
    client: TestClient, ingest_id: str, status: int, says: str
) -> None:
    response = client.get(f"/v1/ingest/{ingest_id}")
    assert response.status_code == status
    assert says in str(response.json()["detail"])


def test_wait_must_be_true_or_seconds(client: TestClient, store: ObjectStore) -> None:
    response = client.post("/v1/ingest?name=people&wait=soon", content=PEOPLE)
    assert response.status_code == 422
    assert "wait=true" in response.json()["detail"]
    assert landed(store) == []


def test_rejected_rows_are_queryable_in_the_rejects_view(
    client: TestClient, settings: Settings
) -> None:
    materialize_csv(settings, "counts", b"n\n" + b"1\n" * 1200 + b"oops\n")
    answer = client.post("/v1/sql", json={"sql": "SELECT line, csv_line FROM counts__rejects"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [{"line": 1202, "csv_line": "oops"}]
    clean = client.post("/v1/sql", json={"sql": "SELECT count(*) AS n FROM counts"}).json()
    assert clean["rows"] == [{"n": 1200}]
