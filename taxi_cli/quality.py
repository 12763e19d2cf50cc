"""Per-partition data checks: what is counted, the limits, and the verdict.

Each check counts the rows of one file that are suspicious; a check is breached when
its share of the file's rows exceeds its limit (a setting: `check_<name>`, a fraction
0..1). Release files are messy by nature (a 2020 file holds rows picked up in 2008 and
2062; a third of green 2020 rows have no passenger count), so the limits are shares, not
zero tolerance, and the defaults let the real 2019-2021 files pass. `checks = fail`
(`--checks fail`) fails the partition on a breach (its load rolls back); `warn` loads it
and records the breach, which `taxi-cli check` shows.

A destination computes the counts (pg: while it makes the COPY rows, `postgres.rows`;
gcs/bq: over the file before the upload, `lake_checks`) and records `Outcome.as_json()`
in its ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taxi_cli.config import Settings

# name -> what it counts (the names are the settings' suffixes and the ledger's keys;
# the order is the one the C fast path counts them in)
CHECKS: dict[str, str] = {
    "outside_month": "pickups outside the file's month",
    "dropoff_before_pickup": "dropoff before pickup",
    "negative_amounts": "negative fare or total",
    "null_passenger_count": "null passenger count",
    "unknown_zones": "unknown pickup or dropoff zone id",
}


@dataclass(frozen=True)
class Limits:
    shares: Mapping[str, float]  # check -> the largest share of rows that passes
    fail: bool  # a breach fails the partition (else it is a warning)

    @classmethod
    def of(cls, cfg: Settings, fail: bool | None = None) -> Limits:
        shares = {name: float(getattr(cfg, f"check_{name}")) for name in CHECKS}
        return cls(shares, cfg.checks == "fail" if fail is None else fail)


@dataclass(frozen=True)
class Outcome:
    rows: int
    counts: Mapping[str, int]
    limits: Mapping[str, float]

    @property
    def breaches(self) -> list[str]:
        return [
            name
            for name, found in self.counts.items()
            if self.rows and found / self.rows > self.limits.get(name, 1.0)
        ]

    def describe(self, name: str) -> str:
        found = self.counts.get(name, 0)
        share = found / self.rows if self.rows else 0.0
        limit = self.limits.get(name, 1.0)
        return f"{CHECKS.get(name, name)}: {found:,} ({share:.2%}, limit {limit:.2%})"

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "counts": dict(self.counts),
            "limits": dict(self.limits),
            "breaches": self.breaches,
        }

    @classmethod
    def from_json(cls, data: Any) -> Outcome | None:
        if not isinstance(data, dict) or not isinstance(data.get("counts"), dict):
            return None
        return cls(int(data.get("rows") or 0), data["counts"], data.get("limits") or {})


def breach_message(file: str, outcome: Outcome) -> str:
    found = "; ".join(outcome.describe(name) for name in outcome.breaches)
    return (
        f"{file}: data checks failed ({found}); nothing of it was committed: raise the "
        "limits (TAXI_CHECK_*) or load with --checks warn"
    )
