"""The loader's read-ahead buffer cuts blocks at line ends, whatever the chunk sizes the
inflater hands it, and bounds a line: the bytes come out exactly as they went in."""

from __future__ import annotations

import io
import random

import pytest

from taxi_cli.postgres.rows import _ReadAhead


def _data(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = [b"x" * rng.choice([0, 1, 5, 40, 300]) for _ in range(400)]
    return b"\n".join(lines) + (b"\n" if seed % 2 else b"")


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 1 << 20])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blocks_end_at_line_ends_and_lose_nothing(chunk: int, seed: int) -> None:
    data = _data(seed)
    src = _ReadAhead(io.BytesIO(data), chunk=chunk, ahead=3)
    try:
        header = src.readline()
        blocks = [header]
        while block := src.read_lines(500, 10_000):
            assert block.endswith(b"\n") or len(b"".join(blocks)) + len(block) == len(data)
            assert len(block) >= 500 or b"".join(blocks) + block == data
            blocks.append(block)
    finally:
        src.stop()
    assert b"".join(blocks) == data


def test_a_line_longer_than_the_limit_is_cut_at_the_limit() -> None:
    data = b"a\n" + b"y" * 5000 + b"\nz\n"
    src = _ReadAhead(io.BytesIO(data), chunk=64, ahead=2)
    try:
        assert src.readline(10) == b"a\n"
        assert src.readline(10) == b"y" * 10
        assert src.read_lines(100, 1000) == b"y" * 1100
        assert src.read(-1) == b"y" * (5000 - 1110) + b"\nz\n"
    finally:
        src.stop()
