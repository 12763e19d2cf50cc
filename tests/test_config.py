"""Layered settings: flag > env > config file profile > file top level > default.

Also `taxi-cli config show|path`: sources, profiles, masking, and the usage errors (exit 2)
for a bad config file. The autouse `isolated_env` fixture gives every test an empty
environment (except TAXI_DATA_DIR/TAXI_STATE_DIR) and a fresh working directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taxi_cli import config
from taxi_cli.cli import app
from taxi_cli.config import SPECS, load_settings
from taxi_cli.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

LAYERED = """\
http_retries = 7
pg_schema = "top"
bq_dataset = "top_ds"
dbt_threads = 2

[profile.dev]
pg_schema = "dev_schema"
bq_dataset = "dev_ds"

[profile.prod]
pg_schema = "prod_schema"
http_retries = 9
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


# ---- precedence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "env_var", "top", "in_profile", "env_value", "flag_value", "expected"),
    [
        ("pg_schema", "TAXI_PG_SCHEMA", "top", "dev_schema", "env_schema", "flag_schema", str),
        ("bq_dataset", "TAXI_BQ_DATASET", "top_ds", "dev_ds", "env_ds", "flag_ds", str),
        ("http_retries", "TAXI_HTTP_RETRIES", "7", None, "11", "13", int),
        ("dbt_threads", "TAXI_DBT_THREADS", "2", None, "6", "12", int),
    ],
)
def test_each_layer_overrides_the_one_below(
    tmp_path: Path,
    name: str,
    env_var: str,
    top: str,
    in_profile: str | None,
    env_value: str,
    flag_value: str,
    expected: type,
) -> None:
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    spec = config.SPEC_BY_NAME[name]

    def resolve(flags: dict[str, str] | None, env: dict[str, str]) -> tuple[object, str]:
        s = load_settings(flags, config_file=str(cfg_file), profile="dev", env=env)
        return getattr(s, name), s.source_of(name)

    # no file at all: the default
    bare = load_settings(env={})
    assert getattr(bare, name) == spec.default() and bare.source_of(name) == "default"
    # file: the profile's value when it sets one, else the top level
    value, source = resolve(None, {})
    if in_profile is not None:
        assert value == expected(in_profile) and source == f"config {cfg_file} [profile.dev]"
    else:
        assert value == expected(top) and source == f"config {cfg_file}"
    # env beats the file
    value, source = resolve(None, {env_var: env_value})
    assert (value, source) == (expected(env_value), f"env {env_var}")
    # a flag beats everything
    value, source = resolve({name: flag_value}, {env_var: env_value})
    assert (value, source) == (expected(flag_value), "flag")


def test_a_flag_left_out_is_none_and_an_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    s = load_settings({"pg_schema": None}, config_file=str(cfg_file), env={"TAXI_PG_SCHEMA": ""})
    assert s.pg_schema == "top"
    assert s.source_of("pg_schema") == f"config {cfg_file}"


# ---- which file, which profile -----------------------------------------------------------


def test_profile_from_flag_env_and_flag_beats_env(tmp_path: Path) -> None:
    cfg_file = str(write(tmp_path / "c.toml", LAYERED))
    by_env = load_settings(config_file=cfg_file, env={"TAXI_PROFILE": "prod"})
    assert (by_env.profile, by_env.profile_source) == ("prod", "env TAXI_PROFILE")
    assert (by_env.pg_schema, by_env.http_retries) == ("prod_schema", 9)
    by_flag = load_settings(config_file=cfg_file, profile="dev", env={"TAXI_PROFILE": "prod"})
    assert (by_flag.profile, by_flag.profile_source) == ("dev", "--profile")
    assert (by_flag.pg_schema, by_flag.http_retries) == ("dev_schema", 7)
    none = load_settings(config_file=cfg_file, env={})
    assert (none.profile, none.pg_schema) == (None, "top")


def test_profile_default_is_used_when_none_is_chosen(tmp_path: Path) -> None:
    cfg_file = str(write(tmp_path / "c.toml", LAYERED + '[profile.default]\npg_schema = "d"\n'))
    s = load_settings(config_file=cfg_file, env={})
    assert (s.profile, s.profile_source, s.pg_schema) == ("default", "default table", "d")
    other = load_settings(config_file=cfg_file, profile="prod", env={})
    assert other.pg_schema == "prod_schema"  # [profile.default] is not a base layer


