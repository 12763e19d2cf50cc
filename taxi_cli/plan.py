"""Backfill planning: which (taxi, month, target) partitions to load, and why.

Reprocess policies (the names follow Airflow's backfill `reprocess_behavior`):

- `none`: load missing partitions; skip partitions already done from the same source
  (the cached file's sha256 equals the ledger's; without a cached file, `done` counts
  as done, so nothing is re-downloaded just to compare); reload done partitions whose
  source changed; leave failed ones alone (say so).
- `failed`: as `none`, and retry failed partitions.
- `all`: reload everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from taxi_cli.catalog import TaxiType, in_window
from taxi_cli.errors import UsageError

REPROCESS = ("none", "failed", "all")
TARGETS = ("pg", "gcs", "bq", "gcs+bq")


class State(StrEnum):
    DONE = "done"
    FAILED = "failed"
    MISSING = "missing"


class Action(StrEnum):
    LOAD = "load"
    RELOAD = "reload"
    RETRY = "retry"
    SKIP = "skip"


class LedgerEntry(Protocol):
    """What planning and status read from a ledger row (SQLite or the pg table)."""

    @property
    def taxi(self) -> str: ...
    @property
    def month(self) -> str | None: ...  # None: not a monthly partition (the zone lookup)
    @property
    def file(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def rows(self) -> int | None: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class PlanItem:
    taxi: str
    month: str
    target: str
    state: State
    action: Action
    reason: str
    ledger_sha256: str | None = None
    ledger_rows: int | None = None

    @property
    def partition(self) -> str:
        return f"{self.taxi} {self.month} -> {self.target}"

    @property
    def runs(self) -> bool:
        return self.action is not Action.SKIP

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "taxi": self.taxi,
            "month": self.month,
            "target": self.target,
            "state": str(self.state),
            "action": str(self.action),
            "reason": self.reason,
            "ledger_sha256": self.ledger_sha256,
            "ledger_rows": self.ledger_rows,
        }


def split_targets(target: str) -> list[str]:
    """`gcs+bq` -> ["gcs", "bq"] (upload first: the BigQuery load reads the object)."""
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; accepted: {', '.join(TARGETS)}")
    return target.split("+")


def check_reprocess(reprocess: str) -> str:
    if reprocess not in REPROCESS:
        raise UsageError(f"--reprocess must be one of {', '.join(REPROCESS)}, not {reprocess!r}")
    return reprocess


def state_of(entry: LedgerEntry | None) -> State:
    if entry is None:
        return State.MISSING
    return State.DONE if entry.status == "done" else State.FAILED


def decide(
    entry: LedgerEntry | None, reprocess: str, local_sha256: str | None
) -> tuple[State, Action, str]:
    """The action for one partition, with a short reason for the plan table."""
    state = state_of(entry)
    if entry is None:
        return state, Action.LOAD, "not loaded yet"
    if reprocess == "all":
        return state, Action.RELOAD, "--reprocess all"
    if state is State.FAILED:
        if reprocess == "failed":
            return state, Action.RETRY, f"failed before: {entry.error or 'unknown error'}"
        return state, Action.SKIP, "failed before; --reprocess failed retries it"
    if local_sha256 is not None and entry.sha256 and local_sha256 != entry.sha256:
        return state, Action.RELOAD, "source changed (cached file's sha256 differs)"
    if local_sha256 is None:
        return state, Action.SKIP, "done (file not cached; ledger trusted)"
    return state, Action.SKIP, "done, same source sha256"


def make_plan(
    taxis: Sequence[TaxiType],
    months: Mapping[str, Sequence[str]] | Sequence[str],
    targets: Sequence[str],
    ledgers: Mapping[str, Iterable[LedgerEntry]],
    *,
    reprocess: str = "none",
    local_sha256: Callable[[TaxiType, str], str | None] = lambda taxi, month: None,
    backwards: bool = False,
    respect_window: bool = True,
) -> list[PlanItem]:
    """Every (taxi, month, target) in run order: by month (newest first if `backwards`),
    then taxi in catalogue order, then target in load order.

    `months` is one list for every taxi, or a list per taxi name (catch-up ranges).
    Months outside a taxi's known release window are planned as skips when
    `respect_window` (so `all 2019..2021` does not fail on fhv 2020).
    """
    check_reprocess(reprocess)
    index: dict[tuple[str, str, str | None], LedgerEntry] = {}
    for target, entries in ledgers.items():
        for known in entries:
            index[(target, known.taxi, known.month)] = known
    wanted: list[tuple[str, int, TaxiType]] = []
    for order, taxi in enumerate(taxis):
        taxi_months = months if not isinstance(months, Mapping) else months.get(taxi.name, ())
        wanted.extend((month, order, taxi) for month in taxi_months)
    wanted.sort(key=lambda item: (item[0], item[1]), reverse=False)
    if backwards:
        wanted.sort(key=lambda item: item[0], reverse=True)  # stable: taxi order kept
    plan: list[PlanItem] = []
    for month, _, taxi in wanted:
        sha_cache: list[str | None] = []
        for target in targets:
            entry = index.get((target, taxi.name, month))
            if respect_window and not in_window(taxi, month):
                state = state_of(entry)
                reason = f"outside the {taxi.name} release window {taxi.window_text()}"
                plan.append(PlanItem(taxi.name, month, target, state, Action.SKIP, reason))
                continue
            local: str | None = None
            if entry is not None and entry.status == "done" and reprocess != "all":
                if not sha_cache:
                    sha_cache.append(local_sha256(taxi, month))
                local = sha_cache[0]
            state, action, reason = decide(entry, reprocess, local)
            plan.append(
                PlanItem(
                    taxi.name,
                    month,
                    target,
                    state,
                    action,
                    reason,
                    entry.sha256 if entry else None,
                    entry.rows if entry else None,
                )
            )
    return plan


@dataclass(frozen=True)
class WorkUnit:
    """One (taxi, month): extract once, then load into each target that needs it."""

    taxi: TaxiType
    month: str
    items: tuple[PlanItem, ...]

    @property
    def name(self) -> str:
        return f"{self.taxi.name} {self.month}"


def work_units(plan: Sequence[PlanItem], taxis: Sequence[TaxiType]) -> list[WorkUnit]:
    """Group the runnable plan items by (taxi, month), keeping the plan's order."""
    by_name = {t.name: t for t in taxis}
    units: dict[tuple[str, str], list[PlanItem]] = {}
    for item in plan:
        if item.runs:
            units.setdefault((item.taxi, item.month), []).append(item)
    return [WorkUnit(by_name[taxi], month, tuple(items)) for (taxi, month), items in units.items()]
