"""The bench's stack and its core figures: `Bench` starts the real stack (S3 server, broker,
run workers, Dagster, API, the Postgres endpoint) on free ports, and measures uploads,
conversions, /v1/sql, memory, small files and the catalog against anchors from the same
run. The other modules (fast, identity, limits, pgwire, iceberg, changes, retention) add
their figures to its report; `bench.run` runs them all."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster
import duckdb
import httpx

from bench.report import Figure, Report
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
from lakehouse.publish.catalog import (
    latest_manifest,
    latest_manifests,
    manifest_history,
    manifest_metadata,
)
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

    @property
    def described(self) -> str:
        """The sizes, as the report says them."""
        return f"workers file: {self.rows:,} rows; big file: {self.rows * self.big_copies:,} rows"


FULL = Size(500_000, 5, 20, (100_000, 1_000_000, 10_000_000), 1024 * MIB, 5.0, 200, 10_000)
SMALL = Size(5_000, 1, 2, (1_000, 5_000), 8 * MIB, 0.5, 16, 200)


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

    def catalog_listing(self) -> None:
        """GET /v1/catalog with every dataset the bench has made so far, against GET
        /v1/catalog/{name} of one, and against the read per dataset the listing did before
        (`latest_manifests` on the same instance, in this process, no HTTP): the listing
        must not grow with the number of datasets."""
        if not self.http.get(f"{self.api}/v1/catalog").json()["datasets"]:  # run alone
            path = self.workdir / "listed.csv"
            path.write_bytes(self.small_csv(first_id=0, rows=100))
            self.upload("listed", path, wait=True)
        with httpx.Client(timeout=60, headers=self.auth) as http:
            names = [d["name"] for d in http.get(f"{self.api}/v1/catalog").json()["datasets"]]

            def get(path: str) -> None:
                http.get(f"{self.api}{path}").raise_for_status()

            listing = median_time(lambda: get("/v1/catalog"), 20)
            one = median_time(lambda: get(f"/v1/catalog/{names[0]}"), 20)
        home = str(self.settings.resolved_dagster_home)
        with dagster.DagsterInstance.from_config(home) as instance:
            per_dataset = median_time(lambda: latest_manifests(instance), 5)
        self.report.add(
            Figure(
                f"GET /v1/catalog, {len(names)} datasets (median of 20)",
                f"{listing * 1000:.1f} ms = {listing / one:.2f}x one dataset's manifest, "
                f"{listing / per_dataset:.2f}x a read per dataset",
                f"GET /v1/catalog/{{name}}: {one * 1000:.1f} ms; a read per dataset (the "
                f"listing before it used the catalog's views), in process: "
                f"{per_dataset * 1000:.1f} ms",
                "<= 2x one dataset's manifest",
                listing <= 2 * one,
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

        # Alternating, once the runs before it have ended (the large dataset's own upload
        # goes on with its Iceberg commit and clean-up after it is queryable): one side
        # timed after the other would carry whatever the machine did meanwhile.
        waited = self.wait_quiet()
        repeats = self.size.repeats
        times: dict[str, list[float]] = {"append_empty": [], large: []}
        for _ in range(repeats):
            for name, taken in times.items():
                started = time.perf_counter()
                append(name)
                taken.append(time.perf_counter() - started)
        on_empty, on_large = (statistics.median(t) for t in times.values())
        runs = zip(times[large], times["append_empty"], strict=True)
        rows = self.size.scaling[-1]
        self.report.add(
            Figure(
                f"2-row append to a {rows:,}-row dataset vs to an empty one (median of {repeats})",
                f"{on_large:.2f} s vs {on_empty:.2f} s = {on_large / on_empty:.2f}x",
                "before the ingest log: 1.51x at 4.5M rows",
                "<= 1.2x",
                on_large / on_empty <= 1.2,
                f"alternating, after {waited:.1f} s for runs to end; runs: "
                + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in runs)
                + " s",
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
