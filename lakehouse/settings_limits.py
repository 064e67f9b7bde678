"""Two groups of the settings (lakehouse/settings.py), each read from its `LAKEHOUSE_*`
variable like the others: the limits on peers and tokens, and the maintenance schedules
and retention."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Limits(BaseModel):
    """What one client may hold or send: read timeouts, request caps, per-token limits."""

    upload_read_timeout_seconds: float = Field(
        30,
        gt=0,
        description="An upload whose client sends nothing for this long ends with 408 and "
        "frees its slot (a slow or stalled peer cannot hold the upload slots).",
    )
    sql_send_timeout_seconds: float = Field(
        30,
        gt=0,
        description="A streamed answer (csv, ndjson, arrow, parquet) whose client reads none "
        "of it for this long ends: its query process is stopped and its slot freed.",
    )
    max_dataset_bytes: int = Field(
        0,
        ge=0,
        description="Bytes of Parquet a dataset's current version may hold before appends "
        "to it are refused (409; a replace starts it over). 0: no cap.",
    )
    max_request_headers: int = Field(
        100, ge=10, description="Most headers a request may carry: more get 431."
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Most bytes of header names and values in a request: more get 431.",
    )
    max_json_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest body of every route but POST /v1/ingest (SQL, tokens): a larger "
        "one gets 413 before it is read.",
    )
    limits_url: str = Field(
        "",
        description="Where every API process counts the per-token limits (token_*): a "
        "redis:// URL, or memory:// to count per process. Empty: the broker's Redis (when the "
        "broker is Redis), else memory://.",
    )
    token_requests_per_second: int = Field(
        500, ge=0, description="Requests one token may send per second (0: no limit); 429."
    )
    token_uploads_at_once: int = Field(
        8, ge=0, description="Uploads one token may have landing at once (0: no limit); 429."
    )
    token_queries_at_once: int = Field(
        8, ge=0, description="Queries one token may have running at once (0: no limit); 429."
    )
    token_upload_bytes_per_hour: int = Field(
        64 * 1024**3,
        ge=0,
        description="Bytes one token may upload in any hour (0: no limit); past it, 429 and "
        "the upload is not stored.",
    )


class Maintenance(BaseModel):
    """When compaction and cleanup run, and what retention keeps."""

    compaction_cron: str = Field("0 2 * * *", description="When compaction_schedule runs.")
    compaction_min_objects: int = Field(
        8, ge=2, description="Compact a dataset once its object list is this long."
    )
    compaction_target_mb: int = Field(256, ge=1, description="Target size of compacted files.")
    compaction_sort_keys: dict[str, list[str]] = Field(
        {},
        description='JSON: per dataset, the columns compaction sorts by: {"workers": ["state"]}.',
    )
    cleanup_cron: str = Field("30 3 * * *", description="When cleanup_schedule runs.")
    retention_days: float = Field(
        7,
        ge=0,
        description="Days after which settled ingests, versions no longer current and their "
        "runs are pruned, and unused landing files deleted (docs/PROTOCOL.md, Retention).",
    )
    object_grace_minutes: float = Field(
        60,
        ge=0,
        description="How long replaced dataset objects stay readable after a new "
        "version stops listing them.",
    )
