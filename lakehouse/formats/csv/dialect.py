"""How a CSV file is written (its dialect): what DuckDB's reader is told about it."""

from __future__ import annotations

from dataclasses import dataclass, field

DELIMITERS = (",", ";", "\t", "|")
QUOTES = ('"', "'")
COMMENT = "#"
LINE_ENDS = {"\r\n": "CRLF", "\n": "LF", "\r": "CR"}


@dataclass(frozen=True)
class Dialect:
    """What DuckDB's CSV reader is told about a file; `why` says why each was chosen."""

    delimiter: str = ","
    quote: str = '"'  # "" for none
    escape: str = '"'  # the quote itself: doubled quotes; "\\": backslash escapes
    header: bool = True
    skip: int = 0  # physical lines before the header (or the first row): a preamble
    comment: str = ""  # lines starting with it are skipped ("" for none)
    nulls: tuple[str, ...] = ("",)
    encoding: str = "utf-8"
    why: dict[str, str] = field(default_factory=dict)

    def described(self) -> dict[str, object]:
        """The dialect as receipts and the catalog show it, in the API's parameter names."""
        return {
            "delimiter": self.delimiter,
            "quote": self.quote,
            "escape": self.escape,
            "header": self.header,
            "skipped_lines": self.skip,
            "comment": self.comment,
            "null": list(self.nulls),
            "encoding": self.encoding,
            "dialect_reasons": dict(self.why),
        }
