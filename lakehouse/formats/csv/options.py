"""The dialect parameters an uploader sends, checked: what no sniffer can know."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lakehouse.errors import InvalidInput
from lakehouse.formats.csv.dialect import QUOTES

ENCODINGS = ("utf-8", "latin-1", "utf-16")  # what DuckDB's CSV reader reads without extensions
MAX_SKIP = 10_000


@dataclass(frozen=True)
class CsvOptions:
    """The dialect parameters an uploader gave (None: find it in the file)."""

    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    header: bool | None = None
    skip: int | None = None
    comment: str | None = None
    nulls: tuple[str, ...] | None = None
    encoding: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        delimiter: str | None = None,
        quote: str | None = None,
        escape: str | None = None,
        header: str | None = None,
        skip: str | int | None = None,
        comment: str | None = None,
        nulls: Sequence[str] | None = None,
        encoding: str | None = None,
    ) -> CsvOptions:
        """Options from request parameters, as text; `InvalidOption` names a bad one."""
        return cls(
            delimiter=_delimiter(delimiter),
            quote=_none_or_char("quote", quote, allowed=QUOTES),
            escape=_none_or_char("escape", escape, allowed=('"', "'", "\\")),
            header=_boolean("header", header),
            skip=_count("skip", skip),
            comment=_none_or_char("comment", comment, allowed=None),
            nulls=tuple(nulls) if nulls else None,
            encoding=_encoding(encoding),
        )

    def __post_init__(self) -> None:
        if self.quote == "" and self.escape:
            raise InvalidOption(
                f"escape={self.escape!r} with quote=none: nothing is quoted, so nothing can be "
                "escaped; send escape=none, or the quote character the file uses"
            )

    def given(self) -> list[str]:
        """The request parameters that were sent (`null` for `nulls`)."""
        return [_PARAMETER.get(k, k) for k, v in self.__dict__.items() if v is not None]


_PARAMETER = {"nulls": "null"}  # field -> request parameter, where they differ


class InvalidOption(InvalidInput):
    """A dialect parameter that cannot be used: the message names it and what to send."""


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    value = {"tab": "\t", "\\t": "\t"}.get(value.lower(), value)
    if len(value) != 1 or value in "\r\n\"'" or not value.isprintable() and value != "\t":
        raise InvalidOption(
            f"delimiter={value!r}: send one character that is not a quote or a line break, "
            "e.g. delimiter=, or delimiter=; or delimiter=tab"
        )
    return value


def _none_or_char(name: str, value: str | None, allowed: Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if value.lower() in {"none", ""}:
        return ""
    if len(value) != 1 or (allowed is not None and value not in allowed):
        choices = ", ".join(f"{name}={c}" for c in allowed or ("#",))
        raise InvalidOption(f"{name}={value!r}: send {choices} or {name}=none")
    return value


def _boolean(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in {"true", "1", "yes"}:
        return True
    if value.lower() in {"false", "0", "no"}:
        return False
    raise InvalidOption(f"{name}={value!r}: send {name}=true or {name}=false")


def _count(name: str, value: str | int | None) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_SKIP:
        raise InvalidOption(f"{name}={value!r}: send a number of lines from 0 to {MAX_SKIP}")
    return int(text)


def _encoding(value: str | None) -> str | None:
    if value is None:
        return None
    normal = normal_encoding(value)
    if normal is None:
        raise InvalidOption(f"encoding={value!r}: send one of {', '.join(ENCODINGS)}")
    return normal


def normal_encoding(value: str) -> str | None:
    """`value` as one of ENCODINGS (`UTF8`, `ISO-8859-1`... spelled as they are spelt), or
    None if it is none of them."""
    normal = value.strip().lower().replace("_", "-")
    normal = {"utf8": "utf-8", "latin1": "latin-1", "iso-8859-1": "latin-1", "utf16": "utf-16"}.get(
        normal, normal
    )
    return normal if normal in ENCODINGS else None
