"""The query parameters of an upload: the dataset, the mode, how long to wait, and the CSV
dialect parameters (what no sniffer can know)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request, status
from python_multipart.multipart import parse_options_header

from api.auth import PrincipalDep
from api.deps import SettingsDep
from lakehouse.auth.grants import Privilege
from lakehouse.errors import Forbidden
from lakehouse.formats.csv.options import ENCODINGS, CsvOptions, InvalidOption, normal_encoding
from lakehouse.formats.evolution import Evolve
from lakehouse.formats.structured import Format
from lakehouse.ingest.records import KEYED_MODES, Dedup, Mode
from lakehouse.names import validate_name


@dataclass(frozen=True)
class UploadParams:
    name: str
    mode: Mode
    wait_seconds: float
    options: CsvOptions
    key: tuple[str, ...] = ()  # merge and delete: the columns rows are matched by
    dedup: Dedup = "none"
    evolve: Evolve = "strict"
    format: Format | None = None  # None: by the content type or the file name


async def csv_options(
    delimiter: Annotated[
        str | None, Query(description="One character, or `tab`; default: found in the file.")
    ] = None,
    quote: Annotated[str | None, Query(description="`\"`, `'` or `none`.")] = None,
    escape: Annotated[
        str | None, Query(description='`"` (doubled quotes), `\\` (backslash) or `none`.')
    ] = None,
    header: Annotated[
        str | None, Query(description="`true` (default) or `false`: line 1 is data.")
    ] = None,
    skip: Annotated[
        str | None, Query(description="Lines before the header (a title, notes).")
    ] = None,
    comment: Annotated[
        str | None, Query(description="Lines starting with it are skipped, e.g. `#`; `none`.")
    ] = None,
    null: Annotated[
        list[str] | None, Query(description="A value that means NULL (repeat for more).")
    ] = None,
    encoding: Annotated[
        str | None,
        Query(
            description="`utf-8` (default, or the Content-Type's charset), `latin-1` or `utf-16`."
        ),
    ] = None,
    content_type: Annotated[str, Header(include_in_schema=False)] = "",
) -> CsvOptions:
    """The CSV dialect parameters a client sent (what no sniffer can know); 400 for one
    that cannot be used. A raw body's `charset` is its encoding, unless `encoding=` says
    another (400: one or the other)."""
    encoding = _with_charset(encoding, content_type)
    try:
        return CsvOptions.parse(
            delimiter=delimiter,
            quote=quote,
            escape=escape,
            header=header,
            skip=skip,
            comment=comment,
            nulls=null,
            encoding=encoding,
        )
    except InvalidOption as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from exc


def _with_charset(encoding: str | None, content_type: str) -> str | None:
    """`encoding=`, or else the Content-Type's charset when it is not UTF-8 (the default);
    415 for a charset not read here, 400 when the two disagree."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"").decode("latin-1").strip().lower()
    if not charset or content_type.lower().startswith("multipart/"):
        return encoding
    said = "utf-8" if charset in ("us-ascii", "ascii") else normal_encoding(charset)
    if said is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"charset={charset[:40]}: the text is read as one of {', '.join(ENCODINGS)} "
            "(say which in the Content-Type, or with encoding=)",
        )
    if encoding is not None and normal_encoding(encoding) != said:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"the Content-Type says charset={charset} but encoding={encoding}: send one",
        )
    return encoding if encoding is not None or said == "utf-8" else said


CsvOptionsDep = Annotated[CsvOptions, Depends(csv_options)]


