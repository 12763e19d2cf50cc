"""Load one release file into PostgreSQL: atomic, idempotent, one writer per file.

Everything for a file happens in one transaction, under a transaction-level advisory
lock on (schema, file): the rows, the swap that makes them visible, the rejects and the
ledger row. A crash (SIGKILL, lost connection) at any point rolls all of it back, and
readers see either the previous rows of the file or the new ones, never a mix.

Layout (`ddl`): the main table is LIST-partitioned by `filename`. `replace` builds the
file's new partition in the transaction (created there, so `COPY ... FREEZE` writes it
without WAL under wal_level=minimal), then drops the old one and attaches the new one;
its CHECK constraint lets ATTACH skip the validation scan. `merge` is the course's
semantics: COPY into a temporary table, insert the rows whose `unique_row_id` is not in
the main table yet. An existing plain (course-made) table gets delete + insert instead.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from taxi_cli.catalog import TaxiType
from taxi_cli.config import Settings
from taxi_cli.console import Output, add_task
from taxi_cli.errors import DataError, UsageError
from taxi_cli.model import Extracted, LedgerRow, Scanned
from taxi_cli.postgres import ddl, ledger, reconcile, target
from taxi_cli.postgres import errors as pg_errors
from taxi_cli.postgres.csvfile import HINT

if TYPE_CHECKING:  # Polars and numpy load only when a file is really streamed
    from taxi_cli.postgres.rows import Piece, Reject, TripStream

log = logging.getLogger("taxi_cli.postgres")

MODES = ("replace", "merge")
SPLIT_FROM = 8 << 20  # compressed bytes: smaller files gain little from a second COPY
# A table built in its loading transaction is fsynced at commit (wal_level=minimal):
# the kernel, asked to write the COPY's pages back as they are made, has little left
# to write then. For this transaction only; any role may set it.
WRITE_BACK_EARLY = sql.Composed([sql.SQL("SET LOCAL backend_flush_after = '2MB'")])
BAD_ROWS = ("reject", "quarantine")
_COPY_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+): "(.*)")?', re.S)


@dataclass(frozen=True)
class LoadResult:
    taxi: str
    month: str | None
    file: str  # the uncompressed CSV name (the `filename` column)
    rows: int  # rows written by this load (0 when skipped: see `table_rows`)
    mode: str
    skipped: bool  # unchanged since a finished load (ledger hit)
    seconds: float
    sha256: str
    rejected: int = 0
    table_rows: int | None = None  # the file's rows in the table after the load

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_options(mode: str, bad_rows: str) -> None:
    if mode not in MODES:
        raise UsageError(f"--mode must be replace or merge, not {mode!r}")
    if bad_rows not in BAD_ROWS:
        raise UsageError(f"--bad-rows must be reject or quarantine, not {bad_rows!r}")


@contextmanager
def connection(
    conn_or_cfg: psycopg.Connection[Any] | Settings,
) -> Iterator[psycopg.Connection[Any]]:
    """Use the given connection, or open (and close) one for the settings."""
    if isinstance(conn_or_cfg, psycopg.Connection):
        yield conn_or_cfg
        return
    conn = target.connect(conn_or_cfg, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def table_kind(conn: psycopg.Connection[Any], schema: str, name: str) -> str | None:
    """pg_class.relkind of schema.name: 'p' partitioned, 'r' plain, None absent."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else str(row[0])


def bootstrap(conn: psycopg.Connection[Any], schema: str, taxi: TaxiType | None) -> str | None:
    """Create the schema, ledger, rejects and (if absent) the main table; its relkind."""
    with conn.transaction():
        # concurrent CREATE ... IF NOT EXISTS can still collide: serialise the DDL
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ddl.lock_key(schema, "\0ddl"),))
        has_schema = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
        if not has_schema:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(ddl.create_ledger(schema))
        conn.execute(ddl.migrate_ledger(schema))
        conn.execute(ddl.create_rejects(schema))
        if taxi is None:
            return None
        kind = table_kind(conn, schema, ddl.table(taxi))
        if kind is None:
            conn.execute(ddl.create_parent(schema, taxi))
            return "p"
    if kind not in ("p", "r"):
        raise UsageError(
            f"{schema}.{ddl.table(taxi)} exists but is not a table (relkind {kind}); "
            "drop it or choose another --schema"
        )
    if kind == "r":
        _check_plain_columns(conn, schema, taxi)
    return kind


