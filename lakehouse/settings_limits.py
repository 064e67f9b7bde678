"""Two groups of the settings (lakehouse/settings.py), each read from its `LAKEHOUSE_*`
variable like the others: the limits on peers and tokens, and the maintenance schedules
and retention."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from lakehouse.settings import Settings

MIB = 1024 * 1024
# The floor under a query process's headroom: below it DuckDB cannot read a Parquet footer.
MIN_QUERY_MB = 256


class Limits(BaseModel):
    """What one client may hold or send: read timeouts, request caps, per-token limits."""

    sql_memory_budget_mb: int = Field(
        0,
        ge=0,
        description="Memory the queries of all API processes and the Postgres endpoint may "
        "take together, above idle (docs/API.md, The bound); 0: an eighth of the machine's "
        "memory, at most 1024 per API worker and for the endpoint. Each query process gets "
        "its share, less what its answer may hold in the process that lent it, and no more "
        "than sql_process_memory_mb.",
    )

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


@dataclass(frozen=True)
class QueryMemory:
    """What each query process may grow by, from the budget (`query_memory`)."""

    budget_mb: int
    process_mb: int  # its address space beyond its size after start-up
    duckdb_limit: str  # its DuckDB memory_limit: below process_mb, so DuckDB spills first
    why: str


def query_memory(settings: Settings) -> QueryMemory:
    """Split the budget B over the query processes (W x C of the API's, and the Postgres
    endpoint's), each also answerable for two copies of its largest JSON answer R in the
    process that lent it: M = B / processes - 2R, at most sql_process_memory_mb, at least
    MIN_QUERY_MB."""
    machine_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    endpoint = settings.pg_workers * settings.pg_max_concurrent if settings.pg_port else 0
    budget = settings.sql_memory_budget_mb or min(
        1024 * (settings.api_workers + (1 if endpoint else 0)), machine_mb // 8
    )
    processes = settings.api_workers * settings.sql_max_concurrent + endpoint
    answers_mb = 2 * math.ceil(settings.sql_max_result_bytes / MIB)
    share = budget // processes - answers_mb
    process_mb = max(MIN_QUERY_MB, min(settings.sql_process_memory_mb, share))
    duckdb_mb = min(megabytes(settings.duckdb_memory_limit), process_mb * 3 // 4)
    source = (
        "LAKEHOUSE_SQL_MEMORY_BUDGET_MB"
        if settings.sql_memory_budget_mb
        else f"an eighth of the machine's {machine_mb} MiB, at most 1024 per API worker "
        "and Postgres endpoint"
    )
    why = (
        f"a budget of {budget} MiB ({source}) over {processes} query processes "
        "(api_workers x sql_max_concurrent"
        f"{' + pg_workers x pg_max_concurrent' if endpoint else ''}), less {answers_mb} MiB "
        "of answers each"
    )
    if share < MIN_QUERY_MB:  # said, not hidden: the total may then pass the budget
        why += (
            f"; that share, {share} MiB, is raised to the {MIN_QUERY_MB} MiB floor, so "
            f"together they may take {processes * (MIN_QUERY_MB + answers_mb)} MiB: raise "
            "LAKEHOUSE_SQL_MEMORY_BUDGET_MB or lower the workers or queries at once"
        )
    return QueryMemory(budget, process_mb, f"{duckdb_mb}MB", why)


def megabytes(size: str) -> int:
    """DuckDB's spelling of a size ("1GB", "512MiB") in MiB (decimal units read as binary:
    the smaller of the two is what matters here, and the difference is 7%)."""
    found = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)?\s*", size, re.IGNORECASE)
    if not found:
        raise ValueError(f"duckdb_memory_limit {size!r}: write it like 1GB or 512MB")
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    unit = (found.group(2) or "MB")[0].upper()
    return int(float(found.group(1)) * scale[unit])
