"""Which PostgreSQL to use, and connecting to it.

Precedence: `--pg-url`, else `$TAXI_PG_URL`, else libpq's PG* variables when PGHOST is
set (an empty conninfo lets libpq read them), else the embedded server.
"""

from __future__ import annotations

import logging
import re

import psycopg

from taxi_cli.config import Settings
from taxi_cli.errors import ConnectError
from taxi_cli.postgres import embedded
from taxi_cli.redact import mask_dsn

CONNECT_TIMEOUT = 10
# psycopg logs the errors it ignores while cleaning up after a failure (a COPY on a lost
# connection); the error it raises is reported once, by postgres.errors, in one line.
logging.getLogger("psycopg").setLevel(logging.ERROR)


def conninfo(cfg: Settings) -> str:
    """The conninfo to connect with (may hold a password: never print it unmasked)."""
    if cfg.pg_url:
        return cfg.pg_url
    if cfg.uses_libpq_env:
        return ""
    return embedded.ensure_running(cfg.pg_data_path)


def describe_target(cfg: Settings) -> str:
    """The target in words, password masked."""
    if cfg.pg_url:
        return mask_dsn(cfg.pg_url)
    if cfg.uses_libpq_env:
        env = cfg.pg_env
        where = env["PGHOST"] + (f":{env['PGPORT']}" if "PGPORT" in env else "")
        db = f", database {env['PGDATABASE']}" if "PGDATABASE" in env else ""
        return f"PostgreSQL at {where} (from PG* variables{db})"
    return f"embedded PostgreSQL at {cfg.pg_data_path} (socket)"


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"^connection failed:\s*", "", text)
    return mask_dsn(text)


# A server that vanishes without a reset (a frozen VM, a dropped route) would leave a
# load blocked in send() or recv() for good: TCP keepalives find a dead peer of an idle
# connection within about a minute, and tcp_user_timeout one that stops taking data
# (5 minutes: a busy server still acknowledges, only a gone one stalls that long). The
# URL's own values win; a unix socket ignores them.
TCP_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "300000",
}


def with_tcp_defaults(info: str) -> str:
    """`info` plus the TCP_DEFAULTS it does not set itself."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(info)
    return make_conninfo(info, **{k: v for k, v in TCP_DEFAULTS.items() if k not in given})


def connect(cfg: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """Connect to the resolved target; ConnectError (exit 3) names it, password masked."""
    info = conninfo(cfg)
    try:
        return psycopg.connect(
            with_tcp_defaults(info), autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT
        )
    except psycopg.OperationalError as exc:
        raise ConnectError(
            f"cannot connect to {describe_target(cfg)}: {_reason(exc)}; "
            "check the URL, that the server runs, and the credentials"
        ) from exc


def server_identity(cfg: Settings) -> str:
    """The target as the server names it, not as the URL spells it: the cluster's
    system identifier, its port, the database and the schema. `localhost` and
    `127.0.0.1`, extra URL parameters or another user for the same database give the
    same identity, so one run lock covers them all."""
    from taxi_cli.postgres.errors import mapped

    try:
        conn = connect(cfg, autocommit=True)
    except ConnectError:
        # a run that cannot connect loads nothing, so the lock it takes need not match
        # the others': the spelling, normalised, names the target well enough for it
        return spelled_identity(cfg)
    doing = mapped("reading the server's identity", describe_target(cfg))
    with doing, conn:
        row = conn.execute("SELECT current_setting('port'), current_database()").fetchone()
        port, database = (row[0], row[1]) if row else ("?", "?")
        try:
            # readable by every role on PostgreSQL >= 10 unless an admin revoked it
            found = conn.execute("SELECT system_identifier FROM pg_control_system()")
            ident = found.fetchone()
            cluster = f"cluster {ident[0]}" if ident else ""
        except psycopg.errors.InsufficientPrivilege:
            # the fallback, readable by every role and as independent of the spelling:
            # when this server (on this port) started
            started = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
            cluster = f"started {started[0] if started else '?'}"
    return f"PostgreSQL {cluster} port {port}, database {database}, schema {cfg.pg_schema}"


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def spelled_identity(cfg: Settings) -> str:
    """The target from its settings, without user, password or extra parameters."""
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, object] = {}
    if cfg.pg_url:
        params = dict(conninfo_to_dict(cfg.pg_url))
    elif cfg.uses_libpq_env:
        params = {"host": cfg.pg_env.get("PGHOST"), "port": cfg.pg_env.get("PGPORT")}
        params["dbname"] = cfg.pg_env.get("PGDATABASE")
    else:
        return f"embedded PostgreSQL at {cfg.pg_data_path}, schema {cfg.pg_schema}"
    host = str(params.get("host") or "localhost").lower()
    host = "localhost" if host in _LOOPBACK else host
    port = str(params.get("port") or "5432")
    dbname = str(params.get("dbname") or params.get("user") or "")
    return f"PostgreSQL at {host}:{port}, database {dbname}, schema {cfg.pg_schema}"