def _check_plain_columns(conn: psycopg.Connection[Any], schema: str, taxi: TaxiType) -> None:
    have = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, ddl.table(taxi)),
        ).fetchall()
    }
    need = {"unique_row_id", "filename", *ddl.data_columns(taxi)}
    if not need <= have:
        missing = ", ".join(sorted(need - have))
        raise UsageError(
            f"{schema}.{ddl.table(taxi)} exists without the columns {missing}; "
            "rename it or load into another --schema"
        )


class _Stopped(Exception):
    """The other COPY stream failed: this one stops too (the other's error is raised)."""


def _put(pieces: queue.Queue[Any], item: object, stop: threading.Event) -> bool:
    """Hand `item` on unless `stop` is set first (the reader has gone)."""
    while not stop.is_set():
        try:
            pieces.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _send(
    conn: psycopg.Connection[Any],
    statement: sql.Composed,
    pieces: queue.Queue[Piece | BaseException | None],
    waiting: Callable[[], None],
) -> int:
    """COPY what `pieces` brings until None; `waiting` runs while nothing comes (and
    raises to stop: an exception here makes psycopg end the COPY with CopyFail)."""
    with conn.cursor() as cur:
        with cur.copy(statement) as copy:
            while True:
                try:
                    item = pieces.get(timeout=0.2)
                except queue.Empty:
                    waiting()
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item:
                    # a view: psycopg sends a big piece in 128 KiB slices, which a view
                    # makes without copying them out of the piece
                    copy.write(memoryview(item))
        return int(cur.rowcount)


def _copy(conn: psycopg.Connection[Any], statement: sql.Composed, stream: TripStream) -> int:
    """Stream the file into COPY: batches are made in a thread while this one sends."""
    pieces: queue.Queue[Piece | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in stream.batches():
                if not _put(pieces, batch, stop):
                    return
            _put(pieces, None, stop)
        except BaseException as exc:  # handed to the sending thread
            _put(pieces, exc, stop)

    worker = threading.Thread(target=produce, name="taxi-cli-rows", daemon=True)
    worker.start()
    try:
        return _send(conn, statement, pieces, lambda: None)
    finally:
        stop.set()
        worker.join(timeout=5)


def _copy_halves(
    conn: psycopg.Connection[Any],
    peer: psycopg.Connection[Any],
    low: sql.Composed,
    high: tuple[sql.Composed, ...],
    stream: TripStream,
) -> int:
    """A `split` stream into two COPYs at once: `low` here, in the load's transaction;
    `high` (its statements, the COPY last) on `peer`, in a transaction of its own that
    commits once its COPY ends. Either side failing stops both; the error raised is the
    first one (a bad row, a server error, a lost connection)."""
    lows: queue.Queue[Piece | BaseException | None] = queue.Queue(maxsize=3)
    highs: queue.Queue[Piece | BaseException | None] = queue.Queue(maxsize=3)
    stop = threading.Event()
    high_rows: list[int] = []
    high_failed: list[BaseException] = []

    def produce() -> None:
        try:
            for a, b in stream.halves():
                if not (_put(lows, a, stop) and _put(highs, b, stop)):
                    return
            _put(lows, None, stop)
            _put(highs, None, stop)
        except BaseException as exc:  # both senders raise it
            _put(lows, exc, stop)
            _put(highs, exc, stop)

    def stopped() -> None:
        if stop.is_set():
            raise _Stopped

    def send_high() -> None:
        try:
            with peer.transaction():
                for statement in high[:-1]:
                    peer.execute(statement)
                high_rows.append(_send(peer, high[-1], highs, stopped))
        except BaseException as exc:
            high_failed.append(exc)
            stop.set()

    def high_gone() -> None:
        if high_failed:
            raise high_failed[0]

    threads = [
        threading.Thread(target=produce, name="taxi-cli-rows", daemon=True),
        threading.Thread(target=send_high, name="taxi-cli-copy", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        rows = _send(conn, low, lows, high_gone)
        while threads[1].is_alive():  # its COPY and commit (join with a timeout: ^C works)
            threads[1].join(0.2)
        high_gone()
        return rows + high_rows[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


@contextmanager
def _second_connection(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any] | None]:
    """Another connection to the same server as `conn`, or None when the server takes no
    more (the file then loads through one)."""
    try:
        peer = psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True)
    except psycopg.OperationalError as exc:
        log.info("one COPY stream: a second connection failed (%s)", str(exc).strip()[:200])
        yield None
        return
    try:
        yield peer
    finally:
        peer.close()


def _copy_error(exc: psycopg.Error, stream: TripStream) -> DataError:
    """A server-side COPY error (values are checked before sending, so rare) as one line."""
    diag = exc.diag
    primary = diag.message_primary or str(exc).splitlines()[0]
    match = _COPY_CONTEXT.search(diag.context or "")
    column = f", column {match.group(2)}" if match and match.group(2) else ""
    return DataError(f"{stream.name}{column}: {primary}; {HINT}")


def _write_rejects(
    conn: psycopg.Connection[Any], schema: str, file: str, rejects: list[Reject]
) -> None:
    table = ddl.ident(schema, ddl.REJECTS)
    conn.execute(sql.SQL("DELETE FROM {} WHERE file = %s").format(table), (file,))
    if rejects:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} (file, line, reason, raw) FROM STDIN").format(table)) as copy,
        ):
            for r in rejects:
                copy.write_row((file, r.line, r.reason, r.raw))


