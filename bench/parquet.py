"""`make bench`: taxi-cli's csv.gz -> Parquet conversion against Polars and DuckDB.

On a synthetic yellow month (gzip level 6, like the release) of 1,000,000 rows (and
7,000,000 with --large), each variant converts the same .csv.gz to a snappy Parquet with
the same typed columns, in its own subprocess (which reports its wall time around the
conversion only, imports excluded, and its peak RSS from resource.getrusage); rounds are
interleaved (the order rotates) so that noise from other processes hits every variant
alike; medians are printed as ratios against Polars, next to the targets of issue 14:

  taxi    taxi_cli.parquet.to_parquet of the file as `extract` hands it over (verified,
          its sha256 known): also computes unique_row_id (md5 of the values rendered as
          PostgreSQL renders them), filename and file_month, and checks values.
  polars  pl.scan_csv(..., schema=same types).sink_parquet(..., compression="snappy")
  duckdb  COPY (SELECT * FROM read_csv(..., columns=same types)) TO ... (snappy)

Targets: taxi/polars <= 1.00 at 7M rows; taxi's peak RSS <= 300 MiB, flat from 1M to 7M.
Files live in bench/.work/parquet/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from taxi_cli.catalog import YELLOW, Kind

if TYPE_CHECKING:
    from taxi_cli.model import Extracted

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work" / "parquet"
MONTH = "2021-01"
VARIANTS = ("taxi", "polars", "duckdb")
TARGET_RATIO = 1.0  # taxi / polars, at 7M rows
TARGET_RSS_MIB = 300.0

_DUCK_TYPES = {
    Kind.ID: "BIGINT",
    Kind.COUNT: "BIGINT",
    Kind.TIMESTAMP: "TIMESTAMP",
    Kind.MONEY: "DOUBLE",
    Kind.FLAG: "VARCHAR",
    Kind.TEXT: "VARCHAR",
}


def data_file(rows: int, seed: int) -> Path:
    """The synthetic month of `rows` rows, generated once per (rows, seed)."""
    path = WORK / f"{rows}" / YELLOW.file_name(MONTH)
    stamp = path.with_name(path.name + ".rows")
    if path.is_file() and stamp.is_file() and stamp.read_text() == f"{rows} {seed} 6":
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} synthetic yellow rows (gzip -6) -> {path}", flush=True)
    # in a child: this process stays small, and its children inherit its peak RSS
    generate = ["-m", "taxi_cli.synthetic", "yellow", MONTH, str(rows), str(path)]
    subprocess.run([sys.executable, *generate, "--seed", str(seed), "--level", "6"], check=True)
    stamp.write_text(f"{rows} {seed} 6")
    return path


# ---- one variant, in a child process ---------------------------------------------------


def _polars(src: Path, out: Path) -> None:
    import polars as pl

    from taxi_cli.parquet import output_schema

    schema = {c.name: output_schema(YELLOW)[c.name] for c in YELLOW.columns}
    pl.scan_csv(src, schema=schema).sink_parquet(out, compression="snappy")


def _duckdb(src: Path, out: Path) -> None:
    import duckdb

    columns = ", ".join(f"'{c.name}': '{_DUCK_TYPES[c.kind]}'" for c in YELLOW.columns)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{src}', header = true, columns = {{{columns}}}, "
        f"timestampformat = '%Y-%m-%d %H:%M:%S')) TO '{out}' "
        "(FORMAT parquet, COMPRESSION snappy)"
    )
    con.close()


def _extracted(src: Path) -> Extracted:
    """The file as `extract` hands it over: verified, with its sha256 (from the sidecar)."""
    from taxi_cli.model import Extracted
    from taxi_cli.parquet import file_sha256

    size = src.stat().st_size
    return Extracted("yellow", MONTH, src, 0, size, 0, file_sha256(src), cached=True)


def _taxi(src: Extracted, out: Path) -> None:
    from taxi_cli.parquet import parquet_path_for, to_parquet

    made = to_parquet(src, YELLOW, force=True)
    assert made == parquet_path_for(src.path)
    os.replace(made, out)


def one(variant: str, src: Path, out: Path) -> dict[str, float]:
    """Run one conversion here; its wall seconds (imports excluded), CPU and peak RSS
    (a fresh process: the parent stays small, since a child inherits its peak)."""
    run: Callable[[], None]
    if variant == "taxi":  # `extract --format parquet`: the verified file to Parquet
        source = _extracted(src)
        run = partial(_taxi, source, out)
    elif variant == "polars":
        import polars  # noqa: F401  (imports are outside the timing, for all)

        run = partial(_polars, src, out)
    else:
        import duckdb  # noqa: F401

        run = partial(_duckdb, src, out)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "rows": float(_rows(out)),  # after the measurement
    }


def _child(variant: str, src: Path) -> dict[str, float]:
    out = WORK / f"out-{variant}.parquet"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.parquet", "--one", variant, str(src), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


def _rows(path: Path) -> int:
    import polars as pl

    return int(pl.scan_parquet(path).select(pl.len()).collect().item())


# ---- the rounds -------------------------------------------------------------------------


def _size(rows: int, rounds: int, seed: int) -> dict[str, dict[str, float]]:
    src = data_file(rows, seed)
    print(f"\n{rows:,} rows: {src.stat().st_size / 2**20:.1f} MiB gz; {rounds} rounds", flush=True)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            got = _child(variant, src)
            if int(got["rows"]) != rows:
                raise SystemExit(f"{variant} wrote {int(got['rows']):,} rows, not {rows:,}")
            runs[variant].append(got)
            print(
                f"  round {r + 1} {variant:7s} {got['seconds']:6.2f} s  "
                f"cpu {got['cpu']:6.2f} s  rss {got['rss_mib']:5.0f} MiB",
                flush=True,
            )
    return {
        v: {k: statistics.median(x[k] for x in got) for k in ("seconds", "cpu", "rss_mib")}
        for v, got in runs.items()
    }


def _report(rows: int, med: dict[str, dict[str, float]]) -> None:
    polars = med["polars"]["seconds"]
    print(f"medians at {rows:,} rows (wall seconds, ratio to Polars, peak RSS):")
    for v in VARIANTS:
        m = med[v]
        print(
            f"  {v:7s} {m['seconds']:6.2f} s  {m['seconds'] / polars:5.2f}x polars  "
            f"cpu {m['cpu']:6.2f} s  rss {m['rss_mib']:5.0f} MiB"
        )
    ratio = med["taxi"]["seconds"] / polars
    verdict = "ok" if ratio <= TARGET_RATIO else "MISS"
    scope = "" if rows >= 7_000_000 else " (the target is set at 7M rows)"
    print(f"  taxi/polars = {ratio:.2f}  (target <= {TARGET_RATIO:.2f}){scope}  {verdict}")
    rss = med["taxi"]["rss_mib"]
    verdict = "ok" if rss <= TARGET_RSS_MIB else "MISS"
    print(f"  taxi peak RSS = {rss:.0f} MiB  (target <= {TARGET_RSS_MIB:.0f})  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large", action="store_true", help="also 7,000,000 rows")
    parser.add_argument("--large-rows", type=int, default=7_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", nargs=3, metavar=("VARIANT", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, src, out = args.one
        print(json.dumps(one(variant, Path(src), Path(out))))
        return
    print(f"csv.gz -> Parquet (snappy): {', '.join(VARIANTS)}; {os.cpu_count()} CPUs")
    sizes = [args.rows, args.large_rows] if args.large else [args.rows]
    medians = {}
    for rows in sizes:
        medians[rows] = _size(rows, args.rounds, args.seed)
    for rows in sizes:
        print()
        _report(rows, medians[rows])
    if len(sizes) > 1:
        small, large = (medians[s]["taxi"]["rss_mib"] for s in sizes)
        print(f"\ntaxi peak RSS {small:.0f} MiB at {sizes[0]:,} -> {large:.0f} MiB at {sizes[1]:,}")
    load = os.getloadavg()
    print(f"(load average at the end: {load[0]:.1f})")


if __name__ == "__main__":
    main()
