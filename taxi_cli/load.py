"""The partition loop under every load command (`load-pg`, `load-gcs`, `load-bq`),
`backfill` and `extract`.

One run: check each destination once (connect: exit 3 if it cannot be reached), read
their ledgers, plan every (partition, destination), then hand each partition to one of
`jobs` workers, which extracts it (download, verify, cache: its own HTTP client) and
loads it into each destination that needs it, in order. While one worker loads, another
downloads. A partition is done when the destination's ledger says so, and it says so
only once the data is committed, so a run killed at any moment is finished by running
the same command again.

Failures, the same for every command: transient ones (network, 5xx, a lost connection)
are retried with backoff; a partition that still fails is recorded in the destination's
ledger with its error and the others go on (unless `fail_fast`). The run then exits 4
naming the first failure, or with the partition's own exit code when it was the only
partition to run. A usage, configuration or connection error stops the run at once:
every other partition would fail the same way. ^C or SIGTERM stops starting partitions
and exits 130; the database rolls back what was in flight when the process ends, and
the ledger does not say done for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from taxi_cli import extract
from taxi_cli.catalog import Partition
from taxi_cli.choices import Reprocess
from taxi_cli.config import Settings
from taxi_cli.console import Output
from taxi_cli.destinations import Destination, KeepsRuns, VerifiesInPass
from taxi_cli.errors import (
    ConfigError,
    ConnectError,
    ExitCode,
    PartialFailure,
    TaxiError,
    UsageError,
    is_retryable,
)
from taxi_cli.model import Extracted, LedgerRow, Loaded
from taxi_cli.plan import Action, PlanItem, State, WorkUnit, make_plan, work_units
from taxi_cli.retry import retrying

log = logging.getLogger("taxi_cli.load")

ATTEMPTS = 3  # per partition step, on top of the downloader's own retries
FATAL = (ExitCode.USAGE, ExitCode.CONNECTION)  # every other partition would fail alike


class Claim(Protocol):
    """A partition this worker holds until `finish` (done or failed) or `release`."""

    key: str

    def finish(self, worker: str) -> None: ...

    def release(self) -> None: ...


class ClaimSource(Protocol):
    """Where `--claim` workers pull their next partition (a table in the target)."""

    def take(self) -> Claim | None: ...


@dataclass(frozen=True)
class RunOptions:
    jobs: int = 1
    fail_fast: bool = False
    label: str = "load"  # names the run in progress lines and the summary title
    retry_hint: str = "rerun the same command to retry them"
    worker: str = ""  # who this run is, for claims and logs ("shard 1/4 host:pid")


@dataclass
class Outcome:
    item: PlanItem
    state: str  # done | skipped | failed | interrupted | not run
    rows: int | None = None
    seconds: float | None = None  # download + verify + load of this destination
    error: str | None = None
    attempts: int = 0
    download_seconds: float | None = None
    verify_seconds: float | None = None
    load_seconds: float | None = None
    downloaded_bytes: int = 0  # what this run fetched for it (0 when cached)
    verified: str | None = None  # how: "load pass" | "before load" | "sidecar" (cached)
    loaded: Loaded | None = None
    exc: TaxiError | None = field(default=None, repr=False)

    def as_json(self) -> dict[str, Any]:
        def sec(value: float | None) -> float | None:
            return round(value, 3) if value is not None else None

        return {
            "partition": self.item.partition,
            "taxi": self.item.taxi,
            "month": self.item.month or None,
            "target": self.item.target,
            "action": str(self.item.action),
            "reason": self.item.reason,
            "shard": self.item.shard,
            "state": self.state,
            "rows": self.rows,
            "seconds": sec(self.seconds),
            "download_seconds": sec(self.download_seconds),
            "verify_seconds": sec(self.verify_seconds),
            "load_seconds": sec(self.load_seconds),
            "verified": self.verified,
            "error": self.error,
            "attempts": self.attempts,
            "result": self.loaded.as_json() if self.loaded else None,
        }


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    fatal: TaxiError | None = None  # what stopped the whole run, if anything

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def failed_left(self) -> int:
        """Partitions failed in an earlier run and skipped by this one (--reprocess none)."""
        return sum(o.state == "skipped" and o.item.state is State.FAILED for o in self.outcomes)

    @property
    def rows(self) -> int:
        return sum(o.rows or 0 for o in self.outcomes if o.state == "done")

    def as_json(self) -> dict[str, Any]:
        return {
            "partitions": [o.as_json() for o in self.outcomes],
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "not_run": self.count("not run") + self.count("interrupted"),
            "failed_before_skipped": self.failed_left,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


class PartitionsFailed(PartialFailure):
    """Some partitions failed (exit 4); the summary holds every partition's outcome."""

    def __init__(self, message: str, summary: Summary) -> None:
        super().__init__(message)
        self.summary = summary


