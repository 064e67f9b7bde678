"""The bucket's layout: every prefix, key, `s3://` URL and access policy, in one place.

Every part is validated before it becomes a key (docs/PROTOCOL.md says who writes what,
and when):
    landing/<dataset>/<ingest_id>.csv          uploaded CSV (decompressed)
    landing/<dataset>/uploading/<ingest_id>    an upload under way, which a run waits for
    log/<dataset>/<seq>.json                   the ingest log: one entry per acknowledged
                                               ingest, created once (the commit point)
    receipts/<ingest_id>.json                  where an ingest's log entry is, by ingest id
    pending/<dataset>                          "this dataset may have pending ingests"
    applied/<dataset>/<sha256>.json            the last applied ingest with these bytes
    queued/<dataset>/<sha256>.json             the last committed ingest with these bytes
    commits/<dataset>/<version>.json           a version's commit record, created once (the
                                               compare-and-set that makes versions unique)
    datasets/<dataset>/<version>-<run>.parquet the dataset's objects
    datasets/<dataset>/rejects/...             rows that did not parse
    iceberg/<dataset>/metadata/...             each dataset's Iceberg table metadata
    retention/tally.json                       what retention passes have deleted, in all

The SQL engine's key may read `datasets/` and nothing else (`QUERY_KEY_ACTIONS`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from lakehouse.errors import InvalidInput
from lakehouse.names import validate_name

LANDING = "landing/"
LOG = "log/"
RECEIPTS = "receipts/"
PENDING = "pending/"
APPLIED = "applied/"
QUEUED = "queued/"
COMMITS = "commits/"
DATASETS = "datasets/"
RETENTION_TALLY = "retention/tally.json"
SEQ_DIGITS = 12  # zero-padded, so keys sort in number order
INGEST_ID = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9a-f]{8}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class InvalidIngestId(InvalidInput):
    """Not the shape of an ingest id this API hands out."""


def validate_ingest_id(ingest_id: str) -> str:
    if not INGEST_ID.fullmatch(ingest_id):
        raise InvalidIngestId(
            f"invalid ingest id {ingest_id!r}: ids look like 20261122T020428428745-c917ac03"
        )
    return ingest_id


def landing_key(dataset: str, ingest_id: str) -> str:
    return f"{LANDING}{validate_name(dataset)}/{validate_ingest_id(ingest_id)}.csv"


def uploading_prefix(dataset: str) -> str:
    return f"{LANDING}{validate_name(dataset)}/uploading/"


def uploading_key(dataset: str, ingest_id: str) -> str:
    return f"{uploading_prefix(dataset)}{validate_ingest_id(ingest_id)}"


def receipt_key(ingest_id: str) -> str:
    return f"{RECEIPTS}{validate_ingest_id(ingest_id)}.json"


def log_prefix(dataset: str) -> str:
    return f"{LOG}{validate_name(dataset)}/"


def log_key(dataset: str, seq: int) -> str:
    return f"{log_prefix(dataset)}{_number(seq)}.json"


def seq_of_log_key(key: str) -> int:
    return _number_of(key)


def pending_key(dataset: str) -> str:
    return f"{PENDING}{validate_name(dataset)}"


def applied_key(dataset: str, sha256: str) -> str:
    return _sha_key(APPLIED, dataset, sha256)


def queued_key(dataset: str, sha256: str) -> str:
    return _sha_key(QUEUED, dataset, sha256)


def _sha_key(folder: str, dataset: str, sha256: str) -> str:
    if not SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{folder}{validate_name(dataset)}/{sha256}.json"


def commit_key(dataset: str, version: int) -> str:
    return f"{COMMITS}{validate_name(dataset)}/{_number(version)}.json"


def commits_prefix(dataset: str) -> str:
    return f"{COMMITS}{validate_name(dataset)}/"


def version_of_commit_key(key: str) -> int:
    return _number_of(key)


def _number_of(key: str) -> int:
    """The number a log or commit key ends with (`<prefix>/<number>.json`)."""
    return int(key.rsplit("/", 1)[-1].removesuffix(".json"))


# The audit trail: below datasets/ so that the SQL engine's read-only key reads it (as the
# `_audit` view, for admins); `_` starts no dataset name.
AUDIT = f"{DATASETS}_audit/"
AUDIT_GENESIS = f"{AUDIT}genesis.parquet"  # no rows: the view has a file from the start


def audit_key(day: str, writer: str, seq: int) -> str:
    """One batch of audit records: by day, then by the API process that wrote it."""
    return f"{AUDIT}day={day}/{writer}-{_number(seq)}.parquet"


def audit_glob(bucket: str) -> str:
    return url(bucket, f"{AUDIT}**/*.parquet")


def dataset_prefix(dataset: str) -> str:
    return f"{DATASETS}{validate_name(dataset)}/"


def object_key(dataset: str, version: int, run_id: str, part: str = "") -> str:
    """A new object of `dataset` written for `version` by run `run_id` (hex)."""
    return f"{dataset_prefix(dataset)}v{_number(version)}-{_run(run_id)}{part}.parquet"


def rejects_key(dataset: str, version: int, run_id: str) -> str:
    return f"{dataset_prefix(dataset)}rejects/v{_number(version)}-{_run(run_id)}.parquet"


def _number(n: int) -> str:
    if not 0 <= n < 10**SEQ_DIGITS:
        raise ValueError(f"not a sequence or version number: {n}")
    return f"{n:0{SEQ_DIGITS}d}"


def _run(run_id: str) -> str:
    short = run_id.replace("-", "")[:12]
    if not re.fullmatch(r"[0-9a-f]{1,12}", short):
        raise ValueError(f"not a run id: {run_id!r}")
    return short


# -- Iceberg tables ------------------------------------------------------------------------

ICEBERG = "iceberg/"


def iceberg_location(bucket: str, dataset: str) -> str:
    """Where dataset's Iceberg table lives: `s3://<bucket>/iceberg/<name>`."""
    return url(bucket, f"{ICEBERG}{validate_name(dataset)}")


def iceberg_metadata_prefix(dataset: str) -> str:
    return f"{ICEBERG}{validate_name(dataset)}/metadata/"


# -- URLs and access -----------------------------------------------------------------------


def url(bucket: str, key: str) -> str:
    """The `s3://` URL of a key."""
    return f"s3://{bucket}/{key}"


def key_of(address: str, bucket: str) -> str | None:
    """The key of an `s3://<bucket>/...` (or `s3a://`) URL (None if it is another
    bucket's)."""
    parts = urlsplit(address)
    if parts.scheme not in {"s3", "s3a"} or parts.netloc != bucket:
        return None
    return parts.path.lstrip("/")


def datasets_url(bucket: str) -> str:
    """Everything the SQL engine may read: `s3://<bucket>/datasets/`."""
    return url(bucket, DATASETS)


def query_key_actions(bucket: str) -> list[str]:
    """The SQL engine's key, in the S3 server's identity format: read `datasets/`, list the
    bucket, never write (a MinIO policy allowing s3:GetObject on `<bucket>/datasets/*` and
    s3:ListBucket is the same)."""
    return [f"Read:{bucket}/{DATASETS}*", f"List:{bucket}"]
