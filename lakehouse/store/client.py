"""The object store, through the plain S3 API: nothing depends on one server. Small
requests are signed and sent here (`signed.py`), transfers go through boto3.

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
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lakehouse.errors import NotFound, Unavailable
from lakehouse.settings import S3Config
from lakehouse.store import layout
from lakehouse.store.signed import (
    Answer,
    Listing,
    SignedRequests,
    Unreachable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONFLICT_RETRIES = 20
MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


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
        self.requests = SignedRequests(config)

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

    def send(self, doing: str, method: str, key: str = "", **options: Any) -> Answer:
        """A signed request (`SignedRequests.send`), its failures ours: a missing key is
        `NotFound`, no answer or any other refusal `StoreUnavailable`."""
        return succeeded(self._answer(doing, method, key, **options), doing)

    def _answer(self, doing: str, method: str, key: str = "", **options: Any) -> Answer:
        try:
            return self.requests.send(method, key, **options)
        except Unreachable as exc:
            raise StoreUnavailable(f"object store unreachable to {doing}: {exc}") from exc

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.send(f"write {key}", "PUT", key, body=body, headers={"Content-Type": content_type})

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
        headers = {"Content-Type": "application/json", "If-None-Match": "*"}
        for attempt in range(CONFLICT_RETRIES):
            answer = self._answer(f"write {key}", "PUT", key, body=body, headers=headers)
            if answer.status == 412:
                return False  # another writer got there first
            # 409: a racing conditional write on the key was still in flight, and may yet
            # fail: only its outcome says whether the key is taken.
            if answer.status != 409 or answer.code != "ConditionalRequestConflict":
                succeeded(answer, f"write {key}")
                return True
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
        return json.loads(self.send(f"read {key}", "GET", key).body)

    def stream(self, key: str, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """The object's bytes, a chunk at a time."""
        with unavailable_on_error(f"read {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            yield from body.iter_chunks(chunk_bytes)

    def size(self, key: str) -> int:
        return int(self.send(f"stat {key}", "HEAD", key).headers["Content-Length"])

    def first_key(self, prefix: str, start_after: str = "") -> str | None:
        """The first key under `prefix` after `start_after` (lists one key)."""
        page = next(self._pages(prefix, **{"max-keys": "1"}, **after(start_after)))
        return page.objects[0][0] if page.objects else None

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
        for page in self._pages(prefix, delimiter="/"):
            found += page.prefixes
        return found

    def list_objects(self, prefix: str, start_after: str = "") -> Iterator[tuple[str, datetime]]:
        """(key, last modified) under `prefix`, in key order."""
        for page in self._pages(prefix, **after(start_after)):
            yield from page.objects

    def _pages(self, prefix: str, **options: str) -> Iterator[Listing]:
        """The pages of a listing (ListObjectsV2) under `prefix`, one request each."""
        query = {"list-type": "2", "prefix": prefix, **options}
        while True:
            page = Listing(self.send(f"list {prefix}", "GET", query=query).body)
            yield page
            if not page.next_token:
                return
            query["continuation-token"] = page.next_token

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
        started = store.send(
            f"start upload of {key}",
            "POST",
            key,
            query={"uploads": ""},
            headers={"Content-Type": content_type},
        )
        self.upload_id = started.find("UploadId")
        if not self.upload_id:
            raise StoreUnavailable(f"object store started no upload of {key}: {started.body!r}")
        self.numbered = 0
        self.etags: dict[int, str] = {}

    def next_number(self) -> int:
        self.numbered += 1
        return self.numbered

    def write_part(self, number: int, data: bytes) -> None:
        """Upload part `number` (from `next_number`); safe to call from several threads."""
        query = {"partNumber": str(number), "uploadId": self.upload_id}
        sent = self.store.send(
            f"upload part {number} of {self.key}", "PUT", self.key, query=query, body=data
        )
        self.etags[number] = sent.headers["ETag"]

    def complete(self) -> None:
        if sorted(self.etags) != list(range(1, self.numbered + 1)):
            raise StoreUnavailable(f"upload of {self.key} is missing parts: retry the upload")
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(self.etags[n])}</ETag></Part>"
            for n in sorted(self.etags)
        )
        doing = f"complete upload of {self.key}"
        done = self.store.send(
            doing,
            "POST",
            self.key,
            query={"uploadId": self.upload_id},
            body=f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode(),
        )
        if done.find("Code"):  # S3 may answer 200, then fail: the error is in the body
            raise StoreUnavailable(f"object store refused to {doing}: {done.code}")

    def abort(self) -> None:
        query = {"uploadId": self.upload_id}
        self.store.send(f"abort upload of {self.key}", "DELETE", self.key, query=query)


def succeeded(answer: Answer, doing: str) -> Answer:
    """`answer` if the store did it; else a missing key is `NotFound`, any other refusal
    `StoreUnavailable`."""
    if answer.ok:
        return answer
    if answer.status == 404 or answer.code in MISSING:
        raise NotFound(f"nothing there to {doing}")
    raise StoreUnavailable(f"object store refused to {doing}: {answer.code}")


def after(start_after: str) -> dict[str, str]:
    return {"start-after": start_after} if start_after else {}


@contextmanager
def unavailable_on_error(doing: str) -> Iterator[None]:
    """Turn boto's errors into ours: a missing key (`NoSuchKey`, 404) into `NotFound`,
    connection and permission errors into `StoreUnavailable`."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in MISSING:
            raise NotFound(f"nothing there to {doing}") from exc
        raise StoreUnavailable(f"object store refused to {doing}: {code}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"object store unreachable to {doing}: {exc}") from exc


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
