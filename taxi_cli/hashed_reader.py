"""A binary file read through, its bytes hashed (sha256) and counted on the way.

A pass that reads a release file anyway (the COPY pass, the Parquet conversion) gets
the digest of exactly the bytes it consumed at no extra pass; hashlib releases the GIL,
so the hash runs in the reading (inflating) thread alongside the others.
"""

from __future__ import annotations

import hashlib
import io
from typing import IO, Any


class HashingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw: Any = raw
        self.sha256 = hashlib.sha256()
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self.read_bytes += n
        return int(n or 0)

    def tell(self) -> int:
        return int(self.raw.tell())

    def close(self) -> None:
        self.raw.close()
        super().close()
