import gzip
import os

import pytest

from api.upload.streams import (
    INFLATE_STEP,
    BadGzip,
    BadMultipart,
    Gunzip,
    MultipartFile,
    SizeCap,
    TooLarge,
)


def inflate(data: bytes, chunk: int) -> bytes:
    gunzip = Gunzip()
    out = b"".join(
        part
        for start in range(0, len(data), chunk)
        for part in gunzip.feed(data[start : start + chunk])
    )
    gunzip.finish()
    return out


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**7])
def test_gunzip_in_any_chunking(chunk: int) -> None:
    original = os.urandom(1000) + b"a,b\n" * 200_000
    assert inflate(gzip.compress(original), chunk) == original


def test_gunzip_reads_several_members() -> None:
    assert inflate(gzip.compress(b"a\n1\n") + gzip.compress(b"2\n"), 3) == b"a\n1\n2\n"


def test_a_bomb_never_inflates_more_than_a_step_at_a_time() -> None:
    bomb = gzip.compress(b"\0" * (50 * INFLATE_STEP))
    gunzip = Gunzip()
    sizes = [len(part) for part in gunzip.feed(bomb)]
    assert max(sizes) <= INFLATE_STEP and sum(sizes) == 50 * INFLATE_STEP


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not gzip at all", "not valid gzip"), (gzip.compress(b"a,b\n" * 1000)[:-20], "ended")],
    ids=["garbage", "truncated"],
)
def test_bad_gzip_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(BadGzip, match=message):
        inflate(data, 64)


def test_size_cap_stops_at_the_first_byte_past_the_limit() -> None:
    cap = SizeCap(10)
    cap.check(b"12345")
    cap.check(b"67890")
    with pytest.raises(TooLarge, match="larger than 10 bytes"):
        cap.check(b"x")


# -- multipart, parsed as it streams -------------------------------------------------------

BOUNDARY = "b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_body(*parts: tuple[str, str | None, bytes], end: bool = True) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def file_bytes(body: bytes, chunk: int) -> tuple[MultipartFile, list[bytes]]:
    reader = MultipartFile(CONTENT_TYPE)
    pieces = [
        piece
        for start in range(0, len(body), chunk)
        for piece in reader.feed(body[start : start + chunk])
    ]
    reader.finish()
    return reader, pieces


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**7])
def test_the_file_field_streams_out_in_any_chunking(chunk: int) -> None:
    csv_bytes = b'id,note\r\n1,"--b0undar\r\ny"\r\n' + os.urandom(5000)
    body = multipart_body(("file", "d.csv.gz", csv_bytes))
    reader, pieces = file_bytes(body, chunk)
    assert b"".join(pieces) == csv_bytes
    assert reader.filename == "d.csv.gz"
    # Never more than what was fed, plus what the parser held back to match the boundary.
    assert max(len(p) for p in pieces) <= chunk + len(BOUNDARY) + 6


@pytest.mark.parametrize(
    "parts",
    [
        (("file", "a.csv", b"a\n1\n"), ("file", "b.csv", b"b\n2\n")),
        (("comment", None, b"x" * 3000), ("file", "d.csv", b"a\n1\n")),
    ],
    ids=["a-second-file", "a-field-before-it"],
)
def test_a_part_besides_the_one_file_is_refused_not_dropped(parts: tuple) -> None:
    with pytest.raises(BadMultipart, match="an upload is one part named 'file'"):
        file_bytes(multipart_body(*parts), 64)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", b"", "no boundary in its Content-Type"),
        (CONTENT_TYPE, multipart_body(("data", "x.csv", b"a\n")), "a part named 'data'"),
        (CONTENT_TYPE, multipart_body(("file", "x.csv", b"a\n1\n" * 9), end=False)[:-9], "ended"),
        (CONTENT_TYPE, b"--b0undary\r\n" + b"X" * 10_000 + b"\r\n", "malformed"),
    ],
    ids=["no-boundary", "no-file-field", "cut", "header-too-long"],
)
def test_a_broken_multipart_body_is_refused(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(BadMultipart, match=message):
        reader = MultipartFile(content_type)
        reader.feed(body)
        reader.finish()
