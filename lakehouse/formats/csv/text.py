"""A CSV sample's bytes as text: the encoding given, or UTF-8 (UTF-16 by its byte order
mark); a cut last line dropped. What cannot be text is `NotCsv`, saying what to send."""

from __future__ import annotations

from lakehouse.errors import InvalidInput

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class NotCsv(InvalidInput):
    """The bytes are not CSV text we can read (binary, undecodable, no header), or its
    first lines allow two readings: the message says which parameter to send."""


def decode(sample: bytes, *, complete: bool, encoding: str | None) -> tuple[str, str, str]:
    """The sample as text (a cut last line dropped), the encoding, and why it was chosen."""
    if encoding is None:
        encoding, why = _find_encoding(sample)
    else:
        why = "given"
    if encoding == "utf-16":
        return _decode_utf16(sample, complete=complete), encoding, why
    if not complete:
        cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
        if cut < 0:
            raise NotCsv(
                f"no line end in the first {len(sample)} bytes: the header line is too "
                "long, or this is not a line-based CSV file"
            )
        sample = sample[: cut + 1]
    if encoding == "latin-1":
        return sample.decode("latin-1"), encoding, why
    try:
        return sample.removeprefix(UTF8_BOM).decode("utf-8"), encoding, why
    except UnicodeDecodeError as exc:
        raise NotCsv(
            f"the file is not UTF-8 text (byte {exc.start}): convert it to UTF-8, or send "
            "encoding=latin-1 if it is Latin-1 (ISO-8859-1) text"
        ) from exc


def _find_encoding(sample: bytes) -> tuple[str, str]:
    if sample.startswith(UTF16_BOMS):
        return "utf-16", "the file starts with a UTF-16 byte order mark"
    if b"\x00" in sample:
        raise NotCsv(
            "the file is not text (it contains NUL bytes): send a UTF-8 CSV, or "
            "encoding=utf-16 if it is UTF-16 text"
        )
    return "utf-8", "the default (and the file decodes as UTF-8)"


def _decode_utf16(sample: bytes, *, complete: bool) -> str:
    even = sample[: len(sample) - len(sample) % 2]
    for trim in (0, 2):  # a cut may split a surrogate pair
        try:
            text = even[: len(even) - trim].decode("utf-16")
            break
        except UnicodeDecodeError:
            continue
    else:
        raise NotCsv("the file is not UTF-16 text: send encoding=utf-8 or encoding=latin-1")
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise NotCsv("the file is not text (it contains NUL characters): send a UTF-8 CSV")
    if not complete:
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            raise NotCsv("no line end in the sample: the header line is too long")
        text = text[: cut + 1]
    return text
