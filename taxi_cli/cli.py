"""The Typer layer: parse arguments, resolve settings, call one library function, print.

Nothing here knows SQL, HTTP or Polars. Every command is wrapped by `reports_errors`,
the one error boundary: a `TaxiError` becomes `taxi-cli: error: <message>` on stderr and
the error's exit code (see `taxi_cli.errors.ExitCode`).
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from taxi_cli import console
from taxi_cli.catalog import Partition
from taxi_cli.choices import (
    BadRows,
    Checks,
    DbAction,
    ExtractFormat,
    LakeFormat,
    LogFormat,
    Mode,
    ReportFormat,
    Reprocess,
    ScheduleKind,
    StatusTarget,
    TargetName,
    TransformTarget,
)
from taxi_cli.config import Settings, load_settings
from taxi_cli.console import Output, error_line, setup_logging
from taxi_cli.destinations import Destination
from taxi_cli.destinations import Options as DestinationOptions
from taxi_cli.errors import ExitCode, TaxiError, UsageError
from taxi_cli.redact import mask_dsn

EPILOG = (
    "Exit codes: 0 ok, 1 runtime or data error, 2 usage or configuration error, "
    "3 cannot connect, 4 some partitions failed, 130 interrupted."
)

app = typer.Typer(
    name="taxi-cli",
    help="Extract, load, backfill and transform the NYC TLC trip records.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # rich tracebacks print locals, DSNs included
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    rich_markup_mode=None,  # help texts show [env VAR] literally, not as rich markup
)

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The error boundary: TaxiError -> one stderr line + its exit code; ^C -> 130."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        console.reset()  # a fresh stderr console and text errors until output() says json
        if kwargs.get("log_format") == LogFormat.JSON:
            setup_logging(fmt="json")  # a usage error found before output() is JSON too
        try:
            return func(*args, **kwargs)
        except TaxiError as exc:
            console.error_line(mask_dsn(str(exc)), int(exc.exit_code))
            raise typer.Exit(int(exc.exit_code)) from exc
        except KeyboardInterrupt as exc:
            console.error_line("interrupted", int(ExitCode.INTERRUPTED), label="")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from exc
        except OSError as exc:  # last resort: library code names its own paths first
            from taxi_cli.oserrors import describe

            console.error_line(mask_dsn(describe(exc)), int(ExitCode.RUNTIME))
            raise typer.Exit(int(ExitCode.RUNTIME)) from exc

    wrapper.error_boundary = True  # type: ignore[attr-defined]  # checked by the tests
    return wrapper


# ---- shared options ----------------------------------------------------------------------

TaxisArg = Annotated[
    str,
    typer.Argument(
        metavar="TAXIS",
        help="Taxi types: green, yellow,green, all (or `zones`: the zone lookup).",
        show_default=False,
    ),
]
BackfillTaxisArg = Annotated[
    str,
    typer.Argument(
        metavar="TAXIS", help="Taxi types: green, yellow,green or all.", show_default=False
    ),
]
MonthsArg = Annotated[
    str | None,
    typer.Argument(
        metavar="MONTHS",
        help="Months: 2020-04, 2020-01..2020-06, 2020, 2019..2021, or a comma list.",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final result.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo work even when it is up to date.")]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir", metavar="DIR", help="Download dir [env TAXI_DATA_DIR; default: user cache]"
    ),
]
SourceUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--source-url", metavar="URL", help="Release host or mirror [env TAXI_SOURCE_URL]"
    ),
]
ManifestOpt = Annotated[
    str | None,
    typer.Option(
        "--manifest",
        metavar="FILE",
        help="Release manifest CSV to verify against, or `none` [env TAXI_MANIFEST]",
    ),
]
PgUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--pg-url",
        metavar="URL",
        help="PostgreSQL URL [env TAXI_PG_URL; else PG*; else embedded]",
    ),
]
SchemaOpt = Annotated[
    str | None,
    typer.Option("--schema", metavar="NAME", help="Target schema [env TAXI_PG_SCHEMA]"),
]
PgDataOpt = Annotated[
    str | None,
    typer.Option("--pg-data", metavar="DIR", help="Embedded server data dir [env TAXI_PG_DATA]"),
]
LogFormatOpt = Annotated[
    LogFormat, typer.Option("--log-format", help="Log lines on stderr: text or json.")
]
BucketOpt = Annotated[
    str | None, typer.Option("--bucket", metavar="NAME", help="GCS bucket [env TAXI_GCS_BUCKET]")
]
PrefixOpt = Annotated[
    str | None,
    typer.Option("--prefix", metavar="PREFIX", help="Object name prefix [env TAXI_GCS_PREFIX]"),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", metavar="ID", help="GCP project [env TAXI_GCP_PROJECT]"),
]
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", metavar="NAME", help="BigQuery dataset [env TAXI_BQ_DATASET]"),
]
LocationOpt = Annotated[
    str | None,
    typer.Option("--location", metavar="LOC", help="Dataset location [env TAXI_BQ_LOCATION]"),
]
LakeFormatOpt = Annotated[
    LakeFormat,
    typer.Option("--format", help="Object format: parquet (typed) or csv.gz (as released)."),
]
CreateBucketOpt = Annotated[
    bool, typer.Option("--create-bucket", help="Create the bucket if it does not exist.")
]
CreateDatasetOpt = Annotated[
    bool, typer.Option("--create-dataset", help="Create the dataset if it does not exist.")
]
MigrateOpt = Annotated[
    bool,
    typer.Option(
        "--migrate",
        help="bq: keep a trip table of the old layout as TABLE_old_layout_TIME and create "
        "the file_month layout (the months are then loaded again).",
    ),
]
ModeOpt = Annotated[
    Mode,
    typer.Option(
        "--mode",
        help="replace: the file's rows are swapped as one unit; "
        "merge: the course's insert-only MERGE on unique_row_id (pg only).",
    ),
]
BadRowsOpt = Annotated[
    BadRows,
    typer.Option(
        "--bad-rows",
        help="reject: a bad row fails the file, nothing lands; "
        "quarantine: bad rows go to taxi_cli_rejects, the rest loads.",
    ),
]
JobsOpt = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", min=1, max=64, metavar="N", help="Parallel workers (partitions at once)."
    ),
]
FailFastOpt = Annotated[
    bool, typer.Option("--fail-fast", help="Stop after the first failed partition.")
]
ChecksOpt = Annotated[
    Checks | None,
    typer.Option(
        "--checks",
        help="A breached data check: warn (load, record it) or fail (the partition fails) "
        "[env TAXI_CHECKS; default: warn]",
        show_default=False,
    ),
]


class _Globals:
    config_file: str | None = None
    profile: str | None = None


def settings(**flags: Any) -> Settings:
    """Resolve settings with this command's flags on top (None = flag not given)."""
    return load_settings(flags, config_file=_Globals.config_file, profile=_Globals.profile)


