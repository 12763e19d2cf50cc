"""`backfill`: load a range of months into a target, resumably, with N workers.

The run: take the target's lock (one backfill per target), read its ledger, plan every
(taxi, month, destination) partition, print the plan, then run it through the partition
loop that every load command shares (`taxi_cli.load`): N workers, each partition
extracted once and loaded into each destination in order, failures recorded and retried
by `--reprocess failed`, exit 4 when some failed.

Catch-up (for schedules): the months run from the first month not done yet up to the
newest month that exists upstream, found with HEAD requests from the last done month
forward until a 404 (at most `MAX_PROBES`, never past the current month). With no
history the range starts at the taxi type's first released month. Probing goes past the
known release window: the window is a hint, the source is the truth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
from rich.table import Table
from rich.text import Text

from taxi_cli import extract, load, upstream
from taxi_cli.catalog import Partition, TaxiType, month_range, next_month, taxi_url
from taxi_cli.choices import Reprocess, TargetName
from taxi_cli.config import Settings, hostname
from taxi_cli.console import Output
from taxi_cli.destinations import Destination, lock_name
from taxi_cli.download import CONNECT_RETRIES, connect_error, make_client
from taxi_cli.errors import TransientError
from taxi_cli.lock import RunLock, lock_path
from taxi_cli.model import LedgerRow, Upstream
from taxi_cli.plan import PlanItem
from taxi_cli.retry import retrying
from taxi_cli.shard import Shard, shard_of

log = logging.getLogger("taxi_cli.backfill")

MAX_PROBES = 36
SHARD_WAIT = 6 * 3600.0  # a second worker on the same shard waits for the first this long


@dataclass(frozen=True)
class Options:
    target: TargetName
    dry_run: bool = False
    reprocess: Reprocess = Reprocess.NONE
    jobs: int = 2
    backwards: bool = False
    fail_fast: bool = False
    catch_up: bool = False
    log_json: bool = False  # stderr carries JSON events only: no plan table there
    shard: Shard | None = None  # this worker's share of the plan (taxi_cli.shard)
    shard_count: int = 0  # label every plan item with its shard (a CI matrix), 0 = no
    claim: bool = False  # pull partitions from a claims table instead (pg)


def worker_name(shard: Shard | None) -> str:
    """Who runs: recorded in the ledger with each partition it loads."""
    me = f"{hostname()}:{os.getpid()}"
    return f"shard {shard.name} {me}" if shard else me


# ---- catch-up ---------------------------------------------------------------------------


class _Unanswered(TransientError):
    pass


class _Unreachable(Exception):
    """The probe's connection failed: the host never answered."""

    def __init__(self, exc: httpx.TransportError) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.reason = f"{type(exc).__name__}: {exc}"
        self.timed_out = isinstance(exc, httpx.ConnectTimeout)


