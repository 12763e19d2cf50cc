"""The `load-pg` and `db` commands: plan, run, report (the CLI stays a thin layer)."""

from __future__ import annotations

import logging
from typing import Any

from taxi_cli.config import Settings
from taxi_cli.console import Output
from taxi_cli.errors import UsageError
from taxi_cli.postgres import ddl, embedded
from taxi_cli.postgres.loader import LoadResult, check_options

log = logging.getLogger("taxi_cli.postgres")


def run(
    cfg: Settings,
    taxis: str,
    months: str | None,
    *,
    mode: str,
    bad_rows: str,
    force: bool,
    out: Output,
) -> list[LoadResult]:
    """Extract (a verified cached file is reused) and load each month, or the zones."""
    from taxi_cli import extract
    from taxi_cli.postgres import connect, describe_target, load_month, load_zones

    check_options(mode, bad_rows)
    ddl.check_schema(cfg.pg_schema)
    connect(cfg).close()  # fail fast (exit 3) before downloading anything
    if taxis.strip().lower() == "zones":
        if months:
            raise UsageError("`load-pg zones` takes no months")
        log.info("loading the zone lookup into %s", describe_target(cfg))
        return [load_zones(cfg, extract.ensure_zones(cfg, out=out), force=force)]
    pairs = extract.plan(taxis, months)
    log.info("loading %d file(s) into %s", len(pairs), describe_target(cfg))
    results = []
    for taxi, month in pairs:
        extracted = extract.ensure_file(cfg, taxi, month, out=out)
        results.append(
            load_month(
                cfg, taxi, month, extracted, mode=mode, bad_rows=bad_rows, force=force, out=out
            )
        )
    return results


def report(results: list[LoadResult], cfg: Settings, out: Output) -> None:
    """One line per file on stdout (or JSON with --json)."""
    if out.json:
        out.emit_json([{**r.as_dict(), "schema": cfg.pg_schema} for r in results])
        return
    for r in results:
        table = (
            f"{cfg.pg_schema}.{'taxi_zone_lookup' if r.taxi == 'zones' else r.taxi + '_tripdata'}"
        )
        if r.skipped:
            what = f"unchanged, skipped ({r.table_rows or 0:,} rows in {table}; --force reloads)"
        else:
            what = f"{r.rows:,} rows ({r.mode}) into {table} in {r.seconds:.1f}s"
            if r.rejected:
                what += f", {r.rejected:,} rejected rows in {cfg.pg_schema}.{ddl.REJECTS}"
        out.stdout.write(f"{r.file}  {what}\n")
    out.stdout.flush()


def db(action: str, cfg: Settings, out: Output) -> None:
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
    elif action != "status":
        raise UsageError(f"unknown db action {action!r}; use status, start, stop or url")
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
