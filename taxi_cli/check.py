"""`check`: does what a destination holds now agree with its ledger, its source and the
published figures?

For every partition the ledger records (or those named), the rows actually there are
counted now (pg: `SELECT filename, count(*)` over the trip tables; gcs: the rows in
each Parquet object's footer, read by a ranged GET, or for a csv.gz object its size, md5
and crc32c against its load record; bq: a COUNT per filename), never taken from the
ledger, and compared with:

- the ledger's rows (what the load committed),
- what the source counted while verifying, less the rows quarantined (replace mode),
- the published count of that file, when one is known (`taxi_cli.figures`),
- the data checks recorded by the load (`taxi_cli.quality`): a breach is a warning, or a
  mismatch with `--checks fail`.

gcs keeps a load record apart from each object (`taxi_cli.gcp.records`), so an object
deleted or replaced behind taxi-cli's back is a mismatch naming it.

Then each known yearly or monthly figure the partitions cover is compared with their
sum. Any mismatch exits 1 naming the file and the difference; all agreeing exits 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from taxi_cli import figures
from taxi_cli.catalog import Partition
from taxi_cli.console import Output
from taxi_cli.destinations import Audits, CountsRows, Destination
from taxi_cli.errors import DataError, UsageError
from taxi_cli.model import Audit, LedgerRow
from taxi_cli.quality import Outcome

log = logging.getLogger("taxi_cli.check")

OK, BAD, WARN = "✓", "✗", "!"


@dataclass
class Line:
    """One partition's reconciliation."""

    taxi: str
    month: str
    file: str
    status: str  # the ledger's
    ledger_rows: int | None
    actual_rows: int | None  # None: nothing of the file is there
    source_rows: int | None = None
    quarantined: int | None = None
    known_rows: int | None = None
    checks: Outcome | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "taxi": self.taxi,
            "month": self.month,
            "file": self.file,
            "status": self.status,
            "ledger_rows": self.ledger_rows,
            "actual_rows": self.actual_rows,
            "source_rows": self.source_rows,
            "quarantined": self.quarantined,
            "known_rows": self.known_rows,
            "checks": self.checks.as_json() if self.checks else None,
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
        }


@dataclass
class Result:
    target: str
    lines: list[Line]
    figures: list[figures.Verdict]
    strict: bool  # --checks fail

    @property
    def problems(self) -> list[str]:
        found = [p for line in self.lines for p in line.problems]
        return found + [
            f"{v.figure.label}: {v.actual:,}, the published figure is {v.figure.value:,} "
            f"({v.actual - v.figure.value:+,}; {v.figure.source})"
            for v in self.figures
            if v.comparable and not v.matches and v.actual is not None
        ]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "mismatches": len(self.problems),
            "problems": self.problems,
            "partitions": [line.as_json() for line in self.lines],
            "figures": [v.as_json() for v in self.figures],
        }


# ---- counting what is there -------------------------------------------------------------


def observe(destination: Destination) -> Audit:
    """The ledger of record and the rows there now: a destination whose ledger is kept
    apart from its data (gcs, bq) audits itself; pg counts per filename in its tables."""
    if isinstance(destination, Audits):
        return destination.audit()
    entries = list(destination.ledger(read_only=True))
    return Audit(entries, actual_rows(destination, entries) if entries else {})


def actual_rows(destination: Destination, entries: Sequence[LedgerRow]) -> dict[str, int]:
    """filename -> rows the destination holds now."""
    if isinstance(destination, CountsRows):
        return destination.actual_rows()
    if isinstance(destination, Audits):
        return destination.audit().actual
    raise UsageError(f"check cannot count the rows of {destination.name}")


# ---- reconciling ------------------------------------------------------------------------


def reconcile(
    target: str,
    entries: Sequence[LedgerRow],
    actual: Mapping[str, int],
    *,
    partitions: Sequence[Partition] | None = None,
    taxis: Sequence[str] | None = None,
    strict: bool = False,
    audit: Audit | None = None,
) -> Result:
    """Compare each ledger row (of `partitions` or `taxis`, when given) with what is there
    (and add what `audit` found wrong or unverified of each file)."""
    wanted = {(p.taxi.name, p.month) for p in partitions} if partitions is not None else None

    def picked(taxi: str, month: str | None) -> bool:
        if month is None or (taxis is not None and taxi not in taxis):
            return False
        return wanted is None or (taxi, month) in wanted

    chosen = [e for e in entries if picked(e.taxi, e.month)]
    lines = [_line(e, actual, strict) for e in sorted(chosen, key=lambda e: (e.month, e.taxi))]
    for line in lines:
        if audit is not None:
            line.problems += audit.problems.get(line.file, [])
            line.warnings += audit.warnings.get(line.file, [])
    recorded = {e.file for e in entries}
    for name in sorted(set(actual) - recorded):
        taxi, _, rest = name.partition("_tripdata_")
        month = rest.removesuffix(".csv")
        if not picked(taxi, month):
            continue
        line = Line(taxi, month, name, "not recorded", None, actual[name])
        line.problems.append(f"{name}: {actual[name]:,} rows in {target} that no load recorded")
        lines.append(line)
    present = {
        (line.taxi, line.month): line.actual_rows
        for line in lines
        if line.actual_rows is not None and line.status == "done"
    }
    verdicts = figures.compare(present, where="now")
    sizes = {
        (e.taxi, e.month): int(e.detail["source_bytes"])
        for e in chosen
        if e.month is not None and e.detail.get("source_bytes") is not None
    }
    verdicts += figures.compare(sizes, figures.UNCOMPRESSED, where="source")
    return Result(target, lines, verdicts, strict)


