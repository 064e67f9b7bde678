"""Body streams for uploads: a multipart field, gzip decompression and a size cap, all
chunk by chunk.

The cap counts decompressed bytes, so a small gzip that inflates past it (a "gzip bomb")
is stopped as soon as it passes, without ever inflating it whole. A multipart body is
parsed as it arrives: the file field's bytes flow on, nothing is spooled, other fields'
bytes are dropped, so memory stays at one chunk whatever the body's size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from lakehouse.errors import InvalidInput

# Inflate at most this much per step, so one small compressed chunk cannot balloon memory.
INFLATE_STEP = 1024 * 1024


class TooLarge(InvalidInput):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the upload is larger than {limit} bytes (decompressed): split the file, or "
            "raise LAKEHOUSE_MAX_UPLOAD_BYTES"
        )


class BadGzip(InvalidInput):
    pass


class UnknownEncoding(InvalidInput):
    """A Content-Encoding other than gzip (415): the body would be read as it was sent."""

    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"Content-Encoding {encoding[:40]!r} is not read here: send the file as it is, or "
            "gzip-compressed with Content-Encoding: gzip"
        )


class SlowUpload(InvalidInput):
    """The client sent nothing for `seconds`: the upload ends (408) and frees its slot."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"no bytes of the upload arrived for {seconds:g} s: send the body without pauses "
            "(LAKEHOUSE_UPLOAD_READ_TIMEOUT_SECONDS), and send it again: nothing was stored"
        )


class SizeCap:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def check(self, chunk: bytes) -> bytes:
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise TooLarge(self.limit)
        return chunk


class Gunzip:
    """Inflates a gzip stream fed in arbitrary chunks (several members allowed)."""

    def __init__(self) -> None:
        self._next_member()

    def _next_member(self) -> None:
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._in_member = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while True:
            self._in_member = self._in_member or bool(data)
            try:
                out = self._inflater.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                raise BadGzip(f"the body is not valid gzip: {exc}") from exc
            if out:
                yield out
            if self._inflater.eof:
                data = self._inflater.unused_data
                self._next_member()
                if not data:
                    return
                continue
            data = self._inflater.unconsumed_tail
            # A full step may leave output pending inside zlib: ask again until it is drained.
            if not data and len(out) < INFLATE_STEP:
                return

    def finish(self) -> None:
        if self._in_member:
            raise BadGzip("the gzip body ended before its end: send the whole file")


class BadMultipart(InvalidInput):
    """The multipart body cannot be read, or has no file field."""


class MultipartFile:
    """Streams the data of the first part named `field` out of a multipart/form-data body
    fed in chunks. Header sizes and counts are bounded by the parser."""

    def __init__(self, content_type: str, field: str = "file") -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadMultipart(
                "the multipart body has no boundary in its Content-Type: let the client "
                "build the request (curl -F file=@data.csv), or send the CSV as the raw body"
            )
        self.field = field
        self.filename = ""
        self.found = False  # the field's headers were read
        self.complete = False  # ... and its data, up to its closing boundary
        self._inside = False
        self._pending: list[bytes] = []
        self._header: list[bytes] = [b"", b""]
        self._disposition = b""
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                },
            )
        except FormParserError as exc:
            raise BadMultipart(f"the multipart boundary is not valid: {exc}") from exc

    def feed(self, chunk: bytes) -> list[bytes]:
        """The file's bytes found in `chunk` (at most as many as `chunk` holds)."""
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise BadMultipart(
                f"the multipart body is malformed ({exc}): send -F file=@data.csv, or the "
                "CSV as the raw body"
            ) from exc
        pieces, self._pending = self._pending, []
        return pieces

    def finish(self) -> None:
        if not self.found:
            raise BadMultipart(
                f"multipart upload has no file field named {self.field!r}: "
                f"send -F {self.field}=@data.csv"
            )
        if not self.complete:
            raise BadMultipart(
                "the multipart body ended inside the file: send the whole body again"
            )

    def _part_begin(self) -> None:
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        name, value = self._header
        if name.strip().lower() == b"content-disposition":
            self._disposition = value
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        name = params.get(b"name", b"").decode("latin-1")
        if self.found or name != self.field:
            # A second file, or a form field, would be dropped unread: refused instead.
            which = "a second part" if self.found else "a part"
            raise BadMultipart(
                f"the multipart body has {which} named {name!r}: an upload is one part named "
                f"{self.field!r} (-F {self.field}=@data.csv), its parameters in the URL "
                "(?name=...&mode=...)"
            )
        self.found = self._inside = True
        self.filename = params.get(b"filename", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._inside:
            self._pending.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        if self._inside:
            self._inside, self.complete = False, True