# ---- planning ---------------------------------------------------------------------------


def read_ledgers(
    destinations: Sequence[Destination], *, read_only: bool = False
) -> dict[str, list[LedgerRow]]:
    return {d.name: list(d.ledger(read_only=read_only)) for d in destinations}


def plan_partitions(
    cfg: Settings,
    partitions: Sequence[Partition],
    destinations: Sequence[Destination],
    ledgers: dict[str, list[LedgerRow]],
    *,
    reprocess: Reprocess,
    backwards: bool = False,
    changed: Mapping[tuple[str, str], str] | None = None,
    reload_changed: bool | None = None,
) -> list[PlanItem]:
    return make_plan(
        partitions,
        [d.name for d in destinations],
        ledgers,
        reprocess=reprocess,
        local_sha256=lambda part: extract.cached_sha256(cfg, part.taxi, part.month),
        backwards=backwards,
        changed=changed,
        reload_changed=reload_changed,
    )


# ---- the load commands ------------------------------------------------------------------


def run(
    cfg: Settings,
    partitions: Sequence[Partition],
    destinations: Sequence[Destination],
    out: Output,
    *,
    reprocess: Reprocess = Reprocess.FAILED,
    opts: RunOptions = RunOptions(),
) -> Summary:
    """`load-pg`/`load-gcs`/`load-bq`: a backfill without the plan table or the run lock.

    A partition named again is retried when it failed and skipped when it is done from
    the same source (`--force` = `reprocess completed` reloads it).
    """
    for destination in destinations:
        destination.check()
    ledgers = read_ledgers(destinations)
    plan = plan_partitions(cfg, partitions, destinations, ledgers, reprocess=reprocess)
    return execute(cfg, plan, partitions, destinations, out, opts)


def execute(
    cfg: Settings,
    plan: Sequence[PlanItem],
    partitions: Sequence[Partition],
    destinations: Sequence[Destination],
    out: Output,
    opts: RunOptions,
    claims: ClaimSource | None = None,
) -> Summary:
    """Run a plan, print its summary, and raise for what failed."""
    started = datetime.now(UTC)
    summary = Runner(cfg, opts, destinations, partitions, plan, out, claims).run()
    record_run(destinations, summary, started, opts)
    report(summary, out, f"{opts.label} summary")
    raise_for(summary, opts.retry_hint)
    return summary


def record_run(
    destinations: Sequence[Destination], summary: Summary, started: datetime, opts: RunOptions
) -> None:
    """The run into each destination's run history (pg); a failure to record is logged."""
    from taxi_cli.runs import RunRecord, command_line

    if isinstance(summary.fatal, ConnectError):
        return  # nowhere to record it: the destination could not be reached
    failed = summary.count("failed") + (1 if summary.fatal else 0)
    run = RunRecord(
        started,
        datetime.now(UTC),
        command_line(),
        opts.label,
        opts.worker,
        summary.count("done"),
        summary.count("skipped"),
        summary.count("failed"),
        summary.rows,
        summary.seconds,
        "failed" if failed else "ok",
        # a file loaded into two destinations was downloaded once
        sum({(o.item.taxi, o.item.month): o.downloaded_bytes for o in summary.outcomes}.values()),
    )
    for destination in destinations:
        if not isinstance(destination, KeepsRuns):
            continue
        try:
            destination.record_run(run)
        except Exception as exc:  # the history is a report, not the ledger of record
            log.warning("could not record the run in %s: %s", destination.name, exc)


def raise_for(summary: Summary, retry_hint: str = RunOptions.retry_hint) -> None:
    """The run's exit: the fatal error, the only partition's own error, or exit 4."""
    if summary.fatal is not None:
        raise summary.fatal
    failed = summary.failed
    if not failed:
        return
    ran = [o for o in summary.outcomes if o.item.runs]
    if len(ran) == 1 and failed[0].exc is not None:
        raise failed[0].exc
    first = failed[0]
    raise PartitionsFailed(
        f"{len(failed)} of {len(summary.outcomes)} partitions failed "
        f"(first: {first.item.partition}: {first.error}); they are recorded in the "
        f"ledger: {retry_hint}",
        summary,
    )


