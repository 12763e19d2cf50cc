"""A local SQLite ledger: which partitions are loaded, from what.

Not the truth for any destination any more: gcs and bq keep their state in the cloud
(object metadata, the `taxi_cli_loads` table; `taxi_cli.gcp.destinations`). The gcs
destination keeps only its failed attempts here, for display (`status`, plan reasons).

A partition is one (target, taxi, month). The ledger keeps its latest state: `done` with
the source file's sha256 and row count once its data is committed in the target, or
`failed` with the error of the last attempt. (For the pg target the ledger of record is
the `taxi_cli_loads` table in the database itself, written in the data's transaction.)

The file is SQLite at `{state_dir}/ledger.sqlite3`: WAL mode so that `status` can read
while a backfill writes, a busy timeout so that concurrent writers wait rather than fail,
and a `schema_version` table with forward-only migrations. Every call opens its own
short connection, so worker threads and processes never share one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError
from taxi_cli.model import LedgerRow

__all__ = ["LedgerRow", "StateLedger"]

LEDGER_FILE = "ledger.sqlite3"
BUSY_TIMEOUT_MS = 30_000
STATUSES = ("done", "failed")

# Forward-only: append a migration, never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE partitions (
        target   TEXT NOT NULL,
        taxi     TEXT NOT NULL,
        month    TEXT NOT NULL,
        file     TEXT NOT NULL,
        sha256   TEXT,
        rows     INTEGER,
        status   TEXT NOT NULL CHECK (status IN ('done', 'failed')),
        error    TEXT,
        started  TEXT,
        finished TEXT NOT NULL,
        detail   TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (target, taxi, month)
    );
    """,
)


def now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="microseconds") if moment else None


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class StateLedger:
    """The SQLite ledger under the state dir (created on first use)."""

    def __init__(self, cfg: Settings, *, path: Path | None = None) -> None:
        self.path = path or cfg.state_path / LEDGER_FILE
        self._ready = False

    # ---- connection and migrations -------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the ledger {self.path}: {exc}; check TAXI_STATE_DIR"
            ) from exc
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a recorded `done` survives a power cut
        return conn

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        with closing(self._connect()) as conn:
            if not self._ready:
                self._migrate(conn)
                self._ready = True
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; BEGIN IMMEDIATE takes the write lock up front."""
        with self._open() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise ConfigError(
                    f"the ledger {self.path} has schema version {current}, newer than this "
                    f"taxi-cli knows ({len(MIGRATIONS)}); upgrade taxi-cli"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def schema_version(self) -> int:
        with self._open() as conn:
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    # ---- writes ----------------------------------------------------------------------

    def record_done(
        self,
        target: str,
        taxi: str,
        month: str,
        file: str,
        sha256: str,
        rows: int,
        detail: dict[str, Any] | None = None,
        *,
        started: datetime | None = None,
    ) -> None:
        """Record that the partition's data from `file` (`sha256`) is committed in `target`."""
        with self._write() as conn:
            conn.execute(
                """
                INSERT INTO partitions
                    (target, taxi, month, file, sha256, rows, status, error, started,
                     finished, detail)
                VALUES (?, ?, ?, ?, ?, ?, 'done', NULL, ?, ?, ?)
                ON CONFLICT (target, taxi, month) DO UPDATE SET
                    file = excluded.file, sha256 = excluded.sha256, rows = excluded.rows,
                    status = 'done', error = NULL, started = excluded.started,
                    finished = excluded.finished, detail = excluded.detail
                """,
                (
                    target,
                    taxi,
                    month,
                    file,
                    sha256,
                    rows,
                    _text(started),
                    _text(now()),
                    json.dumps(detail or {}, sort_keys=True, default=str),
                ),
            )

    def record_failed(
        self,
        target: str,
        taxi: str,
        month: str,
        file: str,
        error: str,
        *,
        started: datetime | None = None,
    ) -> None:
        """Record a failed attempt; data committed by an earlier success stays described."""
        with self._write() as conn:
            conn.execute(
                """
                INSERT INTO partitions
                    (target, taxi, month, file, sha256, rows, status, error, started, finished)
                VALUES (?, ?, ?, ?, NULL, NULL, 'failed', ?, ?, ?)
                ON CONFLICT (target, taxi, month) DO UPDATE SET
                    status = 'failed', error = excluded.error, started = excluded.started,
                    finished = excluded.finished
                """,
                (target, taxi, month, file, error, _text(started), _text(now())),
            )

    def forget(self, target: str, taxi: str, month: str) -> None:
        """Drop a partition's entry (its data was removed from the target)."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM partitions WHERE target = ? AND taxi = ? AND month = ?",
                (target, taxi, month),
            )

    # ---- reads -----------------------------------------------------------------------

    def rows(self, target: str, *, read_only: bool = False) -> list[LedgerRow]:
        """Every partition recorded for `target`, by taxi and month; `read_only` never
        creates the ledger (no file yet: nothing was recorded)."""
        if read_only and not self.path.is_file():
            return []
        with self._open() as conn:
            cursor = conn.execute(
                """
                SELECT target, taxi, month, file, sha256, rows, status, error, started,
                       finished, detail
                FROM partitions WHERE target = ? ORDER BY taxi, month
                """,
                (target,),
            )
            return [_row(record) for record in cursor.fetchall()]

    def get(self, target: str, taxi: str, month: str) -> LedgerRow | None:
        with self._open() as conn:
            record = conn.execute(
                """
                SELECT target, taxi, month, file, sha256, rows, status, error, started,
                       finished, detail
                FROM partitions WHERE target = ? AND taxi = ? AND month = ?
                """,
                (target, taxi, month),
            ).fetchone()
        return _row(record) if record else None


def _row(record: tuple[Any, ...]) -> LedgerRow:
    target, taxi, month, file, sha256, rows, status, error, started, finished, detail = record
    return LedgerRow(
        file=file,
        taxi=taxi,
        month=month,
        sha256=sha256,
        rows=rows,
        status=status,
        error=error,
        started=_moment(started),
        finished=_moment(finished),
        detail=json.loads(detail or "{}"),
        target=target,
    )
