"""`make smoke-gcp`: the whole cloud path against a REAL Google Cloud project.

Not part of `make test` (it costs a few cents at most and needs a project). It checks
what no emulator can: IAM with the documented roles, the partition decorator, the
sandbox-safe job shapes, real bytes billed, Parquet column matching, and that the
state lives in the project (a fresh state dir skips what is done).

Needs: TAXI_GCP_PROJECT, TAXI_GCS_BUCKET (an existing bucket, or add
TAXI_SMOKE_CREATE_BUCKET=1), and credentials (GOOGLE_APPLICATION_CREDENTIALS or
`gcloud auth application-default login`). It loads green 2020-04 into a scratch dataset
`taxi_smoke_<time>` (kept for inspection unless TAXI_SMOKE_CLEANUP=1) under the object
prefix `taxi-cli-smoke/<time>/`. Without them it says what it needs and exits 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MONTH = "2020-04"
ADC_FILE = Path("~/.config/gcloud/application_default_credentials.json").expanduser()


def missing() -> list[str]:
    needs = []
    if not os.environ.get("TAXI_GCP_PROJECT"):
        needs.append("TAXI_GCP_PROJECT (the project to load into)")
    if not os.environ.get("TAXI_GCS_BUCKET"):
        needs.append("TAXI_GCS_BUCKET (a bucket in that project)")
    creds = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not (creds and Path(creds).is_file()) and not ADC_FILE.is_file():
        needs.append(
            "credentials (GOOGLE_APPLICATION_CREDENTIALS=key.json, or "
            "`gcloud auth application-default login`)"
        )
    return needs


class Smoke:
    def __init__(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        self.dataset = os.environ.get("TAXI_SMOKE_DATASET") or f"taxi_smoke_{stamp}"
        self.prefix = f"taxi-cli-smoke/{stamp}/"
        self.work = Path(tempfile.mkdtemp(prefix="taxi-smoke-"))
        self.failed = 0
        self.env = {
            **os.environ,
            "TAXI_BQ_DATASET": self.dataset,
            "TAXI_GCS_PREFIX": self.prefix,
            "TAXI_DATA_DIR": str(self.work / "data"),
            "TAXI_STATE_DIR": str(self.work / "state"),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "taxi_cli", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=1800)

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""))
        self.failed += not ok

    def json_of(self, done: subprocess.CompletedProcess[str]) -> Any:
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)

    def run(self) -> int:
        print(f"smoke-gcp: project {os.environ['TAXI_GCP_PROJECT']}, dataset {self.dataset}")
        create = ["--create-bucket"] if os.environ.get("TAXI_SMOKE_CREATE_BUCKET") else []
        gcs = self.cli("load-gcs", "green", MONTH, "--json", *create)
        self.check(
            "load-gcs with the object roles only (no storage.buckets.get)",
            gcs.returncode == 0,
            gcs.stderr.strip().splitlines()[-1] if gcs.returncode else "",
        )
        bq = self.cli("load-bq", "green", MONTH, "--create-dataset", "--json")
        summary = self.json_of(bq)
        self.check(
            "load-bq: one load job into green_tripdata$202004 (Parquet names match)",
            summary is not None,
            bq.stderr.strip().splitlines()[-1] if summary is None else "",
        )
        if summary is None:
            return 1
        [result] = [p["result"] for p in summary["partitions"] if p["result"]]
        self.check("the partition decorator", str(result["partition"]).endswith("$202004"))
        self.check(
            "bytes processed/billed reported",
            all(j["bytes_billed"] is not None for j in result["jobs"]),
            json.dumps(result["jobs"]),
        )
        self.check_row_ids(result)
        shutil.rmtree(self.work / "state", ignore_errors=True)
        rerun = self.json_of(self.cli("backfill", "green", MONTH, "--target", "gcs+bq", "--json"))
        self.check(
            "a fresh state dir skips what is done (state in the project)",
            rerun is not None and rerun["skipped"] == 2,
        )
        status = self.json_of(self.cli("status", "--target", "bq", "--json"))
        self.check(
            "status --target bq reads the ledger table",
            status is not None and status["total_rows"] == result["rows"],
        )
        csv = self.cli("load-bq", "green", MONTH, "--format", "csv.gz", "--force", "--json")
        self.check(
            "csv.gz: staging load + one query job writing the decorator",
            csv.returncode == 0,
            csv.stderr.strip().splitlines()[-1] if csv.returncode else "",
        )
        self.check_row_ids(result)
        if os.environ.get("TAXI_SMOKE_CLEANUP"):
            self.cleanup()
        print(f"smoke-gcp: {'all checks passed' if not self.failed else f'{self.failed} failed'}")
        return 0 if not self.failed else 1

    def check_row_ids(self, result: dict[str, Any]) -> None:
        """Every unique_row_id in BigQuery equals taxi_cli.rowid's for the same file."""
        import csv
        import gzip
        from collections import Counter

        from google.cloud import bigquery

        from taxi_cli import rowid
        from taxi_cli.catalog import GREEN

        client = bigquery.Client(project=os.environ["TAXI_GCP_PROJECT"])
        rows = client.query(
            f"SELECT unique_row_id FROM `{result['where']}` WHERE file_month = '{MONTH}-01'"
        ).result()
        got = Counter(r[0] for r in rows)
        found = list((self.work / "data").rglob(f"green_tripdata_{MONTH}.csv.gz"))
        if not found:  # the cache was not kept: compare with the count only
            self.check("row ids (no cached file to compare)", sum(got.values()) == result["rows"])
            return
        path = found[0]
        with gzip.open(path, "rt", newline="") as fh:
            reader = csv.reader(fh)
            plan = rowid.hash_plan(GREEN, next(reader))
            want = Counter(rowid.row_id(row, plan) for row in reader)
        self.check("every unique_row_id equals Postgres's (taxi_cli.rowid)", got == want)

    def cleanup(self) -> None:
        from google.cloud import bigquery, storage

        project = os.environ["TAXI_GCP_PROJECT"]
        bigquery.Client(project=project).delete_dataset(
            f"{project}.{self.dataset}", delete_contents=True, not_found_ok=True
        )
        bucket = storage.Client(project=project).bucket(os.environ["TAXI_GCS_BUCKET"])
        for blob in bucket.list_blobs(prefix=self.prefix):
            blob.delete()
        print(f"removed dataset {self.dataset} and gs://{bucket.name}/{self.prefix}")


def main() -> int:
    needs = missing()
    if needs:
        print("smoke-gcp needs a real Google Cloud project; missing:", file=sys.stderr)
        for need in needs:
            print(f"  - {need}", file=sys.stderr)
        return 2
    return Smoke().run()


if __name__ == "__main__":
    sys.exit(main())
