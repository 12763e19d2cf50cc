"""`report`: one self-contained HTML file (or Markdown) about what a target holds.

Everything is inside the file: the charts are SVG drawn by matplotlib and inlined, the
styles and the one small script are inline, and nothing is fetched, so it opens offline,
in a CI artifact or attached to a mail. It shows a calendar heat map of taxi type x month (rows,
failed months marked), the rows per month against the published figures, the
reconciliation and data checks of each partition (`taxi_cli.check`), the run history,
and, where dbt has built the mart, revenue by borough and the top zones. `--format md`
writes the same tables as Markdown (no charts) for a CI job summary.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taxi_cli import check
from taxi_cli.catalog import month_range
from taxi_cli.destinations import Destination, HasMart, KeepsRuns
from taxi_cli.errors import TaxiError
from taxi_cli.model import LedgerRow
from taxi_cli.quality import CHECKS
from taxi_cli.runs import RunRecord

Revenue = tuple[list[tuple[str, float]], list[tuple[str, float]]]


@dataclass(frozen=True)
class Data:
    target: str
    entries: list[LedgerRow]
    result: check.Result
    runs: list[RunRecord]
    revenue: Revenue | None
    made: datetime

    @property
    def months(self) -> list[str]:
        known = [e.month for e in self.entries if e.month]
        return month_range(min(known), max(known)) if known else []

    @property
    def taxis(self) -> list[str]:
        return sorted({e.taxi for e in self.entries if e.month})


def gather(destination: Destination) -> Data:
    """Read everything the report shows (read-only)."""
    seen = check.observe(destination)
    entries = [e for e in seen.entries if e.month]
    result = check.reconcile(destination.name, entries, seen.actual, audit=seen)
    return Data(
        destination.name,
        entries,
        result,
        destination.runs() if isinstance(destination, KeepsRuns) else [],
        destination.revenue() if isinstance(destination, HasMart) and entries else None,
        datetime.now(UTC),
    )


# ---- charts ------------------------------------------------------------------------------


def _svg(fig: Any) -> str:
    """The figure as an inline <svg> element (no XML prolog, no external references)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to SVG only
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text (small, searchable)
    matplotlib.rcParams["svg.hashsalt"] = "taxi-cli"  # stable ids: the same data, the same file
    import matplotlib.pyplot as plt

    return plt


