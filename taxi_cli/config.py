"""Settings: the only module that reads the environment.

Every setting is resolved once, with this precedence:

    command-line flag  >  environment variable  >  config file profile  >  default

The config file is TOML: `--config` / `$TAXI_CONFIG`, else `./taxi-cli.toml`, else
`<user config dir>/taxi-cli/config.toml`. Top-level keys apply to every profile;
`[profile.NAME]` tables override them for the profile chosen by `--profile` /
`$TAXI_PROFILE` (`[profile.default]` when none is chosen). Keys are the setting names
below. `Settings.source_of(name)` says where each value came from, for `config show`.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from taxi_cli.catalog import DEFAULT_SOURCE_URL
from taxi_cli.errors import ConfigError
from taxi_cli.redact import MASK, mask_dsn, mask_secret

APP = "taxi-cli"
CONFIG_FILE_NAME = "taxi-cli.toml"
ENV_CONFIG = "TAXI_CONFIG"
ENV_PROFILE = "TAXI_PROFILE"


def _default_data_dir() -> str:
    return str(platformdirs.user_cache_path(APP))


def _default_state_dir() -> str:
    return str(platformdirs.user_state_path(APP))


def _default_pg_data() -> str:
    return str(platformdirs.user_data_path(APP) / "pgdata")


@dataclass(frozen=True)
class Spec:
    """How one setting is named, read, typed, defaulted and shown."""

    name: str
    env: str | None
    default: Callable[[], Any]
    convert: Callable[[str], Any] = str
    secret: str = ""  # "" | "dsn" (mask the password inside) | "full" (hide the value)
    help: str = ""
    default_doc: str = ""  # the default as documented, when it depends on the machine


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _default_keep_cache() -> bool:
    """Laptops keep the cache; Cloud Run does not: its file system is memory
    (https://cloud.google.com/run/docs/container-contract#filesystem). A Cloud Run job
    sets CLOUD_RUN_JOB, a service K_SERVICE (same page, "Environment variables")."""
    return not (os.environ.get("CLOUD_RUN_JOB") or os.environ.get("K_SERVICE"))


def _positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("must be a whole number >= 0") from None
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number >= 0") from None
    if not math.isfinite(value):  # float() accepts nan, inf and 1e999
        raise ValueError("must be a finite number >= 0")
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _const(value: float) -> Callable[[], float]:
    return lambda: value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be a share between 0 and 1")
    return value


def _flag(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _checks(text: str) -> str:
    if text not in ("warn", "fail"):
        raise ValueError("must be warn or fail")
    return text


def _streams(text: str) -> str:
    value = text.strip().lower()
    if value not in ("auto", "1", "2"):
        raise ValueError("must be auto, 1 or 2")
    return value


def _seconds(text: str) -> float:
    value = _positive_float(text)
    if value == 0:
        raise ValueError("must be more than 0 seconds")
    return value


_PG_SCHEMES = ("postgresql", "postgres")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _pg_url(text: str) -> str:
    """A PostgreSQL URL (or libpq key=value string) libpq will parse as meant.

    The messages never quote the value: a malformed URL defeats the password mask.
    """
    value = text.strip()
    if not value:
        return ""
    example = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    if "://" not in value:
        if "=" not in value:
            raise ValueError(f"not a URL: expected {example}")
        _libpq_parse(value, "not a valid key=value connection string")
        return value
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in _PG_SCHEMES:
        shown = scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,20}", scheme) else "?"
        raise ValueError(f"scheme {shown!r} is not postgresql:// or postgres://; use {example}")
    if rest.count("@") > 1:
        raise ValueError("an unencoded '@' in the user name or password: write it as %40")
    userinfo, at, hostpart = rest.rpartition("@")
    if at and re.search(r"[/?#]", userinfo):
        raise ValueError(
            "an unencoded '/', '?' or '#' in the user name or password: "
            "percent-encode it (%2F, %3F, %23)"
        )
    if _BAD_PERCENT.search(value):
        raise ValueError("an unencoded '%' (not followed by two hex digits): write it as %25")
    hosts = re.split(r"[/?]", hostpart, maxsplit=1)[0]
    for host in hosts.split(","):
        port = host.rpartition("]")[2].partition(":")[2] if host.startswith("[") else ""
        if not host.startswith("["):
            port = host.partition(":")[2]
        if port and not port.isdigit():
            raise ValueError("the port is not a number")
    _libpq_parse(value, "libpq cannot parse it")
    return value


def _libpq_parse(value: str, what: str) -> None:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        # libpq's message quotes the bad token, which may be the password: name it instead
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        param = re.match(r'invalid URI query parameter: "([A-Za-z_]{1,40})"', reason)
        if param:
            raise ValueError(f"unknown URL parameter {param.group(1)!r}") from None
        if "spaces" in reason:
            raise ValueError("a space: percent-encode it as %20") from None
        if "percent" in reason:
            raise ValueError("a bad percent-encoding: write '%' as %25") from None
        raise ValueError(what) from None


SPECS: tuple[Spec, ...] = (
    Spec(
        "source_url",
        "TAXI_SOURCE_URL",
        lambda: DEFAULT_SOURCE_URL,
        help="release host to download from (a mirror with the same layout)",
        secret="dsn",  # a private mirror's URL may carry user:password
    ),
    Spec(
        "data_dir",
        "TAXI_DATA_DIR",
        _default_data_dir,
        help="where downloads are kept",
        default_doc="user cache dir (`~/.cache/taxi-cli`)",
    ),
    Spec(
        "state_dir",
        "TAXI_STATE_DIR",
        _default_state_dir,
        help="ledger for gcs/bq, locks, schedule logs",
        default_doc="user state dir (`~/.local/state/taxi-cli`)",
    ),
    Spec(
        "http_retries",
        "TAXI_HTTP_RETRIES",
        lambda: 5,
        _positive_int,
        help="retries per download after a network error or 5xx",
    ),
    Spec(
        "http_backoff",
        "TAXI_HTTP_BACKOFF",
        lambda: 1.0,
        _positive_float,
        help="first backoff delay in seconds (doubles each retry, with jitter)",
    ),
    Spec(
        "http_backoff_max",
        "TAXI_HTTP_BACKOFF_MAX",
        lambda: 30.0,
        _positive_float,
        help="longest backoff delay in seconds",
    ),
    Spec(
        "http_timeout",
        "TAXI_HTTP_TIMEOUT",
        lambda: 60.0,
        _seconds,
        help="seconds without progress before a download attempt fails",
    ),
    Spec(
        "manifest",
        "TAXI_MANIFEST",
        lambda: "",
        help="release manifest CSV (filename,size_bytes,sha256) to verify downloads "
        "against; empty = the shipped one, `none` = no manifest check",
    ),
    Spec(
        "pg_url",
        "TAXI_PG_URL",
        lambda: "",
        _pg_url,
        secret="dsn",
        help="PostgreSQL URL; else PG* variables when PGHOST is set; else embedded",
    ),
    Spec("pg_schema", "TAXI_PG_SCHEMA", lambda: "public", help="schema of the loaded tables"),
    Spec(
        "pg_copy_streams",
        "TAXI_PG_COPY_STREAMS",
        lambda: "auto",
        _streams,
        help="connections that COPY one file (2: a second connection writes half of "
        "the rows); auto = 2 for files over 8 MiB",
    ),
    Spec(
        "pg_data",
        "TAXI_PG_DATA",
        _default_pg_data,
        help="data dir of the embedded PostgreSQL",
        default_doc="user data dir (`~/.local/share/taxi-cli/pgdata`)",
    ),
    Spec("gcs_bucket", "TAXI_GCS_BUCKET", lambda: "", help="bucket for load-gcs and load-bq"),
    Spec("gcs_prefix", "TAXI_GCS_PREFIX", lambda: "", help="object name prefix in the bucket"),
    Spec("gcp_project", "TAXI_GCP_PROJECT", lambda: "", help="GCP project (else credentials')"),
    Spec(
        "gcp_credentials",
        "GOOGLE_APPLICATION_CREDENTIALS",
        lambda: "",
        help="Google credentials file of any ADC type: service-account key, user login, "
        "Workload Identity Federation config, impersonation (else Application Default "
        "Credentials)",
    ),
    Spec(
        "storage_emulator_host",
        "STORAGE_EMULATOR_HOST",
        lambda: "",
        help="GCS emulator URL; anonymous credentials",
    ),
    Spec("bq_dataset", "TAXI_BQ_DATASET", lambda: "taxi", help="BigQuery dataset"),
    Spec("bq_location", "TAXI_BQ_LOCATION", lambda: "US", help="BigQuery dataset location"),
    Spec(
        "bq_endpoint",
        "TAXI_BQ_ENDPOINT",
        lambda: "",
        help="BigQuery API endpoint override (emulators); anonymous credentials",
    ),
    Spec("dbt_threads", "TAXI_DBT_THREADS", lambda: 4, _positive_int, help="dbt threads"),
    Spec(
        "shard_count",
        "TAXI_SHARD_COUNT",
        lambda: 0,
        _positive_int,
        help="backfill workers sharing a run, where the engine gives only an index "
        "(Kubernetes Indexed Jobs); 0 = from the engine",
    ),
    Spec(
        "gcs_check_location",
        "TAXI_GCS_CHECK_LOCATION",
        lambda: False,
        _bool,
        help="read the bucket's location (needs storage.buckets.get) to check it against "
        "the dataset's; --create-bucket always does",
    ),
    Spec(
        "keep_cache",
        "TAXI_KEEP_CACHE",
        _default_keep_cache,
        _bool,
        help="keep downloaded and Parquet files once a month is loaded everywhere",
        default_doc="yes; no on Cloud Run (CLOUD_RUN_JOB or K_SERVICE set)",
    ),
    Spec(
        "bq_max_bytes_billed",
        "TAXI_BQ_MAX_BYTES_BILLED",
        lambda: 50_000_000_000,
        _positive_int,
        help="transform on BigQuery: a dbt query billing more bytes fails (0 = no cap)",
    ),
    Spec(
        "catch_up_changed",
        "TAXI_CATCH_UP_CHANGED",
        lambda: True,
        _flag,
        help="backfill --catch-up also reloads done months whose release asset changed "
        "upstream (true/false)",
    ),
    Spec(
        "checks",
        "TAXI_CHECKS",
        lambda: "warn",
        _checks,
        help="a breached data check: warn (load and record it) or fail (the partition fails)",
    ),
    *(
        Spec(
            f"check_{name}",
            f"TAXI_CHECK_{name.upper()}",
            _const(limit),
            _share,
            help=f"data check: largest share (0..1) of a file's rows with {what}",
        )
        for name, what, limit in (
            ("outside_month", "a pickup outside the file's month", 0.01),
            ("dropoff_before_pickup", "a dropoff before the pickup", 0.01),
            ("negative_amounts", "a negative fare or total", 0.01),
            ("null_passenger_count", "no passenger count", 0.6),
            ("unknown_zones", "a zone id not in the lookup", 0.01),
        )
    ),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}

# libpq's own variables: psycopg reads them itself; we only report and detect them.
PG_ENV = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE")
# What Cloud Run Jobs, Kubernetes Indexed Jobs and AWS Batch tell a task (taxi_cli.shard).
ENGINE_ENV = (
    "CLOUD_RUN_TASK_INDEX",
    "CLOUD_RUN_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "AWS_BATCH_JOB_ARRAY_SIZE",
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; `sources` says where each value came from."""

    source_url: str
    data_dir: str
    state_dir: str
    http_retries: int
    http_backoff: float
    http_backoff_max: float
    http_timeout: float
    pg_url: str
    pg_schema: str
    pg_data: str
    gcs_bucket: str
    gcs_prefix: str
    gcp_project: str
    gcp_credentials: str
    storage_emulator_host: str
    bq_dataset: str
    bq_location: str
    bq_endpoint: str
    dbt_threads: int
    shard_count: int = 0
    pg_copy_streams: str = "auto"
    bq_max_bytes_billed: int = 50_000_000_000
    catch_up_changed: bool = True
    checks: str = "warn"
    check_outside_month: float = 0.01
    check_dropoff_before_pickup: float = 0.01
    check_negative_amounts: float = 0.01
    check_null_passenger_count: float = 0.6
    check_unknown_zones: float = 0.01
    manifest: str = ""
    gcs_check_location: bool = False
    keep_cache: bool = True
    sources: Mapping[str, str] = field(default_factory=dict)
    profile: str | None = None
    config_file: Path | None = None
    pg_env: Mapping[str, str] = field(default_factory=dict)
    engine_env: Mapping[str, str] = field(default_factory=dict)  # a task's index and count
    profile_source: str = ""  # "--profile", "env TAXI_PROFILE", "default table" or ""
    config_source: str = ""  # "--config", "env TAXI_CONFIG", "current directory", ...

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def pg_data_path(self) -> Path:
        return Path(self.pg_data).expanduser()

    @property
    def uses_libpq_env(self) -> bool:
        """True when the Postgres target comes from PG* variables (PGHOST set, no URL)."""
        return not self.pg_url and "PGHOST" in self.pg_env

    def with_values(self, **overrides: Any) -> Settings:
        """A copy with some values replaced (their source marked `override`)."""
        sources = {**self.sources, **{k: "override" for k in overrides}}
        return replace(self, **overrides, sources=sources)

    def shown(self) -> list[tuple[str, str, str]]:
        """(name, value, source) for every setting, secrets masked."""
        rows = []
        for spec in SPECS:
            value = str(getattr(self, spec.name))
            # Any URL may carry a password (a mirror, an endpoint), not only the DSN ones.
            value = mask_secret(value) if spec.secret == "full" else mask_dsn(value)
            if _looks_like_key_material(value):  # e.g. a key file's JSON pasted into the env
                value = f"{MASK} (inline content, not a path)"
            rows.append((spec.name, value, self.source_of(spec.name)))
        for name in PG_ENV:
            if name in self.pg_env:
                value = self.pg_env[name]
                rows.append((name, mask_secret(value) if name == "PGPASSWORD" else value, "env"))
        return rows


def _looks_like_key_material(value: str) -> bool:
    text = value.lstrip()
    return text.startswith("{") or "-----BEGIN" in text or "private_key" in text


def environ() -> Mapping[str, str]:
    """The process environment (read here and nowhere else)."""
    return os.environ


@contextmanager
def exported(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in the process environment for the duration (for an in-process tool
    such as dbt, whose libraries read it), the previous values restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def hostname() -> str:
    return socket.gethostname()


def config_search_path(explicit: str | None, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """Where the config file is looked for, in order, each with how it was chosen.

    An explicit `--config` or `$TAXI_CONFIG` replaces the search: it is the only candidate.
    """
    named = explicit or env.get(ENV_CONFIG)
    if named:
        how = "--config" if explicit else f"env {ENV_CONFIG}"
        return [(Path(named).expanduser(), how)]
    return [
        (Path.cwd() / CONFIG_FILE_NAME, "current directory"),
        (platformdirs.user_config_path(APP) / "config.toml", "user config dir"),
    ]


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read, or None; an explicitly named file must exist."""
    candidates = config_search_path(explicit, env)
    if explicit or env.get(ENV_CONFIG):
        path, how = candidates[0]
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"config file {path} (from {how}) {what}")
        return path
    for candidate, how in candidates:
        if candidate.is_file():
            return candidate
        if candidate.exists():  # a directory (or a socket) where the config file belongs
            raise ConfigError(
                f"config file {candidate} (from {how}) is not a file; remove or rename it"
            )
    return None


def _check_keys(path: Path, table: Mapping[str, Any], where: str) -> None:
    for key in table:
        if key not in SPEC_BY_NAME:
            near = difflib.get_close_matches(key, SPEC_BY_NAME, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{path}: unknown setting {key!r} in {where}{hint}")


def _read_profile(path: Path, profile: str | None) -> tuple[dict[str, Any], str | None, set[str]]:
    """The file's values for `profile`, the profile used, and the keys the profile set."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    profiles = data.pop("profile", {})
    if not isinstance(profiles, dict):
        raise ConfigError(
            f"{path}: `profile` must hold [profile.NAME] tables, not {_kind(profiles)}"
        )
    for name, table in profiles.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"{path}: `profile` must hold [profile.NAME] tables; "
                f"profile.{name} is {_kind(table)}, not a table"
            )
    # The whole file is checked, not just the chosen profile: a typo in [profile.prod]
    # should fail on the laptop, not at 09:00 on the first of the month.
    _check_keys(path, data, "the top level")
    for name, table in profiles.items():
        _check_keys(path, table, f"[profile.{name}]")
    merged = dict(data)
    chosen = profile
    if profile is not None:
        if profile not in profiles:
            have = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"unknown profile {profile!r} in {path}; profiles: {have}")
    elif "default" in profiles:
        chosen = "default"
    from_profile: set[str] = set()
    if chosen is not None:
        merged.update(profiles[chosen])
        from_profile = set(profiles[chosen])
    return merged, chosen, from_profile


def _kind(value: Any) -> str:
    """What a TOML value is, in TOML's words."""
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    return next((word for t, word in kinds if isinstance(value, t)), "a date or time")


def _convert(spec: Spec, raw: Any, where: str) -> Any:
    if isinstance(raw, dict | list):
        raise ConfigError(f"bad value for {spec.name} (from {where}): {_kind(raw)}, not a value")
    if isinstance(raw, bool) and spec.convert is not str:
        raise ConfigError(f"bad value {raw!r} for {spec.name} (from {where}): not a number")
    if isinstance(raw, float) and spec.convert is _positive_int:
        raise ConfigError(f"bad value {raw!r} for {spec.name} (from {where}): not a whole number")
    try:
        return spec.convert(str(raw))
    except ValueError as exc:
        # a secret's value is never quoted, not even masked (a malformed one defeats the mask)
        shown = "" if spec.secret else f" {raw!r}"
        raise ConfigError(f"bad value{shown} for {spec.name} (from {where}): {exc}") from exc


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: flags (None = not given) > env > config profile > default."""
    env = os.environ if env is None else env
    flags = flags or {}
    unknown = set(flags) - set(SPEC_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown settings {sorted(unknown)}")
    profile_source = "--profile" if profile else ""
    if not profile and env.get(ENV_PROFILE):
        profile, profile_source = env[ENV_PROFILE], f"env {ENV_PROFILE}"
    profile = profile or None
    path = find_config_file(config_file, env)
    file_values: dict[str, Any] = {}
    from_profile: set[str] = set()
    chosen: str | None = None
    if path is not None:
        file_values, chosen, from_profile = _read_profile(path, profile)
        if chosen is not None and profile is None:
            profile_source = "default table"
    elif profile is not None:
        searched = ", ".join(str(p) for p, _ in config_search_path(config_file, env))
        raise ConfigError(
            f"profile {profile!r} asked for (from {profile_source}), but no config file was "
            f"found (looked for {searched}); pass --config FILE"
        )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        if flags.get(spec.name) is not None:
            values[spec.name], sources[spec.name] = _convert(spec, flags[spec.name], "flag"), "flag"
        elif spec.env and env.get(spec.env):
            where = f"env {spec.env}"
            values[spec.name], sources[spec.name] = _convert(spec, env[spec.env], where), where
        elif spec.name in file_values:
            in_profile = spec.name in from_profile
            where = f"config {path}" + (f" [profile.{chosen}]" if in_profile else "")
            values[spec.name] = _convert(spec, file_values[spec.name], where)
            sources[spec.name] = where
        else:
            values[spec.name], sources[spec.name] = spec.default(), "default"
    pg_env = {name: env[name] for name in PG_ENV if env.get(name)}
    engine_env = {name: env[name] for name in ENGINE_ENV if env.get(name)}
    config_source = next((how for p, how in config_search_path(config_file, env) if p == path), "")
    return Settings(
        **values,
        sources=sources,
        profile=chosen,
        config_file=path,
        pg_env=pg_env,
        engine_env=engine_env,
        profile_source=profile_source,
        config_source=config_source,
    )


def report(settings: Settings) -> dict[str, Any]:
    """What `config show --json` prints: every setting (numbers typed, secrets masked)."""
    shown = {name: (value, source) for name, value, source in settings.shown()}
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = getattr(settings, spec.name)
        value = raw if isinstance(raw, int | float) else shown[spec.name][0]
        values[spec.name] = {"value": value, "source": shown[spec.name][1], "env": spec.env}
    return {
        "config_file": str(settings.config_file) if settings.config_file else None,
        "config_source": settings.config_source or None,
        "profile": settings.profile,
        "profile_source": settings.profile_source or None,
        "settings": values,
        "libpq_env": {name: shown[name][0] for name in PG_ENV if name in shown},
    }


def report_text(settings: Settings) -> str:
    """What `config show` prints: the file, the profile, then one aligned line per setting."""
    path = settings.config_file
    file_line = f"{path} (from {settings.config_source})" if path else "none"
    profile = settings.profile
    profile_line = f"{profile} (from {settings.profile_source})" if profile else "none"
    rows = settings.shown()
    name_w = max(len(name) for name, _, _ in rows)
    value_w = min(48, max(len(value) for _, value, _ in rows))
    lines = [f"config file: {file_line}", f"profile:     {profile_line}", ""]
    lines += [f"{name:<{name_w}}  {value or '-':<{value_w}}  {src}" for name, value, src in rows]
    return "\n".join(lines) + "\n"


def exposed_file_secret(settings: Settings) -> str | None:
    """A warning when the config file holds a password yet other users may read it."""
    path = settings.config_file
    if path is None:
        return None
    from_file = [
        spec.name
        for spec in SPECS
        if spec.secret
        and settings.source_of(spec.name).startswith("config ")
        and mask_dsn(str(getattr(settings, spec.name))) != str(getattr(settings, spec.name))
    ]
    try:
        loose = path.stat().st_mode & 0o077
    except OSError:
        return None
    if from_file and loose:
        names = ", ".join(from_file)
        return f"{path} holds a password ({names}) and other users can read it: chmod 600 {path}"
    return None


def env_names() -> list[str]:
    """Every environment variable taxi-cli reads: settings, libpq's, config selection."""
    names = [s.env for s in SPECS if s.env] + list(PG_ENV) + [ENV_CONFIG, ENV_PROFILE]
    return names + list(ENGINE_ENV)


def markdown_table() -> str:
    """The configuration reference table for the README, generated from SPECS."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | env var | default | meaning |", "|---|---|---|---|"]
    for spec in SPECS:
        default = spec.default_doc or (f"`{spec.default()}`" if spec.default() != "" else "—")
        env = f"`{spec.env}`" if spec.env else "—"
        lines.append(f"| `{spec.name}` | {env} | {cell(default)} | {cell(spec.help)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m taxi_cli.config --markdown")
    sys.stdout.write(markdown_table())
