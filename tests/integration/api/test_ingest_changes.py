"""Merge and delete at the API boundary, against a real S3 server: each refusal (a missing
or other key, a NULL or repeated key, other columns, a `_deleted` that is not true/false,
a key in a mode without one, a token without the privilege) is a 4xx that says what to
send, and leaves nothing landed; an accepted one's receipt says what it did to the rows."""

from __future__ import annotations

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from lakehouse.auth.grants import Privilege, Role
from lakehouse.auth.tokens import TokenStore
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore
from lakehouse.store.layout import LANDING, LOG
from tests.helpers import materialize_csv, run_dataset

pytestmark = pytest.mark.integration

PEOPLE = b"id,name,score\n1,Ann,2.5\n2,Bo,3.75\n3,Cy,1.5\n"


def landed(store: ObjectStore) -> list[str]:
    return sorted([*store.list_keys(LANDING), *store.list_keys(LOG)])


def refused(client: TestClient, store: ObjectStore, url: str, body: bytes, status: int) -> str:
    """The refusal's message, once it is shown that nothing landed."""
    before = landed(store)
    response = client.post(url, content=body)
    assert response.status_code == status, response.text
    assert landed(store) == before
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else detail["message"]


def apply(settings: Settings, name: str) -> None:
    with dg.DagsterInstance.from_config(str(settings.resolved_dagster_home)) as instance:
        run_dataset(instance, settings, name, raise_on_error=True)


def test_a_merge_receipt_counts_what_it_did_and_the_key_is_remembered(
    client: TestClient, settings: Settings
) -> None:
    materialize_csv(settings, "people", PEOPLE)
    change = b"id,name,score,_deleted\n2,Bea,4.25,\n3,,,true\n4,Di,0.5,false\n"
    first = client.post("/v1/ingest?name=people&mode=merge&key=id", content=change)
    assert first.status_code == 202, first.text
    assert first.json()["key"] == ["id"]
    apply(settings, "people")
    delete = client.post("/v1/ingest?name=people&mode=delete", content=b"id\n1\n")
    assert delete.status_code == 202, delete.text  # the key was remembered
    apply(settings, "people")

    merged = client.get(f"/v1/ingest/{first.json()['ingest_id']}").json()
    assert merged["status"] == "materialized"
    assert merged["changes"] == {"inserted": 1, "updated": 1, "deleted": 1}
    deleted = client.get(f"/v1/ingest/{delete.json()['ingest_id']}").json()
    assert deleted["changes"] == {"inserted": 0, "updated": 0, "deleted": 1}
    rows = client.post("/v1/sql", json={"sql": "SELECT * FROM people ORDER BY id"}).json()
    assert rows["rows"] == [
        {"id": 2, "name": "Bea", "score": "4.25"},
        {"id": 4, "name": "Di", "score": "0.50"},
    ]
    catalog = client.get("/v1/catalog/people").json()
    assert catalog["key"] == ["id"]


