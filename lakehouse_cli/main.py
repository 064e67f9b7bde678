"""The `lakehouse` command."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from devstack.instance import prepare_dagster_home
from devstack.processes import StackError, StartInterrupted
from devstack.sample_data import write_sample_csv
from devstack.stack import STOP_GRACE_SECONDS, Stack
from lakehouse.formats.structured import format_of
from lakehouse.settings import get_settings
from lakehouse_cli.client import api_option, console, fail, request
from lakehouse_cli.config_docs import render as render_config_docs
from lakehouse_cli.tokens import token

CHUNK = 1024 * 1024


@click.group()
def main() -> None:
    """Lakehouse: CSV over HTTP -> Dagster assets as Parquet in S3 -> SQL with DuckDB."""


main.add_command(token)


@main.command()
@click.option("--no-webserver", is_flag=True, help="Skip the Dagster UI.")
@click.option("--external-s3", is_flag=True, help="Use the S3 server in the settings as is.")
def up(no_webserver: bool, external_s3: bool) -> None:
    """Start the whole local stack and keep it running until Ctrl-C or SIGTERM.

    Ctrl-C (or SIGTERM) stops every process; a second one, whenever it comes, kills what is
    left. Exits 0 once all is stopped, 130 if start-up was interrupted, 1 if a process
    failed."""
    stack = Stack(get_settings(), with_webserver=not no_webserver, local_s3=not external_s3)
    stack.interrupts.install()
    raise SystemExit(serve(stack))


def serve(stack: Stack) -> int:
    """Start `stack`, wait for a stop request or a dead process, stop it; the exit code."""
    try:
        stack.start(progress=lambda part: console.print(f"starting {part} ..."))
    except StartInterrupted:  # start() has stopped what it had started
        console.print("interrupted while starting; stopped")
        return 130
    except StackError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    _print_addresses(stack)
    while not stack.interrupts.stop_requested() and not (dead := stack.dead()):
        time.sleep(0.2)
    for process in dead:
        console.print(f"[red]{process.name} exited[/]:\n{process.tail()}")
    console.print(
        f"stopping (each process gets up to {STOP_GRACE_SECONDS} s; Ctrl-C again kills) ..."
    )
    stack.stop()
    console.print("stopped")
    return 1 if dead else 0


def _print_addresses(stack: Stack) -> None:
    settings = stack.settings
    console.print("[bold green]lakehouse is up[/]")
    console.print(f"  API        {stack.api_url}  (docs: {stack.api_url}/docs)")
    if stack.with_webserver:
        console.print(f"  Dagster UI {stack.webserver_url}")
    if settings.pg_port:
        console.print(
            f'  Postgres   psql "host={settings.pg_host} port={settings.pg_port} user=me '
            'dbname=lakehouse"  (password: a token, e.g. the admin token below)'
        )
    console.print(f"  S3         {settings.s3_endpoint}  bucket {settings.s3_bucket}")
    console.print(f"  logs       {stack.state_dir / 'logs'}")
    console.print(f"  admin token in {stack.admin_token_file} (the `lakehouse` commands use it)")
    console.print("Ctrl-C stops everything.")


@main.command()
@click.option(
    "--name",
    default=lambda: f"lakehouse-{os.getpid()}",
    show_default="lakehouse-<pid>",
    help="Worker name, unique on this machine (Celery adds @<hostname>).",
)
def worker(name: str) -> None:
    """Run a run worker: take runs from the broker and execute them, one at a time.

    Another machine adds capacity with this command alone, given the same LAKEHOUSE_*
    settings as the stack (broker URL, Postgres, object store).
    """
    settings = get_settings()
    prepare_dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(settings.resolved_dagster_home)
    from lakehouse_assets.worker import app  # imports Dagster and the definitions

    app.worker_main(
        [
            "worker", "--hostname", f"{name}@%h", "--concurrency", "1", "--pool", "prefork",
            "--queues", "dagster", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip


@main.command("make-sample")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=500_000, show_default=True)
@click.option("--seed", default=7, show_default=True)
def make_sample(path: Path, rows: int, seed: int) -> None:
    """Write the sample CSV: staff of staffing agencies (workers_500k.csv at the default
    size)."""
    write_sample_csv(path, rows=rows, seed=seed)
    console.print(f"wrote {rows} rows to {path}")


# The command's name until it was renamed (a "worker" is a run worker now): kept, hidden,
# for one release.
main.add_command(
    click.Command(
        "make-workers",
        params=make_sample.params,
        callback=make_sample.callback,
        hidden=True,
        help="Old name of make-sample.",
    )
)


@main.command("config-docs", hidden=True)
def config_docs() -> None:
    """Print docs/CONFIGURATION.md, generated from the settings (`make docs` writes it)."""
    click.echo(render_config_docs(), nl=False)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Dataset name, e.g. workers_500k.")
@click.option(
    "--mode", type=click.Choice(["append", "replace", "merge", "delete"]), default="append"
)
@click.option(
    "--merge-key",
    help="merge, delete: the key column(s), e.g. id or id,day (implies --mode "
    "merge when --mode is not given).",
)
@click.option("--dedup", type=click.Choice(["none", "first", "last"]), default="none",
              help="merge, delete: keep the first or last row of a key given twice.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]),
              help="The file's format (default: by its name, else CSV).")  # fmt: skip
@click.option("--evolve", type=click.Choice(["strict", "add_columns", "widen"]), default="strict",
              help="append: add new columns (add_columns), also widen types (widen).")  # fmt: skip
@click.option("--wait", is_flag=True, help="Wait until the ingest is materialized or failed.")
@click.option("--delimiter", help="One character, or 'tab' (default: found in the file).")
@click.option("--quote", help="\", ' or none (default: found in the file).")
@click.option("--escape", help='" (doubled quotes), \\ (backslash) or none.')
@click.option("--no-header", is_flag=True, help="Line 1 is data: columns column_1, ...")
@click.option("--skip", type=int, help="Lines before the header (a title, notes).")
@click.option("--comment", help="Lines starting with it are skipped, e.g. '#'.")
@click.option("--null", "nulls", multiple=True, help="A value that means NULL (repeatable).")
@click.option("--encoding", help="utf-8 (default), latin-1 or utf-16.")
@api_option
def ingest(
    file: Path,
    name: str,
    mode: str,
    merge_key: str | None,
    dedup: str,
    fmt: str | None,
    evolve: str,
    wait: bool,
    api: str,
    **dialect: Any,
) -> None:
    """Upload FILE (CSV, JSON Lines or Parquet, or .gz of one) to dataset NAME, with a
    progress bar.

    The file's dialect is found in it (and said in the receipt); the options give what no
    sniffer can know."""
    size = file.stat().st_size
    # Declared, though the body streams: the API then foresees the upload's end, and asks
    # for its run only as the last bytes approach (api/upload/body.py).
    headers = {"content-type": "text/csv", "content-length": str(size)}
    if file.suffix == ".gz":
        headers["content-encoding"] = "gzip"
    columns = [*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(),
               TransferSpeedColumn()]  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"uploading {file.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as source:
                while chunk := source.read(CHUNK):
                    progress.advance(task, len(chunk))
                    yield chunk
            progress.update(task, description="waiting for the run" if wait else "recording")

        params = {"name": name, "mode": mode, **({"wait": "true"} if wait else {})}
        if merge_key:
            params |= {"key": merge_key, "mode": "merge" if mode == "append" else mode}
        if dedup != "none":
            params["dedup"] = dedup
        if evolve != "strict":
            params["evolve"] = evolve
        if (fmt := fmt or format_of(None, "", file.name)) != "csv":
            params["format"] = fmt
        params |= _dialect_params(**dialect)
        response = request("POST", f"{api}/v1/ingest", params=params, content=chunks(),
                            headers=headers)  # fmt: skip
    body = response.json()
    if response.status_code >= 400:
        fail(response)
    _print_ingest(body)


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--max-rows", type=int, default=None, help="Rows to return at most.")
@api_option
def sql(query: str, fmt: str, max_rows: int | None, api: str) -> None:
    """Run QUERY against the datasets and print the result."""
    payload: dict[str, Any] = {"sql": query}
    if max_rows:
        payload["max_rows"] = max_rows
    response = request("POST", f"{api}/v1/sql", json=payload)
    if response.status_code >= 400:
        fail(response)
    answer = response.json()
    names = [c["name"] for c in answer["columns"]]
    if fmt == "json":
        click.echo(json.dumps(answer["rows"], indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows([row[n] for n in names] for row in answer["rows"])
    else:
        table = Table(*names)
        for row in answer["rows"]:
            table.add_row(*("NULL" if row[n] is None else str(row[n]) for n in names))
        console.print(table)
        more = " (truncated)" if answer["truncated"] else ""
        console.print(f"{answer['row_count']} rows{more} in {answer['elapsed_ms']:.1f} ms")


@main.command()
@click.argument("name", required=False)
@api_option
def catalog(name: str | None, api: str) -> None:
    """List the datasets, or show dataset NAME's manifest."""
    response = request("GET", f"{api}/v1/catalog" + (f"/{name}" if name else ""))
    if response.status_code >= 400:
        fail(response)
    if name:
        manifest = response.json()
        console.print(f"[bold]{name}[/] v{manifest['version']}: {manifest['row_count']} rows, "
                      f"{len(manifest['objects'])} objects at {manifest['location']}")  # fmt: skip
        table = Table("column", "type", "why")
        for column in manifest["columns"]:
            table.add_row(column["name"], column["type"], column["reason"])
        console.print(table)
        return
    table = Table("dataset", "version", "rows", "bytes", "updated")
    for d in response.json()["datasets"]:
        table.add_row(d["name"], str(d["version"]), f"{d['row_count']:,}", f"{d['bytes']:,}",
                      d["updated_at"])  # fmt: skip
    console.print(table)


