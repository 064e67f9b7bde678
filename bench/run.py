"""The benchmark suite: each figure against an anchor measured in the same run, on the real
stack this script starts (S3 server, Dagster daemon, API) on free ports.

    make bench                    # full size, writes docs/BENCHMARKS.md (~30 min)
    python -m bench.run --small   # the fast variant CI runs (harness only, no targets)

Medians of several runs; the machine is shared and noisy, so read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import changes, fast, iceberg, identity, limits, pgwire, retention
from bench.harness import FULL, SMALL, Bench
from bench.report import write_report

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

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        bench = Bench(size, Path(tmp))
        bench.stack.start(progress=lambda part: print(f"starting {part} ..."))
        bench.http.headers.update(bench.auth)
        try:
            if args.only:
                for name in args.only.split(","):
                    if name in ("identity", "limits"):
                        {"identity": identity, "limits": limits}[name].measure(bench)
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
            bench.catalog_listing()
            fast.measure(bench, FAST_TPCH_SCALES[size is SMALL])
            identity.measure(bench)
            limits.measure(bench)
            pgwire.measure(bench, size is SMALL)
            iceberg.measure(
                bench.stack, bench.report, iceberg.SMALL if args.small else iceberg.FULL, Path(tmp)
            )
            changes.measure(bench, *CHANGES[size is SMALL])
            # Last: its passes prune the other figures' ingests and runs too.
            retention.measure(bench, RETENTION_INGESTS[size is SMALL])
        finally:
            bench.stack.stop()
    write_report(bench.report, args.out, size.described, time.perf_counter() - started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
