"""Small S3 requests, signed (AWS Signature Version 4) and sent over one urllib3 pool.

An upload's acknowledgement is a handful of small requests (the landing object, marks, a
log entry, a receipt); through boto3 each cost ~1.3 ms of CPU in its event hooks, endpoint
rules and model-driven parsing: half of the API's CPU per acknowledgement. These few
operations need none of that. Large transfers stay with boto3 (`client.py`), where its
cost is spread over megabytes.

https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from lakehouse.settings import S3Config

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ATTEMPTS = 3  # as boto3's "standard" retries: a dropped connection or a 5xx, then again
RETRY_STATUSES = frozenset({500, 502, 503, 504})


class Unreachable(Exception):
    """No answer from the store after every attempt."""


class Answer:
    """A response: its status, body and headers, with S3's error code when it failed."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        """S3's error code (`NoSuchKey`, `PreconditionFailed`...), else the status."""
        return self.find("Code") or str(self.status)

    def find(self, name: str) -> str:
        """The text of the body's first XML element called `name`, or ''."""
        if self.body.startswith(b"<"):
            for element in xml_root(self.body).iter():
                if local_name(element.tag) == name:
                    return element.text or ""
        return ""


class SignedRequests:
    """Signs and sends requests to one bucket; safe to share between threads."""

    def __init__(self, config: S3Config) -> None:
        self.config = config
        parts = urlsplit(config.endpoint)
        self.scheme = parts.scheme
        if config.url_style == "path":
            self.host, self.root = parts.netloc, f"/{config.bucket}/"
        else:
            self.host, self.root = f"{config.bucket}.{parts.netloc}", "/"
        self._keys: dict[str, bytes] = {}  # signing key per day
        self._pool: urllib3.PoolManager | None = None
        self._pid = 0

    def send(
        self,
        method: str,
        key: str = "",
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        path, query_string = quote(self.root + key, safe="/~"), canonical(query or {})
        url = f"{self.scheme}://{self.host}{path}" + (f"?{query_string}" if query_string else "")
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256  # once, not per try
        for attempt in range(ATTEMPTS):
            signed = {**(headers or {}), **self.signature(method, path, query_string, payload)}
            try:
                response = self._http().request(
                    method, url, body=body or None, headers=signed, retries=False, redirect=False
                )
            except HTTPError as exc:
                if attempt + 1 == ATTEMPTS:
                    raise Unreachable(str(exc)) from exc
            else:
                if response.status not in RETRY_STATUSES or attempt + 1 == ATTEMPTS:
                    return Answer(response.status, response.data, response.headers)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 (jitter)
        raise AssertionError("unreachable")

    def _http(self) -> urllib3.PoolManager:
        # A pool's connections must not be shared with a forked child.
        if self._pool is None or self._pid != os.getpid():
            self._pool = urllib3.PoolManager(
                maxsize=32, timeout=urllib3.Timeout(connect=5, read=60), block=False
            )
            self._pid = os.getpid()
        return self._pool

    def signature(
        self, method: str, path: str, query: str, payload: str, now: time.struct_time | None = None
    ) -> dict[str, str]:
        """The headers that sign a request (`path` and `query` as sent, `payload` the body's
        SHA-256 in hex), made at `now`."""
        now = now or time.gmtime()
        stamp, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
        headers = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        names = ";".join(headers)  # already in order, lowercase
        canonical = "\n".join(
            [method, path, query, *(f"{k}:{v}" for k, v in headers.items()), "", names, payload]
        )
        scope = f"{day}/{self.config.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(self._key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.config.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return headers

    def _key(self, day: str) -> bytes:
        if day not in self._keys:
            key = f"AWS4{self.config.secret_key}".encode()
            for part in (day, self.config.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return self._keys[day]


def canonical(query: Mapping[str, str]) -> str:
    """The query string as signed: sorted, every reserved character escaped."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )


def xml_root(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 (our own store's answers)


def local_name(tag: str) -> str:
    """`Key` of `{http://s3.amazonaws.com/doc/2006-03-01/}Key`."""
    return tag.rpartition("}")[2]


class Listing:
    """One page of a ListObjectsV2 answer."""

    def __init__(self, body: bytes) -> None:
        self.objects: list[tuple[str, datetime]] = []
        self.prefixes: list[str] = []
        self.next_token = ""
        for element in xml_root(body):
            name = local_name(element.tag)
            if name == "Contents":
                fields = {local_name(f.tag): f.text or "" for f in element}
                self.objects.append((fields["Key"], datetime.fromisoformat(fields["LastModified"])))
            elif name == "CommonPrefixes":
                self.prefixes += [p.text or "" for p in element if local_name(p.tag) == "Prefix"]
            elif name == "NextContinuationToken":
                self.next_token = element.text or ""
