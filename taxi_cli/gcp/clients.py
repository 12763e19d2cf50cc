"""Google Cloud clients from settings, and Google API failures as `TaxiError`s.

Credentials: an emulator endpoint (`STORAGE_EMULATOR_HOST`, `TAXI_BQ_ENDPOINT`) gets
anonymous credentials; otherwise `GOOGLE_APPLICATION_CREDENTIALS` names a credentials
file of any type Application Default Credentials accepts (a service-account key, a user
login, a Workload Identity Federation configuration, an impersonation file), else ADC
itself (`gcloud auth application-default login`, or the metadata server on GCP). Loading
the credentials sends nothing; the first API call fetches a token. The project is
`--project` / `$TAXI_GCP_PROJECT`, else the credentials' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taxi_cli.config import Settings
from taxi_cli.errors import ConfigError, ConnectError, TaxiError

if TYPE_CHECKING:
    from google.cloud import bigquery

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
EMULATOR_PROJECT = "taxi-cli-local"  # what an emulator gets when no project is configured
GCS_ENDPOINT = "https://storage.googleapis.com"
BQ_ENDPOINT = "https://bigquery.googleapis.com"


@dataclass(frozen=True)
class Auth:
    """Credentials and project for one target; `endpoint` is for messages."""

    credentials: Any
    project: str
    endpoint: str
    emulated: bool


def _with_scheme(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def _credentials(cfg: Settings) -> tuple[Any, str | None]:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        if cfg.gcp_credentials:
            return _credentials_file(Path(cfg.gcp_credentials).expanduser())
        creds, project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise ConfigError(
            f"no usable Google credentials ({_first_line(str(exc))}); set "
            "GOOGLE_APPLICATION_CREDENTIALS to a key file or run "
            "`gcloud auth application-default login`"
        ) from exc
    return creds, project


# The `type`s of credential files that google-auth's ADC loads (google.auth._default):
# key files, user logins, Workload Identity Federation configurations, impersonation.
FILE_TYPES = (
    "service_account",
    "authorized_user",
    "external_account",
    "external_account_authorized_user",
    "impersonated_service_account",
    "gdch_service_account",
)


def credentials_file_type(path: Path) -> str:
    """The declared `type` of a credentials file; a ConfigError names what is wrong."""
    import json

    if not path.is_file():
        raise ConfigError(
            f"credentials file {path} (GOOGLE_APPLICATION_CREDENTIALS) does not exist"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        # the JSON error names a position, never the file's content
        raise ConfigError(f"credentials file {path} is not a JSON key file: {exc}") from exc
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in FILE_TYPES:
        raise ConfigError(
            f"no usable Google credentials: {path} has type {kind!r}, not one of "
            f"{', '.join(FILE_TYPES)} (create one with `gcloud auth application-default "
            "login` or `gcloud iam workload-identity-pools create-cred-config`)"
        )
    return str(kind)


def _credentials_file(path: Path) -> tuple[Any, str | None]:
    """Credentials from the file the user configured, of any type ADC accepts.

    google-auth loads it (`load_credentials_from_file`), without scopes so that nothing
    goes over the network here: with scopes, an external_account file would exchange
    its token and look the project up right away. The scopes are applied afterwards,
    where the credential type wants them; the first API call fetches the token."""
    import warnings

    import google.auth
    from google.auth import exceptions as auth_exc
    from google.auth.credentials import with_scopes_if_required

    kind = credentials_file_type(path)
    try:
        # The file is the user's own ADC configuration, trusted as google.auth.default()
        # trusts GOOGLE_APPLICATION_CREDENTIALS: it loads it with this call and silences
        # the same "validate untrusted configurations" DeprecationWarning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            creds, project = google.auth.load_credentials_from_file(str(path))  # type: ignore[no-untyped-call]
    except (auth_exc.GoogleAuthError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"credentials file {path} is not usable as {kind}: "
            f"{_first_line(str(exc)) or type(exc).__name__}"
        ) from exc
    if project is None:  # a user login names its quota project at most
        project = getattr(creds, "quota_project_id", None)
    return with_scopes_if_required(creds, SCOPES), project  # type: ignore[no-untyped-call]


def _auth(cfg: Settings, endpoint: str, default_endpoint: str, project: str | None) -> Auth:
    project = project or cfg.gcp_project or None
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return Auth(anonymous, project or EMULATOR_PROJECT, endpoint, True)
    creds, creds_project = _credentials(cfg)
    chosen = project or creds_project
    if not chosen:
        raise ConfigError(
            "no GCP project: pass --project or set TAXI_GCP_PROJECT "
            "(the credentials do not name one)"
        )
    return Auth(creds, chosen, default_endpoint, False)


def storage_auth(cfg: Settings) -> Auth:
    endpoint = _with_scheme(cfg.storage_emulator_host) if cfg.storage_emulator_host else ""
    return _auth(cfg, endpoint, GCS_ENDPOINT, None)


def bq_auth(cfg: Settings, project: str | None = None) -> Auth:
    endpoint = _with_scheme(cfg.bq_endpoint) if cfg.bq_endpoint else ""
    return _auth(cfg, endpoint, BQ_ENDPOINT, project)


def storage_client(auth: Auth) -> Any:
    """A `google.cloud.storage.Client` (the library has no type information)."""
    import google.cloud.storage as storage

    options = {"api_endpoint": auth.endpoint} if auth.emulated else None
    return storage.Client(
        project=auth.project, credentials=auth.credentials, client_options=options
    )


def bq_client(auth: Auth, location: str) -> bigquery.Client:
    from google.cloud import bigquery

    options = {"api_endpoint": auth.endpoint} if auth.emulated else None
    return bigquery.Client(
        project=auth.project,
        credentials=auth.credentials,
        location=location,
        client_options=options,
    )


def preflight_retry(cfg: Settings) -> Any:
    """The retry of the first call to a service: long enough to ride out a blip, short
    enough that an endpoint that is down fails fast (bounded by `http_timeout`)."""
    from google.api_core.retry import Retry, if_transient_error

    deadline = max(1.0, min(cfg.http_timeout, 30.0))
    return Retry(predicate=if_transient_error, initial=0.2, maximum=2.0, timeout=deadline)


def _first_line(text: str) -> str:
    return " ".join(text.strip().split("\n", 1)[0].split())


def api_error(exc: BaseException, what: str, auth: Auth) -> TaxiError:
    """One actionable `TaxiError` for a failure of the Google clients while doing `what`."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, TaxiError):
        return exc
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        exc = exc.cause
    unreachable = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        auth_exc.TransportError,
    )
    if isinstance(exc, unreachable):
        return ConnectError(
            f"{what}: cannot reach {auth.endpoint} ({type(exc).__name__}); check the network"
            + (" and that the emulator is running" if auth.emulated else "")
        )
    if isinstance(exc, auth_exc.RefreshError):
        return ConnectError(f"{what}: the Google login was refused ({_first_line(str(exc))})")
    if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
        return ConnectError(
            f"{what}: access denied ({exc.code} {_reasons(exc)}) for project "
            f"{auth.project}; check the credentials' IAM roles"
        )
    if isinstance(exc, gexc.GoogleAPICallError):
        return TaxiError(f"{what}: {exc.code} {_reasons(exc)}")
    return TaxiError(f"{what}: {type(exc).__name__}: {_first_line(str(exc))}")


def _reasons(exc: Any) -> str:
    """`reason: message` of the first two errors of an API failure."""
    parts = []
    for err in (getattr(exc, "errors", None) or [])[:2]:
        if isinstance(err, dict):
            reason, message = err.get("reason", ""), err.get("message", "")
            parts.append(f"{reason}: {_first_line(str(message))}" if reason else message)
    return "; ".join(p for p in parts if p) or _first_line(getattr(exc, "message", str(exc)))
