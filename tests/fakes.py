"""Small hand-written fakes for fast tests of pure logic (no server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError


class MemoryStore:
    """The part of `ObjectStore` the ingest protocol uses, in memory, with S3's semantics
    for conditional writes (exactly one creator per key) and ordered listing."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_bytes(self, key: str, body: bytes, content_type: str = "") -> None:
        with self._lock:
            self.objects[key] = body

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value).encode())

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = json.dumps(value).encode()
            return True

    def get_json(self, key: str) -> Any:
        with self._lock:
            if key not in self.objects:
                raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
            return json.loads(self.objects[key])

    def get_json_or_none(self, key: str) -> Any:
        try:
            return self.get_json(key)
        except ClientError:
            return None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def list_keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > start_after)
        yield from keys

    def first_key(self, prefix: str, start_after: str = "") -> str | None:
        return next(self.list_keys(prefix, start_after), None)

    def last_key(self, prefix: str, start_after: str = "") -> str | None:
        keys = list(self.list_keys(prefix, start_after))
        return keys[-1] if keys else None

    def delete(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self.objects.pop(key, None)
