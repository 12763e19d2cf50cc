"""Masking of secrets before anything reaches a terminal, a log or an error message."""

from __future__ import annotations

import re

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")
# sslpassword (the passphrase of the client key) is a secret too
_KV_PASSWORD = re.compile(
    r"(?P<pre>(?<![?&])\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I
)
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&\s]*)", re.I)


def mask_dsn(text: str) -> str:
    """Replace every password in URLs, `password=...` pairs and query strings by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}", text)


def mask_secret(value: str) -> str:
    """A fully hidden secret that still says whether it is set."""
    return MASK if value else ""