def load_zones(
    cfg: Settings, destinations: Sequence[Destination], out: Output, *, force: bool = False
) -> Summary:
    """`load-* zones`: the zone lookup into each destination, in order."""
    for destination in destinations:
        destination.check()
    started = time.monotonic()
    source = extract.ensure_zones(cfg, out=out)
    outcomes: list[Outcome] = []
    staged: Loaded | None = None
    for destination in destinations:
        item = PlanItem("zones", "", destination.name, State.MISSING, Action.LOAD, "zone lookup")
        began = time.monotonic()
        loaded = destination.load_zones(source, force=force, staged=staged)
        staged = loaded if destination.name == "gcs" else None
        state = "skipped" if loaded.skipped else "done"
        seconds = time.monotonic() - began
        outcomes.append(
            Outcome(item, state, loaded.rows, seconds, load_seconds=seconds, loaded=loaded)
        )
    summary = Summary(outcomes, time.monotonic() - started)
    report(summary, out, "zones")
    return summary


# ---- the extract command ----------------------------------------------------------------


@dataclass
class FileOutcome:
    """One file of `extract`: verified (`extracted`) or failed (`error`)."""

    partition: Partition | None  # None: the zone lookup
    extracted: Extracted | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        return "done" if self.extracted is not None else "failed"

    def as_json(self) -> dict[str, Any]:
        part = self.partition
        payload: dict[str, Any] = {
            "partition": part.name if part else "zones",
            "taxi": part.taxi.name if part else "zones",
            "month": part.month if part else None,
            "state": self.state,
            "error": self.error,
        }
        if self.extracted is not None:
            payload.update(self.extracted.as_json())
        return payload


def extract_files(
    cfg: Settings,
    partitions: Sequence[Partition],
    out: Output,
    *,
    parquet: bool = False,
    force: bool = False,
    fail_fast: bool = False,
) -> list[FileOutcome]:
    """`extract`: every partition is fetched and verified (or found cached), each one
    reported done or failed; exit 4 when some failed (the only one's own code alone)."""
    results: list[FileOutcome] = []
    errors: list[TaxiError] = []
    for part, got in extract.each_file(cfg, partitions, force=force, parquet=parquet, out=out):
        if isinstance(got, TaxiError):
            log.error("%s failed: %s", part.name, got, extra={"partition": part.name})
            results.append(FileOutcome(part, error=str(got)))
            errors.append(got)
            if got.exit_code in FATAL or fail_fast:
                break
            continue
        results.append(FileOutcome(part, got))
    report_files(results, out)
    if errors:
        if len(partitions) == 1 or errors[0].exit_code in FATAL:
            raise errors[0]
        failed = [r for r in results if r.state == "failed"]
        names = ", ".join(r.partition.name for r in failed if r.partition)
        raise PartialFailure(
            f"{len(failed)} of {len(partitions)} files failed ({names}); first error: {errors[0]}"
        )
    return results


def extract_zones(cfg: Settings, out: Output, *, force: bool = False) -> list[FileOutcome]:
    results = [FileOutcome(None, extract.ensure_zones(cfg, force=force, out=out))]
    report_files(results, out)
    return results


def report_files(results: Sequence[FileOutcome], out: Output) -> None:
    """One line per file (or JSON with --json) on stdout."""
    if out.json:
        done = sum(r.state == "done" for r in results)
        out.emit_json(
            {
                "partitions": [r.as_json() for r in results],
                "done": done,
                "failed": len(results) - done,
            }
        )
        return
    for r in results:
        if r.extracted is None:
            name = r.partition.name if r.partition else "zones"
            out.stdout.write(f"{name}  failed: {r.error}\n")
            continue
        e = r.extracted
        how = "cached" if e.cached else f"downloaded in {e.download_seconds:.1f}s"
        line = (
            f"{e.path}  {e.compressed_bytes:,} bytes  "
            f"{e.uncompressed_bytes:,} bytes uncompressed ({e.uncompressed_bytes / (1 << 20):.1f}"
            f" MiB)  {e.rows:,} rows  {how}"
        )
        if e.parquet_path:
            line += f"  parquet {e.parquet_path}"
        out.stdout.write(line + "\n")
    out.stdout.flush()