def _replace_partition(
    conn: psycopg.Connection[Any],
    schema: str,
    taxi: TaxiType,
    csv_name: str,
    stream: TripStream,
    peer: psycopg.Connection[Any] | None,
) -> int:
    """Build the file's new partition beside the old one, then swap them. With `peer`
    (a `split` stream) it is built in two halves, one per connection: the upper half is
    committed by `peer` before this transaction attaches it, so a load that dies in
    between leaves it behind, unattached (invisible): the next load drops it."""
    name = ddl.partition_name(taxi, csv_name)
    building = f"{name}__load"
    low, high = f"{building}_lo", f"{building}_hi"
    columns = ["unique_row_id", *ddl.data_columns(taxi)]
    drop_high = sql.SQL("DROP TABLE IF EXISTS {}").format(ddl.ident(schema, high))
    conn.execute(WRITE_BACK_EARLY)
    if peer is None:
        conn.execute(drop_high)
        conn.execute(ddl.create_file_table(schema, building, taxi, csv_name))
        copy = ddl.copy_in(ddl.ident(schema, building), columns, freeze=True)
        rows = _copy(conn, copy, stream)
    else:
        conn.execute(ddl.create_split_file_table(schema, building, taxi, csv_name))
        conn.execute(ddl.create_half(schema, low, taxi, csv_name, upper=False))
        rows = _copy_halves(
            conn,
            peer,
            ddl.copy_in(ddl.ident(schema, low), columns, freeze=True),
            (
                WRITE_BACK_EARLY,
                drop_high,
                ddl.create_half(schema, high, taxi, csv_name, upper=True),
                ddl.copy_in(ddl.ident(schema, high), columns, freeze=True),
            ),
            stream,
        )
        conn.execute(ddl.attach_half(schema, building, low, upper=False))
        conn.execute(ddl.attach_half(schema, building, high, upper=True))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ddl.ident(schema, name)))
    renames = [(building, name)] + ([(low, f"{name}_lo"), (high, f"{name}_hi")] if peer else [])
    for old, new in renames:
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                ddl.ident(schema, old), sql.Identifier(new)
            )
        )
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
            ddl.ident(schema, ddl.table(taxi)), ddl.ident(schema, name), sql.Literal(csv_name)
        )
    )
    return rows


def _via_stage(
    conn: psycopg.Connection[Any],
    schema: str,
    taxi: TaxiType,
    csv_name: str,
    stream: TripStream,
    *,
    mode: str,
    kind: str,
) -> int:
    """merge (any table) and replace into a plain table: a temporary stage, then SQL."""
    stage = "taxi_cli_stage"
    conn.execute(ddl.create_file_table(None, stage, taxi, csv_name, temp=True))
    columns = ["unique_row_id", *ddl.data_columns(taxi)]
    _copy(conn, ddl.copy_in(sql.Identifier(stage), columns, freeze=True), stream)
    main = ddl.ident(schema, ddl.table(taxi))
    if kind == "p":
        name = ddl.partition_name(taxi, csv_name)
        if table_kind(conn, schema, name) is None:
            conn.execute(ddl.create_file_table(schema, name, taxi, csv_name))
            conn.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                    main, ddl.ident(schema, name), sql.Literal(csv_name)
                )
            )
    all_columns = sql.SQL(", ").join(
        map(sql.Identifier, ["unique_row_id", "filename", *ddl.data_columns(taxi)])
    )
    if mode == "replace":
        conn.execute(sql.SQL("DELETE FROM {} WHERE filename = %s").format(main), (csv_name,))
        where: sql.Composable = sql.SQL("")
    else:  # the course's MERGE: insert-only, matched on unique_row_id against the target
        # Merges of different files may share row ids: one merge into a table at a time,
        # and the NOT EXISTS below (a new snapshot, taken after the lock) sees the rows of
        # every merge that committed before, whatever --jobs is. The COPY above ran
        # concurrently; only this INSERT is serialised (until commit).
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (merge_lock_key(schema, taxi),))
        where = sql.SQL(
            " WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.unique_row_id = s.unique_row_id)"
        ).format(main)
    cur = conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} s").format(
            main, all_columns, all_columns, sql.Identifier(stage)
        )
        + where
    )
    return int(cur.rowcount)


