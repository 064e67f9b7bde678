"""Body streams for uploads: gzip decompression and a size cap, both chunk by chunk.

The cap counts decompressed bytes, so a small gzip that inflates past it (a "gzip bomb")
is stopped as soon as it passes, without ever inflating it whole.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

# Inflate at most this much per step, so one small compressed chunk cannot balloon memory.
INFLATE_STEP = 1024 * 1024


class TooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the upload is larger than {limit} bytes (decompressed): split the file, or "
            "raise LAKEHOUSE_MAX_UPLOAD_BYTES"
        )


class BadGzip(ValueError):
    pass


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
