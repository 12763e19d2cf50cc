"""The dbt profile of `transform`, built from the loaders' settings: no hand-written YAML.

The Postgres target is whatever `load-pg` connects to (`--pg-url`, PG* variables or the
embedded server): we connect once the same way and read the resolved parameters back
from libpq, so a unix-socket server becomes `host: <socket dir>`. The BigQuery target
uses load-bq's project, dataset, location and credentials, or `TAXI_BQ_ENDPOINT` with a
dummy token for an emulator: a service-account key file gets dbt's `service-account`
method; any other credentials file (user login, Workload Identity Federation,
impersonation) gets `oauth` with `GOOGLE_APPLICATION_CREDENTIALS` naming the file in
dbt's environment; no file gets `oauth` (Application Default Credentials). Queries are
capped at `bq_max_bytes_billed`.

The profile holds a password, so it lives in a private directory (0700, file 0600) that
is removed when dbt is done, or, after a SIGKILL, by the next run of the same target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, UsageError

PROFILE = "taxi_cli"  # the `profile:` of taxi_cli/dbt_project/dbt_project.yml
TARGETS = ("pg", "bq")
# libpq's TLS parameters that dbt-postgres understands, passed on when set
_PG_TLS = ("sslmode", "sslcert", "sslkey", "sslrootcert")


@dataclass(frozen=True)
class DbtTarget:
    """One dbt output plus where the raw tables live."""

    name: str  # "pg" or "bq"
    output: dict[str, Any] = field(repr=False)  # may hold a password
    source_database: str | None  # database/project of the raw tables (None: the target's)
    source_schema: str  # schema/dataset of the raw tables
    description: str  # safe to print
    # what dbt's libraries must find in the environment (paths and names, no secret)
    environment: dict[str, str] = field(default_factory=dict)


def _literal(value: str) -> str:
    """dbt renders profile values with Jinja: keep a value with braces literal."""
    if "{" not in value:
        return value
    return "{% raw %}" + value + "{% endraw %}"


def postgres_target(cfg: Settings) -> DbtTarget:
    """The Postgres output for load-pg's target (starting the embedded server if needed)."""
    from taxi_cli.postgres.destination import connect

    with connect(cfg) as conn:
        info = conn.info
        params = info.get_parameters()
        host, port, user, dbname = info.host, info.port, info.user, info.dbname
        password = info.password or ""
    output: dict[str, Any] = {
        "type": "postgres",
        "host": host,
        "port": port,
        "user": user,
        "password": _literal(password),
        "dbname": dbname,
        "schema": cfg.pg_schema,
        "threads": max(1, cfg.dbt_threads),
        "connect_timeout": 10,
    }
    output.update({key: params[key] for key in _PG_TLS if params.get(key)})
    where = f"socket dir {host}" if host.startswith("/") else f"{host}:{port}"
    return DbtTarget(
        name="pg",
        output=output,
        source_database=None,
        source_schema=cfg.pg_schema,
        description=f"postgres database {dbname} on {where} as {user}, schema {cfg.pg_schema}",
    )


def _bigquery_dataset(cfg: Settings) -> tuple[str, str]:
    """(project, location) of load-bq's dataset, checked to exist the way load-bq does:
    an unreachable endpoint or refused credentials fail here (exit 3), not in dbt."""
    from google.api_core import exceptions as gexc

    from taxi_cli.gcp import clients

    auth = clients.bq_auth(cfg)
    dataset = f"{auth.project}.{cfg.bq_dataset}"
    try:
        client = clients.bq_client(auth, cfg.bq_location)
        found = client.get_dataset(dataset, retry=clients.preflight_retry(cfg))
    except gexc.NotFound:
        raise ConfigError(
            f"BigQuery dataset {dataset} does not exist: check --dataset / TAXI_BQ_DATASET, "
            "or load months first (taxi-cli load-bq green 2020-04 --create-dataset)"
        ) from None
    except Exception as exc:
        raise clients.api_error(exc, f"dataset {dataset}", auth) from exc
    return auth.project, found.location or cfg.bq_location