def probe_month(cfg: Settings, client: httpx.Client, taxi: TaxiType, month: str) -> bool | None:
    """Does the month exist upstream? True/False, or None when the host does not answer.

    A host that cannot be reached at all (refused, no DNS, no route) is not "up to date":
    after `CONNECT_RETRIES` short retries (none after a connect timeout) it raises the
    ConnectError (exit 3) instead."""
    url = taxi_url(cfg.source_url, taxi, month)

    def head() -> bool | None:
        try:
            # Not following the redirect: GitHub answers an existing asset with a 302 to a
            # signed storage URL (which may refuse HEAD), and a missing one with a 404.
            response = client.head(url, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(exc) from exc
        except httpx.HTTPError as exc:
            raise _Unanswered(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (404, 410):
            return False
        if response.is_success or response.is_redirect:
            return True
        if response.status_code == 429 or response.status_code >= 500:
            raise _Unanswered(f"HTTP {response.status_code}")
        log.warning("probe of %s failed: HTTP %s", url, response.status_code)
        return None

    failures = {"unreachable": 0, "unanswered": 0}

    def retryable(exc: BaseException) -> bool:
        kind = "unreachable" if isinstance(exc, _Unreachable) else "unanswered"
        failures[kind] += 1
        if isinstance(exc, _Unreachable):
            return failures[kind] <= CONNECT_RETRIES and not exc.timed_out
        return isinstance(exc, _Unanswered) and failures[kind] <= cfg.http_retries

    try:
        found, _ = retrying(
            head,
            cfg=cfg,
            attempts=max(cfg.http_retries, CONNECT_RETRIES) + 1,
            retryable=retryable,
        )
    except _Unreachable as exc:
        raise connect_error(url, exc.reason) from exc
    except _Unanswered as exc:
        log.warning("probe of %s failed: %s", url, exc)
        return None
    return found


def catch_up_months(
    taxis: Sequence[TaxiType],
    ledgers: Mapping[str, Sequence[LedgerRow]],
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


def plan_run(
    cfg: Settings,
    opts: Options,
    destinations: Sequence[Destination],
    partitions: Sequence[Partition] | None,
    taxis: Sequence[TaxiType],
    *,
    read_only: bool = False,
) -> tuple[list[PlanItem], list[Partition]]:
    """The plan, and the partitions it covers (catch-up finds them upstream)."""
    ledgers = load.read_ledgers(destinations, read_only=read_only)
    reprocess = opts.reprocess
    reload_changed = reprocess is Reprocess.CHANGED
    if opts.catch_up:
        start = min(p.month for p in partitions) if partitions else None
        with make_client(cfg) as client:
            months = catch_up_months(
                taxis, ledgers, start, lambda taxi, month: probe_month(cfg, client, taxi, month)
            )
        partitions = [Partition(t, m) for t in taxis for m in months.get(t.name, [])]
        if reprocess is Reprocess.NONE:
            reprocess = Reprocess.FAILED  # making up failed months is what catch-up is for
        if cfg.catch_up_changed:  # and so is reloading a month re-published upstream
            reload_changed = True
            partitions += _done_before(ledgers, taxis, partitions)
    assert partitions is not None  # the CLI requires MONTHS unless --catch-up
    if opts.shard is not None:
        mine = opts.shard.pick(partitions)
        log.info(
            "shard %s (from %s): %d of %d partitions",
            opts.shard.name,
            opts.shard.source,
            len(mine),
            len(partitions),
            extra={"shard": opts.shard.name},
        )
        partitions = mine
    changed = drift(cfg, partitions, ledgers)  # this shard's done months only
    if opts.catch_up:  # the done months outside the range were only asked about
        partitions = [
            p
            for p in partitions
            if (p.taxi.name, p.month) in changed or p.month in months.get(p.taxi.name, [])
        ]
    plan = load.plan_partitions(
        cfg,
        partitions,
        destinations,
        ledgers,
        reprocess=reprocess,
        backwards=opts.backwards,
        changed=changed,
        reload_changed=reload_changed,
    )
    count = opts.shard.count if opts.shard else opts.shard_count
    if count:
        by_key = {(p.taxi.name, p.month): p for p in partitions}
        plan = [
            replace(i, shard=f"{shard_of(by_key[(i.taxi, i.month)], count)}/{count}") for i in plan
        ]
    return plan, list(partitions)


def _done_before(
    ledgers: Mapping[str, Sequence[LedgerRow]],
    taxis: Sequence[TaxiType],
    partitions: Sequence[Partition],
) -> list[Partition]:
    """The done months of `taxis` that `partitions` does not cover (catch-up's history)."""
    have = {(p.taxi.name, p.month) for p in partitions}
    by_name = {t.name: t for t in taxis}
    found = {
        (e.taxi, e.month)
        for entries in ledgers.values()
        for e in entries
        if e.status == "done" and e.month and e.taxi in by_name
    }
    return [Partition(by_name[t], m) for t, m in sorted(found - have)]


def drift(
    cfg: Settings,
    partitions: Sequence[Partition],
    ledgers: Mapping[str, Sequence[LedgerRow]],
) -> dict[tuple[str, str], str]:
    """(taxi, month) -> how the release asset of a done partition changed upstream since
    it was loaded (`size 670357 -> 670361`), asking the host once per month, concurrently.

    The loaded version is the ledger's (`upstream`), else the cached file's when it is
    the file the ledger says was loaded. A month the host does not answer for is left
    out: unknown is not changed."""
    wanted = {(p.taxi.name, p.month): p for p in partitions}
    recorded: dict[tuple[str, str], Upstream] = {}
    for entries in ledgers.values():
        for entry in entries:
            key = (entry.taxi, entry.month or "")
            if entry.status != "done" or key not in wanted or key in recorded:
                continue
            version = upstream.of_ledger(entry) or _cached_version(cfg, wanted[key], entry)
            if version is not None:
                recorded[key] = version
    if not recorded:
        return {}
    current = upstream.versions(cfg, [wanted[key] for key in recorded])
    changed = upstream.changes(recorded, current)
    for (taxi, month), how in sorted(changed.items()):
        log.info("%s %s changed upstream (%s)", taxi, month, how)
    return changed


def _cached_version(cfg: Settings, part: Partition, entry: LedgerRow) -> Upstream | None:
    path = extract.data_file(cfg, part.taxi, part.month)
    if not entry.sha256 or extract.cached_sha256(cfg, part.taxi, part.month) != entry.sha256:
        return None
    etag, modified = extract.recorded_validators(path)
    return Upstream(path.stat().st_size, etag, modified)


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


@contextmanager
def _locks(
    cfg: Settings, destinations: Sequence[Destination], shard: Shard | None
) -> Iterator[None]:
    """One backfill per target; with shards, one worker per shard of a target.

    Workers of different shards run at once. Two workers given the same shard (an
    engine's retry, a mistaken count, two machines) take turns: the second waits for the
    first, then finds its partitions done. Overlapping shares take turns partition by
    partition on the destinations' own per-file locks.
    """
    with ExitStack() as stack:
        # Sorted, so two runs over overlapping targets cannot deadlock each other.
        for destination in sorted(destinations, key=lambda d: d.name):
            name, what = lock_name(destination), f"backfill into {destination.identity()}"
            if shard is not None:
                name += f"-shard-{shard.index}-of-{shard.count}"
                what += f" (shard {shard.name})"
            lock = RunLock(lock_path(cfg, name), what=what, wait=SHARD_WAIT if shard else 0.0)
            stack.enter_context(lock)
        yield


def run(
    cfg: Settings,
    opts: Options,
    partitions: Sequence[Partition] | None,
    taxis: Sequence[TaxiType],
    destinations: Sequence[Destination],
    out: Output,
) -> load.Summary:
    """The `backfill` command (the plan and summary are printed here).

    Every argument arrives parsed and every destination built: usage errors have
    happened before any connection or download.
    """
    if opts.dry_run:  # reads the ledgers only, and creates nothing to read them
        plan, _ = plan_run(cfg, opts, destinations, partitions, taxis, read_only=True)
        if out.json:
            out.emit_json([item.as_json() for item in plan])
        else:
            out.out.print(plan_table(plan, f"backfill plan ({opts.target}, dry run)"))
        return load.Summary([load.Outcome(item, "not run") for item in plan])
    # --claim workers share the whole run: the claims table, not a lock, keeps them apart.
    locks = _locks(cfg, destinations, opts.shard) if not opts.claim else nullcontext()
    with locks:
        for destination in destinations:
            destination.check()
        since = None
        if opts.claim:  # before the ledger read: what finishes later is another worker's
            from taxi_cli.postgres.claims import server_time

            since = server_time(cfg)
        plan, covered = plan_run(cfg, opts, destinations, partitions, taxis)
        runs = sum(item.runs for item in plan)
        log.info(
            "plan: %d of %d partitions to run",
            runs,
            len(plan),
            extra={"plan": [item.as_json() for item in plan]} if opts.log_json else {},
        )
        if not out.quiet and not out.json and not opts.log_json:
            out.err.print(plan_table(plan, f"backfill plan ({opts.target})"))
        run_opts = load.RunOptions(
            jobs=opts.jobs,
            fail_fast=opts.fail_fast,
            label="backfill" + (f" shard {opts.shard.name}" if opts.shard else ""),
            retry_hint="rerun with --reprocess failed to retry them",
            worker=worker_name(opts.shard),
        )
        claims = None
        if since is not None:
            from taxi_cli.postgres.claims import Claims

            runnable = list(dict.fromkeys(f"{i.taxi} {i.month}" for i in plan if i.runs))
            claims = Claims(cfg, runnable, since)
        return load.execute(cfg, plan, covered, destinations, out, run_opts, claims)
