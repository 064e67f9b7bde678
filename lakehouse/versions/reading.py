"""How a run reads one landed file: converted to local Parquet with the schema it was
checked against (columns whose values stop fitting past the sample widened, for a file that
defines the dataset's columns), or the reason it cannot be applied."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import duckdb

from lakehouse.formats.csv.convert import (
    ConversionError,
    Converted,
    csv_files_to_parquet,
    csv_to_parquet,
    write_rejects,
)
from lakehouse.formats.csv.schema import CsvSchema, infer_schema
from lakehouse.formats.csv.widen import widen
from lakehouse.formats.structured import to_parquet
from lakehouse.ingest.contract import SAMPLE_BYTES
from lakehouse.ingest.records import IngestRecord
from lakehouse.store import ObjectStore
from lakehouse.versions import outcomes
from lakehouse.versions.batch import BatchLimits, ConvertedFile
from lakehouse.versions.commits import Outcome

log = logging.getLogger(__name__)


class FileReader:
    """Reads the landed files of one dataset into `scratch`."""

    def __init__(
        self,
        store: ObjectStore,
        con: duckdb.DuckDBPyConnection,
        dataset: str,
        limits: BatchLimits,
        scratch: Path,
        log_line: Callable[[str], None] = log.info,
    ) -> None:
        self.store, self.con, self.name = store, con, dataset
        self.limits, self.scratch, self.log = limits, scratch, log_line

    def convert(
        self, entry: IngestRecord, schema: CsvSchema, *, widen_misfits: bool = False
    ) -> ConvertedFile | Outcome:
        """One landed file as local Parquet, or the reason it cannot be applied. A file
        that defines the dataset's columns (`widen_misfits`) has the columns whose values
        stop fitting past the sample widened, and is converted again."""
        source = self.store.url(entry.landing_key)
        data = self.scratch / f"{entry.seq}.parquet"
        try:
            result = self._read(source, data, schema, entry)
            if widen_misfits and result.misfits:
                wider = self._widened(source, schema, result)
                if wider != schema:
                    schema = wider
                    result = self._read(source, data, schema, entry)
        except ConversionError as exc:
            if exc.retryable and self.store.exists(entry.landing_key):
                raise  # the store or the machine, not the file: the step retries
            if exc.retryable:
                return outcomes.failed(
                    entry, "its uploaded file is gone from the landing area: send it again"
                )
            return outcomes.failed(entry, f"the file could not be read: {exc}")
        if not result.account.balanced:
            return outcomes.lines_unaccounted(entry, result.account)
        if result.rejected_share > self.limits.max_reject_share:
            return outcomes.too_many_rejects(entry, result, self.limits.max_reject_share, schema)
        rejects = None
        if result.rejected:
            rejects = self.scratch / f"{entry.seq}.rejects.parquet"
            write_rejects(self.con, str(rejects))
        return ConvertedFile(entry, data, rejects, result, schema)

    def convert_together(
        self, entries: Sequence[IngestRecord], schema: CsvSchema
    ) -> list[ConvertedFile] | None:
        """CSV files of one schema in one read, into one local file: each entry's
        `ConvertedFile` (the first one's file holds every row, in log order), or None when
        any line of any of them did not become a row (convert them one by one)."""
        data = self.scratch / f"{entries[0].seq}-{entries[-1].seq}.parquet"
        self.con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")
        results = csv_files_to_parquet(
            self.con,
            [self.store.url(entry.landing_key) for entry in entries],
            str(data),
            schema,
            [entry.lines for entry in entries],
        )
        if results is None:
            data.unlink(missing_ok=True)
            return None
        return [
            ConvertedFile(entry, data if i == 0 else None, None, result, schema)
            for i, (entry, result) in enumerate(zip(entries, results, strict=True))
        ]

    def _widened(self, source: str, schema: CsvSchema, result: Converted) -> CsvSchema:
        """`schema` with the columns whose values stop fitting past the sample widened to a
        type that holds them all: always to a wider number or a TIMESTAMP (nothing is lost),
        to VARCHAR only if the rows would otherwise be too many rejects (a column that
        changed its nature; a few odd values are rejected rows instead)."""
        wider = widen(self.con, source, schema, list(result.misfits), schema.sampled_through)
        too_many = result.rejected_share > self.limits.max_reject_share
        columns = tuple(
            new if new.type != "VARCHAR" or too_many else old
            for old, new in zip(schema.columns, wider.columns, strict=True)
        )
        if changed := [n.name for o, n in zip(schema.columns, columns, strict=True) if o != n]:
            self.log(f"{self.name}: widened {', '.join(changed)} past the sampled rows")
        return replace(schema, columns=columns)

    def _read(self, source: str, data: Path, schema: CsvSchema, entry: IngestRecord) -> Converted:
        if entry.format != "csv":
            return to_parquet(self.con, source, entry.format, schema.columns, str(data))
        # One call, two statements: the last file's rejects go (the reader appends to them).
        self.con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans")
        return csv_to_parquet(
            self.con,
            source,
            str(data),
            schema,
            lines=entry.lines,
            read_bytes=lambda: self.store.stream(entry.landing_key),
        )

    def reinfer(self, entry: IngestRecord, previous: CsvSchema | None) -> CsvSchema:
        """How a rebuild reads `entry` today (a JSON Lines or Parquet file: its own types)."""
        if entry.format != "csv":
            return entry.csv_schema
        sample = self.store.client.get_object(
            Bucket=self.store.bucket, Key=entry.landing_key, Range=f"bytes=0-{SAMPLE_BYTES - 1}"
        )["Body"].read()
        return infer_schema(
            sample,
            complete=len(sample) == entry.bytes,
            max_rows=self.limits.sample_rows,
            contract=previous.columns if previous else None,
        )
