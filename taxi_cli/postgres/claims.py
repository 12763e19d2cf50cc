"""`backfill --claim`: workers pull the next undone partition from a table in the target.

`{schema}.taxi_cli_claims` has one row per partition (taxi, month). A worker takes one
with `SELECT ... FOR UPDATE SKIP LOCKED` in a transaction of its own connection and keeps
that row lock while it loads, so no other worker can take the same partition; it marks
the row finished and commits when the load is over. A worker that dies mid-partition
drops its connection, the lock goes with it, and the next worker takes the partition
(the load itself rolled back). Uneven months balance: a worker on a small month simply
comes back sooner for the next one.

The claims only decide who loads what now; the ledger stays the truth of what is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from taxi_cli.config import Settings
from taxi_cli.postgres import ddl, target

CLAIMS = "taxi_cli_claims"


def _table(schema: str) -> sql.Composed:
    return ddl.ident(schema, CLAIMS)


class Claim:
    """A partition this worker holds (its row lock) until `finish` or `release`."""

    def __init__(self, key: str, conn: psycopg.Connection[Any], schema: str) -> None:
        self.key = key
        self._conn = conn
        self._schema = schema

    def finish(self, worker: str) -> None:
        try:
            self._conn.execute(
                sql.SQL(
                    "UPDATE {} SET finished = clock_timestamp(), worker = %s WHERE partition = %s"
                ).format(_table(self._schema)),
                (worker, self.key),
            )
            self._conn.commit()
        finally:
            self._conn.close()

    def release(self) -> None:
        """Give it back untouched (this worker is stopping)."""
        try:
            self._conn.rollback()
        finally:
            self._conn.close()


def server_time(cfg: Settings) -> datetime:
    """The target's clock, read before the plan's ledger read (see `Claims`)."""
    with target.connect(cfg, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


class Claims:
    """The claim queue of one run: `take()` the next partition nobody holds or finished."""

    def __init__(self, cfg: Settings, keys: Sequence[str], since: datetime) -> None:
        """`keys`: this worker's runnable partitions, planned from a ledger read after
        `since` (`server_time()`): a claim finished before then was already in that
        ledger, one finished after it is another worker's, so neither is taken again."""
        self.cfg = cfg
        self.schema = ddl.check_schema(cfg.pg_schema)
        self.keys = list(keys)
        with target.connect(cfg, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (partition text PRIMARY KEY, ord bigint, "
                    "finished timestamptz, worker text)"
                ).format(_table(self.schema))
            )
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} (partition, ord) VALUES (%s, %s) "
                        "ON CONFLICT (partition) DO NOTHING"
                    ).format(_table(self.schema)),
                    [(key, i) for i, key in enumerate(self.keys)],
                )
        self.started = since

    def take(self) -> Claim | None:
        """The next partition of this run that no worker holds and none finished since this
        run started, locked for this worker; None when there is none left."""
        conn = target.connect(self.cfg)
        try:
            row = conn.execute(
                sql.SQL(
                    "SELECT partition FROM {} WHERE partition = ANY(%s) "
                    "AND (finished IS NULL OR finished < %s) "
                    "ORDER BY ord FOR UPDATE SKIP LOCKED LIMIT 1"
                ).format(_table(self.schema)),
                (self.keys, self.started),
            ).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is None:
            conn.close()
            return None
        return Claim(str(row[0]), conn, self.schema)
