"""The benchmark suite: each figure against an anchor measured in the same run, on the real
stack this script starts (S3 server, Dagster daemon, API) on free ports.

    make bench                    # full size, writes docs/BENCHMARKS.md (~30 min)
    python -m bench.run --small   # the fast variant CI runs (harness only, no targets)

Medians of several runs; the machine is shared and noisy, so read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import boto3
import dagster
import duckdb
import httpx
import pyarrow

from devstack.instance import write_instance_yaml
from devstack.ports import free_port
from devstack.processes import PeakMemory
from devstack.sample_data import write_sample_csv
from devstack.stack import Stack
from lakehouse.duck import attach_s3, connection_config, sql_string
from lakehouse.formats.csv.convert import csv_to_parquet
from lakehouse.formats.csv.schema import infer_schema
from lakehouse.ingest.landing import LineCounter
from lakehouse.manifest import Manifest
from lakehouse.publish.catalog import latest_manifest, manifest_history, manifest_metadata
from lakehouse.runs import DATASET_ASSET_KEY, IN_PROGRESS, PARTITION_TAG
from lakehouse.settings import Settings
from lakehouse.store import ObjectStore

MIB = 1024 * 1024
# Queries that built gigabytes in the API process before queries ran in query processes.
HOSTILE_SQL = [
    ("json", "SELECT length(repeat('x', 3000000000))"),
    ("json", "SELECT list_sum(range(300000000))"),
    ("json", "SELECT length(repeat('x', 3000000000 + i)) FROM range(1) t(i)"),
    ("json", "SELECT list_sum(range(300000000 + i)) FROM range(1) t(i)"),
    ("json", "SELECT repeat('x', 10000000) FROM range(100)"),
    ("csv", "SELECT repeat('x', 10000000) FROM range(100)"),
    ("json", "SELECT length(string_agg(repeat('x', 1000), '')) FROM range(3000000)"),
    ("json", "SELECT count(*) FROM range(100000000) a, range(100000000) b"),
    ("parquet", "SELECT [i] AS l, INTERVAL (i) DAY AS d FROM range(100000) t(i)"),
    ("json", "SELECT * FROM pg_settings"),
]
# A 1 GB answer: refused past sql_max_result_bytes, and it must cost no more than that.
WIDE_SQL = [("json", "SELECT repeat('x', 1000000) || i AS wide FROM range(1000) t(i)")]
GROUP_BY = "SELECT role, count(*) FROM {t} WHERE state='IL' GROUP BY role"


@dataclass(frozen=True)
class Size:
    rows: int  # the workers file
    repeats: int  # medians over this many runs
    big_copies: int  # the "10M rows" file is the workers file this many times over
    scaling: tuple[int, ...]
    memory_upload_bytes: int
    throughput_seconds: float
    small_files: int  # 100-row files sent by 8 clients
    versions: int  # versions of one dataset when its manifest is read


FULL = Size(500_000, 5, 20, (100_000, 1_000_000, 10_000_000), 1024 * MIB, 5.0, 200, 10_000)
SMALL = Size(5_000, 1, 2, (1_000, 5_000), 8 * MIB, 0.5, 16, 200)


@dataclass
class Figure:
    name: str
    measured: str
    anchor: str
    target: str
    met: bool | None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        verdict = {True: "met", False: "NOT met", None: "-"}[figure.met]
        note = f" [{figure.note}]" if figure.note else ""
        print(f"{figure.name}: {figure.measured} (anchor {figure.anchor}) -> {verdict}{note}")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Bench:
    def __init__(self, size: Size, workdir: Path) -> None:
        self.size = size
        self.workdir = workdir
        self.stack = Stack(
            Settings(
                state_dir=workdir / "stack",
                s3_endpoint=f"http://127.0.0.1:{free_port()}",
                api_port=free_port(),
                webserver_port=free_port(),
                broker_port=free_port(),
                pg_port=free_port(),
                # The Postgres endpoint's figure streams 10M rows to one cursor.
                sql_max_rows=10_000_000,
                max_upload_bytes=4 * 1024 * MIB,
                ingest_wait_seconds=900,
                # Every request is counted against its token's limits, but one client that
                # sends all the bench's load is never refused by them.
                token_requests_per_second=1_000_000,
                token_queries_at_once=10_000,
                token_uploads_at_once=10_000,
                # The CI variant keeps the hostile load's worst case small, and short: its
                # query that never ends is stopped at the time limit.
                sql_process_memory_mb=768
                if size is SMALL
                else Settings.model_fields["sql_process_memory_mb"].default,
                sql_timeout_seconds=5
                if size is SMALL
                else Settings.model_fields["sql_timeout_seconds"].default,
            ),
            # As `make up` runs it: with the webserver, the API pushes each ingest's run.
            with_webserver=True,
        )
        self.settings = self.stack.settings
        self.api = self.stack.api_url
        self.store = ObjectStore(self.settings.s3())
        self.http = httpx.Client(timeout=900)
        self.report = Report()
        self.tpch_scale: float | None = None  # the TPC-H scale its datasets hold (bench.tpch)
        self.workers = write_sample_csv(workdir / "workers.csv", rows=size.rows)
        with self.workers.open("rb") as first_line:  # not the whole file: it is 71 MB
            self.header = first_line.readline().rstrip(b"\r\n")

    # -- helpers --------------------------------------------------------------------------

    @property
    def auth(self) -> dict[str, str]:
        """The admin token `start` wrote, as a header."""
        return {"authorization": f"Bearer {self.stack.admin_token}"}

    def small_csv(self, first_id: int, rows: int) -> bytes:
        """A workers file of `rows` rows whose ids count up from `first_id`."""
        return (
            self.header
            + b"\n"
            + b"".join(
                b"%d,f,l,e,IL,c,r,a,1.5,40,true,2024-01-01,2024-01-01 10:00:00,4.5,3,n\n"
                % (first_id + j)
                for j in range(rows)
            )
        )

    def upload(self, name: str, path: Path, wait: bool = False, mode: str = "append") -> dict:
        params = {"name": name, "mode": mode, **({"wait": "true"} if wait else {})}
        # The length declared, as `lakehouse ingest` (and curl, and requests) send a file.
        length = {"content-length": str(path.stat().st_size)}
        response = self.http.post(
            f"{self.api}/v1/ingest", params=params, content=_chunks(path), headers=length
        )
        response.raise_for_status()
        return response.json()

    def sql(self, query: str) -> dict:
        response = self.http.post(f"{self.api}/v1/sql", json={"sql": query})
        response.raise_for_status()
        return response.json()

    def duck(self) -> duckdb.DuckDBPyConnection:
        # The same DuckDB settings the product uses: the ratio then measures our overhead.
        con = duckdb.connect(
            config=connection_config(
                self.settings.duckdb_memory_limit, self.settings.duckdb_threads
            )
        )
        attach_s3(con, self.settings.s3())
        return con

    def big_file(self) -> Path:
        """The workers file `big_copies` times over (one header): ~10M rows at full size."""
        path = self.workdir / "big.csv"
        if not path.exists():
            body = self.workers.read_bytes()
            header, rows = body.split(b"\n", 1)
            with path.open("wb") as out:
                out.write(header + b"\n")
                for _ in range(self.size.big_copies):
                    out.write(rows)
        return path

    # -- figures --------------------------------------------------------------------------

    def upload_to_queryable(self) -> None:
        """Upload -> queryable through the API, against the physical floor measured in
        alternation with it: boto3 `upload_file` to the same store, then DuckDB's
        `COPY read_csv(s3) TO s3 parquet`. Ours is what a client that needs the data next
        does: the upload with `wait=true` (answered as its version is published), then
        queries until one answers with every row. Then how long runs took to start."""
        expected = self.size.rows
        times, floors = [], []
        for i in range(self.size.repeats):
            floors.append(self.physical_floor(i))
            name = f"latency_{i}"
            started = time.perf_counter()
            self.upload(name, self.workers, wait=True)
            while True:
                try:
                    rows = self.sql(f"SELECT count(*) AS n FROM {name}")["rows"]
                    if rows == [{"n": expected}]:
                        break
                except httpx.HTTPStatusError:
                    pass  # not a view yet
                time.sleep(0.02)
            times.append(time.perf_counter() - started)
        median, floor = statistics.median(times), statistics.median(floors)
        self.report.add(
            Figure(
                f"upload -> queryable, {expected:,}-row workers file (wait=true, then a query; "
                f"median of {len(times)})",
                f"{median:.2f} s = {median / floor:.2f}x the floor "
                f"(runs: {', '.join(f'{t:.1f}' for t in times)})",
                f"physical floor (boto3 upload_file + DuckDB COPY S3->S3): {floor:.2f} s "
                f"(runs: {', '.join(f'{t:.1f}' for t in floors)}); before warm workers: 2.9x",
                "<= 1.3x the floor",
                median <= 1.3 * floor,
            )
        )
        self.run_startup()

    def physical_floor(self, i: int) -> float:
        key, target = f"bench/floor_{i}.csv", self.store.url(f"bench/floor_{i}.parquet")
        started = time.perf_counter()
        self.store.client.upload_file(str(self.workers), self.store.bucket, key)
        with self.duck() as con:
            con.execute(
                f"COPY (SELECT * FROM read_csv({sql_string(self.store.url(key))})) "
                f"TO {sql_string(target)} (FORMAT parquet)"
            )
        return time.perf_counter() - started

    def run_startup(self) -> None:
        """Queued (the run enters Dagster's queue) -> the asset's first log line: for runs
        pushed at the commit of a small upload, each alone, as warm workers promised; and,
        for what it is, for the runs of the upload -> queryable figure, which start while
        their upload still arrives (`lakehouse.ingest.underway`)."""
        alone = [f"startup_{i}" for i in range(self.size.repeats)]
        for name in alone:
            body = self.small_csv(first_id=0, rows=100)
            response = self.http.post(f"{self.api}/v1/ingest", params={"name": name}, content=body)
            response.raise_for_status()
            self._wait_settled(response.json()["ingest_id"])
        delays = self._startup_delays(alone)
        median = statistics.median(delays)
        self.report.add(
            Figure(
                f"run start-up: queued -> the asset's first log line, a run pushed at a small "
                f"upload's commit (median of {len(delays)})",
                f"{median:.2f} s (max {max(delays):.2f})",
                "before warm workers: ~2 s (a fresh process per run)",
                "<= 0.3 s",
                median <= 0.3,
            )
        )
        during = self._startup_delays([f"latency_{i}" for i in range(self.size.repeats)])
        self.report.add(
            Figure(
                "run start-up of the upload -> queryable runs, started while their upload "
                f"arrives (median of {len(during)})",
                f"{statistics.median(during):.2f} s (max {max(during):.2f})",
                "the same, started at the commit (the figure above)",
                "-",
                None,
                "sharing the 2 cores with the upload",
            )
        )

    def _startup_delays(self, datasets: list[str]) -> list[float]:
        delays = []
        with dagster.DagsterInstance.from_config(str(self.settings.resolved_dagster_home)) as inst:
            for run in inst.get_runs(dagster.RunsFilter(tags={PARTITION_TAG: datasets})):
                logs = inst.all_logs(run.run_id)
                queued = next(
                    (
                        e.timestamp
                        for e in logs
                        if e.dagster_event_type == dagster.DagsterEventType.RUN_ENQUEUED
                    ),
                    None,
                )
                first = next(
                    (e.timestamp for e in logs if e.step_key and not e.is_dagster_event), None
                )
                if queued is not None and first is not None:  # not a run still starting
                    delays.append(first - queued)
        return delays

    def conversions(self) -> None:
        """The workers file and the big file, each converted by us and by DuckDB's own COPY."""
        size = self.size
        self.conversion(self.workers, f"{size.rows:,} rows")
        self.conversion(self.big_file(), f"{size.rows * size.big_copies:,} rows", memory=True)

    def conversion(self, path: Path, label: str, memory: bool = False) -> None:
        key = f"bench/{path.name}"
        self.store.client.upload_file(str(path), self.store.bucket, key)
        source = self.store.url(key)
        schema = infer_schema(path.read_bytes()[:MIB], complete=False)
        lines = _physical_lines(path)  # as the upload counted them

        def ours() -> None:
            with self.duck() as con:
                converted = csv_to_parquet(
                    con, source, self.store.url("bench/ours.parquet"), schema, lines=lines
                )
                assert converted.account.balanced, converted.account

        def anchor() -> None:
            with self.duck() as con:
                con.execute(
                    f"COPY (SELECT * FROM read_csv({sql_string(source)})) TO "
                    f"{sql_string(self.store.url('bench/anchor.parquet'))} (FORMAT parquet)"
                )

        repeats = max(1, self.size.repeats // 2)
        anchor_s = median_time(anchor, repeats)
        ours_s = median_time(ours, repeats)
        ratio = ours_s / anchor_s
        note = ""
        met = ratio <= 1.3
        if memory:
            peak = _peak_rss_mib_of_conversion(self.settings, source, path)
            note = f"conversion process peak RSS {peak:.0f} MiB"
            met = met and peak <= 1024
        self.report.add(
            Figure(
                f"conversion CSV in S3 -> Parquet in S3, {label}",
                f"{ours_s:.2f} s = {ratio:.2f}x",
                f"DuckDB COPY read_csv -> parquet: {anchor_s:.2f} s",
                "<= 1.3x" + (", peak <= 1 GiB" if memory else ""),
                met,
                note,
            )
        )

    def upload_throughput(self) -> None:
        """Alternating, each upload alone: the run each of ours starts (a 500k-row
        conversion) is waited for, untimed, before the next upload of either side."""
        size = self.workers.stat().st_size
        client = self.store.client
        anchors, ours = [], []
        for i in range(max(3, self.size.repeats)):
            started = time.perf_counter()
            client.upload_file(str(self.workers), self.store.bucket, "bench/boto3.csv")
            anchors.append(time.perf_counter() - started)
            started = time.perf_counter()
            receipt = self.upload(f"throughput_{i}", self.workers)
            ours.append(time.perf_counter() - started)
            self._wait_settled(receipt["ingest_id"])
        anchor_s, ours_s = statistics.median(anchors), statistics.median(ours)
        self.report.add(
            Figure(
                "upload throughput through /v1/ingest",
                f"{size / ours_s / MIB:.0f} MiB/s = {anchor_s / ours_s:.2f}x",
                f"boto3 upload_file: {size / anchor_s / MIB:.0f} MiB/s",
                ">= 0.9x",
                anchor_s / ours_s >= 0.9,
                f"medians of {len(ours)} alternating uploads, each alone",
            )
        )

    def wait_quiet(self, timeout: float = 120) -> float:
        """Until no run is in progress (the asset checks, the Iceberg commit and the clean-up
        of runs the figures before it started go on after their versions are queryable), so
        a latency figure times the query path, not its contention with them; the wait, s."""
        started = time.perf_counter()
        home = str(self.settings.resolved_dagster_home)
        with dagster.DagsterInstance.from_config(home) as instance:
            while time.perf_counter() - started < timeout:
                if not instance.get_runs(dagster.RunsFilter(statuses=IN_PROGRESS), limit=1):
                    break
                time.sleep(0.5)
        return time.perf_counter() - started

    def _wait_settled(self, ingest_id: str) -> None:
        while self.http.get(f"{self.api}/v1/ingest/{ingest_id}").json()["status"] not in (
            "materialized",
            "failed",
        ):
            time.sleep(0.1)

    def sql_latency(self) -> None:
        self.upload("sqlbench", self.workers, wait=True)
        manifest = self.http.get(f"{self.api}/v1/catalog/sqlbench").json()
        urls = [self.store.url(o["key"]) for o in manifest["objects"]]
        con = self.duck()
        con.execute(
            "CREATE VIEW sqlbench AS SELECT * FROM read_parquet("
            f"[{', '.join(sql_string(u) for u in urls)}])"
        )
        for label, query in (
            ("count(*)", "SELECT count(*) FROM sqlbench"),
            ("group-by", GROUP_BY.format(t="sqlbench")),
        ):
            self.sql(query)  # warm both paths the same way
            con.execute(query).fetchall()
            runs = 10 * self.size.repeats
            direct = median_time(partial(_fetch_all, con, query), runs)
            api = median_time(partial(self.sql, query), runs)
            budget = 1.5 * direct + 0.005
            self.report.add(
                Figure(
                    f"/v1/sql median latency, {label}",
                    f"{api * 1000:.1f} ms = {api / direct:.2f}x",
                    f"DuckDB in one process: {direct * 1000:.1f} ms",
                    "<= 1.5x + 5 ms",
                    api <= budget,
                    f"budget {budget * 1000:.1f} ms",
                )
            )

    def sql_throughput(self) -> None:
        query = {"sql": "SELECT count(*) FROM sqlbench"}
        deadline = time.perf_counter() + self.size.throughput_seconds
        done = [0] * 8

        def client(slot: int) -> None:
            with httpx.Client(timeout=60, headers=self.auth) as http:
                while time.perf_counter() < deadline:
                    http.post(f"{self.api}/v1/sql", json=query).raise_for_status()
                    done[slot] += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        qps = sum(done) / (time.perf_counter() - started)
        self.report.add(
            Figure(
                "/v1/sql throughput, 8 concurrent clients, count(*)",
                f"{qps:.0f} queries/s",
                "-",
                ">= 150 queries/s",
                qps >= 150,
            )
        )

    def sql_hostile_load(self) -> None:
        """API memory above idle while 6 queries with 1 GB-wide answers, then 16 hostile
        queries, run at once beside normal traffic: within the budget (docs/API.md, "The
        bound"), at most 2 GiB, whatever the queries."""
        small = {"sql": "SELECT count(*) FROM sqlbench"}
        with ThreadPoolExecutor(4) as warm:  # both workers start their query processes
            list(warm.map(lambda _: self.sql(small["sql"]), range(8)))
        s = self.settings
        memory = s.query_memory
        budget = (
            s.api_workers
            * s.sql_max_concurrent
            * (memory.process_mb * MIB + 2 * s.sql_max_result_bytes)
        )
        for name, load in (
            ("6 queries with 1 GB-wide answers", WIDE_SQL * 6),
            ("16 concurrent hostile /v1/sql queries", HOSTILE_SQL * 2),
        ):
            idle, peak, statuses, elapsed, latency = self._memory_under(load[:16])
            self.report.add(
                Figure(
                    f"API memory above idle, {name} + normal traffic",
                    f"+{(peak - idle) / MIB:.0f} MiB (peak {peak / MIB:.0f} MiB)",
                    f"idle {idle / MIB:.0f} MiB; the budget with these settings "
                    f"{budget / MIB:.0f} MiB (each query process {memory.process_mb} MiB)",
                    "<= 2 GiB and <= the budget, no 500",
                    peak - idle <= min(budget, 2048 * MIB) and 500 not in statuses,
                    f"{elapsed:.0f} s; statuses {dict(sorted(statuses.items()))}; small query "
                    f"(retried on 503) median {statistics.median(latency) * 1000:.0f} ms, "
                    f"max {max(latency):.1f} s over {len(latency)}",
                )
            )

    def _memory_under(
        self, load: list[tuple[str, str]]
    ) -> tuple[int, int, Counter[int], float, list[float]]:
        """Idle and peak memory of the API's process tree while `load` runs at once beside
        a client sending a small query and /health in a loop."""
        api, small = self.api, {"sql": "SELECT count(*) FROM sqlbench"}
        statuses: Counter[int] = Counter()
        latency: list[float] = []
        stop = threading.Event()

        def hostile(query: tuple[str, str]) -> None:
            fmt, sql = query
            with httpx.Client(timeout=300, headers=self.auth) as http:
                response = http.post(f"{api}/v1/sql", params={"format": fmt}, json={"sql": sql})
            statuses[response.status_code] += 1

        def normal() -> None:
            with httpx.Client(timeout=60, headers=self.auth) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    while http.post(f"{api}/v1/sql", json=small).status_code == 503:
                        time.sleep(0.25)
                    latency.append(time.perf_counter() - started)
                    http.get(f"{api}/health").raise_for_status()

        time.sleep(2)  # replaced query processes settle before idle is read
        with PeakMemory(self.stack.api_pid) as memory:
            idle = memory.current()
            traffic = threading.Thread(target=normal)
            traffic.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(len(load)) as pool:
                list(pool.map(hostile, load))
            elapsed = time.perf_counter() - started
            stop.set()
            traffic.join()
        return idle, memory.peak, statuses, elapsed, latency

    def upload_memory(self) -> None:
        self.sql("SELECT 1")  # warm up
        block = b"".join(b"%d,some text for row %d\n" % (i, i) for i in range(40_000))
        blocks = self.size.memory_upload_bytes // len(block)
        with PeakMemory(self.stack.api_pid) as memory:
            idle = memory.current()
            body = iter([b"id,label\n", *([block] * blocks)])
            self.http.post(f"{self.api}/v1/ingest", params={"name": "memory"}, content=body)
        growth = (memory.peak - idle) / MIB
        self.report.add(
            Figure(
                f"API peak memory during a {blocks * len(block) / MIB:.0f} MiB upload",
                f"+{growth:.0f} MiB (peak {memory.peak / MIB:.0f} MiB)",
                f"API idle ({self.settings.api_workers} workers): {idle / MIB:.0f} MiB",
                "<= +200 MiB",
                growth <= 200,
            )
        )

    def small_files(self, datasets: int) -> None:
        """`small_files` files of 100 rows from 8 clients to `datasets` datasets: how fast
        they are acknowledged, and until every row is queryable exactly once."""
        count = self.size.small_files
        rate, acked, elapsed, versions = self._send_small_files(f"small_{datasets}", datasets)
        self.report.add(
            Figure(
                f"small files: {count} x 100 rows, 8 clients, {datasets} dataset(s), all queryable",
                f"{rate:.1f} files/s ({elapsed:.1f} s, {versions} versions)",
                "before the ingest log: 0.28 files/s (1 dataset), 0.42 (8)",
                ">= 40 files/s" if datasets == 1 else ">= 10 files/s",
                rate >= (40 if datasets == 1 else 10),
            )
        )
        self.report.add(
            Figure(
                f"small files: uploads acknowledged, {datasets} dataset(s)",
                f"{acked:.1f} uploads/s",
                "before the ingest log: ~2.7/s",
                ">= 60/s",
                acked >= 60,
            )
        )

    def _workers(self) -> list[str]:
        return [p.name for p in self.stack.processes if p.name.startswith("worker-")]

    def _send_small_files(self, prefix: str, datasets: int) -> tuple[float, float, float, int]:
        """Files/s until all queryable, uploads acknowledged/s, seconds, versions made."""
        count = self.size.small_files
        names = [f"{prefix}_{i}" for i in range(datasets)]
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            acknowledged = (
                max(pool.map(lambda i: self._small_file(names[i % datasets], i), range(count)))
                - started
            )
        elapsed = (
            self._wait_queryable(
                {name: 100 * len(range(i, count, datasets)) for i, name in enumerate(names)}
            )
            - started
        )
        versions = sum(
            self.http.get(f"{self.api}/v1/catalog/{name}").json()["version"] for name in names
        )
        return count / elapsed, count / acknowledged, elapsed, versions

    def _small_file(self, name: str, i: int) -> float:
        """Upload file `i` (100 rows, ids unique across files); when it was acknowledged."""
        body = self.small_csv(first_id=i * 1000, rows=100)
        while True:
            response = self.http.post(f"{self.api}/v1/ingest", params={"name": name}, content=body)
            if response.status_code != 503:
                break
            time.sleep(0.05)
        response.raise_for_status()
        return time.perf_counter()

    def _wait_queryable(self, expected: dict[str, int]) -> float:
        """Until each dataset has exactly its expected rows, each once; the clock when
        they all first counted right.

        The wait polls one `count(*)` over the datasets not yet complete, four times a
        second, and checks that no row is there twice at the end: the figures it times are
        CPU-bound on 2 cores, and a poll of every dataset's rows ten times a second took
        ~7% of the machine from the runs it was timing."""
        waiting = dict(expected)
        while waiting:
            counts = ", ".join(f"(SELECT count(*) FROM {name}) AS {name}" for name in waiting)
            try:
                (found,) = self.sql(f"SELECT {counts}")["rows"]
                waiting = {name: n for name, n in waiting.items() if found[name] != n}
            except httpx.HTTPStatusError:
                pass  # a dataset has no version yet
            if waiting:
                time.sleep(0.25)
        queryable = time.perf_counter()
        for name, rows in expected.items():
            found = self.sql(f"SELECT count(*) AS n, count(DISTINCT worker_id) AS d FROM {name}")
            if found["rows"] != [{"n": rows, "d": rows}]:
                raise AssertionError(f"{name}: not {rows} rows, each once: {found['rows']}")
        return queryable

    def manifest_reads(self) -> None:
        """Reading the latest manifest and a page of versions with 10 versions vs many: the
        catalog read must not grow with the history."""
        with tempfile.TemporaryDirectory(prefix="lakehouse-bench-home-") as home:
            write_instance_yaml(Path(home), Settings())
            with dagster.DagsterInstance.from_config(home) as instance:
                _versions_by_a_run(instance, range(1, 11))
                few = self._read_times(instance)
                _versions_by_a_run(instance, range(11, self.size.versions + 1))
                many = self._read_times(instance)
        self.report.add(
            Figure(
                f"latest manifest + a page of 10 versions, {self.size.versions:,} versions vs 10",
                f"{many[0] * 1000:.1f} ms + {many[1] * 1000:.1f} ms vs "
                f"{few[0] * 1000:.1f} ms + {few[1] * 1000:.1f} ms = {sum(many) / sum(few):.2f}x",
                "-",
                "flat (<= 1.5x)",
                sum(many) / sum(few) <= 1.5,
            )
        )

    def _read_times(self, instance: dagster.DagsterInstance) -> tuple[float, float]:
        repeats = 20
        latest = median_time(lambda: latest_manifest(instance, "history"), repeats)
        # A page of 10 in both cases: the figure compares history lengths, not page sizes.
        page = median_time(lambda: manifest_history(instance, "history", limit=10), repeats)
        return latest, page

    def append_cost(self) -> None:
        """A 2-row append to the largest scaling dataset vs to an empty dataset: the cost
        of a version must not grow with the dataset's size."""
        large = f"scale_{self.size.scaling[-1]}"
        empty = self.workdir / "header.csv"
        empty.write_bytes(self.small_csv(first_id=0, rows=0))
        self.upload("append_empty", empty, wait=True)
        counter = iter(range(10_000))

        def append(name: str) -> None:
            path = self.workdir / "two.csv"
            n = next(counter)
            path.write_bytes(self.small_csv(first_id=10**9 + 2 * n, rows=2))
            answer = self.upload(name, path, wait=True)
            assert answer["status"] == "materialized", answer

        repeats = self.size.repeats
        on_empty = median_time(lambda: append("append_empty"), repeats)
        on_large = median_time(lambda: append(large), repeats)
        rows = self.size.scaling[-1]
        self.report.add(
            Figure(
                f"2-row append to a {rows:,}-row dataset vs to an empty one (median of {repeats})",
                f"{on_large:.2f} s vs {on_empty:.2f} s = {on_large / on_empty:.2f}x",
                "before the ingest log: 1.51x at 4.5M rows",
                "<= 1.2x",
                on_large / on_empty <= 1.2,
            )
        )

    def scaling(self) -> None:
        points = []
        header, rows = self.big_file().read_bytes().split(b"\n", 1)
        lines = rows.split(b"\n")
        for count in self.size.scaling:
            path = self.workdir / f"scale_{count}.csv"
            with path.open("wb") as out:
                out.write(header + b"\n")
                out.write(b"\n".join(lines[:count]) + b"\n")
            started = time.perf_counter()
            answer = self.upload(f"scale_{count}", path, wait=True)
            elapsed = time.perf_counter() - started
            assert answer["manifest"]["row_count"] == count, answer
            points.append((count, elapsed))
            path.unlink()
        per_row = [t / n for n, t in points]
        linear = per_row[-1] <= per_row[0] * 1.2
        curve = "; ".join(f"{n:,} rows: {t:.1f} s" for n, t in points)
        self.report.add(
            Figure(
                "scaling: upload -> materialized (wait=true)",
                curve,
                "-",
                "linear or better",
                linear,
                "per-row cost " + " -> ".join(f"{p * 1e6:.2f} us" for p in per_row),
            )
        )


def _versions_by_a_run(instance: dagster.DagsterInstance, versions: range) -> None:
    """Versions of `history` as runs write them (the catalog ignores reported ones)."""
    first = Manifest.empty("history", "s3://bench/datasets/history/")

    @dagster.op
    def write_versions() -> Iterator[dagster.AssetMaterialization | dagster.Output]:
        for version in versions:
            manifest = first.model_copy(update={"version": version})
            yield dagster.AssetMaterialization(
                DATASET_ASSET_KEY, partition="history", metadata=manifest_metadata(manifest)
            )
        yield dagster.Output(None)

    @dagster.job
    def history() -> None:
        write_versions()

    history.execute_in_process(instance=instance)


def _fetch_all(con: duckdb.DuckDBPyConnection, query: str) -> list:
    return con.execute(query).fetchall()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            yield chunk


def _physical_lines(path: Path) -> int:
    counter = LineCounter()
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            counter.feed(chunk)
    return counter.total()


def _peak_rss_mib_of_conversion(settings: Settings, source: str, path: Path) -> float:
    """Peak RSS of a fresh process running the conversion, as a run worker would."""
    code = (
        "import sys; from pathlib import Path; "
        "from lakehouse.settings import Settings; from lakehouse.duck import *; "
        "from lakehouse.formats.csv.convert import csv_to_parquet; "
        "from lakehouse.formats.csv.schema import infer_schema; "
        "import duckdb; s = Settings.model_validate_json(sys.argv[1]); "
        "con = duckdb.connect(config=connection_config(s.duckdb_memory_limit, s.duckdb_threads)); "
        "attach_s3(con, s.s3()); "
        "from lakehouse.store import ObjectStore; store = ObjectStore(s.s3()); "
        "schema = infer_schema(open(sys.argv[3], 'rb').read(1048576), complete=False); "
        "key = sys.argv[2].split('/', 3)[3]; "
        "converted = csv_to_parquet(con, sys.argv[2], sys.argv[2] + '.parquet', schema, "
        "lines=int(sys.argv[4]), read_bytes=lambda: store.stream(key)); "
        "assert converted.account.balanced, converted.account"
    )
    lines = str(_physical_lines(path))  # as the upload counted them
    child = subprocess.Popen(
        [sys.executable, "-c", code, settings.model_dump_json(), source, str(path), lines]
    )
    # Sampled, not getrusage: Linux carries the parent's peak RSS over fork and exec, and
    # this process has just run conversions of its own.
    with PeakMemory(child.pid) as memory:
        if child.wait():
            raise RuntimeError(f"conversion process failed ({child.returncode})")
    return memory.peak / MIB


def write_report(report: Report, path: Path, size: Size, elapsed: float) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s.",
        "Each figure is measured against its anchor in the same run, on the real stack",
        "(SeaweedFS S3, Dagster daemon, API) on this machine; medians of several runs.",
        "",
        "## Machine and versions",
        "",
        f"- {platform.platform()}, {_cpus()} CPUs, Python {platform.python_version()}",
        f"- dagster {dagster.__version__}, duckdb {duckdb.__version__}, "
        f"pyarrow {pyarrow.__version__}, boto3 {boto3.__version__}",
        f"- workers file: {size.rows:,} rows; big file: {size.rows * size.big_copies:,} rows",
        "",
        "## Figures",
        "",
        "| figure | measured | anchor (same run) | target | met |",
        "|---|---|---|---|---|",
    ]
    for f in report.figures:
        verdict = {True: "yes", False: "**no**", None: "-"}[f.met]
        note = f" ({f.note})" if f.note else ""
        lines.append(f"| {f.name} | {f.measured}{note} | {f.anchor} | {f.target} | {verdict} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + SETTINGS_NOTES)


def _cpus() -> int:
    return os.cpu_count() or 0


SETTINGS_NOTES = """
## What the settings bought (measured while building them, same machine)

- **Pushing the run from the API** (Dagster's GraphQL client, right after the ingest is
  committed, unless a run of the dataset already waits; the sensor stays the safety net):
  upload -> queryable went from 9.9 s (sensor only: Dagster 1.13's sensor daemon ticks at
  most every 5 s) to 5.9-7.4 s over three runs, before the ingest log.
- **The ingest log** (docs/PROTOCOL.md): a run applies every pending ingest as one
  version, so 200 small files became 2 versions (1 dataset) or 8 (8 datasets), from one
  run each before. A run's fixed cost (Dagster starting a process, ~2-3 s) is what remains
  per version; a version costs the same on a 10M-row dataset as on an empty one.
- **`dequeue_use_threads`** in the run coordinator: with the default launcher, launching a
  run blocked ~2 s until its process was up; without threads, runs of different datasets
  started strictly one after another.
- **`dequeue_interval_seconds: 1`** (default 5) and the **in-process executor** for
  `ingest_job` (one asset: a process per step would only add start-up).
- **Conversion** reads the CSV with the schema inferred at upload (no second sniffing pass):
  0.74x of DuckDB's own auto-detecting COPY on 500k rows, 0.99x on 10M rows.
- **Catalog check per query**: on SQLite, a stat of the event-log index instead of a query
  that opens a new SQLAlchemy engine each time (~4 ms -> microseconds); DuckDB's HTTP
  metadata cache (objects are immutable), and two API worker processes:
  `/v1/sql` count(*) went from 12.7 ms to ~7.5 ms, throughput from 94 to 136-307
  queries/s over three runs (a 5 s window on a shared machine: read it as a range).
- **httptools and uvloop** for uvicorn.
- **Query processes for `/v1/sql`** (a memory cap per query, admission control): against
  the in-process engine before them, on one stack in alternating rounds of 60 requests,
  `count(*)` on a 5,000-row dataset went from 5.5 to 5.8 ms median (+0.3 ms: a socket
  round trip and pickling). A timer thread per query had cost ~1 ms, hence one watchdog
  thread per query process; binding the statement once (on the connection, not a
  relation) saved ~0.5 ms more. One hostile query used to grow the API by 5.7 GiB; 16 at
  once now stay within the bound in docs/API.md (figure above).
- **Warm run workers** (dagster-celery's `CeleryRunLauncher`, Redis, `lakehouse worker`):
  before them, every run started a fresh Python process (the code server's `spawn`, ~2 s
  on this machine) that imported Dagster and loaded the definitions; a worker did that
  once, at its start, so the asset's first line now comes ~0.15 s after the run leaves
  the queue.
- **A prompt run queue** (`lakehouse_assets/coordinator.py`): Dagster's daemon looked at
  the queue, then slept in 0.5 s steps, so a run waited ~0.27 s on average for its look
  (run start-up 0.42-0.72 s). The coordinator now has the daemon look as soon as a run is
  submitted or a worker finishes one (a touched file in `$DAGSTER_HOME`, watched by
  `stat`), and at least every 0.5 s. Op-concurrency blocking, which read the queue's
  limits a second time per look, is off: no pools are used. Queued -> `RUN_STARTING`
  went from ~0.53 s to 30-45 ms; run start-up from 0.72 to 0.20 s median, and upload ->
  queryable for the 500k-row file from 1.75x to 1.38x the floor, in probes an hour apart.
- **One converted file is uploaded as written** (`upload_file`, parallel parts) rather
  than read and encoded again by a `COPY`, with its statistics read meanwhile.
- **Pushes in the background**: an upload's answer no longer waits for the webserver to
  create its run, and a burst to one dataset makes one push, not one per file.
- **One boto3 session per process** (`lakehouse/store/client.py`): each `ObjectStore` made
  its own session, which parsed botocore's S3 model again (~80 ms of CPU on a fast day):
  26-30% of a run worker's CPU per run, and 0.4 s of the daemon's code server at every
  1 s sensor tick. Creating a store now costs ~5 ms. With the upload path remembering a
  dataset that has no version yet (it read the event log per upload) and the writer
  logging progress every 5 s rather than a Dagster event per file (each an SQLite
  write: a third of a worker's CPU on a 100-file batch), small files acknowledged went
  from 25.6-26.7 to 32-38 uploads/s in the same session.
- **One code server for the daemon and the webserver** (`devstack/stack.py`,
  `dagster api grpc`, pointed at by `<state_dir>/workspace.yaml`): with the project's
  `workspace.yaml`, each spawned a code server of its own, and the daemon replaced its
  one every 60 s, each replacement importing Dagster and the definitions again (~4 CPU-s
  on a slow day, in bursts that landed inside whatever was being timed). An idle stack
  now uses ~0.11 of 2 cores (the daemon ~0.04, the kernel ~0.04, the code server
  answering the 1 s sensor ticks ~0.03). In probes on the same slow day, the run tier's
  2-vs-1 ratio went from 1.21x to 1.34-1.35x with it, and to a 1.46x median of three
  rounds with the bench's poll made light as well.

- **The query path** (issue "fast"; probes on one stack, `count(*)` over TPC-H's
  600k-row `lineitem`, median overhead over DuckDB in one process): 5.8 ms to 3.3-3.5 ms.
  A py-spy profile of the API (1,000 Hz, 15 s of `count(*)`) showed where: the catalog
  check's high-water mark (Dagster's SQLite storage opens an engine and a connection per
  call, under one lock: ~0.9 ms; now a `max(id)` over a connection kept open, fenced in
  `lakehouse/runtime/compat.py`), the lease given back to Redis on the event loop after
  each answer (now a thread of its own, or the next admission's round trip), the guard's
  parse (its verdict is remembered per statement and view set), the settings written as
  JSON to find the engine, and `/proc/self/statm` opened per answer (now kept open).
  What is left is structural: HTTP and FastAPI (~0.4 ms of the event loop), the thread
  hop, the socket round trip to the query process and its pickled messages, and the
  client's own ~0.5-1 ms. Then, timed stage by stage inside one request (marks from the
  audit middleware to the last byte, 1,500 requests): the settings, store and instance
  dependencies were plain `def`s, each request's first one a hop to a worker thread
  (~0.3 ms; now `async`, what takes long to make made in a thread once); the admission
  was a 7-command Redis pipeline (now one script, `api/quotas.py` `ADMIT`, which is also
  atomic: a refused request holds no lease); the query process's watchdog thread was
  woken per query (now only for a deadline earlier than the one it sleeps to); JSON rows
  built an encoder per row and passed every value through `json_value` (now one encoder,
  and only the columns whose type needs it: 12 to 6.7 ms for TPC-H Q16's 2,762 rows).
  Alternating a stack's API with and without these: 0.15-0.5 ms of ~3 ms per `count(*)`.
  Then JSON rows are encoded a slice at a time (about 1 MiB of JSON per call, the slice's
  rows set from the row size of the one before, cut at the byte cap to the row as before)
  with orjson, the standard library where a value may be an integer past 64 bits: Q16's
  rows from 6.9 to 1.6 ms in the query process (1.4 ms of it making the rows' dicts);
  through `/v1/sql` on one stack, Q16 went from 2.39x to 1.82x DuckDB's time and Q11 (2,541
  rows) from 2.02x to 1.57x (one probe each, the same hour: the 22 queries' geometric mean
  1.34x before, 1.28x after).
- **Uploads**: parts are taken in (SHA-256, lines, the first part's columns) and sent
  while the next ones arrive, where the body used to wait for each part's hash; the
  schema sample classifies each distinct value once (0.12 to 0.07 s for the first 8 MiB
  part); the read timeout no longer makes a task per chunk. The last part lands side by
  side with the duplicate lookup and the listing of the log's end, so an acknowledgement
  costs, after the bytes, one create and three writes side by side (two round trips). The
  throughput figure now alternates the two sides and waits, untimed, for the run each of
  our uploads starts (a 500k-row conversion that used to run during the next timings).
  Measured per 71 MB upload: the S3 server ~2.0 CPU-s either way, boto3's client 0.2
  CPU-s, the API 0.55-0.6 CPU-s; on 2 cores that difference is the gap.
- **Small files read together** (`lakehouse/versions/together.py`): a run's plain CSV
  appends of the dataset's columns, read alike, are one DuckDB read into one local file
  (uploaded as it is), each file still decided on its own (duplicates in log order, its
  lines proven by the count made at upload); a file with a line that is no row sends the
  batch back to one file at a time. A clean file read alone also skips the four
  statements that describe rejects it does not have. In probes, the run workers' CPU per
  200 files went from 7.4-10 to 4.4 CPU-s, and files/s until queryable on one dataset
  from 10-14 to 20. A py-spy profile of the worker then showed the figure's own case
  read one file at a time: a new dataset's first burst had no columns yet, so nothing
  was read together. Now the first file defines them alone and the rest of the run of
  appends is read together (as is each run of appends between replaces, merges or
  `evolve=` uploads): the whole stack's CPU for 200 files on a fresh stack went from
  3.1-4.9 to 2.1 CPU-s, 41-84 to 104-122 files/s. Listings no longer set up botocore's
  paginator (~4% of the API's CPU per acknowledgement, for one-page listings).
- **Small requests signed by the store itself** (`lakehouse/store/signed.py`: Signature
  Version 4 over one urllib3 pool; transfers stay with boto3): a small PUT, GET or listing
  cost ~1.0 ms of the client's CPU through boto3 (its event hooks, endpoint rules and
  model-driven parsing) and ~0.35 ms signed here, 1.4 ms of wall time instead of 2.2 for
  a PUT. An acknowledgement is nine of them: small files acknowledged went from 33.0 to
  55.8/s (1 dataset) and 34.9 to 54.7/s (8 datasets), files until queryable from 25.1 to
  36.6/s, in the same session. Multipart uploads (create, parts, complete, abort) go the
  same way. The S3 server's CPU through such a burst then fell by ~23% (2.93 to 2.27
  CPU-s, one probe) when `weed mini` keeps objects under 64 KiB in its filer's own store
  (`-filer.saveToFilerLimit`) rather than assigning each a volume.
- **A large upload's run starts while its bytes arrive** (`lakehouse/ingest/underway.py`):
  an upload of more than one part is announced once its first part is accepted, and its
  run is pushed then, not at the commit; the run waits for the announcement to go (the
  commit, or a refusal) before it reads the log. Dagster's planning, queueing and start-up
  of the run (~0.4 s) now overlap the upload: in a probe's timeline the run's step began
  as the upload was acknowledged. Upload -> queryable for the 500k-row file went from
  1.47-1.52x to 1.35x the floor in probes the same hour. The price is the run's start-up
  CPU during the upload (the webserver creating the run: ~0.15 CPU-s): upload throughput
  measured 0.74-0.84x with it and 0.80-0.91x without, alternating stacks, on a slow hour.
  It also slows those runs' own start-up (0.27-0.31 s, the cores shared with the upload),
  out of the path a user waits on; run start-up as warm workers promised it is now timed
  on runs pushed at a small upload's commit, each alone (0.22 s in the same probe).
- **A large upload's run asked for as its end nears** (`api/upload/body.py` `Arrival`): the
  run is pushed once the rest of the body is due within 0.5 s (its `Content-Length`
  against the rate so far), not at its first part: a slow client's upload held a run
  worker idle for up to a minute, and a fast one's run start-up took the cores from its
  own last bytes. `lakehouse ingest` and the bench now declare the file's length. On one
  stack, alternating the two kinds of body (5 rounds each; a chunked body then still asked
  at its first part): throughput 0.73x boto3's with the length declared vs 0.66x chunked,
  upload -> queryable 2.44 vs 2.74 s. A chunked body's run is now asked for at its commit:
  its end cannot be foreseen, and a slow one held a run worker idle for up to a minute.
- **`wait=true` answers as its version is published** (`api/upload/wait.py`): each waiting
  upload looked where it stood (the catalog and the store) every 0.25 s; now one task per
  API process reads the event log's high-water mark every 20 ms while any upload waits
  (one query however many wait), and an upload looks again only when the mark moved. The
  upload -> queryable figure now does what a client that needs its rows next does: the
  upload with `wait=true`, then a query. Alternating the two on one stack (5 rounds each,
  the floor 1.75 s): polling `/v1/sql` every 20 ms after a plain upload 2.23 s = 1.28x
  the floor, `wait=true` 2.07 s = 1.18x. A failed poll ("no such dataset" until the first
  version) cost the API ~1.6 ms of CPU, fifty a second: ~8% of a core taken from the
  conversion it waited for.
- **Pushes trust a run found waiting while nothing changed** (`lakehouse/runs.py`
  `WaitingRuns`): a py-spy profile of the API under 8 clients of small files showed 16-20%
  of its CPU in one query per acknowledgement, the dataset's waiting run (SQLAlchemy
  building and compiling it, a SQLite connection per call: ~1.7-2 ms). Every change of a
  run's status is an event that moves the event log's high-water mark (a contract test in
  `tests/unit/lakehouse/runtime/test_compat.py`), so while the mark stands still, a run
  found waiting still waits, and the push asks nothing. The API's CPU per acknowledgement
  went from 11.3-11.5 ms to 9.0-9.7 ms, acknowledgements to 8 datasets from 72-77/s to
  84-88/s in probes alternating the two (the machine noisy that hour: 63-79/s in a later
  pair).
- **Byte-compiled at install; pyiceberg only where it is used** (`Makefile`,
  `api/routes/datasets.py`). This machine sets `PYTHONDONTWRITEBYTECODE`, so after `make
  install` stopped byte-compiling (2026-12-06), every process compiled each module it
  imported from source, at each start: a whole stack's start (its API workers and query
  processes included) cost 92 CPU-s of the machine, 43 with `.pyc` (from `/proc/stat`, one
  start each, 2026-12-07). `compileall` on both cores takes ~17 s of the install. The API
  no longer imports pyiceberg and pandas at start (its purge route imports them at the
  first purge): `import api.main` 9.1 -> 5.0 CPU-s, 328 -> 259 MiB per API process. And
  the stack's readiness polls share one TLS context (httpx loaded the CA bundle per poll,
  3-7 CPU-s a start).

## What holds back the targets not met, or met only on a quiet day

The bench of 2026-12-06 23:58 took 1,881 s (a 10^7-step Python loop: 0.24-0.26 s just
before it); that of 22:33 2,374 s, 19:49 1,918 s and 16:30 1,352 s, for the same figures:
every figure of the API was slower at 22:33 and 19:49; a 10^7-step Python loop took
0.39-0.44 s right after the one of 22:33 (0.27 s after 19:49). Through the one of 19:49
the code server averaged 10% of a core and the kernel's memory monitor (`kdamond`) 3.5%.
This VM's speed varies by ~2-3x between days (a 10^7-step Python loop: 0.25 s on the day
of the figures above, 0.19-0.54 s on others); figures near their bound move with it. On a
slow day (0.54 s), run start-up (0.43 s), upload -> queryable (1.54x the floor) and the
/v1/sql latencies missed bounds they met on 2026-11-23 (0.21 s, 1.41x); the same day, a
probe alternating stacks with and without the code server measured start-up 0.35-0.36 s vs
0.36-0.37 s and 1.51-1.57x vs 1.52-1.62x the floor: the code server did not move them.

- **Upload throughput (0.78x of boto3 in the bench of 2026-12-06 23:58, 0.60x at 22:33,
  0.73x at 19:49, 0.72x at 16:30, 0.73x at 14:21, 0.58-0.91x in probes).** The S3 server
  takes ~1.15-2 CPU-s per 71 MB file whoever sends it, so on 2 cores what we add is the
  gap: the API's own ~0.35 CPU-s (the body through HTTP parsing in Python, SHA-256 for
  duplicate detection, the line count, the schema sample, signing each part), and since
  the run starts during the upload, its start-up (the webserver ~0.15 CPU-s, the daemon
  ~0.05) in the same second; boto3's client spends 0.2. Timed on one stack (4 alternating
  rounds, each upload alone, the machine's CPU from `/proc/stat`): a 68 MiB file took 0.87
  s through boto3 (1.67 CPU-s of the machine), 1.08 s through `/v1/ingest` sent chunked
  (its run asked for at the commit: 1.93 CPU-s), 1.40 s with its length declared (its run
  started during its last 0.5 s: 2.67 CPU-s). The run's start-up costs ~0.7 CPU-s of the
  machine (Dagster creating, queueing and starting it), and on 2 cores that is 0.81x
  against 0.62x. It is kept for upload -> queryable, which it brings within 1.3x the
  floor.
- **`/v1/sql` overhead over DuckDB (+3.36 ms for `count(*)`, +4.11 ms for the group-by, in
  the bench of 2026-12-06 23:58; +6.61 and +6.18 ms at 22:33; +5.68 and +6.89 ms at 19:49,
  both hours when every figure of the API was slow: small-file acknowledgements 39/s
  against 83/s at 16:30; +2.11 and +3.06 ms at 16:30; +2.29 and +3.76 ms at 14:21; vs 2
  ms).** Timed stage by stage on one idle stack (marks in the client, the app and the
  query process on one clock, medians of 150), a `count(*)` (DuckDB 0.64 ms in the query
  process, 0.56 in the anchor) spends 1.7 ms around DuckDB: client to app 0.30, app to
  handler (routing, token, the admission's Redis script, body) 0.60, the hop to a worker
  thread 0.10, the catalog check and the guard's remembered verdict 0.05, to the query
  process 0.06, fetching and encoding 0.08, back 0.09, the hop back 0.06, the answer out
  0.20, to the client 0.13. The group-by (DuckDB 11.1 ms, 11.0 in the anchor) spends 3.4
  ms on the same stages, each 1.5-2.2x slower: right after DuckDB has used both cores for
  11 ms, the Python around it runs on cold caches. The anchor has no Python around its
  query. On a fresh stack with only `lineitem` loaded, a probe measured +1.92 and +2.22 ms
  (4 rounds of 100), the query process's own round trip +0.27 and +0.24 ms over the
  anchor. So the group-by's extra ~1 ms in the bench comes with the stack the figures
  before it leave (not traced further), not from the query process itself: its
  address-space cap and its fetching in batches were each timed against the anchor's
  `fetchall`, no difference. Calling the app in-process (ASGI, no HTTP; medians of 2,000),
  `SELECT 1` costs the API 1.59 ms: the admission's Redis round trip on the event loop
  0.25 ms and, by turning them off, ~0.41 ms for the limits as a whole (the thread that
  gives the lease back competes for the GIL as the next request starts: ~0.12 ms);
  FastAPI's dependencies and body ~0.25 ms beyond the admission; the hop to a worker
  thread and back ~0.23 ms; the query process's round trip ~0.48 ms; routing, the audit
  record and the answer ~0.2 ms. Over HTTP, uvicorn and the client come on top: httpx
  costs 0.28 ms a request more than `http.client` on the same keep-alive connection (2.55
  vs 2.27 ms a `count(*)`). Giving leases back later, so the next admission takes them,
  was not done: another API process would see a lease held ~2 ms longer, and a token at
  its limit would meet 429s it does not meet now. Earlier stage by stage (ms from the
  audit middleware, medians of 1,500 `count(*)` on an idle stack, after the cuts above):
  body read 0.07; routing, the bearer token and its cache 0.35-0.4; the admission script
  in Redis 0.35 (0.17 alone: the rest is waiting for a core); the other dependencies and
  the body's validation 0.18; the hop to a worker thread 0.12-0.16; the catalog check
  0.08; the query process's round trip 1.3-1.5 (DuckDB itself 0.6-0.9 of it); the hop back
  0.09; the answer out 0.2; outside the app (uvicorn, the socket, httpx) ~0.6. Taking the
  hops out entirely (an event-loop-only path, tried and not kept: it would block the loop
  whenever a catalog refresh, a guard parse or a busy pool blocks) saved a further
  0.15-0.25 ms. The bench measured +3.87 ms, and +4.49 ms in a second run of its fast
  figures the same hour, which first waited for runs to end (none were running): on this
  VM the figure moves by ~2 ms between minutes (early that day the code before these cuts
  measured +5.17 ms with the same bench function, and ~2.7 ms in a probe later). Then,
  that evening: the engine alone (a `QueryEngine` in a plain process, the stack's
  settings) answered the `count(*)` in 1.0 ms, back to back; with 1.5 ms of sleep between
  queries, 1.7-2.0 ms. DuckDB in one process does the same: 0.6 ms back to back, 0.9-1.1
  ms after 1.5 ms idle, 1.6-2.0 ms after 4 ms. This machine is a nested Firecracker VM
  whose idle vCPUs halt without polling (`haltpoll.guest_halt_poll_ns=0`): a socket ping
  between two processes takes 17-29 us back to back and 69 us after 5 ms idle, and a query
  wakes several threads and processes. The API's queries never come back to back (HTTP and
  FastAPI lie between them), so its query processes always start cold, while the anchor's
  rounds of 50 run warm. Interleaving the two sides one query for one, both slowed alike
  (+4.78 ms against +4.88 ms in rounds, the same hour), so the figure's method stands and
  the gap is what a client with pauses meets either way. What the API's event loop spends
  (in-process ASGI driver, the thread's CPU time): ~1.5 ms of CPU per `count(*)`,
  FastAPI's dependency solving (15 dependency calls a request) ~25% of it, uvicorn ~10%,
  the access line ~8%; without the admission's Redis script the request took 0.3-1 ms less
  (not a change: the limits hold across API processes). The catalog snapshot now outlives
  a moved event-log mark with no new version, so a query during any run no longer loses
  the guard's remembered verdict (~0.5 ms).
- **TPC-H through `/v1/sql` (1.29x at SF 0.1, 1.71x at SF 0.01 in the bench of 23:58;
  1.28x and 1.58x at 22:33;
  1.27x and 1.72x at 19:49; 1.34x and 1.60x at 16:30; 1.36x and 1.54x at 14:21).** Per
  query, ~3-4 ms lies outside the engine (HTTP, and the client parsing the JSON answer,
  which the anchor's `fetchall` does not do), and the engine adds 0.5-8 ms to DuckDB's
  time: the socket round trip, and for the large answers (Q11, Q16: 2,500+ rows) making
  the rows' dicts in Python (their encoding, now orjson's, is ~0.2 ms). Over queries of
  8-35 ms that is the ratio; DuckDB itself runs them as fast in a query process as in the
  anchor's (measured side by side: 365 vs 383 ms for the 22). Split
  per query at SF 0.01 (the answer's `elapsed_ms` against the client's time, 6 runs
  each): 3.0-3.7 ms outside the engine whatever the query (a `SELECT 1` too), and the
  engine inside the API 1.17x DuckDB's time (geometric mean), where a `QueryEngine` in a
  plain process, interleaved with the anchor, was within 0-2 ms of it: the query
  processes start cold after each request's HTTP work (see the overhead above).
- **Small files (acknowledgements 63.6/s to one dataset, met, and 42.1/s to 8 in the bench
  of 23:58; 39.5/s and 27.6/s at 22:33 and 39.4/s and 35.1/s at 19:49, hours when the
  API's every figure was slow, not met; 82.8/s and 75.9/s at 16:30, met; 63.8/s and 59.6/s
  at 14:21, before pushes trusted a run found waiting).** An acknowledgement is nine store
  requests in four round trips (the manifest check; the landing object, two duplicate
  marks and the log's end side by side; the create; the receipt, the queued mark and the
  pending hint side by side), each now signed by the store itself. One client's
  acknowledgements, one after another, cost (from /proc, per file): the API ~13 ms of CPU,
  the S3 server ~10.5 ms, the run worker applying them ~9 ms, the webserver ~5 ms (a run
  pushed per file when none waits), the daemon ~2 ms: ~40 ms of a 2-core machine's 33 ms
  per file at 60/s. A py-spy profile of the API (GIL-holding samples) is flat: FastAPI's
  dependency solving, the ASGI layers, the threadpool hops, pydantic, the Redis admission,
  each a few per cent; under 8 clients, the push's query for the dataset's waiting run was
  16-20% (now asked only when a run may have started).
- **Upload -> queryable (1.32x the floor in the bench of 23:58 and 1.37x at 22:33, not
  met, the floor itself 2.48 s against 1.91 s at 19:49; 1.26x at 19:49 and 1.17x at 16:30,
  met: the upload with `wait=true`, then a query; 1.32x at 14:21 polling `/v1/sql` every
  20 ms).** Before the run started during the upload, its timeline for one 500k-row file
  (a probe; the run's events and log lines): acknowledged at 0.88 s (the upload, 0.8x of
  boto3's speed, below); the run planned, queued and started by 1.29 s (the webserver
  writes the run and its 7 planned-event records, the daemon hands it to Celery, the
  worker writes ~10 start-up events of 10-30 ms each); the file decided and converted by
  2.38 s and the version published at 2.61-2.64 s, queryable at 2.69 s. The floor is 1.82
  s: its upload ~0.6-0.7 s and its `COPY` ~1.1 s. Ours converts as fast (1.07 s + 0.23 s
  to write and commit); the gap was the upload's speed and Dagster's run start-up. With
  the run pushed as the first part is accepted, a later probe's timeline: run planned at
  0.20 s, its step begun at 1.07 s, the upload acknowledged at 1.06 s; the file decided
  and converted by 2.59 s (1.5 s: the conversion shares the cores with what finishes the
  acknowledgement), the version at 2.83 s, queryable at 2.90 s. What is left is the
  upload's speed and the conversion under load.
- **Run tier, 2 workers vs 1 (1.18-1.69x a round; its 1.6x target was withdrawn for CPU
  per file, and the figure is no longer measured).** On 2 cores the run tier is
  CPU-bound: the same work costs the same CPU with 1 worker or 2 (~16.8 CPU-s per 200
  files then), so the ratio was cores busy with 2 workers / cores busy with 1. One
  worker's run is a chain of its own CPU and the S3 server's (each request waits for its
  answer): about one core; beside it the machine spent ~0.25 of a core on work that does
  not grow with the workers (daemon, code server, the API's view refreshes, the kernel),
  so one worker kept ~1.27-1.32 of 2 cores busy and no second worker could give more
  than 2 / 1.27 = 1.57x. Workers on machines of their own, as in production, scale it.
- **The Postgres endpoint's throughput against `/v1/sql` (0.97x in the bench of
  2026-12-06 16:30; 1.00-1.20x in the runs before).** The endpoint answered as many
  queries as before (562/s; 559/s at 14:21) while `/v1/sql`, its anchor in the same run,
  measured 580/s (533/s at 14:21): two 5 s rounds each side on 2 shared cores, a figure
  that sits at its bound of 1.0x and swings across it; not changed since.
"""


# The changing-data figures: {small variant?: (rows, rows changed, repeats)}.
CHANGES = {False: (10_000_000, 10_000, 3), True: (20_000, 1_000, 1)}
# TPC-H scales the 22 queries run at through /v1/sql: {small variant?: scales}; the last
# is the one the Postgres endpoint's TPC-H figure reads too.
FAST_TPCH_SCALES = {False: [0.01, 0.1], True: [0.01]}
# Ingests the retention figure commits: {small variant?: how many}.
RETENTION_INGESTS = {False: 10_000, True: 200}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="fast variant for CI")
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated figures to measure and print, without writing --out "
        "(e.g. sql_latency,sql_hostile_load,identity,limits,pgwire,fast,changes,retention: "
        "identity, limits and pgwire after sql_latency)",
    )
    args = parser.parse_args()
    size = SMALL if args.small else FULL
    from bench import changes, fast, pgwire, retention  # they build on this module's report

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        bench = Bench(size, Path(tmp))
        bench.stack.start(progress=lambda part: print(f"starting {part} ..."))
        bench.http.headers.update(bench.auth)
        try:
            if args.only:
                for name in args.only.split(","):
                    if name in ("identity", "limits"):  # modules that build on this report
                        importlib.import_module(f"bench.{name}").measure(bench)
                    elif name == "pgwire":
                        pgwire.measure(bench, size is SMALL)
                    elif name == "fast":
                        fast.measure(bench, FAST_TPCH_SCALES[size is SMALL])
                        fast.small_files_cpu(bench)
                    elif name == "changes":
                        changes.measure(bench, *CHANGES[size is SMALL])
                    elif name == "retention":
                        retention.measure(bench, RETENTION_INGESTS[size is SMALL])
                    else:
                        getattr(bench, name)()
                return
            bench.upload_to_queryable()
            bench.conversions()
            bench.upload_throughput()
            bench.sql_latency()
            bench.sql_throughput()
            bench.sql_hostile_load()
            bench.upload_memory()
            bench.scaling()
            bench.append_cost()
            bench.manifest_reads()
            bench.small_files(datasets=1)
            bench.small_files(datasets=8)
            fast.small_files_cpu(bench)
            fast.measure(bench, FAST_TPCH_SCALES[size is SMALL])
            from bench import identity, limits  # they build on this module's report

            identity.measure(bench)
            limits.measure(bench)
            pgwire.measure(bench, size is SMALL)
            from bench import iceberg  # it builds on this module's report

            iceberg.measure(
                bench.stack, bench.report, iceberg.SMALL if args.small else iceberg.FULL, Path(tmp)
            )
            changes.measure(bench, *CHANGES[size is SMALL])
            # Last: its passes prune the other figures' ingests and runs too.
            retention.measure(bench, RETENTION_INGESTS[size is SMALL])
        finally:
            bench.stack.stop()
    write_report(bench.report, args.out, size, time.perf_counter() - started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