def test_config_file_from_env_then_cwd_then_user_config_dir(
    tmp_path: Path, isolated_env: Path
) -> None:
    user_file = isolated_env / "config" / "taxi-cli" / "config.toml"
    user_file.parent.mkdir(parents=True)
    write(user_file, 'pg_schema = "from_user_dir"\n')
    assert load_settings(env={}).pg_schema == "from_user_dir"
    assert load_settings(env={}).config_source == "user config dir"
    write(isolated_env / "taxi-cli.toml", 'pg_schema = "from_cwd"\n')
    s = load_settings(env={})
    assert (s.pg_schema, s.config_source) == ("from_cwd", "current directory")
    named = write(tmp_path / "named.toml", 'pg_schema = "from_env_var"\n')
    s = load_settings(env={"TAXI_CONFIG": str(named)})
    assert (s.pg_schema, s.config_file, s.config_source) == (
        "from_env_var",
        named,
        "env TAXI_CONFIG",
    )
    flagged = write(tmp_path / "flag.toml", 'pg_schema = "from_flag"\n')
    s = load_settings(config_file=str(flagged), env={"TAXI_CONFIG": str(named)})
    assert (s.pg_schema, s.config_file) == ("from_flag", flagged)


def test_config_path_lists_the_search_order(isolated_env: Path) -> None:
    write(isolated_env / "taxi-cli.toml", "")
    code, out, _ = run("config", "path", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [Path(r["path"]) for r in rows] == [
        isolated_env / "taxi-cli.toml",
        isolated_env / "config" / "taxi-cli" / "config.toml",
    ]
    assert [(r["exists"], r["used"]) for r in rows] == [(True, True), (False, False)]
    code, out, _ = run("--config", "x.toml", "config", "path")
    assert code == 0 and out.splitlines() == ["x.toml  (--config; not found)"]


# ---- errors: exit 2, one line, names the fix ----------------------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("taxi-cli: error: ")
    return lines[0]


def test_unknown_profile_exits_2_naming_the_profiles(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    code, out, err = run("--config", str(cfg_file), "--profile", "staging", "config", "show")
    assert (code, out) == (ExitCode.USAGE, "")
    line = _one_error_line(err)
    assert "unknown profile 'staging'" in line and "profiles: dev, prod" in line


def test_profile_without_any_config_file_exits_2(isolated_env: Path) -> None:
    code, _, err = run("config", "show", env={"TAXI_PROFILE": "prod"})
    assert code == ExitCode.USAGE
    line = _one_error_line(err)
    assert "profile 'prod'" in line and "env TAXI_PROFILE" in line and "--config" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "pg_schmea = 'x'\n",
            "unknown setting 'pg_schmea' in the top level; did you mean 'pg_schema'?",
        ),
        # a typo in a profile that is not chosen still fails: the whole file is checked
        ("[profile.prod]\nhttp_retrys = 3\n", "in [profile.prod]; did you mean 'http_retries'?"),
        ("zzz = 1\n", "unknown setting 'zzz' in the top level"),
        ("http_retries = 'five'\n", "bad value 'five' for http_retries"),
        ("http_backoff = -1.5\n", "bad value -1.5 for http_backoff"),
        ("dbt_threads = [4]\n", "bad value for dbt_threads"),
        ("pg_schema = { a = 1 }\n", "a table, not a value"),
        ("profile = 3\n", "`profile` must hold [profile.NAME] tables"),
        ("[profile]\ndev = 'x'\n", "`profile` must hold [profile.NAME] tables"),
        ("pg_schema = \n", "cannot read config file"),
    ],
)
def test_bad_config_file_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    cfg_file = write(tmp_path / "bad.toml", text)
    code, out, err = run("--config", str(cfg_file), "config", "show")
    assert (code, out) == (ExitCode.USAGE, "")
    line = _one_error_line(err)
    assert expected in line and str(cfg_file) in line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"TAXI_HTTP_RETRIES": "abc"},
            "bad value 'abc' for http_retries (from env TAXI_HTTP_RETRIES)",
        ),
        ({"TAXI_HTTP_TIMEOUT": "-3"}, "bad value '-3' for http_timeout"),
        (
            {"TAXI_PG_COPY_STREAMS": "3"},
            "bad value '3' for pg_copy_streams (from env TAXI_PG_COPY_STREAMS): "
            "must be auto, 1 or 2",
        ),
    ],
)
def test_bad_env_value_exits_2(env: dict[str, str], expected: str) -> None:
    code, _, err = run("config", "show", env=env)
    assert code == ExitCode.USAGE
    assert expected in _one_error_line(err)


