"""`make run`: the whole job on real data, as a user would type it.

    python -m taxi_cli.demo [--months 2020-04,2020-10] [--local-mirror DIR ...]

Runs, each as its own `taxi-cli` process (so what you see is what the commands print):
extract and load-pg of the zone lookup and of green months into the configured
PostgreSQL (the embedded one by default), `transform`, `status`, then prints the top
rows of the revenue mart.

The release host is probed first. When it cannot be reached the demo says so in one
line and exits 3, unless `--local-mirror` names folders holding release files *and*
TAXI_SOURCE_URL was not set: then it serves them on 127.0.0.1 (`taxi_cli.mirror`) and
says loudly that it does. `make run` passes `--local-mirror tests/data/real tests/data`,
so it also works offline and in CI; the data is then the same real release files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx

from taxi_cli import catalog
from taxi_cli.config import Settings, environ, load_settings
from taxi_cli.errors import ExitCode, TaxiError

DEFAULT_MONTHS = "2020-04,2020-10"
PROBE_TIMEOUT = 10.0
TOP_ROWS = 10


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def reachable(source_url: str) -> str | None:
    """None when the release host answers at all (any HTTP status), else the reason."""
    try:
        with httpx.Client(timeout=PROBE_TIMEOUT, follow_redirects=False) as client:
            client.head(catalog.zones_url(source_url))
    except httpx.TransportError as exc:
        return str(exc) or type(exc).__name__
    return None


def commands(taxi: str, months: str) -> list[list[str]]:
    """The taxi-cli command lines of the job, in order."""
    from taxi_cli.cli import app

    steps = [
        ["extract", "zones"],
        ["extract", taxi, months],
        ["load-pg", "zones"],
        ["load-pg", taxi, months],
        ["transform", "--full-refresh"],  # the demo rebuilds the models from scratch
    ]
    if any(c.name == "status" for c in app.registered_commands):
        steps.append(["status"])
    return steps


def run_step(args: list[str], env: dict[str, str]) -> int:
    _say(f"\n$ taxi-cli {' '.join(args)}")
    return subprocess.run(
        [sys.executable, "-m", "taxi_cli", *args], env=env, check=False
    ).returncode


def show_mart(cfg: Settings, taxi: str, *, per_file: bool, limit: int = TOP_ROWS) -> None:
    """The top rows of the revenue mart (and the rows per file: `status` may not exist)."""
    from psycopg import sql
    from rich.console import Console
    from rich.table import Table

    from taxi_cli.postgres.destination import connect

    schema = sql.Identifier(cfg.pg_schema)
    trips = sql.Identifier(f"{catalog.TAXIS[taxi].name}_tripdata")
    with connect(cfg) as conn:
        loaded = conn.execute(
            sql.SQL("SELECT filename, count(*) FROM {}.{} GROUP BY 1 ORDER BY 1").format(
                schema, trips
            )
        ).fetchall()
        cursor = conn.execute(
            sql.SQL(
                "SELECT revenue_zone, revenue_month, service_type,"
                " round(revenue_monthly_total_amount, 2), total_monthly_trips,"
                " round(avg_monthly_trip_distance, 2)"
                " FROM {}.dm_monthly_zone_revenue"
                " ORDER BY revenue_monthly_total_amount DESC, revenue_zone LIMIT {}"
            ).format(schema, sql.Literal(limit))
        )
        rows = cursor.fetchall()
    console = Console()
    if not console.is_terminal:  # piped (CI logs): whole zone names rather than 80 columns
        console = Console(width=120, color_system=None)
    if per_file:
        files = Table(title=f"rows loaded per file ({taxi}_tripdata)", title_justify="left")
        files.add_column("filename")
        files.add_column("rows", justify="right")
        for name, count in loaded:
            files.add_row(str(name), f"{count:,}")
        console.print(files)
    mart = Table(title=f"top {limit} of dm_monthly_zone_revenue", title_justify="left")
    for title in ("zone", "month", "service", "total amount", "trips", "avg distance"):
        mart.add_column(
            title, justify="left" if title in ("zone", "service") else "right", no_wrap=True
        )
    for zone, month, service, total, trips, distance in rows:
        mart.add_row(str(zone), str(month), str(service), f"{total:,}", f"{trips:,}", str(distance))
    console.print(mart)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxi_cli.demo", description=__doc__)
    parser.add_argument("--taxi", default="green", help="taxi type to load (default: green)")
    parser.add_argument("--months", default=DEFAULT_MONTHS, help="months to load")
    parser.add_argument(
        "--local-mirror",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="serve release files from these folders when the release host is unreachable "
        "and TAXI_SOURCE_URL is not set",
    )
    args = parser.parse_args(argv)
    if args.taxi not in catalog.TAXIS:
        parser.error(f"--taxi: {catalog.TAXI_FORMS}")
    try:
        cfg = load_settings()
    except TaxiError as exc:
        _say(f"taxi-cli demo: error: {exc}")
        return int(exc.exit_code)
    env = dict(environ())
    with ExitStack() as stack:
        reason = reachable(cfg.source_url)
        if reason is not None:
            if not args.local_mirror or cfg.source_of("source_url") != "default":
                _say(
                    f"taxi-cli demo: error: the release host {cfg.source_url} is unreachable "
                    f"({reason}); set TAXI_SOURCE_URL to a mirror with the release layout, "
                    "e.g. run `python -m taxi_cli.mirror tests/data` and export the URL it prints"
                )
                return int(ExitCode.CONNECTION)
            from taxi_cli.mirror import Mirror

            mirror = stack.enter_context(Mirror(args.local_mirror))
            env["TAXI_SOURCE_URL"] = mirror.url
            folders = " ".join(str(d) for d in args.local_mirror)
            _say(
                f"NOTE: the release host {cfg.source_url} is unreachable ({reason}); "
                f"serving the release files found in {folders} at {mirror.url} instead"
            )
        steps = commands(args.taxi, args.months)
        for step in steps:
            code = run_step(step, env)
            if code != 0:
                _say(f"taxi-cli demo: `taxi-cli {' '.join(step)}` failed (exit {code})")
                return code
    try:
        show_mart(cfg, args.taxi, per_file=["status"] not in steps)
    except TaxiError as exc:
        _say(f"taxi-cli demo: error: {exc}")
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
