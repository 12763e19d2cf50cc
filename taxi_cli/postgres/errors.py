"""The one translation of psycopg errors into taxi-cli errors (like httpx's map_exceptions).

Every failure the server reports is named for what it is, by its SQLSTATE class, with
the cause and what to do, in one line, secrets masked. Only failures that may pass when
the same work is tried again become `TransientError` (which `backfill` retries): a
serialization failure, a deadlock, a lost connection, a server shutting down. A
statement timeout, a full disk, a missing privilege or a read-only session fail the
same way on every attempt, so they are reported at once and not retried.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from taxi_cli.errors import DataError, TaxiError, TransientError
from taxi_cli.redact import mask_dsn

# SQLSTATEs whose retry may succeed (see the module docstring).
TRANSIENT = {
    "40001": "a serialization failure (a concurrent transaction won)",
    "40P01": "a deadlock with a concurrent transaction",
    "57P01": "the server ended the session (admin shutdown or pg_terminate_backend)",
    "57P02": "the server crashed (crash shutdown)",
    "57P03": "the server is not accepting connections yet",
}


class PrivilegeError(TaxiError):
    """The role lacks a privilege or may not write (exit 1: an admin must act)."""


class ServerError(TaxiError):
    """The server refused or stopped the work for good (timeout, disk full, ...)."""


def _one_line(text: str) -> str:
    return mask_dsn(" ".join(text.split()))


def _primary(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.diag is not None else None
    lines = str(exc).strip().splitlines()
    return _one_line(primary or (lines[0] if lines else type(exc).__name__))


def translate(exc: psycopg.Error, doing: str, where: str = "PostgreSQL") -> TaxiError:
    """The TaxiError for `exc`, raised while `doing` (e.g. "loading x.csv") on `where`."""
    state = exc.sqlstate or ""
    primary = _primary(exc)
    where = mask_dsn(where)
    if state in TRANSIENT:
        return TransientError(
            f"{doing} on {where} failed: {TRANSIENT[state]} ({primary}); "
            "nothing of it was committed: run again"
        )
    if state.startswith("08") or (not state and isinstance(exc, psycopg.OperationalError)):
        return TransientError(
            f"lost the connection to {where} while {doing} ({primary}); "
            "nothing of it was committed: run again"
        )
    if state == "57014":
        if "statement timeout" in primary:
            return ServerError(
                f"{doing} on {where} hit the server's statement_timeout ({primary}); raise it "
                "for this role (ALTER ROLE ... SET statement_timeout = 0) and run again"
            )
        return ServerError(f"{doing} on {where} was cancelled ({primary}); run again")
    if state == "55P03":
        return ServerError(
            f"{doing} on {where} waited too long for a lock ({primary}): another session "
            "holds the table; wait for it or raise lock_timeout"
        )
    if state == "53100":
        return ServerError(
            f"the database server's disk is full while {doing} on {where} ({primary}); "
            "free space on the server, then run again (nothing was committed)"
        )
    if state.startswith("53"):
        return ServerError(
            f"the database server ran out of resources while {doing} on {where} ({primary}); "
            "ask its admin, then run again"
        )
    if state == "25006":
        return PrivilegeError(
            f"{where} refused to write while {doing}: the session is read-only "
            "(default_transaction_read_only is on for this role or database, or the server is "
            "a read-only replica); connect to the primary with a role that may write"
        )
    if state == "42501":
        return PrivilegeError(f"{doing} on {where}: {primary}; " + _privilege_hint(primary))
    if state.startswith(("22", "23")):
        return DataError(f"{doing} on {where} failed: {primary}")
    if state == "3D000":
        return TaxiError(f"{doing}: {primary} on {where}; create it or fix the URL")
    if state == "42P01":
        return TaxiError(
            f"{doing} on {where}: {primary} (dropped meanwhile?); run again to recreate it"
        )
    code = f" (SQLSTATE {state})" if state else ""
    return ServerError(f"{doing} on {where} failed: {primary}{code}")


def _privilege_hint(primary: str) -> str:
    owner = re.search(r"must be owner of (?:table|relation|schema) (\S+)", primary)
    if owner:
        return (
            f"changing {owner.group(1)} needs its owner: load as the role that created it, "
            f"or ALTER TABLE {owner.group(1)} OWNER TO the role"
        )
    found = re.search(r"permission denied for (schema|database|table|relation) (\S+)", primary)
    kind, name = found.groups() if found else ("", "...")
    if kind == "schema":
        return (
            f"the role needs CREATE and USAGE on it: GRANT CREATE, USAGE ON SCHEMA {name} "
            "TO the role, or choose a --schema it owns"
        )
    if kind == "database":
        return f"the role needs CREATE on it: GRANT CREATE ON DATABASE {name} TO the role"
    return (
        f"the role needs privileges on {name}: GRANT SELECT (to read) or SELECT, INSERT, "
        "UPDATE, DELETE (to load; DDL needs the owner) TO the role, or use the role that "
        "created the tables"
    )


@contextmanager
def mapped(doing: str, where: str = "PostgreSQL") -> Iterator[None]:
    """`with mapped("loading x.csv", target):` turns any psycopg error into a TaxiError."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc, doing, where) from exc