# ---- reporting --------------------------------------------------------------------------


def _close(source: extract.Prepared, unit: WorkUnit) -> Extracted:
    """Settle a partition's file in the cache; a cache that cannot take it (a full or
    failing disk) is a warning: what the destinations committed stands."""
    try:
        return source.close()
    except TaxiError as exc:
        log.warning("%s: the file could not be kept in the cache: %s", unit.name, exc)
        return source.extracted


def _how_verified(fetched: Extracted) -> str:
    if fetched.settle is not None:
        return "load pass"  # the download was verified by the pass that loaded it
    if fetched.cached and not fetched.verify_seconds:
        return "sidecar"  # verified when it was downloaded; unchanged since
    return "before load"


def summary_table(summary: Summary, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("partition")
    table.add_column("state")
    table.add_column("rows", justify="right")
    table.add_column("download", justify="right")
    table.add_column("verify", justify="right")
    table.add_column("load", justify="right")
    styles = {"done": "green", "failed": "bold red", "skipped": "dim"}

    def sec(value: float | None) -> str:
        return f"{value:.1f}s" if value is not None else ""

    for o in summary.outcomes:
        style = styles.get(o.state, "yellow")
        rows = f"{o.rows:,}" if o.rows is not None else ""
        table.add_row(
            o.item.partition,
            f"[{style}]{o.state}[/]",
            rows,
            sec(o.download_seconds),
            "in load" if o.verified == "load pass" else sec(o.verify_seconds),
            sec(o.load_seconds),
        )
    return table


def report(summary: Summary, out: Output, title: str) -> None:
    if out.json:
        out.emit_json(summary.as_json())
        return
    out.out.print(summary_table(summary, title))
    parts = [f"{summary.count(s)} {s}" for s in ("done", "skipped", "failed") if summary.count(s)]
    line = f"{', '.join(parts) or 'nothing to do'}; {summary.rows:,} rows in {summary.seconds:.1f}s"
    if summary.failed_left:
        line += (
            f"; {summary.failed_left} partition(s) that failed before were left alone "
            "(--reprocess failed retries them)"
        )
    out.out.print(line)
    for o in summary.outcomes:  # what a destination wants the user to know (rejects)
        if o.loaded is not None and o.loaded.detail.get("note"):
            out.out.print(str(o.loaded.detail["note"]))


# ---- workers ----------------------------------------------------------------------------


def drop_cache(fetched: Extracted) -> None:
    """Remove a partition's cached files once every destination of the run committed it
    (`keep_cache` off: Cloud Run's disk is memory). The next run finds the ledgers done and
    downloads nothing; a reload downloads and verifies again."""
    for path in (fetched.path, extract.sidecar_path(fetched.path), fetched.parquet_path):
        if path is None:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a cache we cannot clean is not a failed load
            log.warning("could not remove the cached %s: %s", path, exc)
    log.debug("removed the cached files of %s", fetched.path.name)


@dataclass(frozen=True)
class _Event:
    kind: str  # "state" (progress text) | "bytes" | "outcome" | "unit-finished"
    unit: WorkUnit
    text: str = ""
    outcome: Outcome | None = None
    done: int = 0
    total: int | None = None


class _Failed(Exception):
    def __init__(self, message: str, attempts: int, error: TaxiError | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
        self.error = error


class Runner:
    """N daemon worker threads pulling partitions; the main thread reports.

    Workers are daemon threads so that ^C/SIGTERM ends the process at once: the database
    connections close and their open transactions roll back.
    """

    def __init__(
        self,
        cfg: Settings,
        opts: RunOptions,
        destinations: Sequence[Destination],
        partitions: Sequence[Partition],
        plan: Sequence[PlanItem],
        out: Output,
        claims: ClaimSource | None = None,
    ) -> None:
        self.cfg = cfg
        self.claims = claims
        self.opts = opts
        self.destinations = {d.name: d for d in destinations}
        self.plan = list(plan)
        self.units = work_units(plan, partitions)
        self.single = sum(item.runs for item in self.plan) == 1
        self.by_name = {u.name: u for u in self.units}
        self.out = out
        self.stop = threading.Event()
        self.fatal: TaxiError | None = None
        self.todo: queue.Queue[WorkUnit] = queue.Queue()
        self.events: queue.Queue[_Event] = queue.Queue()
        self._reported: set[tuple[str, str, str]] = set()  # items with an outcome (GIL-safe)

    def run(self) -> Summary:
        started = time.monotonic()
        outcomes: dict[tuple[str, str, str], Outcome] = {
            (i.taxi, i.month, i.target): Outcome(i, "skipped" if not i.runs else "not run")
            for i in self.plan
        }
        for unit in self.units:
            self.todo.put(unit)
        workers = [
            threading.Thread(target=self._work, name=f"load-{n}", daemon=True)
            for n in range(min(self.opts.jobs, len(self.units)))
        ]
        for worker in workers:
            worker.start()
        pending = len(self.units)
        with self._progress() as show:
            try:
                while pending:
                    try:
                        event = self.events.get(timeout=0.2)
                    except queue.Empty:
                        # --claim: the others took what this run did not; the workers are done
                        if self.claims is not None and not any(w.is_alive() for w in workers):
                            break
                        continue
                    if event.kind == "unit-finished":
                        pending -= 1
                    elif event.outcome is not None:
                        o = event.outcome
                        outcomes[(o.item.taxi, o.item.month, o.item.target)] = o
                        if o.state == "failed" and self.opts.fail_fast:
                            self._halt("--fail-fast: stopping after the first failure")
                    show(event)
            except KeyboardInterrupt:
                self._halt("interrupted: no new partitions start; in-flight loads roll back")
                for key, o in outcomes.items():
                    if o.state == "not run":
                        outcomes[key] = Outcome(o.item, "interrupted")
                summary = Summary(list(outcomes.values()), time.monotonic() - started)
                report(summary, self.out, f"{self.opts.label} summary (interrupted)")
                raise
        for key, o in outcomes.items():
            if o.state == "not run" and self.claims is not None and not self.stop.is_set():
                elsewhere = replace(o.item, reason="claimed by another worker (--claim)")
                outcomes[key] = Outcome(elsewhere, "skipped")
        return Summary(list(outcomes.values()), time.monotonic() - started, self.fatal)

    def _halt(self, why: str) -> None:
        if not self.stop.is_set():
            log.warning(why)
        self.stop.set()

    @contextmanager
    def _progress(self) -> Iterator[Callable[[_Event], None]]:
        if not self.out.show_progress:
            yield lambda event: None
            return
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            console=self.out.err,
            transient=True,
        )
        items = sum(len(u.items) for u in self.units)
        overall = progress.add_task(self.opts.label, total=items, amount=f"0/{items}")
        lines: dict[str, TaskID] = {}
        finished = 0

        def show(event: _Event) -> None:
            nonlocal finished
            name = event.unit.name
            if event.kind == "state":
                text = f"  {name}: {event.text}"
                if name not in lines:
                    lines[name] = progress.add_task(text, total=None, amount="")
                else:
                    progress.update(lines[name], description=text, total=None, amount="")
            elif event.kind == "bytes" and name in lines:
                mib = 1 << 20
                total = f"/{event.total / mib:.1f}" if event.total else ""
                progress.update(
                    lines[name],
                    completed=event.done,
                    total=event.total,
                    amount=f"{event.done / mib:.1f}{total} MiB",
                )
            elif event.kind == "outcome":
                finished += 1
                progress.update(overall, advance=1, amount=f"{finished}/{items}")
            elif event.kind == "unit-finished" and name in lines:
                progress.remove_task(lines.pop(name))

        with progress:
            yield show

    # ---- in a worker thread ----

    def _next(self) -> tuple[WorkUnit, Claim | None] | None:
        if self.claims is None:
            try:
                return self.todo.get_nowait(), None
            except queue.Empty:
                return None
        try:
            claim = self.claims.take()
        except TaxiError as exc:
            if self.fatal is None:
                self.fatal = exc
            self._halt(f"stopping: cannot take a claim: {exc}")
            return None
        return (self.by_name[claim.key], claim) if claim is not None else None

    def _work(self) -> None:
        # made on first use: a run whose files are all cached never imports httpx
        with closing(extract.Http(self.cfg)) as client:
            while not self.stop.is_set():
                taken = self._next()
                if taken is None:
                    if self.claims is not None:
                        return  # the units others hold are reported by the main thread
                    break
                unit, claim = taken
                try:
                    self._unit(unit, client)
                except Exception as exc:  # a bug must neither hang the run nor pass as done
                    log.debug("%s: unexpected error", unit.name, exc_info=True)
                    for item in unit.items:
                        if (item.taxi, item.month, item.target) not in self._reported:
                            error = f"{type(exc).__name__}: {exc}"
                            self._emit(unit, Outcome(item, "failed", error=error))
                finally:
                    if claim is not None:
                        self._settle(unit, claim)
                    self.events.put(_Event("unit-finished", unit))
        # Units never started are reported by the main thread as "not run".
        while True:
            try:
                self.events.put(_Event("unit-finished", self.todo.get_nowait()))
            except queue.Empty:
                return

    def _settle(self, unit: WorkUnit, claim: Claim) -> None:
        """Finish the claim once every item has an outcome; else give it back."""
        done = all((i.taxi, i.month, i.target) in self._reported for i in unit.items)
        try:
            if done:
                claim.finish(self.opts.worker)
            else:
                claim.release()
        except Exception as exc:  # the claim dies with its connection: no harm done
            log.warning("%s: could not settle its claim: %s", unit.name, exc)

    def _retrying(self, what: str, unit: WorkUnit, step: Callable[[], Any]) -> tuple[Any, int]:
        tries = [0]

        def attempt() -> Any:
            tries[0] += 1
            return step()

        def told(exc: BaseException, n: int, delay: float) -> None:
            log.warning(
                "%s %s: %s; retrying in %.1fs",
                unit.name,
                what,
                exc,
                delay,
                extra={"partition": unit.name, "state": "retrying", "attempt": n},
            )

        try:
            return retrying(
                attempt,
                cfg=self.cfg,
                attempts=ATTEMPTS,
                retryable=lambda exc: isinstance(exc, TaxiError) and is_retryable(exc),
                on_retry=told,
                stop=self.stop.is_set,
            )
        except TaxiError as exc:
            if exc.exit_code in FATAL and isinstance(exc, UsageError | ConfigError | ConnectError):
                if self.fatal is None:
                    self.fatal = exc
                self._halt(f"stopping: {exc}")
            raise _Failed(str(exc), tries[0], exc) from exc
        except Exception as exc:  # a bug or an unwrapped driver error: fail this one
            log.debug("%s %s failed", unit.name, what, exc_info=True)
            raise _Failed(f"{type(exc).__name__}: {exc}", tries[0]) from exc

    def _emit(self, unit: WorkUnit, outcome: Outcome) -> None:
        extra = {
            "partition": outcome.item.partition,
            "state": outcome.state,
            "rows": outcome.rows,
            "seconds": round(outcome.seconds or 0, 3),
        }
        if outcome.state == "failed":
            # A run of one partition ends with this error as its last line: say it once.
            level = logging.DEBUG if self.single else logging.ERROR
            log.log(level, "%s failed: %s", outcome.item.partition, outcome.error, extra=extra)
        else:
            log.info(
                "%s: %s, %s rows in %.1fs",
                outcome.item.partition,
                outcome.state,
                f"{outcome.rows or 0:,}",
                outcome.seconds or 0.0,
                extra=extra,
            )
        self._reported.add((outcome.item.taxi, outcome.item.month, outcome.item.target))
        self.events.put(_Event("outcome", unit, outcome=outcome))

    def _unit(self, unit: WorkUnit, client: extract.Http) -> None:
        part = unit.partition
        started = time.monotonic()
        parquet = any(self.destinations[i.target].needs_parquet for i in unit.items)
        self.events.put(_Event("state", unit, "downloading"))
        last = [0.0]

        def on_bytes(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or (total is not None and done >= total):
                last[0] = now
                self.events.put(_Event("bytes", unit, done=done, total=total))

        # one destination that verifies in its pass: a first download is not inflated
        # and scanned twice (verify, then load) but once (`prepare` decides the rest)
        (first, *others) = [self.destinations[i.target] for i in unit.items]
        in_pass = not others and isinstance(first, VerifiesInPass)
        try:
            prepared, _ = self._retrying(
                "download",
                unit,
                lambda: extract.prepare(
                    self.cfg,
                    part.taxi,
                    part.month,
                    verify_in_pass=in_pass,
                    client=client,
                    parquet=parquet,
                    on_bytes=on_bytes,
                    force=any(i.refetch for i in unit.items),  # re-published upstream
                ),
            )
        except _Failed as failed:
            for item in unit.items:
                self._fail(unit, item, failed, started)
            return
        sources: list[extract.Prepared] = [prepared]  # and a second download, if one was needed
        try:
            blocked = self._load_items(unit, sources, client, on_bytes, started)
        finally:
            cached = [_close(s, unit) for s in sources]  # a download its pass verified is cached
        if blocked is None and not self.cfg.keep_cache:
            drop_cache(cached[-1])

    def _load_items(
        self,
        unit: WorkUnit,
        sources: list[extract.Prepared],
        client: extract.Http,
        on_bytes: Callable[[int, int | None], None],
        started: float,
    ) -> str | None:
        """Load the partition into each destination in turn; what blocked the rest.
        `sources[-1]` is the file; a second download is appended to it."""
        part = unit.partition
        blocked: str | None = None
        staged: Loaded | None = None
        for item in unit.items:
            if self.stop.is_set():
                return "stopped"
            if blocked is not None:
                # gcs+bq: the BigQuery load reads the object the failed upload did not write.
                self._fail(unit, item, _Failed(f"not loaded: {blocked}", 0), started)
                continue
            destination = self.destinations[item.target]
            self.events.put(_Event("state", unit, f"loading into {destination.name}"))
            item_started = time.monotonic()
            fetched = sources[-1].extracted
            try:
                try:
                    loaded, attempts = self._load_one(unit, destination, fetched, item, staged)
                except _Failed as failed:
                    if sources[-1].failed_verification is None:
                        raise
                    # the pass found the download bad and loaded nothing: once more, from
                    # scratch, verified before it is loaded (a second failure is final)
                    log.warning("%s; downloading it once more from scratch", failed.message)
                    sources[-1].close()  # discards it and releases its lock
                    self.events.put(_Event("state", unit, "downloading"))
                    refetched, _ = self._retrying(
                        "download",
                        unit,
                        lambda: extract.refetch(
                            self.cfg, part.taxi, part.month, client=client, on_bytes=on_bytes
                        ),
                    )
                    sources.append(extract.Prepared(refetched))
                    fetched = refetched
                    loaded, attempts = self._load_one(unit, destination, fetched, item, staged)
            except _Failed as failed:
                self._fail(unit, item, failed, item_started, fetched)
                blocked = f"{destination.name} failed"
                continue
            result: Loaded = loaded
            staged = result if destination.name == "gcs" else None
            load_s = time.monotonic() - item_started  # a download verified in its pass: here
            self._emit(
                unit,
                Outcome(
                    item,
                    "done",
                    result.rows,
                    fetched.download_seconds + fetched.verify_seconds + load_s,
                    attempts=attempts,
                    download_seconds=fetched.download_seconds,
                    downloaded_bytes=0 if fetched.cached else fetched.compressed_bytes,
                    verify_seconds=fetched.verify_seconds,
                    load_seconds=load_s,
                    verified=_how_verified(fetched),
                    loaded=result,
                ),
            )
        return blocked

    def _load_one(
        self,
        unit: WorkUnit,
        destination: Destination,
        fetched: Extracted,
        item: PlanItem,
        staged: Loaded | None,
    ) -> tuple[Loaded, int]:
        loaded, attempts = self._retrying(
            f"load into {destination.name}",
            unit,
            lambda: destination.load(unit.partition, fetched, item.action, staged),
        )
        return loaded, attempts

    def _fail(
        self,
        unit: WorkUnit,
        item: PlanItem,
        failed: _Failed,
        started: float,
        fetched: Extracted | None = None,
    ) -> None:
        destination = self.destinations[item.target]
        try:
            if not isinstance(failed.error, ConnectError):  # recording needs it reachable
                destination.record_failure(unit.partition, failed.message)
        except Exception as exc:  # the destination is gone too: the summary still says it
            log.error("%s: cannot record the failure: %s", item.partition, exc)
        outcome = Outcome(
            item,
            "failed",
            None,
            time.monotonic() - started,
            failed.message,
            failed.attempts,
            download_seconds=fetched.download_seconds if fetched else None,
            verify_seconds=fetched.verify_seconds if fetched else None,
            exc=failed.error,
        )
        self._emit(unit, outcome)