def read_target(
    target: StatusTarget,
    *,
    pg_url: str | None,
    schema: str | None,
    pg_data: str | None,
    bucket: str | None = None,
    prefix: str | None = None,
    project: str | None = None,
    dataset: str | None = None,
    **more: Any,
) -> tuple[Settings, Destination]:
    """The settings and the one destination a read-only command (status, check, runs,
    report) reads; reading never creates a server, a bucket or a dataset."""
    from taxi_cli import destinations

    cfg = settings(
        pg_url=pg_url,
        pg_schema=schema,
        pg_data=pg_data,
        gcs_bucket=bucket,
        gcs_prefix=prefix,
        gcp_project=project,
        bq_dataset=dataset,
        **more,
    )
    (made,) = destinations.make(cfg, TargetName(str(target)), reading=True)
    return cfg, made


def output(
    quiet: bool = False,
    json_out: bool = False,
    verbose: bool = False,
    log_format: LogFormat = LogFormat.TEXT,
) -> Output:
    """Set up logging and the result channels for one command."""
    setup_logging(quiet=quiet, verbose=verbose, fmt=str(log_format))
    return Output(quiet=quiet, json=json_out, log_json=log_format == LogFormat.JSON)


def _version(value: bool) -> None:
    if value:
        from taxi_cli import versions

        typer.echo(versions.report(), nl=False)
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        str | None, typer.Option("--config", help="TOML config file [env TAXI_CONFIG]")
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Config file profile [env TAXI_PROFILE]")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and those of Python, Polars, psycopg, dbt, PostgreSQL.",
        ),
    ] = False,
) -> None:
    """Extract, load, backfill and transform the NYC TLC trip records."""
    _Globals.config_file = config
    _Globals.profile = profile


