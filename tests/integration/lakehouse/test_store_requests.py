"""The store's own signed requests against a real S3 server: what boto3 writes they read,
and what they write boto3 reads, whatever the key; S3's answers become ours."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from lakehouse.errors import NotFound
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore, StoreUnavailable

pytestmark = pytest.mark.integration

AWKWARD_KEYS = ["plain/a.csv", "spaced/a b.csv", "signs/a+b=c&d.csv", "unicode/é-ß-日本.csv"]


@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=["plain", "space", "signs", "unicode"])
def test_a_key_written_and_read_both_ways_is_the_same_object(store: ObjectStore, key: str) -> None:
    store.put_json(key, {"written": "signed"})
    got = store.client.get_object(Bucket=store.bucket, Key=key)
    assert got["Body"].read() == b'{"written": "signed"}'
    assert got["ContentType"] == "application/json"
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b'{"written": "boto3"}')
    assert store.get_json(key) == {"written": "boto3"}
    assert store.size(key) == len(b'{"written": "boto3"}')
    assert store.first_key(key.split("/")[0] + "/") == key
    assert [k for k, _ in store.list_objects(key)] == [key]


def test_of_eight_racing_conditional_writes_exactly_one_wins(store: ObjectStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda n: store.put_json_if_absent("race/key", {"n": n}), range(8)))
    assert won.count(True) == 1
    assert store.get_json("race/key") == {"n": won.index(True)}


def test_a_missing_key_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        store.get_json("missing/key")
    with pytest.raises(NotFound):
        store.size("missing/key")
    assert store.first_key("missing/") is None


def test_a_wrong_secret_is_unavailable_with_s3s_reason(settings: Settings) -> None:
    wrong = ObjectStore(settings.model_copy(update={"s3_secret_key": "not-it"}).s3())
    with pytest.raises(StoreUnavailable, match="SignatureDoesNotMatch"):
        wrong.put_json("any/key", {})
    with pytest.raises(StoreUnavailable, match="SignatureDoesNotMatch"):
        wrong.first_key("any/")
