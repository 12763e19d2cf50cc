"""Every credential file type Application Default Credentials accepts works for the
loaders and for dbt (issue 11, point 5).

The files are the ones gcloud and google-github-actions/auth write, pointed at a local
token server (tests/fixtures_google_auth.py) that speaks the real OAuth, STS and IAM
Credentials protocols: a credential that "works" here obtained a token by its own grant
and made an authorised BigQuery API call through the official client. Nothing leaves
127.0.0.1. What the loaders build sends nothing until the first API call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taxi_cli import dbt_profile
from taxi_cli.cli import app
from taxi_cli.config import exported, load_settings
from taxi_cli.gcp import clients
from tests.fixtures_google_auth import (
    OIDC_TOKEN,
    PROJECT,
    SA_EMAIL,
    TokenServer,
    authorized_user_file,
    external_account_file,
    impersonated_file,
    service_account_file,
)

# kind -> (credentials class, the grant its token comes from, dbt method)
KINDS: dict[str, tuple[str, str, str]] = {
    "service_account": ("google.oauth2.service_account.Credentials", "sa-key", "service-account"),
    "authorized_user": ("google.oauth2.credentials.Credentials", "user", "oauth"),
    "external_account": ("google.auth.identity_pool.Credentials", "sts", "oauth"),
    "external_account+impersonation": (
        "google.auth.identity_pool.Credentials",
        "impersonated-from-sts",
        "oauth",
    ),
    "external_account+github": (  # google-github-actions/auth's file
        "google.auth.identity_pool.Credentials",
        "impersonated-from-sts",
        "oauth",
    ),
    "impersonated_service_account": (
        "google.auth.impersonated_credentials.Credentials",
        "impersonated-from-user",
        "oauth",
    ),
}


def write(kind: str, tmp_path: Path, server: TokenServer) -> Path:
    path = tmp_path / f"{kind.replace('+', '-')}.json"
    if kind == "service_account":
        return service_account_file(path, server)
    if kind == "authorized_user":
        return authorized_user_file(path, server)
    if kind.startswith("external_account"):
        github = kind.endswith("+github")
        return external_account_file(path, server, impersonate="+" in kind, url_sourced=github)
    return impersonated_file(path, server)


def secrets_of(path: Path) -> list[str]:
    """The values in a credentials file that must never be printed."""
    info = json.loads(path.read_text())
    source = info.get("source_credentials", {})
    found = [info.get("private_key"), info.get("refresh_token"), source.get("refresh_token")]
    found += [info.get("client_secret"), source.get("client_secret")]
    return [s for s in found if s]


def local_endpoints(creds: Any, server: TokenServer) -> None:
    """google-auth sends a user login's refresh to Google's token endpoint whatever the
    file says ("always overrides"), and impersonation to Google's IAM Credentials host:
    send those same requests to the local server instead. Service-account keys and
    external_account files name their endpoints themselves, and are left as loaded."""
    from google.auth import impersonated_credentials
    from google.oauth2 import credentials as user_credentials

    if isinstance(creds, impersonated_credentials.Credentials):
        creds._iam_endpoint_override = (
            f"{server.url}/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken"
        )
        creds = creds._source_credentials
    if isinstance(creds, user_credentials.Credentials):
        creds._token_uri = f"{server.url}/token"


def qualified(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_loaders_accept_the_file_and_its_token_reaches_the_api(
    kind: str, tmp_path: Path, token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import bigquery

    cls, grant, _ = KINDS[kind]
    path = write(kind, tmp_path, token_server)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("TAXI_GCP_PROJECT", PROJECT)
    cfg = load_settings()
    storage, bq = clients.storage_auth(cfg), clients.bq_auth(cfg)
    for auth in (storage, bq):
        assert not auth.emulated and auth.project == PROJECT
        assert qualified(auth.credentials) == cls
    # the clients the loaders build: nothing is sent yet (no token, no project lookup)
    clients.storage_client(storage)
    clients.bq_client(bq, "US")
    assert token_server.grants == [] and token_server.errors == []

    # one authorised call with those credentials through the official BigQuery client
    local_endpoints(bq.credentials, token_server)
    client = bigquery.Client(
        project=PROJECT,
        credentials=bq.credentials,
        location="US",
        client_options={"api_endpoint": token_server.url},
    )
    # retry=None: one attempt (the stubs type it as Retry only)
    dataset = client.get_dataset(f"{PROJECT}.taxi", retry=None, timeout=10)  # type: ignore[arg-type]
    assert dataset.dataset_id == "taxi"
    assert token_server.errors == []
    (header,) = token_server.api_auth
    token = header.removeprefix("Bearer ")
    assert token_server.issued[token] == grant
    if kind.startswith("external_account"):  # the OIDC token (file or URL) was exchanged
        assert token_server.subject_tokens == [OIDC_TOKEN]


def test_a_service_account_key_names_its_project(
    tmp_path: Path, token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = service_account_file(tmp_path / "sa.json", token_server)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    assert clients.bq_auth(load_settings()).project == PROJECT


def test_a_wif_file_without_a_project_setting_exits_2_without_a_request(
    tmp_path: Path, token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = external_account_file(tmp_path / "wif.json", token_server, impersonate=True)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    result = CliRunner().invoke(app, ["load-bq", "green", "2020-04"])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "no GCP project" in line and "TAXI_GCP_PROJECT" in line
    assert token_server.grants == [] and token_server.subject_tokens == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"type": "external_account", "audience": "x"}', "is not usable as external_account"),
        ('{"type": "impersonated_service_account"}', "is not usable as impersonated_service_acc"),
        ('{"type": "bogus"}', "has type 'bogus', not one of service_account, authorized_user"),
        ("[1, 2]", "has type None"),
    ],
)
def test_a_broken_file_of_a_known_type_is_one_line_exit_2(
    content: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("TAXI_GCP_PROJECT", PROJECT)
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    result = CliRunner().invoke(app, ["load-gcs", "green", "2020-04"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("taxi-cli: error: ") and str(path) in line and says in line


def test_a_key_file_error_never_prints_the_key(
    tmp_path: Path, token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = service_account_file(tmp_path / "sa.json", token_server)
    info = json.loads(good.read_text())
    key_body = info["private_key"].splitlines()[5]
    info["private_key"] = info["private_key"].replace(key_body, key_body[::-1])  # corrupt
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    monkeypatch.setenv("TAXI_GCS_BUCKET", "some-bucket")
    result = CliRunner().invoke(app, ["load-gcs", "green", "2020-04"])
    assert result.exit_code == 2
    assert f"credentials file {bad} is not usable as service_account" in result.stderr
    for secret in (key_body, key_body[::-1], *secrets_of(good)):
        assert secret not in result.output and secret not in result.stderr


# ---- dbt ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_dbt_gets_a_method_that_loads_the_file_and_gets_a_token(
    kind: str, tmp_path: Path, token_server: TokenServer
) -> None:
    """The profile transform writes, read by dbt-bigquery's own credential code in the
    environment transform runs dbt in. The settings come from a mapping, not from the
    process environment: GOOGLE_APPLICATION_CREDENTIALS reaches dbt only through
    `DbtTarget.environment`."""
    import google.auth.transport.requests
    from dbt.adapters.bigquery import credentials as dbt_credentials

    cls, grant, method = KINDS[kind]
    path = write(kind, tmp_path, token_server)
    cfg = load_settings(
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(path), "TAXI_GCP_PROJECT": PROJECT}
    )
    target = dbt_profile.bigquery_target(cfg, preflight=False)
    output = target.output
    assert output["method"] == method
    assert output["maximum_bytes_billed"] == cfg.bq_max_bytes_billed > 0
    if method == "service-account":
        assert output["keyfile"] == str(path) and target.environment == {}
    else:
        assert "keyfile" not in output
        assert target.environment == {
            "GOOGLE_APPLICATION_CREDENTIALS": str(path),
            "GOOGLE_CLOUD_PROJECT": PROJECT,
        }
    with dbt_profile.profiles_dir(target) as profiles:
        written = (profiles / "profiles.yml").read_text()
    for secret in secrets_of(path):
        assert secret not in written and secret not in target.description

    # dbt-bigquery caches ADC per scopes for the process: start from a clean cache
    dbt_credentials._create_bigquery_defaults.cache_clear()
    profile = dbt_credentials.BigQueryCredentials.translate_aliases(dict(output))
    profile.pop("type")
    parsed = dbt_credentials.BigQueryCredentials.from_dict(profile)
    with exported(target.environment):
        creds = dbt_credentials.create_google_credentials(parsed)
    assert qualified(creds) == cls
    local_endpoints(creds, token_server)
    creds.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    assert token_server.errors == []
    assert token_server.issued[str(creds.token)] == grant
    dbt_credentials._create_bigquery_defaults.cache_clear()


def test_exported_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from taxi_cli.config import environ

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "before")
    with exported({"GOOGLE_CLOUD_PROJECT": "during", "GOOGLE_APPLICATION_CREDENTIALS": "/x"}):
        assert environ()["GOOGLE_CLOUD_PROJECT"] == "during"
        assert environ()["GOOGLE_APPLICATION_CREDENTIALS"] == "/x"
    assert environ()["GOOGLE_CLOUD_PROJECT"] == "before"
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in environ()
