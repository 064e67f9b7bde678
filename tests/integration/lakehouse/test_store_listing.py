"""Listings past one page (the S3 server answers 1,000 keys a page): every key, in order,
from wherever a listing starts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from lakehouse.store import ObjectStore

pytestmark = pytest.mark.integration

KEYS = 1_005


def test_a_listing_longer_than_a_page_has_every_key_in_order(store: ObjectStore) -> None:
    keys = [f"listing/part-{i:05d}" for i in range(KEYS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put_bytes(key, b"x", "text/plain"), keys))
    store.put_bytes("listing-not/0", b"x", "text/plain")  # beside the prefix, not in it
    assert list(store.list_keys("listing/")) == keys
    assert list(store.list_keys("listing/", start_after=keys[2])) == keys[3:]
    assert store.last_key("listing/") == keys[-1]
    # (SeaweedFS lists a "folder" before its longer siblings: the order is not asked here)
    assert sorted(store.list_prefixes("")) == ["listing-not/", "listing/"]
