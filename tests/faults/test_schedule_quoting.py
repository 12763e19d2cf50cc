"""Cron lines and systemd units stay correct for any value: spaces, quotes, `$`, `%`,
`;`, `$(...)`, backslashes, and (for systemd) line breaks. Checked by running what was
generated: the crontab line goes through cron's own `%` rule and /bin/sh, the units
through `systemd-analyze verify` and systemd's quoting rules; no value adds a line.
Also: `schedule` refuses incomplete target settings, `--install` says when enabling
failed, and `--uninstall` removes what it wrote."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from taxi_cli.errors import ConfigError
from taxi_cli.schedule import Context, command, plan_jobs, render_cron, render_systemd
from tests.faults.db_support import cli

NASTY = [
    "a b",
    "it's",
    'say "hi"',
    "$HOME",
    "${PATH}x",
    "100%",
    "50%%",
    "a\\%b",
    "tail\\",
    "x;touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "& | > < * ? ~ # !",
    "ünï cödé",
    ";",
]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _values(canary: Path) -> list[str]:
    return [v.replace("{canary}", str(canary)) for v in NASTY]


def _probe(where: Path, dump: Path, *, quotes: bool = True) -> str:
    """An executable (under a path with the nasty characters) that records its argv
    and environment as JSON: it stands in for taxi-cli."""
    folder = where / ("bin $x %y ;'q' \"d\"" if quotes else "bin $x %y ;z")
    folder.mkdir(parents=True)
    exe = folder / "taxi-cli"
    exe.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"open({str(dump)!r}, 'w').write(json.dumps({{'argv': sys.argv[1:], "
        "'env': dict(os.environ)}))\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def _context(tmp_path: Path, exe: str, values: list[str]) -> Context:
    state = tmp_path / "state ;$(x) %p"
    for sub in ("locks", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    env = tuple((f"TAXI_V{i}", value) for i, value in enumerate(values))
    return Context(
        executable=exe,
        state_dir=state,
        env=env,
        global_args=("--config", str(tmp_path / "conf %h $USER; 'x'.toml"), "--profile", values[6]),
    )


def cron_command(line: str) -> tuple[str, str]:
    """What cron runs for a crontab line: (command, stdin), by cron(5)'s rule that an
    unescaped % ends the command (the rest is stdin) and `\\%` is a literal %."""
    text = line.split(None, 5)[5]
    out, escaped = [], False
    for i, ch in enumerate(text):
        if escaped:
            out.append(ch if ch == "%" else "\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return "".join(out), text[i + 1 :]
        else:
            out.append(ch)
    return "".join(out) + ("\\" if escaped else ""), ""


def test_cron_line_runs_with_every_value_intact(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    values = _values(canary)
    dump = tmp_path / "dump.json"
    ctx = _context(tmp_path, _probe(tmp_path, dump), values)
    jobs = plan_jobs("green", "pg", None)
    text = render_cron(jobs, ctx, "UTC")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2 and lines[0] == "CRON_TZ=UTC"  # nothing added a line
    cmd, stdin = cron_command(lines[1])
    assert stdin == ""  # no % of a value ended the command
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    done = subprocess.run(["/bin/sh", "-c", cmd], env=clean_env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(dump.read_text())
    assert seen["argv"] == command(jobs[0], ctx)[1:]
    for name, value in ctx.env:
        assert seen["env"][name] == value
    assert not canary.exists()


def test_a_line_break_cannot_reach_a_crontab(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "/usr/bin/taxi-cli", ["ok"] * 6 + ["x"])
    broken = Context(**{**ctx.__dict__, "env": (("TAXI_PG_SCHEMA", "a\n* * * * * touch /x"),)})
    with pytest.raises(ConfigError, match="TAXI_PG_SCHEMA holds a line break"):
        render_cron(plan_jobs("green", "pg", None), broken, "UTC")
    # --at is one line whatever its whitespace
    text = render_cron(plan_jobs("green", "pg", "0\n9\t1 * *"), ctx, "UTC")
    assert "\n0 9 1 * * " in text and len(text.splitlines()) == len(render_cron(
        plan_jobs("green", "pg", "0 9 1 * *"), ctx, "UTC").splitlines())  # fmt: skip


def unquote_systemd(text: str, *, dollars: bool) -> list[str]:
    """Split a setting value the way systemd.syntax(7) documents: whitespace-separated
    words, "..." or '...' quoting, C escapes, then `%%` -> `%` (and `$$` -> `$` where
    variables expand). Any other `%` specifier would be expanded by systemd: fail."""
    words, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", ";": ";"}
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        word, quote = [], None
        while i < len(text) and (quote or not text[i].isspace()):
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1]
                if nxt == "x":
                    word.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(escapes[nxt])
                i += 2
                continue
            if quote and ch == quote:
                quote = None
            elif not quote and ch in "\"'":
                quote = ch
            else:
                word.append(ch)
            i += 1
        assert quote is None, f"unbalanced quote in {text!r}"
        raw = "".join(word)
        assert not re.search(r"%[^%]", raw.replace("%%", "")), raw
        raw = raw.replace("%%", "%")
        words.append(raw.replace("$$", "$") if dollars else raw)
    return words


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify_and_carry_every_value(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    values = [*_values(canary), "two\nlines", "tab\there", "bell\x07"]
    # systemd refuses quotes in the executable's path (said in one line, below)
    exe = _probe(tmp_path, tmp_path / "dump.json", quotes=False)
    ctx = _context(tmp_path, exe, values)
    jobs = plan_jobs("green", "pg", None)
    units = render_systemd(jobs, ctx, "UTC")
    folder = tmp_path / "units"
    folder.mkdir()
    for unit in units:
        (folder / unit.name).write_text(unit.text)
    service = next(u for u in units if u.name.endswith(".service"))
    settings = [line for line in service.text.splitlines() if "=" in line and line[0] != "#"]
    env_lines = [line for line in settings if line.startswith("Environment=")]
    assert len(env_lines) == len(ctx.env)  # one line per value: a line break added none
    for line, (name, value) in zip(env_lines, ctx.env, strict=True):
        assert unquote_systemd(line.removeprefix("Environment="), dollars=False) == [
            f"{name}={value}"
        ]
    (exec_line,) = [line for line in settings if line.startswith("ExecStart=")]
    assert unquote_systemd(exec_line.removeprefix("ExecStart="), dollars=True) == command(
        jobs[0], ctx
    )
    assert SYSTEMD_ANALYZE is not None  # the test is skipped without it
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *(str(folder / u.name) for u in units)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    complaints = [line for line in done.stderr.splitlines() if str(folder) in line]
    assert done.returncode == 0 and not complaints, done.stderr
    assert not canary.exists()
    quoted = Context(**{**ctx.__dict__, "executable": "/opt/it's/taxi-cli"})
    with pytest.raises(ConfigError, match="systemd refuses"):
        render_systemd(jobs, quoted, "UTC")


# ---- the command: settings, --install, --uninstall --------------------------------------


def test_incomplete_target_settings_are_refused_before_printing() -> None:
    for target in ("gcs", "bq", "gcs+bq"):
        run = cli("schedule", "systemd", "--target", target, timeout=60)
        assert (run.code, run.out) == (2, ""), run.err
        assert "gcs_bucket" in run.error_line and "TAXI_GCS_BUCKET" in run.error_line
    run = cli("schedule", "cron", "--target", "gcs", env={"TAXI_GCS_BUCKET": "b"}, timeout=60)
    assert run.code == 0 and "--target gcs" in run.out
    run = cli("schedule", "cron", env={"TAXI_HTTP_TIMEOUT": "nan"}, timeout=60)
    assert run.code == 2 and "http_timeout" in run.error_line


def _user_env(tmp_path: Path) -> dict[str, str]:
    """A user whose systemd does not answer: HOME with the default unit dir, and an
    empty runtime dir (no user bus)."""
    home = tmp_path / "home"
    (runtime := tmp_path / "runtime").mkdir(mode=0o700)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"
    return env


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_install_says_when_enabling_fails_and_uninstall_removes_it(tmp_path: Path) -> None:
    env = _user_env(tmp_path)
    unit_dir = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user"
    run = cli("schedule", "systemd", "--install", env=env, timeout=60)
    assert run.code == 1, run.err
    line = run.error_line
    assert "enabling the timers failed" in line and "systemctl --user" in line
    names = sorted(p.name for p in unit_dir.iterdir())
    assert names == [
        "taxi-cli-green-pg.service",
        "taxi-cli-green-pg.timer",
        "taxi-cli-yellow-pg.service",
        "taxi-cli-yellow-pg.timer",
    ]
    # an enablement link as `systemctl enable` makes, and a unit that is not ours
    wants = unit_dir / "timers.target.wants"
    wants.mkdir()
    (wants / "taxi-cli-green-pg.timer").symlink_to(unit_dir / "taxi-cli-green-pg.timer")
    (unit_dir / "taxi-cli-mine.service").write_text("[Service]\nExecStart=/bin/true\n")

    run = cli("schedule", "systemd", "--uninstall", env=env, timeout=60)
    assert run.code == 0, run.err
    left = sorted(p.name for p in unit_dir.iterdir() if p.name != "timers.target.wants")
    assert left == ["taxi-cli-mine.service"]  # not generated by taxi-cli: kept
    assert not (wants / "taxi-cli-green-pg.timer").is_symlink()
    for name in names:
        assert f"removed {unit_dir / name}\n" in run.out
    again = cli("schedule", "systemd", "--uninstall", env=env, timeout=60)
    assert again.code == 0 and "nothing to remove" in again.err
    refused = cli("schedule", "cron", "--uninstall", env=env, timeout=60)
    assert refused.code == 2 and "crontab -e" in refused.error_line
