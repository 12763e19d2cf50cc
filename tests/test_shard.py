"""Scale-out: N workers split a backfill by index, and every partition lands exactly once.

Workers are real CLI processes against one embedded PostgreSQL and the local mirror,
started as the engines start them: `--shard I/N` (a GitHub Actions matrix), or the index
in the environment (Cloud Run Jobs, Kubernetes Indexed Jobs, AWS Batch array jobs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taxi_cli.catalog import GREEN, TAXIS, Partition, month_range, select
from taxi_cli.cli import app
from taxi_cli.errors import ConfigError, UsageError
from taxi_cli.shard import Shard, from_engine, parse, shard_of
from tests.fixtures_gcp import Gcp
from tests.fixtures_mirror import Mirror

runner = CliRunner()
TAXI_CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "taxi-cli"
MONTHS = month_range("2020-01", "2020-12")


# ---- the split ------------------------------------------------------------------------


def test_every_partition_has_exactly_one_shard_and_adding_months_moves_none() -> None:
    parts = select("yellow,green", "2019-01..2020-12")
    shards = [Shard(i, 4) for i in range(4)]
    picked = [s.pick(parts) for s in shards]
    names = sorted(p.name for share in picked for p in share)
    assert names == sorted(p.name for p in parts)  # each partition in exactly one share
    assert all(share for share in picked)  # every worker has work
    longer = select("yellow,green", "2019-01..2021-07")
    for part in parts:
        assert [s.owns(part) for s in shards] == [
            s.owns(next(p for p in longer if p == part)) for s in shards
        ]


def test_shard_specs_and_engine_variables() -> None:
    assert parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "1", "-1/4", "a/b", "0/0"):
        with pytest.raises(UsageError):
            parse(bad)
    env: Mapping[str, str]
    env = {"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "5"}
    assert from_engine(env, 0) == Shard(2, 5, "CLOUD_RUN_TASK_INDEX (Cloud Run Jobs)")
    k8s = from_engine({"JOB_COMPLETION_INDEX": "3"}, 4)
    assert k8s is not None and (k8s.index, k8s.count) == (3, 4)
    with pytest.raises(ConfigError, match="TAXI_SHARD_COUNT"):
        from_engine({"JOB_COMPLETION_INDEX": "3"}, 0)  # Kubernetes gives no count
    aws = from_engine({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "2"}, 0)
    assert aws is not None and (aws.index, aws.count) == (0, 2)
    assert from_engine({}, 4) is None


def test_the_engine_variables_are_the_ones_config_reads() -> None:
    from taxi_cli import config, shard

    named = {v for _, index, count in shard.ENGINES for v in (index, count) if v}
    assert named == set(config.ENGINE_ENV)


def test_the_plan_is_a_ci_matrix_of_at_most_256_jobs_with_its_shard(mirror: Mirror) -> None:
    result = runner.invoke(
        app, ["backfill", "all", "2019-01..2021-07", "--dry-run", "--json", "--shard-count", "4"]
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert isinstance(plan, list) and 0 < len(plan) <= 256  # GitHub's matrix limit
    for item in plan:
        assert {"taxi", "month", "target", "action", "why", "shard"} <= set(item)
        part = Partition(TAXIS[item["taxi"]], item["month"])
        assert item["shard"] == f"{shard_of(part, 4)}/4"
    # what a workflow's `fromJSON` gives back: the same list of flat objects
    assert json.loads(json.dumps(plan)) == plan
    assert all(isinstance(v, str | int | None) for item in plan for v in item.values())
    assert mirror.requests() == []


def test_claim_and_shard_are_refused_together_and_claim_needs_pg() -> None:
    both = runner.invoke(app, ["backfill", "green", "2020-01", "--claim", "--shard", "0/2"])
    assert both.exit_code == 2 and "choose one" in both.stderr
    bq = runner.invoke(app, ["backfill", "green", "2020-01", "--claim", "-t", "bq"])
    assert bq.exit_code == 2 and "--target pg" in bq.stderr


# ---- workers at once ------------------------------------------------------------------


def _worker(pg_url: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(TAXI_CLI), "backfill", "green", "2020-01..2020-12", "--target", "pg"]
        + ["--pg-url", pg_url, "-q", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _loads(pg_url: str) -> dict[str, tuple[str, int, str]]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT month, status, rows, worker FROM taxi_cli_loads").fetchall()
    return {month: (status, n, worker) for month, status, n, worker in rows}


def _present_once(pg_url: str, rows: int) -> None:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT filename, count(*), count(DISTINCT unique_row_id) FROM green_tripdata "
            "GROUP BY filename ORDER BY filename"
        ).fetchall()
    assert found == [(f"green_tripdata_{m}.csv", rows, rows) for m in MONTHS]


def _wait_until_loading(pg_url: str, proc: subprocess.Popen[str]) -> None:
    """Until the worker has committed a month (it is mid-run), or it ended."""
    for _ in range(1200):
        if proc.poll() is not None:
            return
        try:
            if any(w and w.startswith("shard 0/4") for _, _, w in _loads(pg_url).values()):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)


@pytest.mark.integration
def test_four_shards_at_once_one_killed_and_restarted_load_each_month_once(
    mirror: Mirror, pg_url: str
) -> None:
    for month in MONTHS:
        mirror.add_month("green", month, rows=15_000)
    workers = {i: _worker(pg_url, "--shard", f"{i}/4", "-j", "1") for i in range(4)}
    _wait_until_loading(pg_url, workers[0])
    if workers[0].poll() is None:
        os.kill(workers[0].pid, signal.SIGKILL)
    killed = workers[0].wait(timeout=120)
    assert killed in (0, -signal.SIGKILL)
    workers[0] = _worker(pg_url, "--shard", "0/4")  # the engine's retry of the same index
    outs = {i: p.communicate(timeout=600) for i, p in workers.items()}
    for i, p in workers.items():
        assert p.returncode == 0, outs[i][1]
    _present_once(pg_url, 15_000)
    loads = _loads(pg_url)
    assert set(loads) == set(MONTHS)
    for month, (status, rows, worker) in loads.items():
        owner = shard_of(Partition(GREEN, month), 4)
        assert (status, rows) == ("done", 15_000)
        assert worker.startswith(f"shard {owner}/4 "), (month, worker)  # its own shard's


@pytest.mark.integration
@pytest.mark.parametrize(
    "engine",
    [
        {"CLOUD_RUN_TASK_INDEX": "{i}", "CLOUD_RUN_TASK_COUNT": "3"},
        {"JOB_COMPLETION_INDEX": "{i}", "TAXI_SHARD_COUNT": "3"},
        {"AWS_BATCH_JOB_ARRAY_INDEX": "{i}", "AWS_BATCH_JOB_ARRAY_SIZE": "3"},
    ],
    ids=["cloud-run", "kubernetes", "aws-batch"],
)
def test_the_shard_comes_from_the_engine_and_a_doubled_shard_takes_turns(
    mirror: Mirror, pg_url: str, engine: dict[str, str]
) -> None:
    for month in MONTHS:
        mirror.add_month("green", month, rows=300)

    def env(i: int) -> dict[str, str]:
        return {k: v.format(i=i) for k, v in engine.items()}

    # shard 1 twice (an engine retried a task that was still running)
    procs = [_worker(pg_url, env=env(i)) for i in (0, 1, 1, 2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in results]
    _present_once(pg_url, 300)
    summaries = [json.loads(out) for out, _ in results]
    twins = summaries[1], summaries[2]
    # the two workers on shard 1 took turns: together they loaded its months once
    assert twins[0]["done"] + twins[1]["done"] == sum(
        shard_of(Partition(GREEN, m), 3) == 1 for m in MONTHS
    )
    for month, (status, _, worker) in _loads(pg_url).items():
        assert status == "done" and worker.startswith(
            f"shard {shard_of(Partition(GREEN, month), 3)}/3"
        )


@pytest.mark.integration
def test_claim_workers_pull_partitions_and_a_killed_one_leaves_its_month(
    mirror: Mirror, pg_url: str
) -> None:
    for month in MONTHS:
        mirror.add_month("green", month, rows=15_000)
    first = _worker(pg_url, "--claim", "-j", "1")
    for _ in range(1200):  # until it holds a claim
        try:
            with psycopg.connect(pg_url) as conn:
                if conn.execute("SELECT to_regclass('taxi_cli_claims')").fetchone() != (None,):
                    break
        except psycopg.Error:
            pass
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    others = [_worker(pg_url, "--claim", "-j", "2") for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in others]
    assert [p.returncode for p in others] == [0, 0, 0], [err for _, err in outs]
    _present_once(pg_url, 15_000)
    done = [json.loads(out)["done"] for out, _ in outs]
    assert sum(done) == len(MONTHS) - sum(
        status == "done" for status, _, w in _loads(pg_url).values() if w and str(first.pid) in w
    )
    workers = {w for _, _, w in _loads(pg_url).values()}
    assert len(workers) >= 2  # the months were shared out, not run by one worker


@pytest.mark.integration
def test_two_shards_into_bigquery_load_each_month_once(mirror: Mirror, gcp: Gcp) -> None:
    months = ["2020-01", "2020-02", "2020-03", "2020-04"]
    for month in months:
        mirror.add_month("green", month, rows=40)
    procs = [
        subprocess.Popen(
            [str(TAXI_CLI), "backfill", "green", "2020-01..2020-04", "-t", "gcs+bq"]
            + ["--create-dataset", "--shard", f"{i}/2", "--json", "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    got = gcp.query(
        f"SELECT filename, COUNT(*) FROM {gcp.table('green_tripdata')} GROUP BY 1 ORDER BY 1"
    )
    assert got == [(f"green_tripdata_{m}.csv", 40) for m in months]
    shards = {p["shard"] for out, _ in outs for p in json.loads(out)["partitions"]}
    assert shards == {"0/2", "1/2"}
    # the ledger in the dataset names the worker of each month: both shards, each month once
    done = gcp.query(
        f"SELECT month, worker FROM {gcp.table('taxi_cli_loads')} WHERE status = 'done'"
    )
    assert sorted(month for month, _ in done) == months
    for month, worker in done:
        owner = shard_of(Partition(GREEN, month), 2)
        assert str(worker).startswith(f"shard {owner}/2 "), (month, worker)
    assert {str(w).split()[1] for _, w in done} == {"0/2", "1/2"}
