"""A local stand-in for Google's token services, and credential files of every ADC type.

`TokenServer` (127.0.0.1, a free port) answers the real protocols google-auth speaks:
- `POST /token`: OAuth 2.0 token endpoint. `refresh_token` grants (user logins) and
  `jwt-bearer` grants (service-account keys: the JWT's RS256 signature is verified
  against the key's public half, its `aud` and `scope` checked).
- `POST /v1/token`: the Security Token Service's token exchange (RFC 8693), for
  Workload Identity Federation (`external_account`).
- `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`: IAM Credentials,
  for impersonation; the caller's bearer token must be one this server issued.
- `GET /bigquery/v2/projects/{p}/datasets/{d}`: a dataset, so that a BigQuery client
  built on the credentials makes one real authorised call; every request's
  `Authorization` header is recorded.

Each issued token names the grant that produced it (`tok-<n>-<grant>`), so a test can
say which path a credential really took. Credential files are written with the fields
`gcloud` / google-github-actions/auth write, pointed at this server.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.http_host import local_http

SA_EMAIL = "taxi-loader@taxi-proj.iam.gserviceaccount.com"
PROJECT = "taxi-proj"
AUDIENCE = (
    "//iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github/providers/taxi-cli"
)
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOnRheGkifQ.c2lnbmF0dXJl"
OIDC_REQUEST_TOKEN = "runner-request-token"


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class TokenServer:
    url: str = ""
    public_keys: dict[str, Any] = field(default_factory=dict)  # key id -> RSA public key
    issued: dict[str, str] = field(default_factory=dict)  # token -> grant
    grants: list[str] = field(default_factory=list)
    api_auth: list[str] = field(default_factory=list)  # Authorization of API calls
    subject_tokens: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, grant: str) -> str:
        with self._lock:
            token = f"tok-{len(self.issued) + 1}-{grant}"
            self.issued[token] = grant
            self.grants.append(grant)
        return token

    def check_jwt(self, assertion: str) -> str | None:
        """Why a service-account JWT is refused, or None when its signature holds."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head, body, signature = assertion.split(".")
        header = json.loads(_b64url_decode(head))
        claims = json.loads(_b64url_decode(body))
        key = self.public_keys.get(header.get("kid", ""))
        if header.get("alg") != "RS256" or key is None:
            return f"unknown key or alg: {header}"
        try:
            key.verify(
                _b64url_decode(signature),
                f"{head}.{body}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception as exc:
            return f"bad signature: {exc!r}"
        # google-auth signs for Google's token endpoint whatever token_uri it posts to
        audience = claims.get("aud")
        if audience != GOOGLE_TOKEN_URI or CLOUD_PLATFORM not in claims.get("scope", ""):
            return f"bad claims: {claims}"
        return None


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, why: str) -> None:
            server.errors.append(f"{self.path}: {why}")
            self._reply(400, {"error": "invalid_grant", "error_description": why})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            if self.path == "/token":
                form = dict(urllib.parse.parse_qsl(body))
                grant = form.get("grant_type", "")
                if grant == "refresh_token":
                    if not form.get("refresh_token") or not form.get("client_secret"):
                        return self._refuse("refresh_token grant without its fields")
                    token = server.issue("user")
                elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                    why = server.check_jwt(form.get("assertion", ""))
                    if why:
                        return self._refuse(why)
                    token = server.issue("sa-key")
                else:
                    return self._refuse(f"grant {grant!r}")
                return self._reply(
                    200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
                )
            if self.path == "/v1/token":
                form = dict(urllib.parse.parse_qsl(body))
                if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
                    return self._refuse(f"STS grant {form.get('grant_type')!r}")
                if form.get("audience") != AUDIENCE or not form.get("subject_token"):
                    return self._refuse("STS request without the pool's audience/token")
                server.subject_tokens.append(form["subject_token"])
                return self._reply(
                    200,
                    {
                        "access_token": server.issue("sts"),
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    },
                )
            if self.path.endswith(":generateAccessToken"):
                caller = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if caller not in server.issued:
                    return self._refuse(f"generateAccessToken by unknown token {caller!r}")
                if f"/serviceAccounts/{SA_EMAIL}:" not in self.path:
                    return self._refuse("wrong service account")
                token = server.issue(f"impersonated-from-{server.issued[caller]}")
                return self._reply(
                    200, {"accessToken": token, "expireTime": "2999-01-01T00:00:00Z"}
                )
            self._refuse("unknown endpoint")

        def do_GET(self) -> None:
            if self.path.startswith("/oidc"):  # GitHub's ACTIONS_ID_TOKEN_REQUEST_URL
                if self.headers.get("Authorization") != f"Bearer {OIDC_REQUEST_TOKEN}":
                    return self._refuse("OIDC request without the runner's request token")
                return self._reply(200, {"count": 1, "value": OIDC_TOKEN})
            if self.path.startswith("/bigquery/v2/projects/"):
                server.api_auth.append(self.headers.get("Authorization", ""))
                parts = self.path.split("?")[0].split("/")
                project, dataset = parts[4], parts[6]
                return self._reply(
                    200,
                    {
                        "kind": "bigquery#dataset",
                        "id": f"{project}:{dataset}",
                        "datasetReference": {"projectId": project, "datasetId": dataset},
                        "location": "US",
                    },
                )
            self._refuse("unknown endpoint")

    return Handler


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    with local_http(_handler(server)) as server.url:
        yield server


