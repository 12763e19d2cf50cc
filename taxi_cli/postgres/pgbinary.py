"""Rows in PostgreSQL's binary COPY format, assembled with numpy.

Binary COPY spares the server its most expensive work, parsing text into float8 and
timestamp, which is what bounds a CSV COPY. Each row is `int16 nfields`, then per field
`int32 length` (-1 for NULL) and the value in network byte order. Rows whose variable
parts (text lengths, NULLs) have the same shape share one numpy structured dtype, so a
batch is encoded with a handful of vectorised copies per shape instead of a Python loop
per row. (Row order inside a batch follows the shapes; tables have no order.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


@dataclass(frozen=True)
class Fixed:
    """A fixed-width column: native values, NULL mask, big-endian wire type."""

    values: npt.NDArray[np.generic]
    nulls: npt.NDArray[np.bool_]
    wire: str  # ">i4", ">f8", ">i8"


@dataclass(frozen=True)
class Text:
    """A text column: values as fixed-width bytes (`S{w}`), their byte lengths (-1 NULL)."""

    values: npt.NDArray[np.bytes_]
    lengths: npt.NDArray[np.int64]


Field = Fixed | Text


def encode(fields: list[Field], n: int) -> bytes:
    """The binary COPY rows (no signature or trailer) of `n` rows."""
    if n == 0:
        return b""
    shape_parts: list[npt.NDArray[np.int64]] = []
    null_bits = np.zeros(n, dtype=np.int64)
    for i, f in enumerate(fields):
        if isinstance(f, Fixed):
            null_bits |= f.nulls.astype(np.int64) << (i % 62)
            if i >= 62:  # very wide tables: keep every NULL pattern distinct
                shape_parts.append(f.nulls.astype(np.int64))
        else:
            shape_parts.append(f.lengths)
    keys = np.stack([null_bits, *shape_parts], axis=1)
    order = np.lexsort(keys.T[::-1])  # rows of one shape become contiguous
    ordered = keys[order]
    changes = np.flatnonzero(np.any(ordered[1:] != ordered[:-1], axis=1)) + 1
    bounds = np.concatenate(([0], changes, [n]))
    # one gather per column into shape order (and wire byte order); groups are then slices
    ordered_values = [
        f.values[order].astype(f.wire) if isinstance(f, Fixed) else f.values[order] for f in fields
    ]
    out = []
    for g in range(len(bounds) - 1):
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        first = int(order[lo])
        dtype: list[tuple[str, str]] = [("n", ">i2")]
        sizes: list[int] = []
        for i, f in enumerate(fields):
            if isinstance(f, Fixed):
                size = -1 if f.nulls[first] else np.dtype(f.wire).itemsize
                dtype.append((f"l{i}", ">i4"))
                if size >= 0:
                    dtype.append((f"v{i}", f.wire))
            else:
                size = int(f.lengths[first])
                dtype.append((f"l{i}", ">i4"))
                if size > 0:
                    dtype.append((f"v{i}", f"S{size}"))
            sizes.append(size)
        rows = np.empty(hi - lo, dtype=np.dtype(dtype))
        rows["n"] = len(fields)
        for i, size in enumerate(sizes):
            rows[f"l{i}"] = size
            if size > 0:
                rows[f"v{i}"] = ordered_values[i][lo:hi]
        out.append(rows.tobytes())
    return b"".join(out)
