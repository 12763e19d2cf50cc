from typing import overload

@overload
def encode(
    block: bytes, kinds: bytes, hashed: tuple[int, ...], width: int
) -> tuple[bytes, int] | None: ...
@overload
def encode(
    block: bytes,
    kinds: bytes,
    hashed: tuple[int, ...],
    width: int,
    checks: tuple[int, int, int, int, int, int, int, int, int, bytes],
) -> tuple[bytes, int, tuple[int, int, int, int, int]] | None: ...
def md5_hex(data: bytes, lens: bytes) -> bytes: ...
def split_rows(rows: bytes, pivot: int) -> tuple[bytes, bytes]: ...
def encode_split(
    block: bytes,
    kinds: bytes,
    hashed: tuple[int, ...],
    width: int,
    checks: tuple[int, int, int, int, int, int, int, int, int, bytes] | None,
    pivot: int,
) -> (
    tuple[bytes | memoryview, bytes | memoryview, int, tuple[int, int, int, int, int] | None] | None
): ...
def use_avx2(flag: bool) -> bool: ...
