"""A file COPYed by two connections at once (`TAXI_PG_COPY_STREAMS=2`, the default for
files over 8 MiB): the partition is built in two halves by row id, one per server
backend, and swapped in as one. These check that it holds exactly what one stream
loads, in either layout after the other, and that every way it can fail (a bad row,
the second connection lost, a server that takes one connection, SIGKILL after the upper
half committed) leaves the previous rows and no visible leftover.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest

from taxi_cli.catalog import GREEN, YELLOW
from taxi_cli.errors import DataError
from taxi_cli.postgres import ddl
from taxi_cli.postgres.loader import load_file
from taxi_cli.synthetic import write_month
from tests.faults.db_support import admin, cli, finish, make_role, role_url, start
from tests.fixtures_mirror import Mirror
from tests.pg_helpers import GREEN_10, count, sha256, wait_backends_gone, while_running, write_gz

pytestmark = pytest.mark.integration
admin = admin  # the fixture, re-exported for this module's tests
G10 = "green_tripdata_2020-10.csv"
G10_PART = ddl.partition_name(GREEN, G10)
Y01 = "yellow_tripdata_2021-01.csv"
Y01_PART = ddl.partition_name(YELLOW, Y01)
CONTENT = "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t.unique_row_id)) FROM {} t"


def _content(conn: psycopg.Connection, table: str = "green_tripdata") -> tuple[int, str]:
    row = conn.execute(CONTENT.format(table)).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def _tables(conn: psycopg.Connection, schema: str = "public") -> dict[str, str]:
    """Every table of `schema` that holds trips: name -> relkind."""
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
        "AND c.relname LIKE '%%tripdata%%'",
        (schema,),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _halves(conn: psycopg.Connection, part: str) -> dict[str, tuple[int, int]]:
    """The halves of a split partition: name -> (rows, rows outside the half's range)."""
    out = {}
    for leaf in (f"{part}_lo", f"{part}_hi"):
        below = "unique_row_id COLLATE \"C\" < '8'"
        wrong = f"NOT ({below})" if leaf.endswith("_lo") else below
        out[leaf] = (count(conn, leaf), count(conn, leaf, wrong))
    return out


def test_two_streams_load_exactly_what_one_loads(pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("CREATE SCHEMA one")
    one = load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), schema="one", streams="1")
    notices: list[str] = []
    pg_conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    pg_conn.execute("SET client_min_messages = debug1")
    two = load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
    pg_conn.execute("RESET client_min_messages")
    # no ATTACH scanned a table: the halves' CHECKs prove both of their bounds
    assert not [n for n in notices if n.startswith("verifying table")], notices
    implied = [n for n in notices if "is implied by existing constraints" in n]
    assert len(implied) >= 3, notices  # each half into the file's table, then the file
    assert one.rows == two.rows == two.table_rows == 95_120
    assert _content(pg_conn) == _content(pg_conn, "one.green_tripdata")
    # the layouts: one table for one stream; two halves, each its own range, for two
    assert _tables(pg_conn, "one") == {"green_tripdata": "p", G10_PART: "r"}
    assert _tables(pg_conn) == {
        "green_tripdata": "p",
        G10_PART: "p",
        f"{G10_PART}_lo": "r",
        f"{G10_PART}_hi": "r",
    }
    halves = _halves(pg_conn, G10_PART)
    assert sum(rows for rows, _ in halves.values()) == 95_120
    assert all(wrong == 0 and 0.45 < rows / 95_120 < 0.55 for rows, wrong in halves.values())
    # the file's rows are one partition of the main table (its CHECKs let ATTACH skip
    # the scan): selecting the file through the parent prunes to its two halves
    plan = pg_conn.execute(
        f"EXPLAIN SELECT count(*) FROM green_tripdata WHERE filename = '{G10}'"
    ).fetchall()
    scanned = " ".join(str(r[0]) for r in plan)
    assert f"{G10_PART}_lo" in scanned and f"{G10_PART}_hi" in scanned
    # an unchanged file is a ledger hit in this layout too
    again = load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
    assert again.skipped and again.table_rows == 95_120