async def upload_params(
    settings: SettingsDep,
    options: CsvOptionsDep,
    name: Annotated[str, Query(description="Dataset name: ^[a-z][a-z0-9_]{0,62}$")],
    mode: Annotated[
        Mode, Query(description="append (default), replace, merge (by key) or delete (by key)")
    ] = "append",
    wait: Annotated[
        str | None, Query(description="true, or seconds: answer once materialized or failed")
    ] = None,
    key: Annotated[
        str | None,
        Query(
            description="merge, delete: the key column(s), e.g. `id` or `id,day`; "
            "remembered after the first"
        ),
    ] = None,
    dedup: Annotated[
        Dedup,
        Query(
            description="merge, delete: a key given twice in the file is refused (none), "
            "or its first or last row is kept"
        ),
    ] = "none",
    evolve: Annotated[
        Evolve,
        Query(
            description="append: strict (default: other columns are a 409), add_columns (new "
            "columns are added; missing ones are NULL), widen (also Iceberg's type widenings)"
        ),
    ] = "strict",
    format: Annotated[
        Format | None,
        Query(
            description="csv, jsonl (JSON Lines) or parquet; default: by the content type "
            "(application/x-ndjson, application/vnd.apache.parquet) or file name, else csv"
        ),
    ] = None,
) -> UploadParams:
    """The upload's parameters, checked: 422 for a bad name or wait, 400 for a dialect
    parameter that cannot be used, or a key without a keyed mode."""
    columns = tuple(dict.fromkeys(k.strip() for k in (key or "").split(",") if k.strip()))
    if problem := _mismatch(mode, bool(columns or dedup != "none"), evolve):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=problem)
    waiting = wait_seconds(wait, settings.ingest_wait_seconds)
    return UploadParams(validate_name(name), mode, waiting, options, columns, dedup, evolve, format)


def _mismatch(mode: Mode, keyed: bool, evolve: Evolve) -> str | None:
    """What is wrong with a key (or dedup) or an evolve= in `mode`, if anything."""
    if keyed and mode not in KEYED_MODES:
        return f"key= and dedup= match rows in mode=merge or mode=delete, not mode={mode}"
    if evolve != "strict" and mode != "append":
        return (
            f"evolve= changes a dataset's columns with an append, not mode={mode}: append the "
            "file with its new columns first"
        )
    return None


UploadParamsDep = Annotated[UploadParams, Depends(upload_params)]

MODE_PRIVILEGES: dict[Mode, Privilege] = {
    "append": Privilege.APPEND,
    "replace": Privilege.REPLACE,
    "merge": Privilege.MERGE,
    "delete": Privilege.DELETE,
}

# What a cross-site page may upload is limited to what no form or fetch without CORS sends:
# with an Origin (a browser), only these content types.
BROWSER_CONTENT_TYPES = ("text/csv", "application/gzip", "application/x-gzip", "multipart/")


async def permitted_upload(
    request: Request, params: UploadParamsDep, principal: PrincipalDep
) -> UploadParams:
    """The upload's parameters once its token may make it: 403 for a dataset outside its
    grants or a mode it may not use, and for a browser upload of another content type."""
    audit = request.scope.get("state", {}).get("audit")
    if audit is not None:  # what was asked, also when it is refused
        audit.update(datasets=[params.name], mode=params.mode)
    origin = request.headers.get("origin")
    content_type = request.headers.get("content-type", "").lower()
    if origin is not None and not content_type.startswith(BROWSER_CONTENT_TYPES):
        raise Forbidden(
            f"an upload from a web page (Origin {origin}) must be sent as text/csv, "
            f"application/gzip or multipart/form-data, not {content_type or 'no content type'}"
        )
    principal.require(MODE_PRIVILEGES[params.mode], params.name)
    if params.evolve != "strict":
        principal.require(Privilege.EVOLVE, params.name)
    return params


PermittedUploadDep = Annotated[UploadParams, Depends(permitted_upload)]


def wait_seconds(wait: str | None, longest: float) -> float:
    """How long to wait for the run: `true` the longest allowed, `false` (or none) not at
    all, else a finite number of seconds up to the longest."""
    if wait is None or wait.strip().lower() in {"false", ""}:
        return 0.0
    if wait.strip().lower() == "true":
        return longest
    try:
        seconds = float(wait)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= longest:  # NaN compares false: refused too
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"wait={wait!r}: use wait=true (waits up to {longest:g} s), wait=false, "
            f"or a number of seconds from 0 to {longest:g}, e.g. wait=60",
        )
    return seconds