def test_explicit_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, _, err = run("--config", str(missing), "config", "show")
    assert code == ExitCode.USAGE
    assert f"config file {missing} (from --config) does not exist" in _one_error_line(err)
    code, _, err = run("config", "show", env={"TAXI_CONFIG": str(missing)})
    assert code == ExitCode.USAGE
    assert "(from env TAXI_CONFIG) does not exist" in _one_error_line(err)
    code, _, err = run("--config", str(tmp_path), "config", "show")
    assert code == ExitCode.USAGE
    assert "is not a file" in _one_error_line(err)


def test_library_raises_config_error_for_unknown_flags() -> None:
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({"no_such_setting": 1}, env={})


# ---- config show -------------------------------------------------------------------------


SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_config_show_never_prints_a_secret(tmp_path: Path, json_flag: list[str]) -> None:
    cfg_file = write(
        tmp_path / "c.toml",
        f'[profile.prod]\npg_url = "postgresql://etl:{SECRET}@db.internal:5432/ny_taxi"\n'
        f'source_url = "https://mirror:{SECRET}@mirror.example/releases"\n',
        mode=0o644,
    )
    env = {"PGPASSWORD": SECRET, "PGHOST": "db.internal", "PGUSER": "etl"}
    code, out, err = run(
        "--config", str(cfg_file), "--profile", "prod", "config", "show", *json_flag, env=env
    )
    assert code == 0, err
    assert SECRET not in out and SECRET not in err
    assert "postgresql://etl:***@db.internal:5432/ny_taxi" in out
    assert "https://mirror:***@mirror.example/releases" in out
    # the world-readable file holding a password is pointed out, without the password
    assert f"chmod 600 {cfg_file}" in err
    if json_flag:
        doc = json.loads(out)
        assert doc["libpq_env"] == {"PGHOST": "db.internal", "PGUSER": "etl", "PGPASSWORD": "***"}
        assert doc["settings"]["pg_url"]["source"] == f"config {cfg_file} [profile.prod]"
        assert (doc["profile"], doc["profile_source"]) == ("prod", "--profile")
    else:
        assert re.search(r"^PGPASSWORD\s+\*\*\*\s+env$", out, re.M)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (f"host=db port=5432 password={SECRET} dbname=ny_taxi", "password=*** dbname=ny_taxi"),
        (f"host=db password='{SECRET} x' dbname=ny", "password=*** dbname=ny"),
        (f"postgresql://etl@db/ny_taxi?password={SECRET}&sslmode=require", "password=***&sslmode"),
        (f"postgresql://etl:{SECRET}@/ny_taxi?host=/run/pg", "postgresql://etl:***@/ny_taxi"),
    ],
)
def test_config_show_masks_key_value_and_query_dsns(dsn: str, shown: str) -> None:
    code, out, err = run("config", "show", "--json", env={"TAXI_PG_URL": dsn})
    assert code == 0, err
    assert SECRET not in out + err
    assert shown in json.loads(out)["settings"]["pg_url"]["value"]


def test_config_show_never_prints_key_file_content_pasted_into_the_env() -> None:
    """A common CI mistake: the key's JSON in GOOGLE_APPLICATION_CREDENTIALS, not its path."""
    key = json.dumps({"type": "service_account", "private_key": f"-----BEGIN {SECRET}"})
    for json_flag in ([], ["--json"]):
        code, out, err = run(
            "config", "show", *json_flag, env={"GOOGLE_APPLICATION_CREDENTIALS": key}
        )
        assert code == 0, err
        assert SECRET not in out + err and "private_key" not in out + err
        assert "*** (inline content, not a path)" in out


def test_config_show_keeps_a_key_file_path_visible(tmp_path: Path) -> None:
    keyfile = write(tmp_path / "sa.json", json.dumps({"private_key": SECRET}))
    code, out, err = run(
        "config", "show", "--json", env={"GOOGLE_APPLICATION_CREDENTIALS": str(keyfile)}
    )
    assert code == 0, err
    assert json.loads(out)["settings"]["gcp_credentials"]["value"] == str(keyfile)
    assert SECRET not in out + err