def _line(entry: LedgerRow, actual: Mapping[str, int], strict: bool) -> Line:
    assert entry.month is not None
    detail = entry.detail
    line = Line(
        entry.taxi,
        entry.month,
        entry.file,
        entry.status,
        entry.rows,
        actual.get(entry.file),
        detail.get("source_rows"),
        detail.get("quarantined"),
    )
    known = figures.of(entry.taxi, entry.month)
    line.known_rows = known.value if known else None
    line.checks = Outcome.from_json(detail.get("checks"))
    name = entry.file
    if entry.status != "done":
        line.problems.append(f"{name}: the last load failed: {entry.error or 'unknown error'}")
        if entry.rows is None:
            return line
    there = line.actual_rows or 0
    if entry.rows is not None and there != entry.rows:
        line.problems.append(
            f"{name}: {there:,} rows there now, the ledger recorded {entry.rows:,} "
            f"({there - entry.rows:+,})"
        )
    if line.source_rows is not None and entry.rows is not None and entry.mode != "merge":
        expected = line.source_rows - (line.quarantined or 0)
        if entry.rows != expected:
            line.problems.append(
                f"{name}: the load committed {entry.rows:,} rows, the source counted "
                f"{line.source_rows:,} less {line.quarantined or 0:,} quarantined"
            )
    if known is not None and line.actual_rows is not None and there != known.value:
        quarantined = line.quarantined or 0
        if there + quarantined != known.value:
            line.problems.append(
                f"{name}: {there:,} rows, the published count is {known.value:,} "
                f"({there - known.value:+,}; {known.source})"
            )
    if line.checks is not None:
        for check in line.checks.breaches:
            text = f"{name}: {line.checks.describe(check)}"
            (line.problems if strict else line.warnings).append(text)
    return line


# ---- the command --------------------------------------------------------------------------


def run(
    destination: Destination,
    out: Output,
    *,
    partitions: Sequence[Partition] | None = None,
    taxis: Sequence[str] | None = None,
    strict: bool = False,
) -> Result:
    """`taxi-cli check`: print the reconciliation; DataError (exit 1) on any mismatch."""
    seen = observe(destination)
    result = reconcile(
        destination.name,
        seen.entries,
        seen.actual,
        partitions=partitions,
        taxis=taxis,
        strict=strict,
        audit=seen,
    )
    render(result, out)
    problems = result.problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(
            f"check found {len(problems)} mismatch(es): {problems[0]}{more}; reload a file "
            "with `taxi-cli backfill TAXI MONTH --reprocess completed`"
        )
    return result


def _mark(ok: bool | None, warn: bool = False) -> Text:
    if ok is None:
        return Text("–", style="dim")
    if not ok:
        return Text(BAD, style="bold red")
    return Text(WARN, style="yellow") if warn else Text(OK, style="green")


def _num(value: int | None) -> str:
    return f"{value:,}" if value is not None else ""


def render(result: Result, out: Output) -> None:
    if out.json:
        out.emit_json(result.as_json())
        return
    if not result.lines:
        out.out.print(f"nothing recorded in the {result.target} ledger to check")
        return
    grid = Table(title=f"taxi-cli check: {result.target}", title_justify="left", show_edge=False)
    for name in ("partition", "ledger", "there now", "source", "quarantined", "known"):
        grid.add_column(name, justify="left" if name == "partition" else "right")
    grid.add_column("checks")
    grid.add_column("ok")
    for line in result.lines:
        checks = ""
        if line.checks is not None:
            breaches = line.checks.breaches
            checks = ", ".join(breaches) if breaches else "pass"
        grid.add_row(
            f"{line.taxi} {line.month}",
            _num(line.ledger_rows),
            _num(line.actual_rows),
            _num(line.source_rows),
            _num(line.quarantined),
            _num(line.known_rows),
            checks,
            _mark(line.ok, bool(line.warnings)),
        )
    out.out.print(grid)
    if result.figures:
        table = Table(title="known figures", title_justify="left", show_edge=False)
        for name in ("figure", "published", "loaded", "ok", "source"):
            table.add_column(name, justify="right" if name in ("published", "loaded") else "left")
        for v in result.figures:
            loaded = _num(v.actual) if v.comparable else f"{v.have} of {len(v.figure.months)} files"
            table.add_row(
                v.figure.label,
                _num(v.figure.value),
                loaded,
                _mark(v.matches if v.comparable else None),
                v.figure.source,
            )
        out.out.print(table)
    for line in result.lines:
        for text in line.problems:
            out.out.print(Text(f"{BAD} {text}", style="red"))
        for text in line.warnings:
            out.out.print(Text(f"{WARN} {text}", style="yellow"))
    agreed = sum(line.ok for line in result.lines)
    out.out.print(
        f"{agreed} of {len(result.lines)} partitions agree; {len(result.problems)} mismatch(es)"
    )
