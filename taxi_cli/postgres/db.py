"""The `db` command: status, start, stop and url of the embedded PostgreSQL."""

from __future__ import annotations

from typing import Any

from taxi_cli.choices import DbAction
from taxi_cli.config import Settings
from taxi_cli.console import Output
from taxi_cli.postgres import embedded


def db(action: DbAction, cfg: Settings, out: Output) -> None:
    """`db status|start|stop|url` for the embedded server at cfg.pg_data_path."""
    path = cfg.pg_data_path
    if action == "start":
        embedded.ensure_running(path)
    elif action == "stop":
        was = embedded.stop(path)
        if not out.json:
            out.stdout.write(("stopped" if was else "not running") + f"  {path}\n")
            out.stdout.flush()
            return
    elif action == "url":
        url = embedded.ensure_running(path)
        if out.json:
            out.emit_json({"url": url})
        else:
            out.stdout.write(url + "\n")
            out.stdout.flush()
        return
    _print_status(embedded.status(path).as_dict(), out)


def _print_status(status: dict[str, Any], out: Output) -> None:
    if out.json:
        out.emit_json(status)
        return
    if status["running"]:
        line = (
            f"running  pid {status['pid']}  PostgreSQL {status['version']}  "
            f"data dir {status['data_dir']}\nurl {status['url']}"
        )
    else:
        version = f"  PostgreSQL {status['version']}" if status["version"] else "  (not created)"
        line = f"stopped{version}  data dir {status['data_dir']}"
    out.stdout.write(line + "\n")
    out.stdout.flush()
