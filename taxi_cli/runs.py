"""Run history: one record per load run (backfill, load-*), kept by the destination.

A record says when a run started and ended, how many partitions were done, skipped and
failed, the rows it loaded, who ran it (the worker) and the command line with secrets
masked (`redact.mask_dsn`, plus the value of any option that names a password, a key or
a token). pg keeps them in `{schema}.taxi_cli_runs`, gcs as one JSON object per run under
`{prefix}_taxi_cli/runs/`, bq in the append-only `{dataset}.taxi_cli_runs` (a load job:
no DML, no streaming); recording never fails a run.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taxi_cli.redact import MASK, mask_dsn

_SECRET_OPTION = re.compile(r"^--?[\w-]*(password|secret|token|key|credentials)[\w-]*$", re.I)


def command_line(argv: list[str] | None = None) -> str:
    """The process's command line with every secret replaced by ***."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = args[0].rsplit("/", 1)[-1]
    shown: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            shown.append(MASK)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            shown.append(f"{name}={MASK}" if eq else arg)
            hide_next = not eq
            continue
        shown.append(mask_dsn(arg))
    return " ".join(shown)


@dataclass(frozen=True)
class RunRecord:
    started: datetime
    finished: datetime
    command: str
    label: str  # backfill | load
    worker: str
    done: int
    skipped: int
    failed: int
    rows: int
    seconds: float
    status: str  # ok | failed
    downloaded_bytes: int = 0  # bytes fetched from the source (cached files: none)

    def as_json(self) -> dict[str, Any]:
        return {
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "command": self.command,
            "label": self.label,
            "worker": self.worker,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "downloaded_bytes": self.downloaded_bytes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """The inverse of `as_json` (gcs and bq keep runs as JSON or rows of it)."""
        return cls(
            _moment(data["started"]),
            _moment(data["finished"]),
            str(data.get("command") or ""),
            str(data.get("label") or ""),
            str(data.get("worker") or ""),
            int(data.get("done") or 0),
            int(data.get("skipped") or 0),
            int(data.get("failed") or 0),
            int(data.get("rows") or 0),
            float(data.get("seconds") or 0.0),
            str(data.get("status") or ""),
            int(data.get("downloaded_bytes") or 0),
        )


def _moment(value: Any) -> datetime:
    found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return found if found.tzinfo else found.replace(tzinfo=UTC)