def heat_map(data: Data) -> str:
    """Taxi type x month: the rows of each done month (colour), failed months marked."""
    import numpy as np

    plt = _pyplot()
    taxis, months = data.taxis, data.months
    grid = np.full((len(taxis), len(months)), np.nan)
    failed: list[tuple[int, int]] = []
    for e in data.entries:
        row, col = taxis.index(e.taxi), months.index(e.month or "")
        if e.status == "done":
            grid[row, col] = e.rows or 0
        else:
            failed.append((row, col))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(months) + 2), 0.6 * len(taxis) + 1.6))
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis")
    for row, col in failed:
        ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, color="#d62728"))
    ax.set_yticks(range(len(taxis)), taxis)
    step = max(1, len(months) // 18)
    ax.set_xticks(range(0, len(months), step), months[::step], rotation=60, ha="right")
    ax.set_title("rows loaded per month (red: failed, blank: not loaded)")
    fig.colorbar(image, ax=ax, label="rows")
    return _svg(fig)


def rows_vs_known(data: Data) -> str:
    """Rows in the destination per (taxi, month), with the published count as a marker."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(data.months) + 2), 3.6))
    lines = [line for line in data.result.lines if line.status == "done"]
    labels = [f"{line.taxi} {line.month}" for line in lines]
    ax.bar(range(len(lines)), [line.actual_rows or 0 for line in lines], color="#1f77b4")
    known = [(i, line.known_rows) for i, line in enumerate(lines) if line.known_rows]
    if known:
        ax.scatter(
            [i for i, _ in known],
            [v for _, v in known],
            marker="D",
            color="black",
            zorder=3,
            label="published figure",
        )
        ax.legend()
    ax.set_xticks(range(len(lines)), labels, rotation=60, ha="right")
    ax.set_ylabel("rows")
    ax.set_title("rows per file now, against the published figures")
    return _svg(fig)


def revenue_charts(revenue: Revenue) -> list[str]:
    plt = _pyplot()
    charts = []
    for title, pairs in (
        ("revenue by pickup borough", revenue[0]),
        ("top pickup zones by revenue", revenue[1]),
    ):
        fig, ax = plt.subplots(figsize=(7.0, 0.35 * len(pairs) + 1.2))
        ax.barh([name for name, _ in pairs][::-1], [v for _, v in pairs][::-1], color="#2ca02c")
        ax.set_xlabel("total amount ($)")
        ax.set_title(title)
        charts.append(_svg(fig))
    return charts


# ---- tables ------------------------------------------------------------------------------


def _line_mark(line: check.Line) -> str:
    if not line.ok:
        return check.BAD
    return check.WARN if line.warnings else check.OK


def _partition_rows(data: Data) -> list[list[str]]:
    rows = []
    for line in data.result.lines:
        counts = line.checks.counts if line.checks else {}
        rows.append(
            [
                f"{line.taxi} {line.month}",
                line.status,
                _n(line.ledger_rows),
                _n(line.actual_rows),
                _n(line.source_rows),
                _n(line.known_rows),
                *(_n(counts.get(name)) for name in CHECKS),
                check.OK
                if line.ok and not line.warnings
                else (check.WARN if line.ok else check.BAD),
            ]
        )
    return rows


PARTITION_HEAD = (
    ["partition", "state", "ledger", "there now", "source", "published"]
    + [name.replace("_", " ") for name in CHECKS]
    + ["ok"]
)
FIGURE_HEAD = ["figure", "published", "loaded", "ok", "source"]
RUN_HEAD = ["started", "seconds", "run", "command", "worker", "done", "skipped", "failed", "rows"]
RUN_HEAD += ["downloaded MiB"]


def _figure_rows(data: Data) -> list[list[str]]:
    return [
        [
            v.figure.label,
            _n(v.figure.value),
            _n(v.actual) if v.comparable else f"{v.have} of {len(v.figure.months)} files",
            (check.OK if v.matches else check.BAD) if v.comparable else "–",
            v.figure.source,
        ]
        for v in data.result.figures
    ]


def _run_rows(data: Data) -> list[list[str]]:
    return [
        [
            r.started.strftime("%Y-%m-%d %H:%M:%S"),
            f"{r.seconds:.1f}",
            r.label,
            r.command,
            r.worker,
            str(r.done),
            str(r.skipped),
            str(r.failed),
            _n(r.rows),
            f"{r.downloaded_bytes / (1 << 20):,.1f}",
        ]
        for r in data.runs
    ]


def _n(value: int | None) -> str:
    return f"{value:,}" if value is not None else ""


# ---- documents ---------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.bad{color:#b00;font-weight:bold}.ok{color:#070}
figure{margin:1em 0}
"""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        css = " class='bad'" if text == check.BAD else (" class='ok'" if text == check.OK else "")
        return f"<td{css}>{html.escape(text)}</td>"

    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def to_html(data: Data) -> str:
    title = f"taxi-cli report: {data.target}"
    verdict = (
        "everything agrees"
        if data.result.ok
        else f"{len(data.result.problems)} mismatch(es): " + "; ".join(data.result.problems[:5])
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Made {data.made:%Y-%m-%d %H:%M} UTC. Check: "
        f"<span class='{'ok' if data.result.ok else 'bad'}'>{html.escape(verdict)}</span></p>",
    ]
    if not data.entries:
        parts.append(f"<p>Nothing recorded in the {html.escape(data.target)} ledger yet.</p>")
    else:
        parts += [
            "<h2>Months loaded</h2>",
            f"<figure id='heat-map'>{heat_map(data)}</figure>",
            "<h2>Rows per file and the published figures</h2>",
            f"<figure id='rows-vs-known'>{rows_vs_known(data)}</figure>",
            _html_table(FIGURE_HEAD, _figure_rows(data)),
            "<h2>Reconciliation and data checks</h2>",
            _html_table(PARTITION_HEAD, _partition_rows(data)),
        ]
    parts.append("<h2>Runs</h2>")
    parts.append(_html_table(RUN_HEAD, _run_rows(data)) if data.runs else "<p>No run recorded.</p>")
    if data.revenue is not None:
        boroughs, zones = revenue_charts(data.revenue)
        parts += [
            "<h2>Revenue (dbt mart)</h2>",
            f"<figure id='revenue-boroughs'>{boroughs}</figure>",
            f"<figure id='revenue-zones'>{zones}</figure>",
        ]
    # The one script: marks the body with the charts that rendered with data (what a
    # browser test, or a reader's devtools, can check). Inline; it loads nothing.
    parts.append(
        "<script>document.body.dataset.charts = Array.from(document.querySelectorAll("
        "'figure svg')).filter(s => s.querySelectorAll('path, rect, use').length > 3)"
        ".length;</script>"
    )
    parts.append("</body></html>\n")
    document = "\n".join(parts)
    if re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", document):
        raise TaxiError("the report would fetch something from the network")  # never ships
    return document


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(data: Data) -> str:
    verdict = "everything agrees" if data.result.ok else f"{len(data.result.problems)} mismatch(es)"
    parts = [f"## taxi-cli report: {data.target}", "", f"Check: {verdict}.", ""]
    parts += [f"- {p}" for p in data.result.problems[:20]]
    if data.entries:
        parts += ["", "### Published figures", "", _md_table(FIGURE_HEAD, _figure_rows(data))]
        parts += ["", "### Partitions", "", _md_table(PARTITION_HEAD, _partition_rows(data))]
    if data.runs:
        parts += ["", "### Runs", "", _md_table(RUN_HEAD, _run_rows(data))]
    if data.revenue is not None:
        parts += ["", "### Revenue by pickup borough", ""]
        parts.append(
            _md_table(["borough", "total"], [[b, f"{v:,.2f}"] for b, v in data.revenue[0]])
        )
    return "\n".join(parts) + "\n"


def write(destination: Destination, path: Path, fmt: str) -> Data:
    """Gather, render and write the report atomically (a temp file, then rename)."""
    data = gather(destination)
    text = to_html(data) if fmt == "html" else to_markdown(data)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise TaxiError(f"cannot write the report to {path}: {exc.strerror or exc}") from exc
    return data
