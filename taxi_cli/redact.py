"""Masking of secrets before anything reaches a terminal, a log or an error message."""

from __future__ import annotations

import logging
import re

MASK = "***"

# an http(s) URL's user-info without a password: for a mirror that is a token
_HTTP_TOKEN = re.compile(r"(?P<pre>\bhttps?://)(?P<ui>[^/\s?#:@]+)(?P<at>@)", re.I)
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")
# sslpassword (the passphrase of the client key) is a secret too
_KV_PASSWORD = re.compile(
    r"(?P<pre>(?<![?&])\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I
)
_QUERY_PASSWORD = re.compile(r"(?P<pre>[?&](?:ssl)?password=)(?P<pw>[^&\s]*)", re.I)


def mask_dsn(text: str) -> str:
    """Replace every password in URLs, `password=...` pairs and query strings by ***
    (and a password-less user-info of http(s) URLs, a token: `http://***@mirror/`)."""
    text = _HTTP_TOKEN.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}", text)


def mask_secret(value: str) -> str:
    """A fully hidden secret that still says whether it is set."""
    return MASK if value else ""


def mask_url(text: str) -> str:
    """A source URL (or text holding one) fit for a log, a message or a file: the
    credentials in `http://user:pw@host/` become `http://user:***@host/`, a token in
    `http://token@host/` becomes `http://***@host/`."""
    return mask_dsn(text)


class MaskSecrets(logging.Filter):
    """A handler filter: every log line leaves with its passwords masked (`mask_dsn`),
    whichever module logged a URL, a DSN or an exception text holding one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_dsn(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
