"""Known published figures (`taxi_cli/data/known_figures.csv`) and how loaded data meets them.

A figure is a row count of one release file (`period` = YYYY-MM), of a year's twelve
files (YYYY), or a file's uncompressed size. Counts are *by file*: the homework counts
the rows whose `filename` is a 2020 file, and those files hold rows picked up from 2008 to
2062 (clock errors in the meters). Counting by pickup date gives other numbers, and
that, not lost rows, is the usual reason a homework answer "does not match" (`TRAP`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

ROWS = "rows"
UNCOMPRESSED = "uncompressed_bytes"

TRAP = """\
Counting by file vs by pickup date: the classic trap.

The course's answers (yellow 2020 = 24,648,499 rows, green 2020 = 1,734,051) count the
rows of the 2020 release files: `WHERE filename LIKE 'yellow_tripdata_2020-%'`. The
files are what the meters sent that month, and some meters had wrong clocks: a 2020 file
holds rows whose pickup is dated anywhere from 2008 to 2062, and a 2021 file holds some
dated December 2020. So

    SELECT count(*) FROM yellow_tripdata
    WHERE tpep_pickup_datetime >= '2020-01-01' AND tpep_pickup_datetime < '2021-01-01'

gives another number than the answer, and neither is wrong: they answer different
questions. taxi-cli's status, check and known figures all count by file (the `filename`
column, the ledger's rows). `taxi-cli check` reports the rows outside their file's month
as a data check (`outside_month`) so you can see how many there are.
"""


@dataclass(frozen=True)
class Figure:
    taxi: str
    period: str  # YYYY-MM (one file) or YYYY (twelve files)
    kind: str  # rows | uncompressed_bytes
    value: int
    source: str

    @property
    def months(self) -> list[str]:
        if len(self.period) == 7:
            return [self.period]
        return [f"{self.period}-{m:02d}" for m in range(1, 13)]

    @property
    def label(self) -> str:
        what = "rows" if self.kind == ROWS else "bytes uncompressed"
        return f"{self.taxi} {self.period} {what}"


@cache
def known() -> tuple[Figure, ...]:
    """Every shipped figure, in file order."""
    text = files("taxi_cli.data").joinpath("known_figures.csv").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(
        Figure(row["taxi"], row["period"], row["kind"], int(row["value"]), row["source"])
        for row in csv.DictReader(io.StringIO("\n".join(lines)))
    )


def of(taxi: str, period: str, kind: str = ROWS) -> Figure | None:
    return next((f for f in known() if (f.taxi, f.period, f.kind) == (taxi, period, kind)), None)


@dataclass(frozen=True)
class Verdict:
    figure: Figure
    actual: int | None  # None: not every file of the figure is there to compare
    have: int  # files of the figure that are present
    where: str  # e.g. "in the table now", "in the ledger"

    @property
    def comparable(self) -> bool:
        return self.actual is not None

    @property
    def matches(self) -> bool:
        return self.actual == self.figure.value

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure.label,
            "taxi": self.figure.taxi,
            "period": self.figure.period,
            "kind": self.figure.kind,
            "expected": self.figure.value,
            "actual": self.actual,
            "files": self.have,
            "of_files": len(self.figure.months),
            "ok": self.matches if self.comparable else None,
            "source": self.figure.source,
        }


def compare(
    per_month: Mapping[tuple[str, str], int], kind: str = ROWS, *, where: str = ""
) -> list[Verdict]:
    """Every figure of `kind` that touches a month in `per_month` ((taxi, month) -> value):
    the sum when all its months are there, else not comparable (`actual` None)."""
    verdicts = []
    for figure in known():
        if figure.kind != kind:
            continue
        present = [m for m in figure.months if (figure.taxi, m) in per_month]
        if not present:
            continue
        total = sum(per_month[(figure.taxi, m)] for m in present)
        complete = len(present) == len(figure.months)
        verdicts.append(Verdict(figure, total if complete else None, len(present), where))
    return verdicts