def test_reloads_move_between_the_layouts_leaving_one_copy(pg_conn: psycopg.Connection) -> None:
    def load(streams: str) -> None:
        r = load_file(pg_conn, GREEN, GREEN_10, G10, "s", streams=streams, force=True)
        assert r.rows == 95_120

    load("2")
    expected = _content(pg_conn)
    for streams, kind in (("1", "r"), ("2", "p"), ("2", "p"), ("1", "r")):
        load(streams)
        assert _content(pg_conn) == expected
        tables = _tables(pg_conn)
        assert tables[G10_PART] == kind
        halves = {f"{G10_PART}_lo", f"{G10_PART}_hi"}
        assert (halves <= set(tables)) == (kind == "p")
        assert not [t for t in tables if "__load" in t]  # nothing left beside


def test_a_truncated_split_partition_is_loaded_again(pg_conn: psycopg.Connection) -> None:
    load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
    pg_conn.execute(f"TRUNCATE {G10_PART}")
    again = load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
    assert not again.skipped and count(pg_conn, "green_tripdata") == 95_120


def test_merge_into_a_split_partition(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    load_file(pg_conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
    same = load_file(pg_conn, GREEN, GREEN_10, G10, "m", mode="merge")
    assert same.rows == 0 and same.table_rows == 95_120
    # a file with the same name, half of its rows new: those are routed into the halves
    lines = [line.rstrip("\r\n") for line in _lines(GREEN_10)]
    fresh = [lines[0], *lines[1:1001], *(_shifted(line) for line in lines[1001:2001])]
    grown = load_file(
        pg_conn, GREEN, write_gz(tmp_path / "g.csv.gz", fresh), G10, "m2", mode="merge"
    )
    assert grown.rows == 1000 and count(pg_conn, "green_tripdata") == 96_120
    assert all(wrong == 0 for _, wrong in _halves(pg_conn, G10_PART).values())


def _lines(path: Path) -> list[str]:
    import gzip

    with gzip.open(path, "rt", newline="") as f:
        return f.readlines()


def _shifted(line: str) -> str:
    """The same trip a cent dearer: a new unique_row_id."""
    fields = line.split(",")
    fare = GREEN.header.index("fare_amount")
    fields[fare] = f"{float(fields[fare] or 0) + 0.01:.2f}"
    return ",".join(fields)


def test_a_bad_row_stops_both_streams_and_changes_nothing(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    good = tmp_path / "good" / f"{Y01}.gz"
    write_month(good, YELLOW, "2021-01", 40_000, seed=3)
    load_file(pg_conn, YELLOW, good, Y01, sha256(good), streams="2")
    before = _content(pg_conn, "yellow_tripdata")
    lines = _lines(good)
    at = 30_000  # file line 30,001: far past the first pieces of both streams
    fields = lines[at].split(",")
    fields[YELLOW.header.index("fare_amount")] = "twelve"
    lines[at] = ",".join(fields)
    (tmp_path / "bad").mkdir()
    bad = write_gz(tmp_path / "bad" / f"{Y01}.gz", [line.rstrip("\r\n") for line in lines])
    with pytest.raises(DataError, match=rf"{Y01}.gz: line {at + 1}, column fare_amount"):
        load_file(pg_conn, YELLOW, bad, Y01, sha256(bad), streams="2", force=True)
    assert _content(pg_conn, "yellow_tripdata") == before
    # the upper half's own transaction was rolled back too: nothing of it committed
    assert not [t for t in _tables(pg_conn) if "__load" in t]


def test_quarantine_and_odd_blocks_split_like_canonical_ones(
    pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    # quoted fields and bad rows take the Python path, whose rows are dealt out after
    lines = [line.rstrip("\r\n") for line in _lines(GREEN_10)][:20_001]
    for i in range(5, 20_000, 997):
        fields = lines[i].split(",")
        fields[GREEN.header.index("store_and_fwd_flag")] = '"N"'
        lines[i] = ",".join(fields)
    for i in range(11, 20_000, 4001):
        lines[i] = lines[i].replace(",", ";", 3)  # the wrong width: quarantined
    path = write_gz(tmp_path / f"{G10}.gz", lines)
    pg_conn.execute("CREATE SCHEMA one")
    one = load_file(
        pg_conn, GREEN, path, G10, "q", schema="one", streams="1", bad_rows="quarantine"
    )
    two = load_file(pg_conn, GREEN, path, G10, "q", streams="2", bad_rows="quarantine")
    assert one.rejected == two.rejected == 5 and one.rows == two.rows == 19_995
    assert _content(pg_conn) == _content(pg_conn, "one.green_tripdata")
    assert _tables(pg_conn)[G10_PART] == "p"


def test_a_server_with_one_connection_left_loads_through_one(
    admin: psycopg.Connection, pg_url: str
) -> None:
    role = make_role(
        admin,
        f"GRANT CREATE ON DATABASE {admin.info.dbname} TO {{role}}",
        "GRANT CREATE, USAGE ON SCHEMA public TO {role}",
        options="CONNECTION LIMIT 1",
    )
    with psycopg.connect(role_url(pg_url, role), autocommit=True) as conn:
        result = load_file(conn, GREEN, GREEN_10, G10, sha256(GREEN_10), streams="2")
        assert result.rows == 95_120 == count(conn, "green_tripdata")
        assert _tables(conn)[G10_PART] == "r"


def test_the_second_connection_lost_is_retried_and_loads_once(
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    env = {"TAXI_PG_COPY_STREAMS": "2", "TAXI_DATA_DIR": str(tmp_path / "d")}
    mirror.add_month("green", "2020-01", rows=500, seed=1)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q", env=env).code == 0
    mirror.add_month("green", "2020-01", rows=100_000, seed=2)
    assert cli("extract", "green", "2020-01", "-q", "--force", env=env).code == 0
    # a leftover upper half that somebody reads: the second connection waits to drop it,
    # while the first COPYs, until the test ends it
    orphan = ddl.partition_name(GREEN, "green_tripdata_2020-01.csv") + "__load_hi"
    pg_conn.execute(f"CREATE TABLE {orphan} (x int)")
    with psycopg.connect(pg_url) as reader:
        reader.execute(f"SELECT count(*) FROM {orphan}").fetchone()
        proc = start("load-pg", "green", "2020-01", "--pg-url", pg_url, env=env)

        def waiting_peer() -> int | None:
            row = pg_conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'DROP TABLE IF EXISTS%'"
            ).fetchone()
            return int(row[0]) if row else None

        peer = while_running(proc, waiting_peer, "the second connection waiting")
        pg_conn.execute("SELECT pg_terminate_backend(%s)", (peer,))
        # the load fails as a whole, rolled back, and is tried again (a lost connection
        # is transient); the reader lets the second try through
        while_running(
            proc, lambda: count(pg_conn, "green_tripdata") == 500 and waiting_peer(), "a retry"
        )
        reader.rollback()
    run = finish(proc)
    assert run.code == 0, run.err
    assert "terminating connection" in run.err and "retrying" in run.err
    assert count(pg_conn, "green_tripdata") == 100_000
    assert not [t for t in _tables(pg_conn) if "__load" in t]
    assert pg_conn.execute("SELECT to_regclass(%s)", (orphan,)).fetchone() == (None,)


def test_sigkill_after_the_upper_half_committed_leaves_it_unseen_then_gone(
    mirror: Mirror, pg_url: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    """The upper half commits on its own, before the load: killed in between, the load
    leaves it behind, attached to nothing. Readers never see it; the next load drops it."""
    env = {"TAXI_PG_COPY_STREAMS": "2", "TAXI_DATA_DIR": str(tmp_path / "d")}
    mirror.add_month("green", "2020-01", rows=5_000, seed=1)
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q", env=env).code == 0
    before = _content(pg_conn)
    mirror.add_month("green", "2020-01", rows=60_000, seed=2)
    assert cli("extract", "green", "2020-01", "-q", "--force", env=env).code == 0
    part = ddl.partition_name(GREEN, "green_tripdata_2020-01.csv")
    with psycopg.connect(pg_url) as reader:  # holds the table: the swap has to wait
        reader.execute("SELECT count(*) FROM green_tripdata").fetchone()
        proc = start("load-pg", "green", "2020-01", "--pg-url", pg_url, env=env)

        def committed_and_waiting() -> bool:
            half = pg_conn.execute("SELECT to_regclass(%s)", (f"{part}__load_hi",)).fetchone()
            waits = pg_conn.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
            ).fetchone()
            return bool(half and half[0]) and waits is not None and waits[0] > 0

        while_running(proc, committed_and_waiting, "the upper half committed, the swap waiting")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        reader.rollback()
    wait_backends_gone(pg_conn)
    assert _content(pg_conn) == before
    left = pg_conn.execute(
        "SELECT c.relname, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) "
        "FROM pg_class c WHERE c.relname LIKE '%\\_\\_load%'"
    ).fetchall()
    assert left == [(f"{part}__load_hi", False)]  # committed, but part of nothing
    assert cli("load-pg", "green", "2020-01", "--pg-url", pg_url, "-q", env=env).code == 0
    assert count(pg_conn, "green_tripdata") == 60_000
    assert not [t for t in _tables(pg_conn) if "__load" in t]
