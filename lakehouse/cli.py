"""The `lakehouse` command."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click
from rich.console import Console

from lakehouse.settings import get_settings
from lakehouse.stack import Stack, StackError
from lakehouse.workers import write_workers_csv

console = Console()


@click.group()
def main() -> None:
    """Lakehouse: CSV over HTTP -> Dagster assets as Parquet in S3 -> SQL with DuckDB."""


@main.command()
@click.option("--no-webserver", is_flag=True, help="Skip the Dagster UI.")
@click.option("--external-s3", is_flag=True, help="Use the S3 server in the settings as is.")
def up(no_webserver: bool, external_s3: bool) -> None:
    """Start the whole local stack and keep it running until Ctrl-C or SIGTERM."""
    settings = get_settings()
    stack = Stack(settings, with_webserver=not no_webserver, local_s3=not external_s3)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        stack.start(progress=lambda part: console.print(f"starting {part} ..."))
        console.print("[bold green]lakehouse is up[/]")
        console.print(f"  API        {stack.api_url}  (docs: {stack.api_url}/docs)")
        if not no_webserver:
            console.print(f"  Dagster UI {stack.webserver_url}")
        console.print(f"  S3         {settings.s3_endpoint}  bucket {settings.s3_bucket}")
        console.print(f"  logs       {stack.state_dir / 'logs'}")
        console.print("Ctrl-C stops everything.")
        while not (dead := stack.dead()):
            time.sleep(1)
        for process in dead:
            console.print(f"[red]{process.name} exited[/]:\n{process.tail()}")
        raise SystemExit(1)
    except StackError as exc:
        console.print(f"[red]{exc}[/]")
        raise SystemExit(1) from exc
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        stack.stop()
        console.print("stopped")


@main.command("make-workers")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=500_000, show_default=True)
@click.option("--seed", default=7, show_default=True)
def make_workers(path: Path, rows: int, seed: int) -> None:
    """Write the staffing-domain test CSV (workers_500k.csv by default size)."""
    write_workers_csv(path, rows=rows, seed=seed)
    console.print(f"wrote {rows} rows to {path}")