@main.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_option
def purge(name: str, yes: bool, api: str) -> None:
    """Keep only the current version of dataset NAME: erase now what its earlier versions,
    their Iceberg snapshots and the uploaded files still hold (e.g. after a delete)."""
    if not yes:
        click.confirm(f"Erase every version of {name} but the current one?", abort=True)
    response = request("POST", f"{api}/v1/datasets/{name}/purge")
    if response.status_code >= 400:
        fail(response)
    done = response.json()
    console.print(
        f"[bold]{name}[/]: only v{done['version']} is left; expired {done['snapshots_expired']} "
        f"Iceberg snapshots, deleted {done['objects_deleted']} objects, "
        f"{done['metadata_files_deleted']} metadata files, {done['landing_files_deleted']} "
        f"uploaded files and {done['runs_deleted']} runs"
    )


def _dialect_params(
    no_header: bool, nulls: tuple[str, ...], **given: str | int | None
) -> dict[str, Any]:
    """The dialect options given, as the API's query parameters."""
    params: dict[str, Any] = {k: str(v) for k, v in given.items() if v is not None}
    if no_header:
        params["header"] = "false"
    if nulls:
        params["null"] = list(nulls)
    return params


def _print_ingest(body: dict[str, Any]) -> None:
    schema = body["inferred_schema"]
    note = " (these bytes were sent before: nothing added)" if body["duplicate"] else ""
    console.print(f"ingest [bold]{body['ingest_id']}[/] -> {body['dataset']} "
                  f"({body['mode']}): {body['status']}{note}")  # fmt: skip
    console.print(f"  {body['bytes']:,} bytes, {len(schema['columns'])} columns, "
                  f"schema {schema['fingerprint']}")  # fmt: skip
    console.print(f"  read with delimiter {schema['delimiter']!r}, quote {schema['quote']!r}, "
                  f"escape {schema['escape']!r}, {schema['skipped_lines']} lines skipped, "
                  f"encoding {schema['encoding']}")  # fmt: skip
    if changes := body.get("changes"):
        counts = ", ".join(f"{changes[k]:,} {k}" for k in ("inserted", "updated", "deleted"))
        console.print(f"  by key {','.join(body['key'])}: {counts}")
    if manifest := body.get("manifest"):
        console.print(f"  dataset v{manifest['version']}: {manifest['row_count']:,} rows, "
                      f"{manifest['rejected_rows']:,} rejected in total")  # fmt: skip
    if body["status"] not in {"materialized", "failed"}:
        console.print(f"  follow it: GET /v1/ingest/{body['ingest_id']}")
