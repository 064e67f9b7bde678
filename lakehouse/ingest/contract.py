"""What an upload's columns must be, checked before anything is committed: a new dataset
takes the file's; an append must have the dataset's, unless its `evolve=` allows the
difference; a merge has them and perhaps `_deleted`; a delete the key and perhaps more of
them. The file's columns are read with the dataset's types where its values fit them. A
CSV's columns come from its first part, before a byte is stored; a JSON Lines or Parquet
file's from the landed file, before it is committed (`formats.structured`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lakehouse.duck import s3_connection
from lakehouse.errors import Conflict, InvalidInput
from lakehouse.formats.csv.options import CsvOptions, InvalidOption
from lakehouse.formats.csv.schema import CsvSchema, infer_schema, schema_diff
from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import Evolve, by_name, evolved
from lakehouse.formats.structured import Format, conform_types, infer_columns
from lakehouse.ingest.changes import check_deleted_flag, check_key_columns, keyed_contract
from lakehouse.ingest.records import DELETED, KEYED_MODES, Mode
from lakehouse.manifest import Manifest
from lakehouse.settings import S3Config

# Enough for a header and a few thousand rows of any sane width.
SAMPLE_BYTES = 1024 * 1024
# Reading a landed JSON Lines or Parquet file's schema: a bounded share of the API's memory.
READ_MEMORY = "512MB"

HOW_TO_MATCH: dict[Mode, str] = {
    "append": ": send evolve=add_columns to add its new columns (evolve=widen also widens a "
    "type as Iceberg allows), or mode=replace to make it the dataset's new version",
    "replace": "",
    "merge": f" (a merge file has the dataset's columns, and may add a BOOLEAN {DELETED})",
    "delete": " (a delete file has the key columns, or more of the dataset's, with its types)",
}


class SchemaConflict(Conflict):
    """The upload's columns are not the dataset's, nor what its mode and `evolve=` allow."""

    def __init__(
        self, dataset: str, current: Sequence[Column], upload: CsvSchema, mode: Mode = "append"
    ) -> None:
        self.dataset = dataset
        self.diff = schema_diff(current, [c for c in upload.columns if c.name != DELETED])
        self.upload_fingerprint = upload.fingerprint
        super().__init__(
            f"the file's columns do not match dataset {dataset!r}: change the file to match"
            + HOW_TO_MATCH[mode]
        )

    def detail(self) -> object:
        return {
            "message": str(self),
            "dataset": self.dataset,
            "upload_fingerprint": self.upload_fingerprint,
            **self.diff,
        }


class TooManyColumns(InvalidInput):
    """More columns than a dataset may have (`max_columns`)."""

    def __init__(self, columns: int, cap: int) -> None:
        self.columns, self.cap = columns, cap
        super().__init__(
            f"the file has {columns:,} columns; a dataset may have at most {cap:,} "
            "(the max_columns setting, LAKEHOUSE_MAX_COLUMNS): split the file into datasets "
            "of fewer columns, or ask the operator to raise the cap"
        )

    def detail(self) -> object:
        return {"message": str(self), "columns": self.columns, "max_columns": self.cap}


class UploadContract:
    """The columns one upload may have, and how they are read."""

    def __init__(
        self,
        dataset: str,
        mode: Mode,
        current: Manifest | None,
        *,
        key: Sequence[str] = (),
        evolve: Evolve = "strict",
        fmt: Format = "csv",
        sample_rows: int = 2000,
        max_columns: int = 4096,
        options: CsvOptions | None = None,
    ) -> None:
        self.dataset, self.mode, self.current = dataset, mode, current
        self.key, self.evolve, self.format = list(key), evolve, fmt
        self.sample_rows, self.max_columns = sample_rows, max_columns
        self.options = options or CsvOptions()
        self._sample = (b"", False)
        self._null_only: frozenset[str] = frozenset()  # a JSON file's fields only null

    @property
    def _contract(self) -> Manifest | None:
        """The version the upload is checked against (none for a replace or a new dataset)."""
        if self.mode != "replace" and self.current is not None and self.current.columns:
            return self.current
        return None

    def check_options(self) -> None:
        """The CSV dialect parameters apply to CSV alone: a JSON Lines or Parquet upload
        that names one is refused rather than read without it."""
        given = self.options.given()
        if self.format != "csv" and given:
            name = "JSON Lines" if self.format == "jsonl" else "Parquet"
            raise InvalidOption(
                f"{', '.join(given)} apply only to CSV uploads, and this one is {name} (its "
                "types and values are the file's own): leave them out"
            )

    def of_csv(self, data: bytes, *, complete: bool) -> CsvSchema:
        """A CSV's columns, from its first part (`complete`: the whole file)."""
        sample = data[:SAMPLE_BYTES]
        self._sample = (sample, complete and len(sample) == len(data))
        contract = self._contract
        schema = infer_schema(
            sample,
            complete=self._sample[1],
            max_rows=self.sample_rows,
            contract=contract.columns if contract else None,
            options=self.options,
        )
        return self._checked(schema)

    def of_landed(self, s3: S3Config, url: str) -> CsvSchema:
        """A JSON Lines or Parquet file's columns, from the landed file at `url`."""
        with s3_connection(s3, READ_MEMORY) as con:
            found = infer_columns(con, url, self.format)
        self._null_only = found.null_only
        name = "JSON Lines" if self.format == "jsonl" else "Parquet"
        why = {"format": f"{name}: the columns and types are the file's own"}
        schema = CsvSchema(
            delimiter="", quote="", escape="", nulls=(), encoding="", why=why, columns=found.columns
        )
        return self._checked(schema)

    def _checked(self, schema: CsvSchema) -> CsvSchema:
        if len(schema.columns) > self.max_columns:
            raise TooManyColumns(len(schema.columns), self.max_columns)
        contract = self._contract
        if self.mode in KEYED_MODES:
            return self._keyed(schema)
        if contract is None or schema.fingerprint == contract.schema_fingerprint:
            return schema
        if self.evolve != "strict" or self.format != "csv":  # the dataset's types, by name
            schema = self._read_as(schema, by_name(schema.columns, contract.columns))
        if evolved(contract.columns, schema.columns, self.evolve) is None:
            raise SchemaConflict(self.dataset, contract.columns, schema)
        return schema

    def _keyed(self, schema: CsvSchema) -> CsvSchema:
        """A merge file has the dataset's columns (and perhaps `_deleted`), a delete file
        the key and perhaps more of them: read with the dataset's types where the values
        fit, then checked."""
        check_key_columns(schema, self.key)
        current = list(self.current.columns) if self.current else []
        schema = self._read_as(schema, keyed_contract(schema, current))
        check_deleted_flag(self.mode, schema)
        data = [(c.name, c.type) for c in schema.columns if c.name != DELETED]
        dataset = [(c.name, c.type) for c in current]
        fits = data == dataset if self.mode == "merge" else set(data) <= set(dataset)
        if current and not fits:
            raise SchemaConflict(self.dataset, current, schema, self.mode)
        return schema

    def _read_as(self, schema: CsvSchema, types: Sequence[Column]) -> CsvSchema:
        """`schema` with each column of the type in `types` where the file's values fit it:
        a CSV's sample is read again; a JSON Lines or Parquet file's own type fits when the
        other holds each of its values (`formats.structured.conform_types`)."""
        if self.format != "csv":
            columns = conform_types(schema.columns, types, self.format, self._null_only)
            return replace(schema, columns=columns)
        sample, complete = self._sample
        return infer_schema(
            sample,
            complete=complete,
            max_rows=self.sample_rows,
            contract=list(types),
            options=self.options,
        )