def merge_lock_key(schema: str, taxi: TaxiType) -> int:
    """The advisory lock that serialises merges into `{schema}.{taxi}_tripdata`."""
    return ddl.lock_key(schema, "\0merge:" + ddl.table(taxi))


def _ledger_hit(
    conn: psycopg.Connection[Any], schema: str, taxi: TaxiType, file: str, sha256: str, mode: str
) -> LedgerRow | None:
    rows = ledger.read(conn, schema, file)
    if not rows:
        return None
    row = rows[0]
    if row.status != "done" or row.sha256 != sha256 or row.mode != mode:
        return None
    kind = table_kind(conn, schema, ddl.table(taxi))
    if kind is None:  # dropped since: load again
        return None
    if kind == "p" and table_kind(conn, schema, ddl.partition_name(taxi, file)) is None:
        return None
    # truncated since (the partition, or the whole course table): load again
    name = ddl.partition_name(taxi, file) if kind == "p" else ddl.table(taxi)
    if row.rows and not ledger.has_rows(conn, schema, name):
        return None
    return row


def load_file(
    conn_or_cfg: psycopg.Connection[Any] | Settings,
    taxi: TaxiType,
    path: Path,
    csv_name: str,
    sha256: str,
    *,
    month: str | None = None,
    schema: str | None = None,
    mode: str = "replace",
    bad_rows: str = "reject",
    force: bool = False,
    out: Output | None = None,
    worker: str | None = None,
    source: reconcile.Source | None = None,
    settle: Callable[[Scanned | None], Extracted] | None = None,
    streams: str | None = None,
) -> LoadResult:
    """Load one .csv.gz as the rows of `csv_name` in `{schema}.{taxi}_tripdata`.

    `worker` names who loaded it in the ledger (a backfill shard, host and pid);
    `source` what the source counted, to reconcile and check it in the same transaction.
    `settle`: the file is a download this pass verifies (`Extracted.settle`): `sha256`
    is what it must be; its verdict comes before anything commits.
    `streams`: how many connections COPY the file (`Settings.pg_copy_streams`)."""
    check_options(mode, bad_rows)
    if streams is None:
        streams = conn_or_cfg.pg_copy_streams if isinstance(conn_or_cfg, Settings) else "auto"
    if schema is None:
        schema = conn_or_cfg.pg_schema if isinstance(conn_or_cfg, Settings) else "public"
    ddl.check_schema(schema)
    begin = time.perf_counter()
    started = datetime.now(UTC)
    # every other server error (privileges, timeouts, lost connection) is named by the map
    mapped = pg_errors.mapped(f"loading {csv_name}", _where(conn_or_cfg))
    with mapped, connection(conn_or_cfg) as conn:
        kind = bootstrap(conn, schema, taxi)
        assert kind is not None
        # a fast path without the lock (rechecked under it below): unchanged means done
        hit = None if force else _ledger_hit(conn, schema, taxi, csv_name, sha256, mode)
        if hit is not None:
            return _skipped(taxi, month, csv_name, mode, begin, sha256, hit)
        out = out or Output(quiet=True)
        from taxi_cli.postgres.rows import CheckSpec, TripStream, can_split

        two = (
            kind == "p"
            and mode == "replace"
            and can_split()
            and (streams == "2" or (streams == "auto" and path.stat().st_size >= SPLIT_FROM))
        )
        with (
            out.transfer_progress() as progress,
            # None when the server takes one connection only: one stream, as before
            _second_connection(conn) if two else nullcontext() as peer,
        ):
            task = add_task(progress, f"load {csv_name}", float(path.stat().st_size))

            def advance(done: int) -> None:
                if progress is not None and task is not None:
                    progress.update(task, completed=done)

            stream = TripStream(
                path,
                taxi,
                quarantine=bad_rows == "quarantine",
                progress=advance,
                name=path.name.removesuffix(".part"),
                scan=settle is not None,
                checks=None
                if source is None
                else CheckSpec(month, tuple(reconcile.known_zone_ids(conn, schema))),
                split=ddl.SPLIT_AT.encode() if peer else None,
            )
            settled = False
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s)", (ddl.lock_key(schema, csv_name),)
                    )
                    hit = None if force else _ledger_hit(conn, schema, taxi, csv_name, sha256, mode)
                    if hit is not None:
                        return _skipped(taxi, month, csv_name, mode, begin, sha256, hit)
                    if kind == "p" and mode == "replace":
                        rows = _replace_partition(conn, schema, taxi, csv_name, stream, peer)
                    else:
                        rows = _via_stage(
                            conn, schema, taxi, csv_name, stream, mode=mode, kind=kind
                        )
                    if settle is not None:  # the download's verdict, before anything commits
                        settled = True
                        verified = settle(stream.scanned())
                        sha256 = verified.sha256
                        if source is not None:
                            source = replace(
                                source,
                                rows=verified.rows,
                                uncompressed_bytes=verified.uncompressed_bytes,
                            )
                    _write_rejects(conn, schema, csv_name, stream.rejects)
                    table_rows = _file_rows(conn, schema, taxi, csv_name, kind, mode, rows)
                    reconciled = reconcile.finish(
                        csv_name,
                        written=rows,
                        quarantined=len(stream.rejects),
                        source=source,
                        checks=stream.check_counts,
                    )
                    ledger.write(
                        conn,
                        schema,
                        file=csv_name,
                        taxi=taxi.name,
                        month=month,
                        sha256=sha256,
                        rows=table_rows,
                        mode=mode,
                        started=started,
                        status="done",
                        worker=worker,
                        reconciled=reconciled,
                    )
            except psycopg.errors.DataError as exc:
                raise _judged(_copy_error(exc, stream), None if settled else settle) from exc
            except DataError as exc:
                judged = _judged(exc, None if settled else settle)
                if judged is exc:
                    raise
                raise judged from exc
    seconds = time.perf_counter() - begin
    log.info(
        "%s: %d rows (%s) in %.1fs%s",
        csv_name,
        rows,
        mode,
        seconds,
        f", {len(stream.rejects)} rejected" if stream.rejects else "",
    )
    return LoadResult(
        taxi.name,
        month,
        csv_name,
        rows,
        mode,
        False,
        seconds,
        sha256,
        len(stream.rejects),
        table_rows,
    )


