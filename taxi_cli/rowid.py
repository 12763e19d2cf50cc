"""`unique_row_id`: the course's md5 row id, computed outside the database.

The course's SQL sets `unique_row_id = md5(concat(c1::text, ..., c7::text))` over typed
columns, so each value enters the hash as PostgreSQL renders its type as text:

- text columns (ids): exactly as in the CSV; an empty field is NULL and adds ''.
- timestamps: `YYYY-MM-DD HH:MM:SS`, fractional seconds only when non-zero.
- double precision: the shortest round-trip form, no trailing `.0`, exponent form
  (`1e-05`, `1e+15`) below 1e-4 and from 1e15 on (PostgreSQL >= 12 defaults).

BigQuery renders the same way through the load path's SQL; both are tested against the
PostgreSQL-verified vector `cee1d10a1152e7104de39a64d59d98c0`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from taxi_cli.catalog import Kind, TaxiType


def pg_float_text(raw: str) -> str:
    """Render a CSV number as PostgreSQL renders a double precision as text."""
    if raw == "":
        return ""
    value = float(raw)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e15 or magnitude < 1e-4) and "e" not in text:
        # Python switches to exponent form at 1e16; PostgreSQL already at 1e15.
        text = _exponent_form(text)
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _exponent_form(text: str) -> str:
    """Turn Python's positional repr into PostgreSQL's `d.ddde+XX` form."""
    sign = "-" if text.startswith("-") else ""
    digits_text = text.lstrip("-")
    int_part, _, frac_part = digits_text.partition(".")
    frac_part = frac_part.rstrip("0")
    digits = (int_part + frac_part).lstrip("0")
    exponent = len(int_part.lstrip("0")) - 1 if int_part.strip("0") else -1
    if not int_part.strip("0"):
        exponent = -(len(frac_part) - len(frac_part.lstrip("0")) + 1)
    digits = digits.rstrip("0") or "0"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


def pg_timestamp_text(raw: str) -> str:
    """Render a CSV timestamp as PostgreSQL's text form of `timestamp`."""
    if raw == "":
        return ""
    text = raw.strip().replace("T", " ")
    if "." in text:
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0")
        text = f"{whole}.{frac}" if frac else whole
    return text


def hash_plan(taxi: TaxiType, header: Sequence[str]) -> list[tuple[int, Kind]]:
    """The (position, kind) of each hashed column within a row of `header`."""
    lowered = [h.lower() for h in header]
    kinds = {c.name.lower(): c.kind for c in taxi.columns}
    return [(lowered.index(name.lower()), kinds[name.lower()]) for name in taxi.hash_columns]


def render(kind: Kind, raw: str) -> str:
    """The text one raw CSV field contributes to the hash."""
    if kind is Kind.MONEY:
        return pg_float_text(raw)
    if kind is Kind.TIMESTAMP:
        return pg_timestamp_text(raw)
    return raw


def row_id(fields: Sequence[str], plan: Sequence[tuple[int, Kind]]) -> str:
    """md5 hex of one CSV record's hashed fields, rendered as PostgreSQL does."""
    joined = "".join(render(kind, fields[pos]) for pos, kind in plan)
    return hashlib.md5(joined.encode(), usedforsecurity=False).hexdigest()
