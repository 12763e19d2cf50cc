"""Structural facts of the deploy files: Dockerfile, .dockerignore, compose, workflows.

`make lint` already runs hadolint and the Compose / GitHub workflow JSON schemas; these
tests check what a linter cannot: that the image runs as a non-root user with the CLI as
entry point, that the workflows run the commands the CLI really has, with the course's
crons, and that the compose service reaches the compose Postgres. No Docker engine is
needed; the one build step that can run without one (the builder stage's wheel) does.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_cli_docs import check_call

REPO = Path(__file__).resolve().parent.parent
GREEN_CRON, YELLOW_CRON = "0 9 1 * *", "0 10 1 * *"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(REPO / "Dockerfile"):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


# ---- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    args = dict(
        ins[1].split("=", 1) for ins in _instructions(REPO / "Dockerfile") if ins[0] == "ARG"
    )
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    stages = _stages()
    assert len(stages) >= 2
    assert all(stage[0][1].startswith("${PYTHON_IMAGE}") for stage in stages)
    builder_name = stages[0][0][1].split()[-1]
    runtime = stages[-1]
    copies = [args for word, args in runtime if word == "COPY"]
    assert any(f"--from={builder_name}" in c for c in copies), "runtime must copy the venv"
    assert not any(word == "RUN" and "pip install" in args for word, args in runtime)


def test_runtime_stage_runs_as_a_non_root_user_with_the_cli_as_entry_point() -> None:
    runtime = _stages()[-1]
    words = [word for word, _ in runtime]
    user = [args for word, args in runtime if word == "USER"]
    assert len(user) == 1
    uid = user[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric uid: Kubernetes runAsNonRoot checks it"
    created = " ".join(args for word, args in runtime if word == "RUN")
    assert f"--uid {uid}" in created
    # nothing after USER runs as root again
    assert not {"RUN", "COPY", "ADD"} & set(words[words.index("USER") :])
    assert dict(runtime)["ENTRYPOINT"] == '["taxi-cli"]'
    assert dict(runtime)["CMD"] == '["--help"]'


def test_runtime_dirs_are_on_the_volume_the_user_owns() -> None:
    runtime = _stages()[-1]
    env_text = " ".join(args for word, args in runtime if word == "ENV")
    env = dict(re.findall(r"(\w+)=(\S+)", env_text))
    volume = dict(runtime)["VOLUME"].strip('[]" ')
    for name in ("TAXI_DATA_DIR", "TAXI_STATE_DIR", "TAXI_PG_DATA"):
        assert env[name].startswith(volume + "/"), name
    assert f"chown taxi:taxi {volume}" in " ".join(a for w, a in runtime if w == "RUN")


def test_dockerignore_is_an_allowlist_covering_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "setup.py",
        "requirements/runtime.txt",
        "README.md",
        "taxi_cli",
    }
    for word, args in _instructions(REPO / "Dockerfile"):
        if word == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert source in allowed, f"COPY {source} is excluded by .dockerignore"


def test_builder_stage_wheel_carries_the_dbt_project_and_manifest(tmp_path: Path) -> None:
    """The builder stage's `pip wheel .`, run here on the same context (offline)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(
        REPO / "taxi_cli",
        context / "taxi_cli",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "target", "logs", "dbt_packages"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("taxi_cli-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "taxi_cli/dbt_project/dbt_project.yml" in names
    assert "taxi_cli/data/release-manifest.csv" in names
    models = {n for n in names if n.startswith("taxi_cli/dbt_project/models/")}
    shipped = {
        "taxi_cli/" + str(p.relative_to(REPO / "taxi_cli"))
        for p in (REPO / "taxi_cli/dbt_project/models").rglob("*")
        if p.is_file()
    }
    assert models == shipped
    assert not any(n.startswith("tests/") for n in names)


# ---- GitHub workflows ------------------------------------------------------------------------


def _workflow(name: str) -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load((REPO / ".github/workflows" / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads a bare `on` as true
    return doc


def _steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = doc["jobs"][job]["steps"]
    return steps


def test_ci_runs_make_lint_and_make_test_on_push_and_pull_request() -> None:
    ci = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    steps = _steps(ci, "lint-and-test")
    runs = [s["run"].strip() for s in steps if "run" in s]
    assert runs == ["make lint", "make test"]
    (setup,) = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    # every supported Python: the oldest pyproject allows, and the newest
    matrix = ci["jobs"]["lint-and-test"]["strategy"]["matrix"]["python-version"]
    assert {"3.11", "3.13"} <= set(matrix)
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "requirements/dev.txt"
    assert ci["permissions"] == {"contents": "read"}


def test_load_workflow_has_the_course_crons_and_dispatch_inputs() -> None:
    load = _workflow("load.yml")
    crons = [entry["cron"] for entry in load["on"]["schedule"]]
    assert crons == [GREEN_CRON, YELLOW_CRON]
    inputs = load["on"]["workflow_dispatch"]["inputs"]
    assert {"taxis", "months", "target"} <= set(inputs)
    assert inputs["target"]["default"] == "gcs+bq"
    from taxi_cli.choices import TargetName

    assert set(inputs["target"]["options"]) <= {str(t) for t in TargetName}
    # the schedule -> taxi mapping names exactly the crons above
    job_env = load["jobs"]["load"]["env"]
    assert f"'{GREEN_CRON}' && 'green' || 'yellow'" in job_env["TAXIS"]
    assert load["permissions"]["id-token"] == "write"
    assert load["concurrency"]["cancel-in-progress"] is False


# contexts GitHub allows in jobs.<id>.env (the schema does not check expressions)
JOB_ENV_CONTEXTS = {"github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"}


@pytest.mark.parametrize("name", ["ci.yml", "load.yml"])
def test_job_env_uses_only_contexts_available_there(name: str) -> None:
    for job in _workflow(name)["jobs"].values():
        for key, value in job.get("env", {}).items():
            for expr in re.findall(r"\$\{\{(.*?)\}\}", str(value)):
                used = set(re.findall(r"(?<![\w.])([a-z_]+)\.", re.sub(r"'[^']*'", "", expr)))
                assert used <= JOB_ENV_CONTEXTS, f"{name}: env {key} uses {used}"


def test_load_workflow_sets_data_and_state_dirs_before_any_taxi_cli_call() -> None:
    steps = _steps(_workflow("load.yml"), "load")
    runs = [s.get("run", "") for s in steps]
    first_cli = min(i for i, run in enumerate(runs) if "taxi-cli " in run)
    exported = "".join(runs[:first_cli])
    assert "TAXI_DATA_DIR=$RUNNER_TEMP/" in exported and "TAXI_STATE_DIR=$RUNNER_TEMP/" in exported


def test_load_workflow_authenticates_by_wif_or_by_key() -> None:
    steps = _steps(_workflow("load.yml"), "load")
    auth = [s for s in steps if s.get("uses", "").startswith("google-github-actions/auth@")]
    withs = [set(s["with"]) for s in auth]
    assert any({"workload_identity_provider", "service_account"} <= w for w in withs)
    assert {"credentials_json"} in withs
    assert all("secrets." in s["with"].get("credentials_json", "secrets.") for s in auth)
    # taxi-cli and dbt load the external_account file the action exports in
    # GOOGLE_APPLICATION_CREDENTIALS (tests/test_gcp_credentials.py): the default stays on
    (wif,) = [s for s in auth if "workload_identity_provider" in s["with"]]
    assert wif["with"].get("export_environment_variables", True) is True
    first_cli = min(i for i, s in enumerate(steps) if "taxi-cli " in s.get("run", ""))
    assert all(steps.index(s) < first_cli for s in auth)


def _cli_lines(steps: list[dict[str, Any]]) -> list[list[str]]:
    lines = []
    for step in steps:
        for line in step.get("run", "").splitlines():
            line = line.strip()
            if line.startswith("taxi-cli "):
                lines.append(shlex.split(line)[1:])
    return lines


def test_load_workflow_calls_commands_and_options_the_cli_has() -> None:
    calls = _cli_lines(_steps(_workflow("load.yml"), "load"))
    backfills = [c for c in calls if c[0] == "backfill"]
    assert any("--catch-up" in c for c in backfills)
    assert all(c[c.index("--target") + 1] == "$TARGET" for c in backfills)
    assert ["transform", "--target", "bq"] in calls
    for call in calls:
        assert check_call(call) is None, f"`taxi-cli {' '.join(call)}`: {check_call(call)}"


def test_load_workflow_has_the_zone_lookup_in_bigquery_before_transform() -> None:
    """dim_zones needs taxi_zone_lookup: the workflow loads it before every transform,
    under the same condition (and transform loads it itself when it is missing)."""
    steps = _steps(_workflow("load.yml"), "load")
    calls = [(i, c) for i, s in enumerate(steps) for c in _cli_lines([s])]
    (zones,) = [(i, c) for i, c in calls if c == ["load-bq", "zones"]]
    (transform,) = [(i, c) for i, c in calls if c[0] == "transform"]
    backfill = max(i for i, c in calls if c[0] == "backfill")
    assert backfill < zones[0] < transform[0]
    assert steps[zones[0]]["if"] == steps[transform[0]]["if"]


def test_cloud_run_args_in_the_readme_keep_yellow_green_one_argument() -> None:
    readme = (REPO / "README.md").read_text()
    (args,) = re.findall(r"--args='\^;\^([^']+)'", readme)
    argv = args.split(";")
    assert argv[:2] == ["backfill", "yellow,green"] and "--catch-up" in argv
    assert argv[argv.index("--target") + 1] == "gcs+bq"
    assert check_call(argv) is None, check_call(argv)


# ---- docker compose --------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    path = REPO / "docker-compose.yml"
    if not path.exists():
        pytest.fail("docker-compose.yml is missing (the load-pg issue creates it)")
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def test_compose_taxi_cli_service_is_optional_and_waits_for_a_healthy_postgres() -> None:
    services = _compose()["services"]
    cli = services["taxi-cli"]
    assert cli["profiles"] == ["etl"], "optional: `docker compose up` alone must not run it"
    assert cli["build"]["context"] == "."
    ((db_name, dep),) = cli["depends_on"].items()
    assert dep["condition"] == "service_healthy"
    db = services[db_name]
    assert "healthcheck" in db and db["healthcheck"]["test"]
    # the URL names the compose database with its own credentials
    env = cli["environment"]
    db_env = db["environment"]
    expected = (
        f"postgresql://{db_env['POSTGRES_USER']}:{db_env['POSTGRES_PASSWORD']}"
        f"@{db_name}:5432/{db_env['POSTGRES_DB']}"
    )
    assert env["TAXI_PG_URL"] == expected
    assert cli["command"][0] == "backfill" and "--target" in cli["command"]
    assert check_call(cli["command"]) is None, check_call(cli["command"])
    assert "profiles" not in db, "the database runs without the etl profile"


# ---- scale-out: the Kubernetes Indexed Job, the Cloud Run job, the matrix workflow ------


def _yaml(path: str) -> Any:
    return yaml.safe_load((REPO / path).read_text())


def test_the_indexed_job_passes_its_count_and_runs_a_backfill_the_cli_accepts() -> None:
    from tests.test_cli_docs import parse_example

    job = _yaml("deploy/k8s-indexed-job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TAXI_SHARD_COUNT"] == str(spec["completions"])  # the index comes from k8s
    assert check_call(container["args"]) is None
    parse_example(container["args"])


def test_the_cloud_run_job_runs_tasks_in_parallel_with_retries() -> None:
    from tests.test_cli_docs import parse_example

    job = _yaml("deploy/cloud-run-job.yaml")
    execution = job["spec"]["template"]["spec"]
    assert execution["taskCount"] > execution["parallelism"] >= 1
    task = execution["template"]["spec"]
    assert task["maxRetries"] >= 1
    (container,) = task["containers"]
    assert check_call(container["args"]) is None
    parse_example(container["args"])
    # Cloud Run gives each task CLOUD_RUN_TASK_INDEX/COUNT: no shard is set by hand
    assert "--shard" not in container["args"]


def test_the_matrix_workflow_plans_then_runs_one_job_per_shard() -> None:
    flow = _yaml(".github/workflows/backfill-matrix.yml")
    plan = "\n".join(s.get("run", "") for s in flow["jobs"]["plan"]["steps"])
    assert "--dry-run --json" in plan and "--shard-count" in plan
    load = flow["jobs"]["load"]
    assert load["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan.outputs.shards) }}"
    assert "max-parallel" in load["strategy"]
    run = "\n".join(s.get("run", "") for s in load["steps"])
    assert '--shard "$SHARD"' in run
