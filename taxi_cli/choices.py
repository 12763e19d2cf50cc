"""Every choice an option offers, as one StrEnum each.

The CLI declares options with these types, so `--help` shows `[replace|merge]` and a bad
value exits 2 before anything runs; the library takes the same enums, so no function
below the CLI validates a choice string by hand.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How a file's rows replace what a destination holds of that file."""

    REPLACE = "replace"  # the file's rows are swapped as one unit
    MERGE = "merge"  # the course's insert-only MERGE on unique_row_id


class BadRows(StrEnum):
    REJECT = "reject"  # a bad row fails the file; nothing lands
    QUARANTINE = "quarantine"  # bad rows go to the rejects table, the rest loads


class Reprocess(StrEnum):
    """Airflow 3's backfill `reprocess_behavior` names (`all` is kept as an alias)."""

    NONE = "none"  # only what is not done
    FAILED = "failed"  # also retry what failed
    COMPLETED = "completed"  # reload everything, done or not
    ALL = "all"  # alias of completed
    CHANGED = "changed"  # reload the done months whose release asset changed upstream

    @property
    def canonical(self) -> Reprocess:
        return Reprocess.COMPLETED if self is Reprocess.ALL else self


class Checks(StrEnum):
    """What a breached data check does to its partition (taxi_cli.quality)."""

    WARN = "warn"  # load it, record the breach
    FAIL = "fail"  # fail the partition; nothing of it commits


class ReportFormat(StrEnum):
    HTML = "html"  # one self-contained file with SVG charts
    MD = "md"  # Markdown tables, for a CI job summary


class TargetName(StrEnum):
    """Where a backfill goes; `gcs+bq` uploads, then loads BigQuery from that object."""

    PG = "pg"
    GCS = "gcs"
    BQ = "bq"
    GCS_BQ = "gcs+bq"

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(self.value.split("+"))


class StatusTarget(StrEnum):
    PG = "pg"
    GCS = "gcs"
    BQ = "bq"


class ExtractFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


class LakeFormat(StrEnum):
    PARQUET = "parquet"  # typed, what BigQuery loads without CSV surprises
    CSV_GZ = "csv.gz"  # the release file as published


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class DbAction(StrEnum):
    STATUS = "status"
    START = "start"
    STOP = "stop"
    URL = "url"


class ScheduleKind(StrEnum):
    CRON = "cron"
    SYSTEMD = "systemd"


class TransformTarget(StrEnum):
    PG = "pg"
    BQ = "bq"
