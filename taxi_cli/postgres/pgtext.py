"""PostgreSQL's own text rules for the typed trip columns, outside the server.

The loader sends binary COPY, so the server never sees the CSV text: whatever it would
have made of that text must be made here. Each `parse_*` accepts exactly what
PostgreSQL's input function (`float8in`, `int4in`, `timestamp_in`) accepts for the
value, or a stated subset of it, and gives the same value; anything else raises
`Unloadable` (the row is then reported or quarantined, never stored as something else).
`float8_text` and `timestamp_text` are the output functions, i.e. what `::text` and so
the course's `md5(concat(...))` row id see. Checked against a real server in
tests/faults/test_load_values.py.

- double precision: decimal and hexadecimal (C `strtod`) forms, `inf`/`infinity`/`nan`
  in any case, surrounding white space. Out of range (`1e309`, or a non-zero value that
  rounds to 0 like `1e-400`) is an error, as in PostgreSQL. Output is the shortest text
  that reads back strictly inside the value's rounding interval (PostgreSQL's Ryu does
  not accept the interval's bounds: `1e23` prints as `9.999999999999999e+22`), in
  exponent form below 1e-4 and from 1e15 on.
- integer: PostgreSQL >= 16 syntax: sign, `0x`/`0o`/`0b` prefixes, `_` between digits.
- timestamp (subset): `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]]`, year 0001..9999, with
  PostgreSQL's carries (`23:59:60` is the next minute, `24:00:00` the next day); year 0,
  time zones, other spellings and more than 6 fractional digits are `Unloadable`.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal, localcontext

PG_EPOCH_DAYS = date(2000, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000

_WS = " \t\n\v\f\r"  # C isspace(): what the input functions skip
_DEC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_HEX = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?", re.ASCII
)
_NAMED = re.compile(r"([+-]?)(?:(inf(?:inity)?)|nan(?:\([0-9A-Za-z_]*\))?)", re.I)
_NONZERO_MANTISSA = re.compile(r"[1-9]")
_INT = re.compile(
    r"([+-]?)(?:0[xX](_?[0-9a-fA-F](?:_?[0-9a-fA-F])*)|0[oO](_?[0-7](?:_?[0-7])*)"
    r"|0[bB](_?[01](?:_?[01])*)|(\d(?:_?\d)*))",
    re.ASCII,
)
_TS = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?", re.ASCII)
_LAST_US = (date(9999, 12, 31).toordinal() + 1 - date(2000, 1, 1).toordinal()) * 86_400_000_000


class Unloadable(ValueError):
    """PostgreSQL would reject the text (or it is outside the subset we reproduce)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def parse_float8(text: str) -> float:
    """The double PostgreSQL's `float8in` makes of `text`."""
    s = text.strip(_WS)
    if _DEC.fullmatch(s):
        value = float(s)
        mantissa = s.lower().partition("e")[0]
        if math.isinf(value) or (value == 0.0 and _NONZERO_MANTISSA.search(mantissa)):
            raise Unloadable("number out of range")
        return value
    if _HEX.fullmatch(s):
        try:
            value = float.fromhex(s)
        except OverflowError:
            raise Unloadable("number out of range") from None
        if value == 0.0 and _NONZERO_MANTISSA.search(s.lower().partition("p")[0][2:]):
            raise Unloadable("number out of range")
        return value
    named = _NAMED.fullmatch(s)
    if named:
        if named.group(2) is None:
            return math.nan
        return -math.inf if named.group(1) == "-" else math.inf
    raise Unloadable("invalid number")


def parse_int4(text: str) -> int:
    """The integer PostgreSQL's `int4in` makes of `text` (PostgreSQL >= 16 syntax)."""
    m = _INT.fullmatch(text.strip(_WS))
    if m is None:
        raise Unloadable("invalid integer")
    sign, hexa, octal, binary, decimal = m.groups()
    if hexa is not None:
        value = int(hexa.replace("_", ""), 16)
    elif octal is not None:
        value = int(octal.replace("_", ""), 8)
    elif binary is not None:
        value = int(binary.replace("_", ""), 2)
    else:
        value = int(decimal.replace("_", ""))
    value = -value if sign == "-" else value
    if not -(2**31) <= value < 2**31:
        raise Unloadable("integer out of range")
    return value


def parse_timestamp(text: str) -> int:
    """Microseconds since 2000-01-01 of `text`, as PostgreSQL's `timestamp_in` reads it."""
    m = _TS.fullmatch(text.strip(_WS))
    if m is None:
        raise Unloadable("invalid timestamp")
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    micros = int((m.group(7) or "").ljust(6, "0") or 0)
    try:
        days = date(year, month, day).toordinal() - PG_EPOCH_DAYS  # rejects year 0, Feb 30
    except ValueError:
        raise Unloadable("invalid timestamp") from None
    if minute > 59 or second > 60 or hour > 24:
        raise Unloadable("invalid timestamp")
    if (second == 60 and micros) or (hour == 24 and (minute or second or micros)):
        raise Unloadable("invalid timestamp")  # PostgreSQL: field value out of range
    stamp = days * _US_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros
    if stamp >= _LAST_US:  # a carry into year 10000: outside the subset
        raise Unloadable("invalid timestamp")
    return stamp


def timestamp_text(pg_micros: int) -> str:
    """PostgreSQL's text of a timestamp (DateStyle ISO), for years 1..9999."""
    days, micros = divmod(pg_micros, _US_PER_DAY)
    day = date.fromordinal(days + PG_EPOCH_DAYS)
    seconds, frac = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d} {hour:02d}:{minute:02d}:{second:02d}"
    return text + (f".{frac:06d}".rstrip("0") if frac else "")


def float8_text(value: float) -> str:
    """PostgreSQL's text of a double (`extra_float_digits` = 1, the default)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exponent = _shortest(value)
    sign = "-" if value < 0 else ""
    if exponent < -4 or exponent >= 15:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole = digits[: exponent + 1].ljust(exponent + 1, "0")
    frac = digits[exponent + 1 :]
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def _shortest(value: float) -> tuple[str, int]:
    """(significant digits, decimal exponent) of the shortest decimal strictly inside
    the rounding interval of `value`. Python's repr is the shortest that rounds back,
    bounds included; it differs only when it lands exactly on a bound (rare: 1e23)."""
    a = abs(value)
    candidate = repr(a)
    if not _on_bound(candidate, a):
        return _digits(candidate)
    for precision in range(len(_digits(candidate)[0]) + 1, 18):
        candidate = f"{a:.{precision - 1}e}"
        if float(candidate) == a and not _on_bound(candidate, a):
            return _digits(candidate)
    return _digits(f"{a:.16e}")  # 17 digits always lie strictly inside


def _on_bound(text: str, value: float) -> bool:
    exact = Decimal(text)
    with localcontext() as ctx:
        ctx.prec = 1200  # exact for every double, subnormals included
        for neighbour in (math.nextafter(value, 0.0), math.nextafter(value, math.inf)):
            if exact == (Decimal(value) + Decimal(neighbour)) / 2:
                return True
    return False


def _digits(text: str) -> tuple[str, int]:
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    exponent = int(exp or 0)
    raw = whole + frac
    stripped = raw.lstrip("0")
    exponent += len(whole) - 1 - (len(raw) - len(stripped))
    return stripped.rstrip("0") or "0", exponent
