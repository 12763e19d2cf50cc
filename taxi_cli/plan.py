"""Planning: which (taxi, month, destination) partitions to load, and why.

Reprocess policies (Airflow 3's backfill `reprocess_behavior` names):

- `none`: load missing partitions; skip partitions already done from the same source
  (the cached file's sha256 equals the ledger's; without a cached file, `done` counts
  as done, so nothing is re-downloaded just to compare); reload done partitions whose
  source changed; leave failed ones alone (say so).
- `failed`: as `none`, and retry failed partitions.
- `completed` (alias `all`): reload everything.

A month outside a taxi type's known release window is still planned when the user named
the type: the window is a hint ("outside the known window; trying"), never a wall.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from taxi_cli.catalog import Partition
from taxi_cli.choices import Reprocess
from taxi_cli.model import LedgerRow

LedgerEntry = LedgerRow  # what planning and status read from any destination's ledger


class State(StrEnum):
    DONE = "done"
    FAILED = "failed"
    MISSING = "missing"


class Action(StrEnum):
    LOAD = "load"
    RELOAD = "reload"
    RETRY = "retry"
    SKIP = "skip"


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
    shard: str | None = None  # "I/N" when the run is split between workers
    refetch: bool = False  # the release asset changed upstream: download it again

    @property
    def partition(self) -> str:
        what = f"{self.taxi} {self.month}" if self.month else self.taxi
        return f"{what} -> {self.target}"

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
            "why": self.reason,
            "ledger_sha256": self.ledger_sha256,
            "ledger_rows": self.ledger_rows,
            "shard": self.shard,
            "refetch": self.refetch,
        }


def state_of(entry: LedgerEntry | None) -> State:
    if entry is None:
        return State.MISSING
    return State.DONE if entry.status == "done" else State.FAILED


def decide(
    entry: LedgerEntry | None,
    reprocess: Reprocess,
    local_sha256: str | None,
    changed: str | None = None,
    reload_changed: bool = False,
) -> tuple[State, Action, str]:
    """The action for one partition, with a short reason for the plan table.

    `changed`: how its release asset changed upstream since the load (`size a -> b`)."""
    state = state_of(entry)
    if entry is None:
        return state, Action.LOAD, "not loaded yet"
    if reprocess.canonical is Reprocess.COMPLETED:
        return state, Action.RELOAD, f"--reprocess {reprocess}"
    if state is State.FAILED:
        if reprocess is Reprocess.FAILED:
            return state, Action.RETRY, f"failed before: {entry.error or 'unknown error'}"
        return state, Action.SKIP, "failed before; --reprocess failed retries it"
    if changed is not None:
        if reload_changed:
            return state, Action.RELOAD, f"changed upstream ({changed})"
        return state, Action.SKIP, f"changed upstream ({changed}); --reprocess changed reloads it"
    if local_sha256 is not None and entry.sha256 and local_sha256 != entry.sha256:
        return state, Action.RELOAD, "source changed (cached file's sha256 differs)"
    if local_sha256 is None:
        return state, Action.SKIP, "done (file not cached; ledger trusted)"
    return state, Action.SKIP, "done, same source sha256"


def make_plan(
    partitions: Sequence[Partition],
    targets: Sequence[str],
    ledgers: Mapping[str, Iterable[LedgerEntry]],
    *,
    reprocess: Reprocess = Reprocess.NONE,
    local_sha256: Callable[[Partition], str | None] = lambda part: None,
    backwards: bool = False,
    changed: Mapping[tuple[str, str], str] | None = None,
    reload_changed: bool | None = None,
) -> list[PlanItem]:
    """Every (partition, target) in run order: by month (newest first if `backwards`),
    then taxi in catalogue order, then target in load order.

    `changed`: (taxi, month) -> how its asset changed upstream; those done months are
    reloaded (from a fresh download) when `reload_changed` (default: `--reprocess
    changed`), else the plan says so."""
    changed = changed or {}
    if reload_changed is None:
        reload_changed = reprocess is Reprocess.CHANGED
    index: dict[tuple[str, str, str | None], LedgerEntry] = {}
    for target, entries in ledgers.items():
        for known in entries:
            index[(target, known.taxi, known.month)] = known
    order = {name: i for i, name in enumerate(dict.fromkeys(p.taxi.name for p in partitions))}
    wanted = sorted(partitions, key=lambda p: (p.month, order[p.taxi.name]))
    if backwards:
        wanted.sort(key=lambda p: p.month, reverse=True)  # stable: taxi order kept
    plan: list[PlanItem] = []
    for part in wanted:
        sha_cache: list[str | None] = []
        for target in targets:
            entry = index.get((target, part.taxi.name, part.month))
            local: str | None = None
            reloads_all = reprocess.canonical is Reprocess.COMPLETED
            if entry is not None and entry.status == "done" and not reloads_all:
                if not sha_cache:
                    sha_cache.append(local_sha256(part))
                local = sha_cache[0]
            drift = changed.get((part.taxi.name, part.month))
            state, action, reason = decide(entry, reprocess, local, drift, reload_changed)
            if action is not Action.SKIP and not part.in_window:
                reason += f"; outside the known window {part.taxi.window_text()}; trying"
            plan.append(
                PlanItem(
                    part.taxi.name,
                    part.month,
                    target,
                    state,
                    action,
                    reason,
                    entry.sha256 if entry else None,
                    entry.rows if entry else None,
                    refetch=drift is not None and action is not Action.SKIP,
                )
            )
    return plan


@dataclass(frozen=True)
class WorkUnit:
    """One partition: extract once, then load into each destination that needs it."""

    partition: Partition
    items: tuple[PlanItem, ...]

    @property
    def name(self) -> str:
        return self.partition.name


def work_units(plan: Sequence[PlanItem], partitions: Sequence[Partition]) -> list[WorkUnit]:
    """Group the runnable plan items by partition, keeping the plan's order."""
    by_key = {(p.taxi.name, p.month): p for p in partitions}
    units: dict[tuple[str, str], list[PlanItem]] = {}
    for item in plan:
        if item.runs:
            units.setdefault((item.taxi, item.month), []).append(item)
    return [WorkUnit(by_key[key], tuple(items)) for key, items in units.items()]