# ---- credential files, as gcloud and google-github-actions/auth write them -----------------


def service_account_file(path: Path, server: TokenServer) -> Path:
    """A service-account key with a real (freshly generated) 2048-bit RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = f"k{len(server.public_keys) + 1:039d}"
    server.public_keys[key_id] = key.public_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": SA_EMAIL,
        "client_id": "104729318476512093847",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"{server.url}/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }
    path.write_text(json.dumps(info, indent=2))
    return path


def authorized_user_info(server: TokenServer) -> dict[str, str]:
    """What `gcloud auth application-default login` writes (plus our token_uri)."""
    return {
        "type": "authorized_user",
        "client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
        "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
        "refresh_token": "1//0gSECRET-REFRESH-TOKEN-do-not-print",
        "quota_project_id": PROJECT,
        "token_uri": f"{server.url}/token",
        "universe_domain": "googleapis.com",
    }


def authorized_user_file(path: Path, server: TokenServer) -> Path:
    path.write_text(json.dumps(authorized_user_info(server), indent=2))
    return path


def external_account_file(
    path: Path, server: TokenServer, *, impersonate: bool, url_sourced: bool = False
) -> Path:
    """A Workload Identity Federation configuration. File-sourced OIDC token: what
    `gcloud iam workload-identity-pools create-cred-config --credential-source-file`
    writes. URL-sourced (`url_sourced`): what google-github-actions/auth v2 writes, the
    token fetched from the runner's ACTIONS_ID_TOKEN_REQUEST_URL with its request token
    (auth v2.1.9 src/client/workload_identity_federation.ts)."""
    source: dict[str, Any]
    if url_sourced:
        source = {
            "url": f"{server.url}/oidc?audience=https://iam.googleapis.com/{AUDIENCE[2:]}",
            "headers": {"Authorization": f"Bearer {OIDC_REQUEST_TOKEN}"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        }
    else:
        token_file = path.with_name(path.stem + "-oidc.jwt")
        token_file.write_text(OIDC_TOKEN)
        source = {"file": str(token_file)}
    info: dict[str, Any] = {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{server.url}/v1/token",
        "credential_source": source,
        "universe_domain": "googleapis.com",
    }
    if impersonate:
        info["service_account_impersonation_url"] = (
            f"{server.url}/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken"
        )
    path.write_text(json.dumps(info, indent=2))
    return path


def impersonated_file(path: Path, server: TokenServer) -> Path:
    """What `gcloud auth application-default login --impersonate-service-account` writes."""
    info = {
        "type": "impersonated_service_account",
        "service_account_impersonation_url": (
            f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
            f"{SA_EMAIL}:generateAccessToken"
        ),
        "source_credentials": authorized_user_info(server),
        "delegates": [],
    }
    path.write_text(json.dumps(info, indent=2))
    return path