def bigquery_target(cfg: Settings, *, preflight: bool = True) -> DbtTarget:
    """The BigQuery output for load-bq's project and dataset (`preflight`: check it)."""
    project, location = cfg.gcp_project, cfg.bq_location
    if preflight:
        project, location = _bigquery_dataset(cfg)
    output: dict[str, Any] = {
        "type": "bigquery",
        "dataset": cfg.bq_dataset,
        "location": location,
        "threads": max(1, cfg.dbt_threads),
        "priority": "interactive",
        "job_retries": 1,
    }
    environment: dict[str, str] = {}
    if project:
        output["project"] = project
    if cfg.bq_endpoint:
        if not project:
            raise ConfigError("TAXI_BQ_ENDPOINT needs a project: set TAXI_GCP_PROJECT")
        # An emulator takes any bearer token; a dummy one keeps google-auth offline.
        output.update(method="oauth-secrets", token="emulator", api_endpoint=cfg.bq_endpoint)
    elif cfg.gcp_credentials:
        from taxi_cli.gcp.clients import credentials_file_type

        keyfile = Path(cfg.gcp_credentials).expanduser()
        if not keyfile.is_file():
            raise ConfigError(
                f"GOOGLE_APPLICATION_CREDENTIALS names {keyfile}, which does not exist"
            )
        if credentials_file_type(keyfile) == "service_account":
            output.update(method="service-account", keyfile=str(keyfile))
        else:
            # dbt's `service-account` method reads service-account keys only; its `oauth`
            # method is google.auth.default(), which loads every ADC file type from
            # GOOGLE_APPLICATION_CREDENTIALS (dbt/adapters/bigquery/credentials.py).
            output["method"] = "oauth"
            environment["GOOGLE_APPLICATION_CREDENTIALS"] = str(keyfile)
    else:
        output["method"] = "oauth"  # Application Default Credentials
    if output["method"] == "oauth" and project:
        # google.auth.default() then takes the project as given instead of asking the
        # Resource Manager API for an external_account's project
        environment["GOOGLE_CLOUD_PROJECT"] = project
    if cfg.bq_max_bytes_billed:
        output["maximum_bytes_billed"] = cfg.bq_max_bytes_billed
    via = f" via {cfg.bq_endpoint}" if cfg.bq_endpoint else ""
    shown = project or "(project of the credentials)"
    return DbtTarget(
        name="bq",
        output=output,
        source_database=project or None,
        source_schema=cfg.bq_dataset,
        description=f"bigquery {shown}.{cfg.bq_dataset} ({location}){via}",
        environment=environment,
    )


def forget_cached_credentials() -> None:
    """dbt-bigquery caches google.auth.default()'s credentials for the process (an
    lru_cache keyed by scopes): a second transform in the same process would reuse the
    first one's, whatever GOOGLE_APPLICATION_CREDENTIALS names now."""
    try:
        from dbt.adapters.bigquery import credentials
    except ImportError:  # dbt-bigquery is not installed: nothing cached
        return
    cached = getattr(credentials, "_create_bigquery_defaults", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


def resolve(cfg: Settings, target: str) -> DbtTarget:
    if target == "pg":
        return postgres_target(cfg)
    if target == "bq":
        return bigquery_target(cfg)
    raise UsageError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")


@contextmanager
def profiles_dir(target: DbtTarget, root: Path | None = None) -> Iterator[Path]:
    """A private directory holding profiles.yml for `target`, removed afterwards.

    With `root` (a directory only this target's runs use, under their lock), whatever a
    killed run left there (SIGKILL skips the removal) is removed first: a secret
    outlives its run at most until the next run starts, and is never readable by others.
    """
    if root is not None:
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            root.chmod(0o700)  # also when it existed with a looser mode
            for stale in root.iterdir():
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot prepare the dbt profile dir {root}: {exc}") from exc
    path = Path(tempfile.mkdtemp(prefix="taxi-cli-dbt-", dir=root))  # mkdtemp: mode 0700
    try:
        profile = {PROFILE: {"target": target.name, "outputs": {target.name: target.output}}}
        file = path / "profiles.yml"
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(profile, handle, indent=2)  # JSON is YAML
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
