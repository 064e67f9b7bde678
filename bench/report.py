"""The bench's report: each figure beside its anchor from the same run, printed as it is
measured and written as docs/BENCHMARKS.md, followed by what the settings bought (NOTES)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import boto3
import dagster
import duckdb
import pyarrow

# What each setting bought, measured while building it: the end of docs/BENCHMARKS.md.
NOTES = Path(__file__).with_name("NOTES.md")


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


def write_report(report: Report, path: Path, scale: str, elapsed: float) -> None:
    """docs/BENCHMARKS.md: the machine, `scale` (the sizes measured at), each figure, and
    the notes (NOTES)."""
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
        f"- {scale}",
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
    path.write_text("\n".join(lines) + "\n\n" + NOTES.read_text())


def _cpus() -> int:
    return os.cpu_count() or 0
