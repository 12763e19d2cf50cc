"""The shipped dbt project, parsed by dbt itself (no database): models, tests, no packages.

Parsing needs a profile but no connection, so these run with the BigQuery output that
`transform --target bq` would write for an emulator endpoint nobody listens on.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from taxi_cli import dbt_profile, transform
from taxi_cli.config import load_settings

BQ_ENV = {
    "TAXI_GCP_PROJECT": "taxi-test",
    "TAXI_BQ_DATASET": "trips",
    "TAXI_BQ_ENDPOINT": "http://127.0.0.1:9",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The project's parsed manifest (dbt parse, in-process)."""
    from dbt.cli.main import dbtRunner

    work = tmp_path_factory.mktemp("dbt-parse")
    target = dbt_profile.bigquery_target(load_settings(env=BQ_ENV), preflight=False)
    with dbt_profile.profiles_dir(target) as profiles:
        args = transform.dbt_args(
            target,
            profiles=profiles,
            target_path=work / "target",
            log_path=work / "logs",
            select=None,
            full_refresh=False,
            test_run=False,
            extra_args=(),
        )
        args[0] = "parse"
        outcome = dbtRunner().invoke(args)
    assert outcome.success, outcome.exception
    yield outcome.result


def _tests_of(manifest: Any, model: str) -> dict[tuple[str | None, str], dict[str, Any]]:
    """(column, test kind) -> test kwargs for the generic tests attached to `model`."""
    found = {}
    for node in manifest.nodes.values():
        if node.resource_type == "test" and node.attached_node == f"model.taxi_rides_ny.{model}":
            meta = node.test_metadata
            found[(node.column_name, meta.name)] = dict(meta.kwargs)
    return found


def test_project_needs_no_hub_packages() -> None:
    project = transform.project_dir()
    assert (project / "dbt_project.yml").is_file()
    assert not (project / "packages.yml").exists()
    assert not (project / "dependencies.yml").exists()
    sql = "\n".join(p.read_text() for p in project.rglob("*.sql"))
    assert not re.search(r"\b(dbt_utils|codegen)\.\w+\s*\(", sql)  # no package macro calls


def test_parse_finds_the_course_models(manifest: Any) -> None:
    models = {n.name: n for n in manifest.nodes.values() if n.resource_type == "model"}
    assert set(models) == {
        "stg_green_tripdata",
        "stg_yellow_tripdata",
        "dim_zones",
        "fact_trips",
        "dm_monthly_zone_revenue",
    }
    assert models["stg_green_tripdata"].config.materialized == "view"
    fact = models["fact_trips"].config
    assert fact.materialized == "incremental"
    assert fact.incremental_strategy == "insert_overwrite"  # this manifest is BigQuery's
    assert fact.get("partition_by") == {
        "field": "file_month",
        "data_type": "date",
        "granularity": "month",
        "copy_partitions": True,
    }
    assert fact.get("cluster_by") == ["pickup_datetime", "pickup_location_id"]
    sources = {(s.source_name, s.name) for s in manifest.sources.values()}
    assert sources == {
        ("raw", "green_tripdata"),
        ("raw", "yellow_tripdata"),
        ("raw", "taxi_zone_lookup"),
    }
    # the raw tables are looked up where the loader wrote them (the dataset setting)
    assert {s.schema for s in manifest.sources.values()} == {"trips"}
    assert {s.database for s in manifest.sources.values()} == {"taxi-test"}
    fact_parents = set(models["fact_trips"].depends_on.nodes)
    assert fact_parents >= {
        "model.taxi_rides_ny.stg_green_tripdata",
        "model.taxi_rides_ny.stg_yellow_tripdata",
        "model.taxi_rides_ny.dim_zones",
    }


