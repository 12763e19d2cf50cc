"""Settings are validated where they are read: a value that is not a finite number of
the right kind, a config path that is a directory, broken TOML, a profile that is not a
table: exit 2, one line, naming the key and where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.db_support import cli

NUMBERS = [
    ("http_timeout", "TAXI_HTTP_TIMEOUT", "nan", "finite"),
    ("http_timeout", "TAXI_HTTP_TIMEOUT", "inf", "finite"),
    ("http_backoff", "TAXI_HTTP_BACKOFF", "1e999", "finite"),
    ("http_backoff_max", "TAXI_HTTP_BACKOFF_MAX", "-1", ">= 0"),
    ("http_timeout", "TAXI_HTTP_TIMEOUT", "0", "more than 0"),
    ("http_retries", "TAXI_HTTP_RETRIES", "-3", ">= 0"),
    ("http_retries", "TAXI_HTTP_RETRIES", "2.5", "whole number"),
    ("http_retries", "TAXI_HTTP_RETRIES", "five", "whole number"),
    ("dbt_threads", "TAXI_DBT_THREADS", "nan", "whole number"),
    ("http_backoff", "TAXI_HTTP_BACKOFF", "fast", "a number"),
]


@pytest.mark.parametrize(("key", "env", "value", "says"), NUMBERS)
def test_a_bad_number_in_the_environment(key: str, env: str, value: str, says: str) -> None:
    run = cli("config", "show", env={env: value}, timeout=60)
    assert (run.code, run.out) == (2, "")
    line = run.error_line
    assert key in line and f"(from env {env})" in line and says in line and value in line


TOML_VALUES = [
    ("http_timeout", "nan", "finite"),
    ("http_timeout", "inf", "finite"),
    ("http_retries", "-1", ">= 0"),
    ("http_retries", "2.5", "whole number"),
    ("http_retries", "true", "not a number"),
    ("http_backoff", '"soon"', "a number"),
    ("dbt_threads", "[1, 2]", "an array"),
]


@pytest.mark.parametrize(("key", "value", "says"), TOML_VALUES)
def test_a_bad_number_in_a_profile(tmp_path: Path, key: str, value: str, says: str) -> None:
    config = tmp_path / "taxi-cli.toml"
    config.write_text(f"[profile.prod]\n{key} = {value}\n")
    run = cli("--config", str(config), "--profile", "prod", "config", "show", timeout=60)
    assert (run.code, run.out) == (2, "")
    line = run.error_line
    assert key in line and f"(from config {config} [profile.prod])" in line and says in line


def test_a_config_path_that_is_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "conf.d"
    folder.mkdir()
    run = cli("--config", str(folder), "config", "show", timeout=60)
    assert run.code == 2 and f"{folder} (from --config) is not a file" in run.error_line
    run = cli("config", "show", env={"TAXI_CONFIG": str(folder)}, timeout=60)
    assert run.code == 2 and "(from env TAXI_CONFIG) is not a file" in run.error_line


def test_a_directory_where_the_searched_config_file_would_be(tmp_path: Path) -> None:
    # the current directory is searched first; a directory there is not skipped silently
    (Path.cwd() / "taxi-cli.toml").mkdir()
    run = cli("config", "show", timeout=60)
    assert run.code == 2
    assert "taxi-cli.toml (from current directory) is not a file" in run.error_line


def test_broken_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    config = tmp_path / "taxi-cli.toml"
    config.write_text('pg_schema = "x"\nhttp_retries = = 3\n')
    run = cli("--config", str(config), "config", "show", timeout=60)
    assert run.code == 2
    line = run.error_line
    assert str(config) in line and "not valid TOML" in line and "line 2" in line


def test_a_config_file_that_cannot_be_read(tmp_path: Path) -> None:
    config = tmp_path / "taxi-cli.toml"
    config.write_bytes(b'pg_schema = "\xff"\n')
    run = cli("--config", str(config), "config", "show", timeout=60)
    assert run.code == 2 and str(config) in run.error_line and "UTF-8" in run.error_line


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[profile]\nprod = "fast"\n', "profile.prod is a string, not a table"),
        ("profile = 3\n", "not an integer"),
        ("profile = [1]\n", "not an array"),
    ],
)
def test_a_profile_that_is_not_a_table(tmp_path: Path, text: str, says: str) -> None:
    config = tmp_path / "taxi-cli.toml"
    config.write_text(text)
    run = cli("--config", str(config), "config", "show", timeout=60)
    assert run.code == 2
    line = run.error_line
    assert str(config) in line and says in line and "[profile.NAME] tables" in line


def test_the_bad_value_fails_the_command_that_reads_it_before_any_work(tmp_path: Path) -> None:
    run = cli("extract", "green", "2020-01", env={"TAXI_HTTP_TIMEOUT": "nan"}, timeout=60)
    assert run.code == 2 and "http_timeout" in run.error_line
    assert not any((tmp_path / "downloads").glob("**/*.csv.gz"))
