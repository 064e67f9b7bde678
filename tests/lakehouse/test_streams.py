import gzip
import os

import pytest

from lakehouse.streams import INFLATE_STEP, BadGzip, Gunzip, SizeCap, TooLarge


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