# ---- commands ----------------------------------------------------------------------------


def _partitions(taxis: str, months: str | None, command: str) -> list[Partition] | None:
    """The partitions of TAXIS MONTHS, parsed before anything runs; None for `zones`."""
    from taxi_cli.catalog import is_zones, select

    if is_zones(taxis):
        if months:
            raise UsageError(f"`{command} zones` takes no months")
        return None
    return select(taxis, months)


@app.command("extract")
@reports_errors
def extract_cmd(
    taxis: TaxisArg,
    months: MonthsArg = None,
    data_dir: DataDirOpt = None,
    source_url: SourceUrlOpt = None,
    fmt: Annotated[
        ExtractFormat,
        typer.Option("--format", help="csv, or parquet (also writes typed Parquet)."),
    ] = ExtractFormat.CSV,
    force: ForceOpt = False,
    manifest: ManifestOpt = None,
    fail_fast: FailFastOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Download and verify monthly files (or `extract zones`) into the data dir.

    A verified file is kept and not downloaded again (unless --force); an interrupted
    download resumes; a file that fails verification twice fails, keeping nothing. Every
    file is reported, done or failed; exit 4 when some of several failed.
    """
    from taxi_cli import load

    partitions = _partitions(taxis, months, "extract")
    out = output(quiet, json_out, verbose, log_format)
    cfg = settings(data_dir=data_dir, source_url=source_url, manifest=manifest)
    if partitions is None:
        load.extract_zones(cfg, out, force=force)
        return
    parquet = fmt is ExtractFormat.PARQUET
    load.extract_files(cfg, partitions, out, parquet=parquet, force=force, fail_fast=fail_fast)


def _load(
    cfg: Settings,
    target: TargetName,
    partitions: list[Partition] | None,
    options: DestinationOptions,
    out: Output,
    *,
    force: bool,
    jobs: int,
    fail_fast: bool,
    label: str,
) -> None:
    """The body of every load command: destinations, then the shared partition loop."""
    from taxi_cli import destinations, load

    made = destinations.make(cfg, target, options, out)
    if partitions is None:
        load.load_zones(cfg, made, out, force=force)
        return
    reprocess = Reprocess.COMPLETED if force else Reprocess.FAILED
    opts = load.RunOptions(jobs=jobs, fail_fast=fail_fast, label=label)
    load.run(cfg, partitions, made, out, reprocess=reprocess, opts=opts)


@app.command("load-pg")
@reports_errors
def load_pg_cmd(
    taxis: TaxisArg,
    months: MonthsArg = None,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    mode: ModeOpt = Mode.REPLACE,
    bad_rows: BadRowsOpt = BadRows.REJECT,
    checks: ChecksOpt = None,
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    fail_fast: FailFastOpt = False,
    data_dir: DataDirOpt = None,
    source_url: SourceUrlOpt = None,
    manifest: ManifestOpt = None,
    pg_data: PgDataOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Load months (or `load-pg zones`) into PostgreSQL: idempotent, atomic per file.

    A month already loaded from the same file is skipped (--force reloads it); a month
    that failed before is tried again. A failed month is recorded and the others go on.
    """
    partitions = _partitions(taxis, months, "load-pg")
    out = output(quiet, json_out, verbose, log_format)
    cfg = settings(
        pg_url=pg_url,
        pg_schema=schema,
        data_dir=data_dir,
        source_url=source_url,
        manifest=manifest,
        pg_data=pg_data,
        checks=checks,
    )
    options = DestinationOptions(mode=mode, bad_rows=bad_rows)
    _load(
        cfg,
        TargetName.PG,
        partitions,
        options,
        out,
        force=force,
        jobs=jobs,
        fail_fast=fail_fast,
        label="load-pg",
    )


@app.command("db")
@reports_errors
def db_cmd(
    action: Annotated[
        DbAction, typer.Argument(help="status, start, stop or url (a URL psql accepts).")
    ] = DbAction.STATUS,
    pg_data: PgDataOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Manage the embedded PostgreSQL (the target when no URL or PGHOST is set)."""
    from taxi_cli.postgres.db import db

    out = output(False, json_out, verbose)
    db(action, settings(pg_data=pg_data), out)


@app.command("load-gcs")
@reports_errors
def load_gcs_cmd(
    taxis: TaxisArg,
    months: MonthsArg = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    fmt: LakeFormatOpt = LakeFormat.PARQUET,
    create_bucket: CreateBucketOpt = False,
    mode: ModeOpt = Mode.REPLACE,
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    fail_fast: FailFastOpt = False,
    data_dir: DataDirOpt = None,
    source_url: SourceUrlOpt = None,
    manifest: ManifestOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Upload verified months (or `zones`) to gs://BUCKET/PREFIX/TAXI/ (md5-checked)."""
    partitions = _partitions(taxis, months, "load-gcs")
    out = output(quiet, json_out, verbose, log_format)
    cfg = settings(
        data_dir=data_dir,
        source_url=source_url,
        manifest=manifest,
        gcs_bucket=bucket,
        gcs_prefix=prefix,
    )
    options = DestinationOptions(mode=mode, lake_format=fmt, create_bucket=create_bucket)
    _load(
        cfg,
        TargetName.GCS,
        partitions,
        options,
        out,
        force=force,
        jobs=jobs,
        fail_fast=fail_fast,
        label="load-gcs",
    )


@app.command("load-bq")
@reports_errors
def load_bq_cmd(
    taxis: TaxisArg,
    months: MonthsArg = None,
    project: ProjectOpt = None,
    dataset: DatasetOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    location: LocationOpt = None,
    fmt: LakeFormatOpt = LakeFormat.PARQUET,
    create_dataset: CreateDatasetOpt = False,
    migrate: MigrateOpt = False,
    mode: ModeOpt = Mode.REPLACE,
    force: ForceOpt = False,
    jobs: JobsOpt = 1,
    fail_fast: FailFastOpt = False,
    data_dir: DataDirOpt = None,
    source_url: SourceUrlOpt = None,
    manifest: ManifestOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Load months (or `zones`) into BigQuery through their gs:// objects, replacing each file."""
    partitions = _partitions(taxis, months, "load-bq")
    out = output(quiet, json_out, verbose, log_format)
    cfg = settings(
        data_dir=data_dir,
        source_url=source_url,
        manifest=manifest,
        gcs_bucket=bucket,
        gcs_prefix=prefix,
        gcp_project=project,
        bq_dataset=dataset,
        bq_location=location,
    )
    options = DestinationOptions(
        mode=mode, lake_format=fmt, create_dataset=create_dataset, migrate=migrate
    )
    _load(
        cfg,
        TargetName.BQ,
        partitions,
        options,
        out,
        force=force,
        jobs=jobs,
        fail_fast=fail_fast,
        label="load-bq",
    )


@app.command("backfill")
@reports_errors
def backfill_cmd(
    taxis: BackfillTaxisArg,
    months: MonthsArg = None,
    target: Annotated[TargetName, typer.Option("--target", "-t", help="Where to load.")] = (
        TargetName.PG
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan on stdout and stop.")
    ] = False,
    reprocess: Annotated[
        Reprocess,
        typer.Option(
            "--reprocess",
            help="none: only what is not done; failed: also retry failed; "
            "completed (or all): reload everything; changed: also reload the done months "
            "whose release asset changed upstream.",
        ),
    ] = Reprocess.NONE,
    jobs: JobsOpt = 2,
    backwards: Annotated[
        bool, typer.Option("--backwards", "--run-backwards", help="Newest month first.")
    ] = False,
    fail_fast: FailFastOpt = False,
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up",
            help="From the first month not done to the newest upstream (MONTHS optional); "
            "also reloads months changed upstream [TAXI_CATCH_UP_CHANGED].",
        ),
    ] = False,
    mode: ModeOpt = Mode.REPLACE,
    bad_rows: BadRowsOpt = BadRows.REJECT,
    checks: ChecksOpt = None,
    data_dir: DataDirOpt = None,
    source_url: SourceUrlOpt = None,
    manifest: ManifestOpt = None,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    pg_data: PgDataOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    project: ProjectOpt = None,
    dataset: DatasetOpt = None,
    location: LocationOpt = None,
    create_bucket: CreateBucketOpt = False,
    create_dataset: CreateDatasetOpt = False,
    shard_spec: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Take share I of N (0-based) of the plan; default: from the engine's "
            "environment (Cloud Run Jobs, Kubernetes Indexed Jobs, AWS Batch arrays).",
        ),
    ] = None,
    shard_count: Annotated[
        int | None,
        typer.Option(
            "--shard-count",
            min=1,
            metavar="N",
            help="How many workers share the run, where the engine gives only an index "
            "[env TAXI_SHARD_COUNT]; with --dry-run, label each partition with its shard.",
        ),
    ] = None,
    claim: Annotated[
        bool,
        typer.Option(
            "--claim",
            help="pg: workers pull the next undone partition from a claims table in the "
            "target instead of a fixed share.",
        ),
    ] = False,
    migrate: MigrateOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    log_format: LogFormatOpt = LogFormat.TEXT,
) -> None:
    """Load a range of months into a target, resumably; rerun to finish what is left."""
    from taxi_cli import backfill, destinations, shard
    from taxi_cli.catalog import is_zones, parse_taxis, select

    if is_zones(taxis):
        raise UsageError(
            "backfill loads months; load the zone lookup with `taxi-cli load-pg zones`"
        )
    if months is None and not catch_up:
        raise UsageError("MONTHS is required (e.g. 2020-01..2020-06), unless --catch-up")
    if claim and target is not TargetName.PG:
        raise UsageError("--claim takes partitions from a table in PostgreSQL: use --target pg")
    if claim and shard_spec:
        raise UsageError("--claim and --shard are two ways to split a run: choose one")
    explicit = shard.parse(shard_spec) if shard_spec else None
    partitions = select(taxis, months) if months else None
    taxi_types = parse_taxis(taxis)
    out = output(quiet, json_out, verbose, log_format)
    cfg = settings(
        data_dir=data_dir,
        source_url=source_url,
        manifest=manifest,
        pg_url=pg_url,
        pg_schema=schema,
        pg_data=pg_data,
        gcs_bucket=bucket,
        gcs_prefix=prefix,
        gcp_project=project,
        bq_dataset=dataset,
        bq_location=location,
        checks=checks,
        shard_count=shard_count,
    )
    share = explicit or (None if claim else shard.from_engine(cfg.engine_env, cfg.shard_count))
    options = DestinationOptions(
        mode=mode,
        bad_rows=bad_rows,
        create_bucket=create_bucket,
        create_dataset=create_dataset,
        worker=backfill.worker_name(share),
        migrate=migrate,
    )
    made = destinations.make(cfg, target, options, out, reading=dry_run)
    opts = backfill.Options(
        target,
        dry_run=dry_run,
        reprocess=reprocess,
        jobs=jobs,
        backwards=backwards,
        fail_fast=fail_fast,
        catch_up=catch_up,
        log_json=log_format is LogFormat.JSON,
        shard=share,
        shard_count=cfg.shard_count,
        claim=claim,
    )
    backfill.run(cfg, opts, partitions, taxi_types, made, out)


