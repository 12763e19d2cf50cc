"""`status`: what each target holds, month by taxi type, from its ledger.

The totals are sums of the ledger's row counts of done partitions, so they are exactly
what the loads committed (yellow 2020 reads 24,648,499 once its twelve release files are
loaded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from taxi_cli import figures
from taxi_cli.catalog import TAXIS, in_window, month_range
from taxi_cli.console import Output
from taxi_cli.plan import LedgerEntry, State, state_of

STYLE = {State.DONE: "green", State.FAILED: "bold red", State.MISSING: "dim"}


@dataclass(frozen=True)
class Cell:
    target: str
    taxi: str
    month: str
    state: State
    rows: int | None
    file: str | None
    finished: datetime | None
    error: str | None

    @property
    def known(self) -> int | None:
        figure = figures.of(self.taxi, self.month)
        return figure.value if figure else None

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "taxi": self.taxi,
            "month": self.month,
            "state": str(self.state),
            "rows": self.rows,
            "file": self.file,
            "finished": self.finished.isoformat() if self.finished else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class Total:
    taxi: str
    year: str
    rows: int
    done: int
    failed: int
    missing: int

    @property
    def known(self) -> int | None:
        """The published row count of this taxi type's year, when there is one."""
        figure = figures.of(self.taxi, self.year)
        return figure.value if figure else None

    def as_json(self) -> dict[str, Any]:
        return {
            "taxi": self.taxi,
            "year": self.year,
            "rows": self.rows,
            "done": self.done,
            "failed": self.failed,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class Report:
    target: str
    taxis: tuple[str, ...]
    months: tuple[str, ...]
    cells: dict[tuple[str, str], Cell]  # (taxi, month); missing cells only inside windows
    totals: tuple[Total, ...]  # per taxi and year

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.totals)

    def known_figures(self) -> list[dict[str, Any]]:
        """Each done month and each complete year that has a published row count, and
        whether the loaded count is it (`matches`)."""
        found: list[dict[str, Any]] = []
        for cell in self.cells.values():
            if cell.state is State.DONE and cell.known is not None:
                found.append(_figure(cell.taxi, cell.month, cell.rows, cell.known))
        for total in self.totals:
            if total.known is not None and not total.failed and not total.missing:
                found.append(_figure(total.taxi, total.year, total.rows, total.known))
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "partitions": [
                self.cells[(taxi, month)].as_json()
                for month in self.months
                for taxi in self.taxis
                if (taxi, month) in self.cells
            ],
            "totals": [t.as_json() for t in self.totals],
            "total_rows": self.total_rows,
            "known_figures": self.known_figures(),
        }


def _figure(taxi: str, period: str, rows: int | None, known: int) -> dict[str, Any]:
    return {"taxi": taxi, "period": period, "rows": rows, "known": known, "matches": rows == known}


def _finished(entry: LedgerEntry) -> datetime | None:
    value = getattr(entry, "finished", None)
    return value if isinstance(value, datetime) else None


def build(target: str, entries: Iterable[LedgerEntry]) -> Report:
    """The grid from a target's ledger: months from the first to the last recorded one."""
    known: dict[tuple[str, str], LedgerEntry] = {
        (e.taxi, e.month): e for e in entries if e.month is not None
    }
    if not known:
        return Report(target, (), (), {}, ())
    taxis = tuple(name for name in TAXIS if any(t == name for t, _ in known)) + tuple(
        sorted({t for t, _ in known} - set(TAXIS))
    )
    months = tuple(month_range(min(m for _, m in known), max(m for _, m in known)))
    cells: dict[tuple[str, str], Cell] = {}
    for taxi in taxis:
        for month in months:
            entry = known.get((taxi, month))
            if entry is not None:
                state = state_of(entry)
                cells[(taxi, month)] = Cell(
                    target,
                    taxi,
                    month,
                    state,
                    entry.rows if state is State.DONE else None,
                    entry.file,
                    _finished(entry),
                    entry.error if state is State.FAILED else None,
                )
            elif taxi not in TAXIS or in_window(TAXIS[taxi], month):
                cells[(taxi, month)] = Cell(
                    target, taxi, month, State.MISSING, None, None, None, None
                )
    totals = []
    for taxi in taxis:
        for year in sorted({m[:4] for m in months}):
            year_cells = [c for (t, m), c in cells.items() if t == taxi and m[:4] == year]
            if not year_cells:
                continue
            totals.append(
                Total(
                    taxi,
                    year,
                    sum(c.rows or 0 for c in year_cells if c.state is State.DONE),
                    sum(c.state is State.DONE for c in year_cells),
                    sum(c.state is State.FAILED for c in year_cells),
                    sum(c.state is State.MISSING for c in year_cells),
                )
            )
    return Report(target, taxis, months, cells, tuple(totals))


def _cell_text(cell: Cell | None) -> Text:
    if cell is None:
        return Text("")
    if cell.state is State.DONE:
        text = Text(f"{cell.rows or 0:,}", style=STYLE[cell.state])
        return text.append(_known_mark(cell.rows, cell.known))
    return Text(str(cell.state), style=STYLE[cell.state])


def table(report: Report) -> Table:
    grid = Table(
        title=f"taxi-cli status: {report.target}",
        title_justify="left",
        show_edge=False,
        header_style="bold",
    )
    grid.add_column("month")
    for taxi in report.taxis:
        grid.add_column(taxi, justify="right")
    years = sorted({m[:4] for m in report.months})
    by_key = {(t.taxi, t.year): t for t in report.totals}
    for year in years:
        for month in (m for m in report.months if m[:4] == year):
            grid.add_row(month, *(_cell_text(report.cells.get((t, month))) for t in report.taxis))
        totals: list[Text] = []
        for taxi in report.taxis:
            total = by_key.get((taxi, year))
            if total is None:
                totals.append(Text(""))
                continue
            note = []
            if total.failed:
                note.append(f"{total.failed} failed")
            if total.missing:
                note.append(f"{total.missing} missing")
            text = Text(f"{total.rows:,}", style="bold")
            if not total.failed and not total.missing:  # a partial year is no figure
                text.append(_known_mark(total.rows, total.known))
            if note:
                text.append(f" ({', '.join(note)})", style="yellow")
            totals.append(text)
        grid.add_row(Text(f"{year} total", style="bold"), *totals, end_section=True)
    return grid


def _known_mark(rows: int | None, known: int | None) -> Text:
    """` ✓` when the count is a published figure, ` ✗ (published N)` when it differs."""
    if known is None or rows is None:
        return Text("")
    if rows == known:
        return Text(" ✓", style="bold green")
    return Text(f" ✗ (published {known:,})", style="yellow")


def render(report: Report, out: Output) -> None:
    """The grid on stdout (or JSON with --json)."""
    if out.json:
        out.emit_json(report.as_json())
        return
    if not report.taxis:
        out.out.print(f"nothing recorded in the {report.target} ledger yet")
        return
    out.out.print(table(report))
    for cell in failed_cells(report):
        out.out.print(Text(f"{cell.taxi} {cell.month} failed: {cell.error}", style="red"))
    out.out.print(f"total rows in {report.target}: {report.total_rows:,}")
    if any(c.known is not None for c in report.cells.values()):
        out.out.print(
            "✓ = a published figure (the course's answers, counted by file); "
            "`taxi-cli status --explain` says why counts by pickup date differ"
        )


def failed_cells(report: Report) -> Sequence[Cell]:
    return [c for c in report.cells.values() if c.state is State.FAILED]