def _judged(error: DataError, settle: Callable[[Scanned | None], Extracted] | None) -> DataError:
    """A pass over an unverified download failed: when the download does not verify on
    its own, that is the failure (VerifyError: the job fetches it again); a good file's
    own bad row or value stays the error, and the file is kept."""
    if settle is None:
        return error
    try:
        settle(None)
    except DataError as bad:
        return bad
    return error


def _skipped(
    taxi: TaxiType,
    month: str | None,
    csv_name: str,
    mode: str,
    begin: float,
    sha256: str,
    hit: LedgerRow,
) -> LoadResult:
    log.info("%s is unchanged since its load at %s: skipped", csv_name, hit.finished)
    seconds = time.perf_counter() - begin
    return LoadResult(taxi.name, month, csv_name, 0, mode, True, seconds, sha256, 0, hit.rows)


def _file_rows(
    conn: psycopg.Connection[Any],
    schema: str,
    taxi: TaxiType,
    csv_name: str,
    kind: str,
    mode: str,
    written: int,
) -> int:
    if kind == "p" and mode == "replace":
        return written
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE filename = %s").format(
            ddl.ident(schema, ddl.table(taxi))
        ),
        (csv_name,),
    ).fetchone()
    return int(row[0]) if row else 0


def _where(conn_or_cfg: psycopg.Connection[Any] | Settings) -> str:
    if isinstance(conn_or_cfg, Settings):
        return target.describe_target(conn_or_cfg)
    return "PostgreSQL"