def test_an_error_message_masks_a_password_in_the_bad_value() -> None:
    code, out, err = run(
        "config", "show", env={"TAXI_HTTP_TIMEOUT": f"postgresql://u:{SECRET}@h/db"}
    )
    assert code == ExitCode.USAGE and out == ""
    assert SECRET not in err and "postgresql://u:***@h/db" in _one_error_line(err)


def test_config_show_lists_every_setting_with_its_source(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    code, out, _ = run(
        "--config",
        str(cfg_file),
        "--profile",
        "dev",
        "config",
        "show",
        "--json",
        env={"TAXI_BQ_DATASET": "from_env"},
    )
    assert code == 0
    doc = json.loads(out)
    assert list(doc["settings"]) == [s.name for s in SPECS]
    got = {k: (v["value"], v["source"]) for k, v in doc["settings"].items()}
    assert got["bq_dataset"] == ("from_env", "env TAXI_BQ_DATASET")
    assert got["pg_schema"] == ("dev_schema", f"config {cfg_file} [profile.dev]")
    assert got["http_retries"] == (7, f"config {cfg_file}")  # typed, from the top level
    assert got["bq_location"] == ("US", "default")
    assert (doc["config_file"], doc["config_source"]) == (str(cfg_file), "--config")
    # the text form carries the same facts, one line per setting
    code, out, _ = run("--config", str(cfg_file), "--profile", "dev", "config", "show")
    assert code == 0
    assert f"config file: {cfg_file} (from --config)" in out
    assert "profile:     dev (from --profile)" in out
    assert re.search(
        rf"^pg_schema\s+dev_schema\s+config {re.escape(str(cfg_file))} \[profile\.dev\]$", out, re.M
    )
    assert re.search(r"^bq_location\s+US\s+default$", out, re.M)


def test_private_config_file_with_a_password_gives_no_warning(tmp_path: Path) -> None:
    cfg_file = write(tmp_path / "c.toml", f'pg_url = "postgresql://u:{SECRET}@h/db"\n', 0o600)
    code, _, err = run("--config", str(cfg_file), "config", "show")
    assert (code, err) == (0, "")


def test_global_options_go_before_the_command(tmp_path: Path) -> None:
    """Documented choice: --config/--profile are root options, like `git -C`."""
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    code, _, err = run("config", "show", "--profile", "dev")
    assert code == ExitCode.USAGE and "No such option: --profile" in err
    code, out, _ = run("--config", str(cfg_file), "--profile", "dev", "config", "show")
    assert code == 0 and "dev_schema" in out


def test_installed_entry_point_resolves_profile_from_env(tmp_path: Path) -> None:
    """The real console script in a subprocess: env-selected file and profile."""
    cfg_file = write(tmp_path / "c.toml", LAYERED)
    env = {**os.environ, "TAXI_CONFIG": str(cfg_file), "TAXI_PROFILE": "prod"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "taxi-cli"), "config", "show", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["profile"], doc["profile_source"]) == ("prod", "env TAXI_PROFILE")
    assert doc["settings"]["http_retries"]["value"] == 9


# ---- the shipped example and the docs cannot drift from SPECS ----------------------------


def test_example_config_file_loads_in_every_profile() -> None:
    example = REPO / "taxi-cli.example.toml"
    import tomllib

    profiles = tomllib.loads(example.read_text())["profile"]
    assert {"dev", "prod"} <= set(profiles)
    for name in profiles:
        s = load_settings(config_file=str(example), profile=name, env={})
        assert s.profile == name
    prod = load_settings(config_file=str(example), profile="prod", env={})
    assert prod.gcs_bucket and prod.pg_url and "***" not in prod.pg_url


def _env_example_names() -> list[str]:
    text = (REPO / ".env.example").read_text()
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M)


def test_env_example_lists_exactly_the_variables_read() -> None:
    names = _env_example_names()
    assert sorted(names) == sorted(config.env_names())
    assert len(names) == len(set(names))
    text = (REPO / ".env.example").read_text()
    for name in names:  # one comment line right above each variable
        assert re.search(rf"^# (?![A-Z][A-Z0-9_]*=).+\n#?\s*{name}=", text, re.M), name


def test_readme_configuration_table_is_generated_from_specs() -> None:
    readme = (REPO / "README.md").read_text()
    assert config.markdown_table() in readme, (
        "README's configuration table is stale: regenerate it with "
        "`.venv/bin/python -m taxi_cli.config --markdown`"
    )


def test_markdown_generator_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taxi_cli.config", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout == config.markdown_table()
    rows = [line for line in done.stdout.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SPECS]
