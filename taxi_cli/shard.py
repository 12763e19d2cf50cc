"""Splitting a backfill between N workers that an existing engine starts by index.

A partition belongs to shard `int(sha256("taxi/month")[:8], 16) % N`: a pure function of
the partition, so adding months at the end of a range (or another taxi type) moves no
partition from one shard to another, and every worker computes the same split without
talking to the others. Cloud Run Jobs, Kubernetes Indexed Jobs and AWS Batch array jobs
hand each task its index (and most its count) in the environment; `--shard I/N` names it
directly (a GitHub Actions matrix).

A shard is a unit of locking, not of truth: two workers given overlapping shares take
turns on each partition (the destinations' own per-file locks), and the second finds it
done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taxi_cli.catalog import Partition
from taxi_cli.errors import ConfigError, UsageError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

# The index (and count) variables each engine sets for its tasks.
ENGINES: tuple[tuple[str, str, str | None], ...] = (
    ("Cloud Run Jobs", "CLOUD_RUN_TASK_INDEX", "CLOUD_RUN_TASK_COUNT"),
    ("a Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", None),
    ("an AWS Batch array job", "AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE"),
)


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str = "--shard"  # where it came from, for the log and the plan

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count} (from {self.source}) is not a share: "
                "the index runs from 0 to count-1"
            )

    @property
    def name(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, part: Partition) -> bool:
        return shard_of(part, self.count) == self.index

    def pick(self, partitions: Sequence[Partition]) -> list[Partition]:
        return [p for p in partitions if self.owns(p)]


def shard_of(part: Partition, count: int) -> int:
    digest = hashlib.sha256(f"{part.taxi.name}/{part.month}".encode()).hexdigest()
    return int(digest[:8], 16) % count


def parse(spec: str) -> Shard:
    """`--shard I/N`, 0-based."""
    found = _SPEC.match(spec)
    if not found:
        raise UsageError(f"--shard takes INDEX/COUNT, 0-based (e.g. 0/4), not {spec!r}")
    return Shard(int(found[1]), int(found[2]))


def from_engine(env: Mapping[str, str], shard_count: int) -> Shard | None:
    """The shard an engine gave this task, or None when no engine variable is set.

    `shard_count` (--shard-count / TAXI_SHARD_COUNT; 0 = not given) supplies the count
    where the engine does not (Kubernetes), and overrides it where it does.
    """
    for engine, index_var, count_var in ENGINES:
        raw = env.get(index_var)
        if raw is None or raw == "":
            continue
        count_raw = env.get(count_var, "") if count_var else ""
        where = f"{index_var} ({engine})"
        try:
            index = int(raw)
            count = shard_count or int(count_raw)
        except ValueError:
            need = f"{count_var} or " if count_var else ""
            raise ConfigError(
                f"{where} is {raw!r} but the shard count is unknown or not a number: set "
                f"{need}--shard-count / TAXI_SHARD_COUNT"
            ) from None
        return Shard(index, count, where)
    return None
