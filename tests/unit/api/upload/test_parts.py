"""An upload's body cut into parts of exactly the part size, whatever its chunks."""

from __future__ import annotations

import pytest

from api.upload.body import Parts


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 10, 64, 1000], ids=lambda n: f"chunks-of-{n}")
def test_parts_are_exactly_the_part_size_and_keep_every_byte_in_order(chunk_size: int) -> None:
    body = bytes(range(256)) * 3  # 768 bytes: 7 parts of 100, and 68 left
    parts = Parts(100)
    cut = [
        part
        for start in range(0, len(body), chunk_size)
        for part in parts.cut(body[start : start + chunk_size])
    ]
    rest = parts.rest()
    assert [len(part) for part in cut] == [100] * 7
    assert all(isinstance(part, bytes) for part in cut)
    assert b"".join(cut) + rest == body
    assert parts.rest() == b""  # given once


def test_a_body_of_whole_parts_leaves_no_rest() -> None:
    parts = Parts(4)
    assert list(parts.cut(b"abcdefgh")) == [b"abcd", b"efgh"]
    assert parts.rest() == b""