def test_keyed_uploads_that_cannot_be_applied_are_refused_saying_what_to_send(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    base = "/v1/ingest?name=people"
    assert "key=<column>" in refused(client, store, f"{base}&mode=merge", PEOPLE, 400)
    materialize_csv(settings, "people", PEOPLE)
    no_key = refused(client, store, f"{base}&mode=merge", PEOPLE, 400)
    assert "has none yet" in no_key and "key=id" in no_key
    missing = refused(client, store, f"{base}&mode=merge&key=ident", PEOPLE, 400)
    assert "no column 'ident'" in missing
    null_key = b"id,name,score\n1,Ann,2.5\n,Bo,3.75\n"
    assert "no value in a key column" in refused(
        client, store, f"{base}&mode=merge&key=id", null_key, 400
    )
    twice = b"id,name,score\n1,Ann,2.5\n1,Bo,3.75\n"
    response = client.post(f"{base}&mode=merge&key=id", content=twice)
    assert response.status_code == 409 and response.json()["detail"]["examples"] == [1]
    assert "dedup=last" in response.json()["detail"]["message"]
    assert "key= and dedup=" in refused(client, store, f"{base}&key=id", PEOPLE, 400)
    flag = b"id,name,score,_deleted\n1,Ann,2.5,maybe\n"
    assert "true or false" in refused(client, store, f"{base}&mode=merge&key=id", flag, 400)
    other = refused(client, store, f"{base}&mode=merge&key=id", b"id,email\n1,a@b\n", 409)
    assert "may add a BOOLEAN _deleted" in other

    kept = client.post(f"{base}&mode=merge&key=id&dedup=last", content=twice)
    assert kept.status_code == 202, kept.text
    assert kept.json()["dedup"] == "last"
    apply(settings, "people")
    other_key = refused(client, store, f"{base}&mode=merge&key=name", PEOPLE, 409)
    assert "key=id" in other_key  # the dataset's, remembered once a merge set it


def test_a_delete_needs_a_dataset_with_rows_and_the_key_columns(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    base = "/v1/ingest?name=people&mode=delete&key=id"
    assert "no version yet" in refused(client, store, base, b"id\n1\n", 409)
    materialize_csv(settings, "people", PEOPLE)
    assert "no column 'id'" in refused(client, store, base, b"name\nAnn\n", 400)
    flagged = b"id,_deleted\n1,true\n"
    assert "each of its rows is a key" in refused(client, store, base, flagged, 400)


@pytest.mark.parametrize("mode", ["merge", "delete"])
def test_merge_and_delete_are_privileges_of_their_own(
    client: TestClient, settings: Settings, store: ObjectStore, mode: str
) -> None:
    """Attack class: a writer that may append rewrites or erases rows it may not."""
    materialize_csv(settings, "people", PEOPLE)
    tokens = TokenStore.for_settings(settings)
    _, writer = tokens.create(f"feeder-{mode}", Role.WRITER)
    _, allowed = tokens.create(f"fixer-{mode}", Role.WRITER, allowed=frozenset({Privilege(mode)}))
    url = f"/v1/ingest?name=people&mode={mode}&key=id"
    before = landed(store)
    denied = client.post(url, content=b"id\n1\n", headers={"authorization": f"Bearer {writer}"})
    assert denied.status_code == 403 and f"--allow {mode}" in denied.json()["detail"]
    assert landed(store) == before
    body = b"id\n1\n" if mode == "delete" else b"id,name,score\n1,Ann,9\n"
    ok = client.post(url, content=body, headers={"authorization": f"Bearer {allowed}"})
    assert ok.status_code == 202, ok.text


def test_a_purge_needs_its_privilege_and_answers_what_it_removed(
    client: TestClient, settings: Settings
) -> None:
    """Attack class: a writer erases the history (time travel, audit of the data) of a
    dataset it only feeds."""
    materialize_csv(settings, "people", PEOPLE)
    materialize_csv(settings, "people", b"id,name,score\n9,Ed,1.25\n")
    _, writer = TokenStore.for_settings(settings).create("feeder", Role.WRITER)
    denied = client.post("/v1/datasets/people/purge", headers={"authorization": f"Bearer {writer}"})
    assert denied.status_code == 403 and "--allow purge" in denied.json()["detail"]
    assert client.post("/v1/datasets/nobody/purge").status_code == 404
    done = client.post("/v1/datasets/people/purge")
    assert done.status_code == 200, done.text
    assert done.json()["version"] == 2 and done.json()["snapshots_expired"] == 1
    assert done.json()["runs_deleted"] == 1
    old = client.post(
        "/v1/sql", json={"sql": "SELECT count(*) AS n FROM people", "as_of": {"people": 1}}
    )
    assert old.status_code == 400 and "has no version 1" in old.json()["detail"]


def test_an_append_changes_the_columns_only_as_its_evolve_allows(
    client: TestClient, settings: Settings, store: ObjectStore
) -> None:
    materialize_csv(settings, "people", PEOPLE)
    base = "/v1/ingest?name=people"
    wider = b"id,name,score,email\n4,Di,1.5,d@x\n"
    strict = refused(client, store, base, wider, 409)
    assert "evolve=add_columns" in strict
    assert "evolve=" in refused(client, store, f"{base}&mode=merge&key=id&evolve=widen", wider, 400)
    typed = b"id,name,score\n4,Di,not a number\n"
    assert "do not match" in refused(client, store, f"{base}&evolve=add_columns", typed, 409)
    _, writer = TokenStore.for_settings(settings).create("feeder", Role.WRITER)
    denied = client.post(
        f"{base}&evolve=add_columns", content=wider, headers={"authorization": f"Bearer {writer}"}
    )
    assert denied.status_code == 403 and "--allow evolve" in denied.json()["detail"]

    added = client.post(f"{base}&evolve=add_columns", content=wider)
    assert added.status_code == 202 and added.json()["evolve"] == "add_columns"
    apply(settings, "people")
    now = client.post("/v1/sql", json={"sql": "SELECT id, email FROM people ORDER BY id"})
    assert now.json()["rows"][0] == {"id": 1, "email": None}
    assert now.json()["rows"][-1] == {"id": 4, "email": "d@x"}
    before = client.post("/v1/sql", json={"sql": "SELECT * FROM people", "as_of": {"people": 1}})
    assert list(before.json()["rows"][0]) == ["id", "name", "score"]  # its own columns
    assert client.get("/v1/catalog/people").json()["schema_version"] == 2
