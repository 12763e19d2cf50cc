"""A malformed --pg-url / TAXI_PG_URL exits 2 in one line before anything connects,
naming the setting and where it came from, and never shows a secret (not even the
part of a password a malformed URL would leave outside the mask)."""

from __future__ import annotations

import pytest

from tests.faults.db_support import SECRET, cli

S = SECRET
BAD = [
    ("not a URL", "localhost:5432", "not a URL"),
    ("a bare word", S, "not a URL"),
    ("another scheme", f"mysql://u:{S}@db.example/taxi", "scheme 'mysql'"),
    ("http", f"http://u:{S}@db.example/taxi", "scheme 'http'"),
    ("an unencoded @", f"postgresql://u:{S}@x@db.example/taxi", "unencoded '@'"),
    ("an unencoded %", f"postgresql://u:{S}%zz@db.example/taxi", "unencoded '%'"),
    ("an unencoded /", f"postgresql://u:ab/{S}@db.example/taxi", "unencoded '/'"),
    ("a space", f"postgresql://u:a {S}@db.example/taxi", "percent-encode"),
    ("a bad port", f"postgresql://u:{S}@db.example:port/taxi", "port is not a number"),
    ("an unknown parameter", f"postgresql://u:{S}@h/taxi?sslpassword={S}&bogus=1", "'bogus'"),
    ("a broken key=value string", f"host=h password={S} dbname", "key=value"),
]


@pytest.mark.parametrize(("what", "url", "says"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("via", ["flag", "env"])
def test_a_malformed_pg_url_exits_2(what: str, url: str, says: str, via: str) -> None:
    if via == "flag":
        run = cli("load-pg", "green", "2020-01", "--pg-url", url, timeout=60)
        source = "(from flag)"
    else:
        run = cli("status", env={"TAXI_PG_URL": url}, timeout=60)
        source = "(from env TAXI_PG_URL)"
    assert run.code == 2, run.err
    line = run.error_line
    assert says in line and "pg_url" in line and source in line
    assert SECRET not in run.err + run.out
    assert "ab/" not in line  # no fragment of the value at all


def test_a_malformed_url_in_the_config_file_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "taxi-cli.toml"
    config.write_text(f'[profile.prod]\npg_url = "postgresql://u:{S}@x@h/db"\n')
    run = cli("--config", str(config), "--profile", "prod", "config", "show", timeout=60)
    assert run.code == 2
    line = run.error_line
    assert f"config {config} [profile.prod]" in line and "unencoded '@'" in line
    assert SECRET not in run.err + run.out


def test_sslpassword_is_masked_where_the_url_is_shown() -> None:
    url = f"postgresql://u:{S}@127.0.0.1:9/taxi?sslpassword={S}&connect_timeout=1"
    shown = cli("config", "show", env={"TAXI_PG_URL": url}, timeout=60)
    assert shown.code == 0 and "sslpassword=***" in shown.out
    refused = cli("status", env={"TAXI_PG_URL": url}, timeout=60)
    assert refused.code == 3  # well-formed, nothing listens: cannot connect
    assert "cannot connect" in refused.error_line
    assert SECRET not in shown.out + shown.err + refused.out + refused.err