@app.command("status")
@reports_errors
def status_cmd(
    target: Annotated[
        StatusTarget, typer.Option("--target", "-t", help="Which destination's ledger.")
    ] = StatusTarget.PG,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    pg_data: PgDataOpt = None,
    json_out: JsonOpt = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Explain why counts by file and by pickup date differ, then stop."
        ),
    ] = False,
) -> None:
    """What a target holds: months by taxi type, state and rows, totals per year.

    A total that equals a published figure (the course's answers) is marked ✓.
    Read-only: with nothing loaded it says so, and it never creates a database, a data
    dir or a server to find that out.
    """
    from taxi_cli import status

    if explain:
        from taxi_cli.figures import TRAP

        typer.echo(TRAP, nl=False)
        return
    out = output(json_out=json_out)
    _, made = read_target(target, pg_url=pg_url, schema=schema, pg_data=pg_data)
    status.render(status.build(str(target), made.ledger(read_only=True)), out)


@app.command("check")
@reports_errors
def check_cmd(
    taxis: Annotated[
        str | None,
        typer.Argument(
            metavar="[TAXIS]", help="Taxi types: green, yellow,green, all.", show_default=False
        ),
    ] = None,
    months: MonthsArg = None,
    target: Annotated[
        StatusTarget, typer.Option("--target", "-t", help="Which destination to check.")
    ] = StatusTarget.PG,
    checks: ChecksOpt = None,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    pg_data: PgDataOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    project: ProjectOpt = None,
    dataset: DatasetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Reconcile what a target holds now with its ledger, its source and the published
    figures: a table of ✓/✗ per partition and per figure; exit 1 on any mismatch.

    Rows are counted in the destination (pg and bq: per filename in the tables; gcs: a
    Parquet object's footer, a csv.gz object's checksums against its load record), not
    taken from the ledger; a gcs object deleted or replaced since its load is a
    mismatch. Read-only.
    """
    from taxi_cli import check
    from taxi_cli.catalog import parse_taxis, select

    partitions = select(taxis, months) if taxis and months else None
    only = [t.name for t in parse_taxis(taxis)] if taxis else None
    out = output(json_out=json_out)
    cfg, made = read_target(
        target,
        pg_url=pg_url,
        schema=schema,
        pg_data=pg_data,
        bucket=bucket,
        prefix=prefix,
        project=project,
        dataset=dataset,
        checks=checks,
    )
    check.run(made, out, partitions=partitions, taxis=only, strict=cfg.checks == Checks.FAIL)


@app.command("runs")
@reports_errors
def runs_cmd(
    target: Annotated[
        StatusTarget, typer.Option("--target", "-t", help="Whose run history.")
    ] = StatusTarget.PG,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    pg_data: PgDataOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    project: ProjectOpt = None,
    dataset: DatasetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Past load runs, newest first: start, seconds, partitions done/failed, rows, the
    command line (secrets masked). pg: `taxi_cli_runs` in the schema; gcs: objects under
    `{prefix}_taxi_cli/runs/`; bq: the `taxi_cli_runs` table. Read-only."""
    from rich.table import Table

    from taxi_cli import destinations

    out = output(json_out=json_out)
    _, made = read_target(
        target,
        pg_url=pg_url,
        schema=schema,
        pg_data=pg_data,
        bucket=bucket,
        prefix=prefix,
        project=project,
        dataset=dataset,
    )
    if not isinstance(made, destinations.KeepsRuns):
        raise UsageError(f"{target} keeps no run history")
    found = made.runs()
    if out.json:
        out.emit_json({"target": str(target), "runs": [r.as_json() for r in found]})
        return
    if not found:
        out.out.print(f"no run recorded in {target} yet")
        return
    grid = Table(title=f"taxi-cli runs: {target}", title_justify="left", show_edge=False)
    for name in ("started", "finished", "done", "skipped", "failed", "rows", "command"):
        grid.add_column(name, justify="right" if name in ("done", "failed", "rows") else "left")
    for r in found:
        grid.add_row(
            f"{r.started:%Y-%m-%d %H:%M:%S}",
            f"{r.finished:%H:%M:%S}",
            str(r.done),
            str(r.skipped),
            str(r.failed),
            f"{r.rows:,}",
            r.command,
        )
    out.out.print(grid)


@app.command("report")
@reports_errors
def report_cmd(
    out_path: Annotated[
        str, typer.Option("--out", "-o", metavar="FILE", help="Where to write the report.")
    ] = "report.html",
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="html (self-contained, charts) or md.")
    ] = ReportFormat.HTML,
    target: Annotated[
        StatusTarget, typer.Option("--target", "-t", help="Which destination to report on.")
    ] = StatusTarget.PG,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    pg_data: PgDataOpt = None,
    bucket: BucketOpt = None,
    prefix: PrefixOpt = None,
    project: ProjectOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Write one self-contained HTML report (no network needed to open it): months
    loaded, rows against published figures, checks, runs, revenue (dbt mart)."""
    from pathlib import Path

    from taxi_cli import report

    out = output()
    _, made = read_target(
        target,
        pg_url=pg_url,
        schema=schema,
        pg_data=pg_data,
        bucket=bucket,
        prefix=prefix,
        project=project,
        dataset=dataset,
    )
    path = Path(out_path).expanduser()
    data = report.write(made, path, str(fmt))
    out.out.print(f"{path}: {len(data.entries)} partitions, {len(data.runs)} runs")


@app.command("schedule")
@reports_errors
def schedule_cmd(
    kind: Annotated[ScheduleKind, typer.Argument(help="cron or systemd.", show_default=False)],
    taxis: Annotated[
        str | None,
        typer.Option(
            "--taxis",
            metavar="TAXIS",
            help="Taxi types (default: yellow,green, each at its hour).",
        ),
    ] = None,
    target: Annotated[TargetName, typer.Option("--target", help="Where to load.")] = (
        TargetName.PG
    ),
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="CRON",
            help='Cron time, e.g. "0 9 1 * *" (default: green 09:00, yellow 10:00 on the 1st).',
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", metavar="TZ", help="IANA timezone.")
    ] = "America/New_York",
    install: Annotated[
        bool, typer.Option("--install", help="systemd: write the units to ~/.config/systemd/user.")
    ] = False,
    uninstall: Annotated[
        bool, typer.Option("--uninstall", help="systemd: stop and remove the units it installed.")
    ] = False,
) -> None:
    """Print a crontab entry or systemd units that run the catch-up backfill monthly."""
    from taxi_cli import schedule

    output()
    cfg = settings()
    text, notes = schedule.run(
        cfg,
        str(kind),
        taxis=taxis,
        target=str(target),
        at=at,
        timezone=timezone,
        install=install,
        uninstall=uninstall,
    )
    typer.echo(text, nl=False)
    for note in notes:
        typer.echo(f"taxi-cli: {note}", err=True)


# ---- transform ---------------------------------------------------------------------------


@app.command(
    "transform",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@reports_errors
def transform_cmd(
    ctx: typer.Context,
    target: Annotated[
        TransformTarget, typer.Option("--target", "-t", help="Where the loaded tables are.")
    ] = TransformTarget.PG,
    select: Annotated[
        str | None,
        typer.Option(
            "--select", "-s", metavar="SELECTOR", help="dbt node selection, e.g. fact_trips+."
        ),
    ] = None,
    exclude: Annotated[
        str | None,
        typer.Option(
            "--exclude", metavar="SELECTOR", help="dbt nodes to leave out, e.g. test_type:data."
        ),
    ] = None,
    dbt_vars: Annotated[
        str | None,
        typer.Option(
            "--vars", metavar="YAML", help="dbt vars as a YAML mapping, e.g. '{is_test_run: true}'."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", metavar="N", help="dbt threads (default: the profile's)."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental models from scratch.")
    ] = False,
    test_run: Annotated[
        bool, typer.Option("--test-run", help="Stage only a small sample (var is_test_run).")
    ] = False,
    pg_url: PgUrlOpt = None,
    schema: SchemaOpt = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="BigQuery dataset [env TAXI_BQ_DATASET]")
    ] = None,
    pg_data: PgDataOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build the dbt models (staging, fact_trips, revenue mart) and run their tests.

    dbt's selection flags work directly (--select, --exclude, --vars, --threads,
    --full-refresh); any other `dbt build` argument goes after `--`, e.g. `-- --fail-fast`.
    """
    from taxi_cli import transform

    out = output(quiet, json_out, verbose)
    cfg = settings(pg_url=pg_url, pg_schema=schema, bq_dataset=dataset, pg_data=pg_data)
    result = transform.run(
        cfg,
        target=str(target),
        select=select,
        full_refresh=full_refresh,
        test_run=test_run,
        extra_args=list(ctx.args),
        exclude=exclude,
        variables=dbt_vars,
        threads=threads,
    )
    transform.report(result, out)
    transform.check(result)


