"""The object store, through the plain S3 API (boto3): nothing depends on one server.

A missing object is `NotFound`; a store that cannot be reached, or refuses our keys, is
`StoreUnavailable`. No botocore error leaves this module.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lakehouse.errors import NotFound, Unavailable
from lakehouse.settings import S3Config
from lakehouse.store import layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef

CONFLICT_RETRIES = 20


class StoreUnavailable(Unavailable):
    """The object store cannot be reached, or refuses our keys."""

    def detail(self) -> object:
        return f"{self}; nothing was stored, retry when the object store is back"


# One boto3 session per process (inherited across fork): a new session loads the S3
# service's model, a large JSON file (80-200 ms of CPU), on its first client; this one
# does it once. Sessions are not thread-safe, so clients are made under a lock.
_session = boto3.session.Session()
_session_lock = threading.Lock()


def _new_lock_in_child() -> None:
    # A thread of the parent may have held the lock when it forked; the child has no
    # such thread to release it.
    global _session_lock
    _session_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def load_s3_model() -> None:
    """Load the S3 model now: a process that forks workers (the run worker) does this
    first, so each run starts with it loaded."""
    with _session_lock:  # explicit keys: no credential lookup
        _session.client(
            "s3", region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
        )


class ObjectStore:
    """A bucket on an S3 server; every failure to reach it surfaces as `StoreUnavailable`."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self.bucket = config.bucket
        with _session_lock:
            self.client: S3Client = self._client(config)

    @staticmethod
    def _client(config: S3Config) -> S3Client:
        return _session.client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            config=Config(
                s3={"addressing_style": "path" if config.url_style == "path" else "virtual"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
            ),
        )

    def url(self, key: str) -> str:
        return layout.url(self.bucket, key)

    def check(self) -> None:
        """Raise `StoreUnavailable` unless the bucket answers with our keys."""
        try:
            with unavailable_on_error("reach the bucket"):
                self.client.head_bucket(Bucket=self.bucket)
        except NotFound as exc:  # the server answers, the bucket is not there
            raise StoreUnavailable(f"bucket {self.bucket!r} does not exist") from exc

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        with unavailable_on_error(f"write {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def put_file(self, key: str, path: Path) -> int:
        """Upload a local file (in parallel parts when large); its size."""
        with unavailable_on_error(f"write {key}"):
            self.client.upload_file(str(path), self.bucket, key)
        return path.stat().st_size

    def get_file(self, key: str, path: Path) -> None:
        """Download `key` to the local file `path` (in parallel parts when large)."""
        with unavailable_on_error(f"read {key}"):
            self.client.download_file(self.bucket, key, str(path))

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value).encode(), "application/json")

    def put_json_if_absent(self, key: str, value: Any) -> bool:
        """Write `key` only if no object has it (S3 conditional write): exactly one of
        several writers racing for a key gets True, and False means the key exists."""
        body = json.dumps(value).encode()
        for attempt in range(CONFLICT_RETRIES):
            with unavailable_on_error(f"write {key}"):
                try:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentType="application/json",
                        IfNoneMatch="*",
                    )
                    return True
                except ClientError as exc:
                    code = error_code(exc)
                    if code in {"PreconditionFailed", "412"}:
                        return False  # another writer got there first
                    # 409: a racing conditional write on the key was still in flight, and
                    # may yet fail: only its outcome says whether the key is taken.
                    if code != "ConditionalRequestConflict":
                        raise
            time.sleep(0.05 * (attempt + 1))
        raise StoreUnavailable(f"object store kept refusing to write {key}: retry later")

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def get_json_or_none(self, key: str) -> Any:
        try:
            return self.get_json(key)
        except NotFound:
            return None

    def get_json(self, key: str) -> Any:
        with unavailable_on_error(f"read {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return json.loads(body.read())

    def stream(self, key: str, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """The object's bytes, a chunk at a time."""
        with unavailable_on_error(f"read {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_chunks(chunk_bytes)

    def size(self, key: str) -> int:
        with unavailable_on_error(f"stat {key}"):
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]

    def first_key(self, prefix: str, start_after: str = "") -> str | None:
        """The first key under `prefix` after `start_after` (lists one key)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1}
        if start_after:
            kwargs["StartAfter"] = start_after
        with unavailable_on_error(f"list {prefix}"):
            contents = self.client.list_objects_v2(**kwargs).get("Contents", [])
        return contents[0]["Key"] if contents else None

    def last_key(self, prefix: str, start_after: str = "") -> str | None:
        """The last key under `prefix` after `start_after` (lists only what follows it)."""
        tail = deque(self.list_keys(prefix, start_after), maxlen=1)
        return tail[0] if tail else None

    def list_keys(self, prefix: str, start_after: str = "") -> Iterator[str]:
        """Keys under `prefix` in key order, starting after `start_after` (S3 lists in order)."""
        for key, _ in self.list_objects(prefix, start_after):
            yield key

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "folders" right under `prefix` (`prefix` + name + `/`)."""
        found: list[str] = []
        for page in self._pages(prefix, Delimiter="/"):
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return found

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, datetime]]:
        """(key, last modified) under `prefix`, in key order."""
        for page in self._pages(prefix, **({"StartAfter": start_after} if start_after else {})):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"]

    def _pages(self, prefix: str, **options: str) -> Iterator[ListObjectsV2OutputTypeDef]:
        """The pages of a listing under `prefix`, one request each. Not botocore's paginator:
        setting one up cost more CPU than the one-page listings most calls make."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, **options}
        with unavailable_on_error(f"list {prefix}"):
            while True:
                page = self.client.list_objects_v2(**kwargs)
                yield page
                if not page.get("IsTruncated"):
                    return
                kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, keys: list[str]) -> None:
        with unavailable_on_error("delete objects"):
            for start in range(0, len(keys), 1000):
                chunk: list[Any] = [{"Key": k} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})

    def multipart(self, key: str, content_type: str) -> MultipartUpload:
        return MultipartUpload(self, key, content_type)


class MultipartUpload:
    """Writes one object in parts, so no more than one part is ever held in memory.

    Nothing is visible under `key` until `complete()`; `abort()` discards the parts.
    """

    def __init__(self, store: ObjectStore, key: str, content_type: str) -> None:
        self.store, self.key = store, key
        with unavailable_on_error(f"start upload of {key}"):
            self.upload_id = store.client.create_multipart_upload(
                Bucket=store.bucket, Key=key, ContentType=content_type
            )["UploadId"]
        self.numbered = 0
        self.etags: dict[int, str] = {}

    def next_number(self) -> int:
        self.numbered += 1
        return self.numbered

    def write_part(self, number: int, data: bytes) -> None:
        """Upload part `number` (from `next_number`); safe to call from several threads."""
        with unavailable_on_error(f"upload part {number} of {self.key}"):
            self.etags[number] = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )["ETag"]

    def complete(self) -> None:
        if sorted(self.etags) != list(range(1, self.numbered + 1)):
            raise StoreUnavailable(f"upload of {self.key} is missing parts: retry the upload")
        parts = [{"ETag": self.etags[n], "PartNumber": n} for n in sorted(self.etags)]
        with unavailable_on_error(f"complete upload of {self.key}"):
            self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )

    def abort(self) -> None:
        with unavailable_on_error(f"abort upload of {self.key}"):
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )


@contextmanager
def unavailable_on_error(doing: str) -> Iterator[None]:
    """Turn boto's errors into ours: a missing key (`NoSuchKey`, 404) into `NotFound`,
    connection and permission errors into `StoreUnavailable`."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}:
            raise NotFound(f"nothing there to {doing}") from exc
        raise StoreUnavailable(f"object store refused to {doing}: {code}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"object store unreachable to {doing}: {exc}") from exc


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
