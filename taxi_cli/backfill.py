"""`backfill`: load a range of months into a target, resumably, with N workers.

The run: take the target's lock (one backfill per target), read its ledger, plan every
(taxi, month, target) partition, then hand each (taxi, month) to one of `jobs` workers,
which extracts it (its own HTTP client, its own file) and loads it into each target that
needs it. While one worker loads, another downloads. A partition is done when the
target's ledger says so, and it says so only once the data is committed, so a run
killed at any moment is finished by running the same command again.

Failures: transient ones (network, 5xx, a lost connection) are retried with backoff; a
partition that still fails is recorded with its error and the run goes on (unless
`fail_fast`); the run then ends with PartialFailure (exit 4). ^C or SIGTERM stops
starting partitions and exits; the database rolls back what was in flight when the
process ends, and the ledger does not say done for it.

Catch-up (for schedules): the months run from the first month not done yet up to the
newest month that exists upstream, found with HEAD requests from the last done month
forward until a 404 (at most `MAX_PROBES`, never past the current month). With no
history the range starts at the taxi type's first released month.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from taxi_cli import extract
from taxi_cli.catalog import TaxiType, month_range, next_month, parse_months, parse_taxis, taxi_url
from taxi_cli.config import Settings
from taxi_cli.console import Output
from taxi_cli.download import (
    CONNECT_BACKOFF_MAX,
    CONNECT_RETRIES,
    backoff_delay,
    connect_error,
    make_client,
)
from taxi_cli.errors import PartialFailure, TaxiError, UsageError
from taxi_cli.lock import RunLock, lock_path
from taxi_cli.plan import (
    LedgerEntry,
    PlanItem,
    State,
    WorkUnit,
    check_reprocess,
    make_plan,
    split_targets,
    work_units,
)
from taxi_cli.targets import Target, is_retryable, lock_name, make_targets

log = logging.getLogger("taxi_cli.backfill")

MAX_PROBES = 36
ATTEMPTS = 3  # per partition, on top of the downloader's own retries


@dataclass(frozen=True)
class Options:
    taxis: str
    months: str | None
    target: str
    dry_run: bool = False
    reprocess: str = "none"
    jobs: int = 2
    backwards: bool = False
    fail_fast: bool = False
    catch_up: bool = False
    mode: str = "replace"
    log_json: bool = False  # stderr carries JSON events only: no plan table there


@dataclass
class Outcome:
    item: PlanItem
    state: str  # done | skipped | failed | interrupted | not run
    rows: int | None = None
    seconds: float | None = None
    error: str | None = None
    attempts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.item.partition,
            "taxi": self.item.taxi,
            "month": self.item.month,
            "target": self.item.target,
            "action": str(self.item.action),
            "state": self.state,
            "rows": self.rows,
            "seconds": round(self.seconds, 3) if self.seconds is not None else None,
            "error": self.error,
            "attempts": self.attempts,
        }


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(o.state == state for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def failed_left(self) -> int:
        """Partitions failed in an earlier run and skipped by this one (--reprocess none)."""
        return sum(o.state == "skipped" and o.item.state is State.FAILED for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {
            "partitions": [o.as_json() for o in self.outcomes],
            "done": self.count("done"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "not_run": self.count("not run") + self.count("interrupted"),
            "failed_before_skipped": self.failed_left,
            "rows": sum(o.rows or 0 for o in self.outcomes if o.state == "done"),
            "seconds": round(self.seconds, 3),
        }


# ---- catch-up ---------------------------------------------------------------------------


def probe_month(cfg: Settings, client: httpx.Client, taxi: TaxiType, month: str) -> bool | None:
    """Does the month exist upstream? True/False, or None when the host does not answer."""
    url = taxi_url(cfg.source_url, taxi, month)
    unreachable = 0
    for failure in range(1, cfg.http_retries + 2):
        try:
            # Not following the redirect: GitHub answers an existing asset with a 302 to a
            # signed storage URL (which may refuse HEAD), and a missing one with a 404.
            response = client.head(url, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # a host that never answers is not "up to date": exit 3, after a short retry
            unreachable += 1
            reason = f"{type(exc).__name__}: {exc}"
            if unreachable > CONNECT_RETRIES or isinstance(exc, httpx.ConnectTimeout):
                raise connect_error(url, reason) from exc
            time.sleep(min(backoff_delay(cfg, unreachable), CONNECT_BACKOFF_MAX))
            continue
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code in (404, 410):
                return False
            if response.is_success or response.is_redirect:
                return True
            if response.status_code not in (429,) and response.status_code < 500:
                reason = f"HTTP {response.status_code}"
                log.warning("probe of %s failed: %s", url, reason)
                return None
            reason = f"HTTP {response.status_code}"
        if failure <= cfg.http_retries:
            time.sleep(backoff_delay(cfg, failure))
    if unreachable and reason.startswith(("ConnectError", "ConnectTimeout")):
        raise connect_error(url, reason)  # the budget ran out while it never answered
    log.warning("probe of %s failed: %s", url, reason)
    return None


def catch_up_months(
    taxis: Sequence[TaxiType],
    ledgers: Mapping[str, Sequence[LedgerEntry]],
    start: str | None,
    probe: Callable[[TaxiType, str], bool | None],
    *,
    today: str | None = None,
) -> dict[str, list[str]]:
    """Per taxi: first month not done (in every target) .. newest month upstream."""
    this_month = today or datetime.now(UTC).strftime("%Y-%m")
    result: dict[str, list[str]] = {}
    for taxi in taxis:
        done_per_target = [
            {e.month for e in entries if e.taxi == taxi.name and e.status == "done" and e.month}
            for entries in ledgers.values()
        ]
        done: set[str] = set.intersection(*done_per_target) if done_per_target else set()
        history = {
            e.month
            for entries in ledgers.values()
            for e in entries
            if e.taxi == taxi.name and e.month
        }
        first = start or (min(history) if history else taxi.window[0])
        while first in done:
            first = next_month(first)
        later_done = sorted(m for m in done if m > first)
        cursor = next_month(later_done[-1]) if later_done else first
        newest: str | None = later_done[-1] if later_done else None
        for _ in range(MAX_PROBES):
            if cursor > this_month:
                break
            found = probe(taxi, cursor)
            if not found:
                break
            newest, cursor = cursor, next_month(cursor)
        months = month_range(first, newest) if newest and newest >= first else []
        log.info(
            "catch-up %s: %s",
            taxi.name,
            f"{months[0]}..{months[-1]}" if months else f"up to date (first missing {first})",
            extra={"taxi": taxi.name, "months": len(months)},
        )
        result[taxi.name] = months
    return result


# ---- the run ------------------------------------------------------------------------------


def cached_sha256(cfg: Settings, taxi: TaxiType, month: str) -> str | None:
    """The sha256 of the cached verified file, or None when it is not cached.

    Only verified files carry the final name; their sidecar holds the sha256 while the
    file's size and mtime match it, else the file is hashed (no download, no parse).
    """
    path = extract.data_file(cfg, taxi, month)
    try:
        st = path.stat()
    except OSError:
        return None
    try:
        meta = json.loads(extract.sidecar_path(path).read_text())
        if meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns:
            return str(meta["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def plan_run(
    cfg: Settings, opts: Options, targets: Sequence[Target], taxis: Sequence[TaxiType]
) -> list[PlanItem]:
    ledgers = {t.name: list(t.ledger()) for t in targets}
    reprocess = check_reprocess(opts.reprocess)
    months: dict[str, list[str]] | list[str]
    if opts.catch_up:
        start = parse_months(opts.months)[0] if opts.months else None
        with make_client(cfg) as client:
            months = catch_up_months(
                taxis, ledgers, start, lambda taxi, month: probe_month(cfg, client, taxi, month)
            )
        if reprocess == "none":
            reprocess = "failed"  # making up failed months is what catch-up is for
    elif opts.months is None:
        raise UsageError("MONTHS is required (e.g. 2020-01..2020-06), unless --catch-up")
    else:
        months = parse_months(opts.months)
    return make_plan(
        taxis,
        months,
        [t.name for t in targets],
        ledgers,
        reprocess=reprocess,
        local_sha256=lambda taxi, month: cached_sha256(cfg, taxi, month),
        backwards=opts.backwards,
        respect_window=not opts.catch_up,
    )


def plan_table(plan: Sequence[PlanItem], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for name in ("partition", "ledger", "action", "why"):
        table.add_column(name)
    styles = {"load": "cyan", "reload": "yellow", "retry": "yellow", "skip": "dim"}
    for item in plan:
        style = styles[str(item.action)]
        # Text, not markup: a reason can quote an error message with brackets in it.
        action = Text(str(item.action), style=style)
        table.add_row(Text(item.partition), str(item.state), action, Text(item.reason))
    return table


def summary_table(summary: Summary) -> Table:
    table = Table(title="backfill summary", title_justify="left", show_edge=False)
    table.add_column("partition")
    table.add_column("state")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    styles = {"done": "green", "failed": "bold red", "skipped": "dim"}
    for o in summary.outcomes:
        style = styles.get(o.state, "yellow")
        rows = f"{o.rows:,}" if o.rows is not None else ""
        seconds = f"{o.seconds:.1f}" if o.seconds is not None else ""
        table.add_row(o.item.partition, f"[{style}]{o.state}[/]", rows, seconds)
    return table


@contextmanager
def _locks(cfg: Settings, targets: Sequence[Target]) -> Iterator[None]:
    with ExitStack() as stack:
        # Sorted, so two runs over overlapping targets cannot deadlock each other.
        for target in sorted(targets, key=lambda t: t.name):
            what = f"backfill into {target.identity()}"
            stack.enter_context(RunLock(lock_path(cfg, lock_name(target)), what=what))
        yield


def run(cfg: Settings, opts: Options, out: Output) -> Summary:
    """The `backfill` command (the plan and summary are printed here)."""
    # Every usage error before any connection or download.
    taxis = parse_taxis(opts.taxis)
    if opts.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {opts.jobs}")
    check_reprocess(opts.reprocess)
    if opts.months is not None:
        parse_months(opts.months)
    elif not opts.catch_up:
        raise UsageError("MONTHS is required (e.g. 2020-01..2020-06), unless --catch-up")
    targets = make_targets(cfg, split_targets(opts.target), mode=opts.mode)
    if opts.dry_run:  # reads the ledgers only (pg's is in the database)
        plan = plan_run(cfg, opts, targets, taxis)
        if out.json:
            out.emit_json({"plan": [item.as_json() for item in plan]})
        else:
            out.out.print(plan_table(plan, f"backfill plan ({opts.target}, dry run)"))
        return Summary([Outcome(item, "not run") for item in plan])
    with _locks(cfg, targets):
        for target in targets:
            target.check()
        plan = plan_run(cfg, opts, targets, taxis)
        runs = sum(item.runs for item in plan)
        log.info(
            "plan: %d of %d partitions to run",
            runs,
            len(plan),
            extra={"plan": [item.as_json() for item in plan]} if opts.log_json else {},
        )
        if not out.quiet and not out.json and not opts.log_json:
            out.err.print(plan_table(plan, f"backfill plan ({opts.target})"))
        summary = Runner(cfg, opts, targets, taxis, plan, out).run()
    report(summary, out)
    if summary.failed:
        first = summary.failed[0]
        raise PartialFailure(
            f"{len(summary.failed)} of {len(summary.outcomes)} partitions failed "
            f"(first: {first.item.partition}: {first.error}); they are recorded in the "
            "ledger: rerun with --reprocess failed"
        )
    return summary


def report(summary: Summary, out: Output) -> None:
    if out.json:
        out.emit_json(summary.as_json())
        return
    out.out.print(summary_table(summary))
    parts = [f"{summary.count(s)} {s}" for s in ("done", "skipped", "failed") if summary.count(s)]
    rows = sum(o.rows or 0 for o in summary.outcomes if o.state == "done")
    line = f"{', '.join(parts) or 'nothing to do'}; {rows:,} rows in {summary.seconds:.1f}s"
    if summary.failed_left:
        line += (
            f"; {summary.failed_left} partition(s) that failed before were left alone "
            "(--reprocess failed retries them)"
        )
    out.out.print(line)


# ---- workers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    kind: str  # "state" (progress text) | "outcome" | "unit-finished"
    unit: WorkUnit
    text: str = ""
    outcome: Outcome | None = None


class Runner:
    """N daemon worker threads pulling (taxi, month) units; the main thread reports.

    Workers are daemon threads so that ^C/SIGTERM ends the process at once: the database
    connections close and their open transactions roll back.
    """

    def __init__(
        self,
        cfg: Settings,
        opts: Options,
        targets: Sequence[Target],
        taxis: Sequence[TaxiType],
        plan: Sequence[PlanItem],
        out: Output,
    ) -> None:
        self.cfg = cfg
        self.opts = opts
        self.targets = {t.name: t for t in targets}
        self.plan = list(plan)
        self.units = work_units(plan, taxis)
        self.out = out
        self.stop = threading.Event()
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
            threading.Thread(target=self._work, name=f"backfill-{n}", daemon=True)
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
                report(summary, self.out)
                raise
        return Summary(list(outcomes.values()), time.monotonic() - started)

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
            MofNCompleteColumn(),
            console=self.out.err,
            transient=True,
        )
        items = sum(len(u.items) for u in self.units)
        overall = progress.add_task(f"backfill {self.opts.target}", total=items)
        lines: dict[str, TaskID] = {}

        def show(event: _Event) -> None:
            name = event.unit.name
            if event.kind == "state":
                if name not in lines:
                    lines[name] = progress.add_task(f"  {name}: {event.text}", total=None)
                else:
                    progress.update(lines[name], description=f"  {name}: {event.text}")
            elif event.kind == "outcome":
                progress.advance(overall)
            elif event.kind == "unit-finished" and name in lines:
                progress.remove_task(lines.pop(name))

        with progress:
            yield show

    # ---- in a worker thread ----

    def _work(self) -> None:
        with make_client(self.cfg) as client:
            while not self.stop.is_set():
                try:
                    unit = self.todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    self._unit(unit, client)
                except Exception as exc:  # a bug must neither hang the run nor pass as done
                    log.debug("%s: unexpected error", unit.name, exc_info=True)
                    for item in unit.items:
                        if (item.taxi, item.month, item.target) not in self._reported:
                            error = f"{type(exc).__name__}: {exc}"
                            self._emit(unit, Outcome(item, "failed", error=error))
                finally:
                    self.events.put(_Event("unit-finished", unit))
        # Units never started are reported by the main thread as "not run".
        while True:
            try:
                self.events.put(_Event("unit-finished", self.todo.get_nowait()))
            except queue.Empty:
                return

    def _retrying(self, what: str, unit: WorkUnit, step: Callable[[], Any]) -> tuple[Any, int]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return step(), attempt
            except TaxiError as exc:
                if not is_retryable(exc) or attempt == ATTEMPTS or self.stop.is_set():
                    raise _Failed(str(exc), attempt) from exc
                delay = backoff_delay(self.cfg, attempt)
                log.warning(
                    "%s %s: %s; retrying in %.1fs",
                    unit.name,
                    what,
                    exc,
                    delay,
                    extra={"partition": unit.name, "state": "retrying", "attempt": attempt},
                )
                time.sleep(delay)
            except Exception as exc:  # a bug or an unwrapped driver error: fail this one
                log.debug("%s %s failed", unit.name, what, exc_info=True)
                raise _Failed(f"{type(exc).__name__}: {exc}", attempt) from exc
        raise AssertionError("unreachable")

    def _emit(self, unit: WorkUnit, outcome: Outcome) -> None:
        extra = {
            "partition": outcome.item.partition,
            "state": outcome.state,
            "rows": outcome.rows,
            "seconds": round(outcome.seconds or 0, 3),
        }
        if outcome.state == "failed":
            log.error("%s failed: %s", outcome.item.partition, outcome.error, extra=extra)
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

    def _unit(self, unit: WorkUnit, client: httpx.Client) -> None:
        started = time.monotonic()
        self.events.put(_Event("state", unit, "downloading"))
        try:
            extracted, _ = self._retrying(
                "download",
                unit,
                lambda: extract.ensure_file(self.cfg, unit.taxi, unit.month, client=client),
            )
        except _Failed as failed:
            for item in unit.items:
                self._fail(unit, item, failed, unit.taxi.csv_name(unit.month), started)
            return
        blocked: str | None = None
        for item in unit.items:
            if self.stop.is_set():
                return
            if blocked is not None:
                # gcs+bq: the BigQuery load reads the object the failed upload did not write.
                not_loaded = _Failed(f"not loaded: {blocked}", 0)
                self._fail(unit, item, not_loaded, extracted.csv_name, started)
                continue
            target = self.targets[item.target]
            self.events.put(_Event("state", unit, f"loading into {target.name}"))
            item_started = time.monotonic()
            try:
                loaded, attempts = self._retrying(
                    f"load into {target.name}",
                    unit,
                    lambda target=target, item=item: target.load(  # type: ignore[misc]
                        unit.taxi, unit.month, extracted, item.action
                    ),
                )
            except _Failed as failed:
                self._fail(unit, item, failed, extracted.csv_name, item_started)
                blocked = f"{target.name} failed"
                continue
            self._emit(
                unit,
                Outcome(
                    item,
                    "done",
                    loaded.rows,
                    time.monotonic() - item_started,
                    attempts=attempts,
                ),
            )

    def _fail(
        self, unit: WorkUnit, item: PlanItem, failed: _Failed, file: str, started: float
    ) -> None:
        target = self.targets[item.target]
        try:
            target.record_failure(unit.taxi, unit.month, file, failed.message)
        except Exception as exc:  # the target is gone too: the run summary still says it
            log.error("%s: cannot record the failure: %s", item.partition, exc)
        outcome = Outcome(
            item, "failed", None, time.monotonic() - started, failed.message, failed.attempts
        )
        self._emit(unit, outcome)


class _Failed(Exception):
    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