def test_keys_are_tested(manifest: Any) -> None:
    for model in ("stg_green_tripdata", "stg_yellow_tripdata", "fact_trips"):
        tests = _tests_of(manifest, model)
        assert ("trip_id", "unique") in tests, model
        assert ("trip_id", "not_null") in tests, model
        accepted = tests[("payment_type", "accepted_values")]
        assert "var('payment_type_values')" in str(accepted["values"])
    project = yaml.safe_load((transform.project_dir() / "dbt_project.yml").read_text())
    assert project["vars"]["payment_type_values"] == [0, 1, 2, 3, 4, 5, 6]
    zones = _tests_of(manifest, "dim_zones")
    assert {("location_id", "unique"), ("location_id", "not_null")} <= set(zones)


def test_fact_trips_tests_services_and_zones(manifest: Any) -> None:
    tests = _tests_of(manifest, "fact_trips")
    assert tests[("service_type", "accepted_values")]["values"] == ["Green", "Yellow"]
    for column in ("pickup_location_id", "dropoff_location_id"):
        relation = tests[(column, "relationships")]
        assert relation["field"] == "location_id"
        assert "dim_zones" in relation["to"]
    mart = _tests_of(manifest, "dm_monthly_zone_revenue")
    combo = mart[(None, "unique_combination_of_columns")]
    assert combo["combination_of_columns"] == ["revenue_zone", "revenue_month", "service_type"]


def test_test_names_are_short(manifest: Any) -> None:
    """The progress lines print test names: they are set by hand, not dbt's hashes."""
    names = [n.name for n in manifest.nodes.values() if n.resource_type == "test"]
    assert len(names) == 20
    assert all(len(name) <= 60 and "__" in name for name in names), names


def test_profiles_dir_is_private_and_removed() -> None:
    target = dbt_profile.bigquery_target(load_settings(env=BQ_ENV), preflight=False)
    with dbt_profile.profiles_dir(target) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        profile = path / "profiles.yml"
        assert stat.S_IMODE(profile.stat().st_mode) == 0o600
        kept = Path(path)
    assert not kept.exists()


def test_bigquery_profile_follows_load_bq_settings(tmp_path: Path) -> None:
    emulator = dbt_profile.bigquery_target(load_settings(env=BQ_ENV), preflight=False)
    assert emulator.output["method"] == "oauth-secrets"
    assert emulator.output["api_endpoint"] == "http://127.0.0.1:9"
    assert emulator.output["project"] == "taxi-test"
    assert emulator.output["dataset"] == "trips"

    key = tmp_path / "sa.json"
    key.write_text('{"type": "service_account"}')  # what decides the method: the type
    real = dbt_profile.bigquery_target(
        load_settings(env={"GOOGLE_APPLICATION_CREDENTIALS": str(key), "TAXI_BQ_LOCATION": "EU"}),
        preflight=False,
    )
    assert real.output["method"] == "service-account"
    assert real.output["keyfile"] == str(key)
    assert real.output["location"] == "EU"
    assert "project" not in real.output  # the key file's project
    adc = dbt_profile.bigquery_target(load_settings(env={}), preflight=False)
    assert adc.output["method"] == "oauth"


def test_dbt_args_pass_vars_selection_and_extra_args(tmp_path: Path) -> None:
    target = dbt_profile.bigquery_target(load_settings(env=BQ_ENV), preflight=False)
    args = transform.dbt_args(
        target,
        profiles=tmp_path,
        target_path=tmp_path / "t",
        log_path=tmp_path / "l",
        select="fact_trips+",
        full_refresh=True,
        test_run=True,
        extra_args=["--fail-fast"],
    )
    assert args[0] == "build"
    assert args[args.index("--select") + 1] == "fact_trips+"
    assert "--full-refresh" in args
    assert args[-1] == "--fail-fast"
    variables = args[args.index("--vars") + 1]
    assert '"is_test_run": true' in variables
    assert '"source_schema": "trips"' in variables
    assert str(transform.project_dir()) == args[args.index("--project-dir") + 1]