# ---- config --------------------------------------------------------------------

config_app = typer.Typer(
    help="Show the resolved settings and where the config file is looked for.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command("show")
@reports_errors
def config_show_cmd(json_out: JsonOpt = False) -> None:
    """Every setting with its value and source (flag, env, config file + profile, default).

    Secrets are masked: passwords in URLs and DSNs, PGPASSWORD. Global options go before
    the command: `taxi-cli --config prod.toml --profile prod config show`.
    """
    from taxi_cli import config

    out = output(json_out=json_out)
    cfg = settings()
    if warning := config.exposed_file_secret(cfg):
        typer.echo(f"taxi-cli: warning: {warning}", err=True)
    if out.json:
        out.emit_json(config.report(cfg))
    else:
        out.stdout.write(config.report_text(cfg))


@config_app.command("path")
@reports_errors
def config_path_cmd(json_out: JsonOpt = False) -> None:
    """Where the config file is looked for, in order, and which one is used."""
    from taxi_cli import config

    out = output(json_out=json_out)
    candidates = config.config_search_path(_Globals.config_file, config.environ())
    used = next((path for path, _ in candidates if path.is_file()), None)
    rows = [
        {"path": str(path), "from": how, "exists": path.is_file(), "used": path == used}
        for path, how in candidates
    ]
    if out.json:
        out.emit_json(rows)
        return
    for row in rows:
        mark = "used" if row["used"] else ("found" if row["exists"] else "not found")
        out.stdout.write(f"{row['path']}  ({row['from']}; {mark})\n")


def _install_signal_handlers() -> None:
    # systemd and `timeout` stop a run with SIGTERM: treat it like ^C so that cleanup runs.
    def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise_interrupt)


def _json_logs(argv: list[str]) -> bool:
    for i, word in enumerate(argv):
        if word == "--":
            return False
        if word == "--log-format=json" or (
            word == "--log-format" and argv[i + 1 : i + 2] == ["json"]
        ):
            return True
    return False


def main() -> None:
    """Console-script entry point."""
    _install_signal_handlers()
    argv = sys.argv[1:]
    if not _json_logs(argv):
        app(prog_name="taxi-cli")
        return
    # --log-format json: every stderr line is JSON, a usage error that the option parser
    # catches (before any command runs) included.
    try:
        code = typer.main.get_command(app).main(
            args=argv, prog_name="taxi-cli", standalone_mode=False
        )
    except Exception as exc:  # the parser's UsageError/BadParameter (Typer's own click)
        exit_code = getattr(exc, "exit_code", None)
        message = getattr(exc, "format_message", None)
        if not isinstance(exit_code, int) or message is None:
            raise
        setup_logging(fmt="json")
        error_line(mask_dsn(str(message())), exit_code)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
