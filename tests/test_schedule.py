"""`schedule cron|systemd`: golden entries, cron -> OnCalendar translation, refusals.

Every OnCalendar expression is checked two ways: by an independent evaluator of the
OnCalendar subset written here (always), and by `systemd-analyze calendar` where systemd
is installed (it is in the project's dev image; the README says which ran). Both must
list the same next elapses as a brute-force evaluation of the cron expression.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from taxi_cli.cli import app
from taxi_cli.schedule import (
    Context,
    Job,
    on_calendar,
    parse_cron,
    plan_jobs,
    render_cron,
    render_systemd,
    show_units,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("TAXI_UPDATE_GOLDEN"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
TAXI_CLI = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "taxi-cli"

FIXED = Context(
    executable="/opt/taxi-cli/bin/taxi-cli",
    state_dir=Path("/var/lib/taxi-cli"),
    env=(("TAXI_DATA_DIR", "/var/cache/taxi-cli"), ("TAXI_STATE_DIR", "/var/lib/taxi-cli")),
    env_file=Path("/home/ana/.config/taxi-cli/env"),
)
WITH_SECRET = Context(
    executable="/opt/taxi cli/bin/taxi-cli",  # a space: quoting must hold
    state_dir=Path("/var/lib/taxi-cli"),
    env=(("TAXI_DATA_DIR", "/var/cache/taxi-cli"), ("TAXI_STATE_DIR", "/var/lib/taxi-cli")),
    global_args=("--config", "/etc/taxi-cli/prod.toml", "--profile", "prod"),
    secrets=("TAXI_PG_URL",),
    env_file=Path("/home/ana/.config/taxi-cli/env"),
    env_file_needed=True,
)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with TAXI_UPDATE_GOLDEN=1 if meant"


# ---- golden files -------------------------------------------------------------------------


def test_golden_cron_default() -> None:
    jobs = plan_jobs(None, "pg", None)
    assert [(j.taxis, j.at) for j in jobs] == [
        (("green",), "0 9 1 * *"),
        (("yellow",), "0 10 1 * *"),
    ]
    golden("cron_default.txt", render_cron(jobs, FIXED, "America/New_York"))


def test_golden_systemd_default() -> None:
    units = render_systemd(plan_jobs(None, "pg", None), FIXED, "America/New_York")
    assert [u.name for u in units] == [
        "taxi-cli-green-pg.service",
        "taxi-cli-green-pg.timer",
        "taxi-cli-yellow-pg.service",
        "taxi-cli-yellow-pg.timer",
    ]
    golden("systemd_default.txt", show_units(units))


def test_golden_custom_schedule_with_a_withheld_secret() -> None:
    jobs = plan_jobs("green,yellow", "gcs+bq", "30 6 1,15 * fri")
    assert len(jobs) == 1
    cron = render_cron(jobs, WITH_SECRET, "UTC")
    units = render_systemd(jobs, WITH_SECRET, "UTC")
    golden("cron_custom.txt", cron)
    golden("systemd_custom.txt", show_units(units))
    assert "postgresql" not in cron + show_units(units)
    assert "'/opt/taxi cli/bin/taxi-cli'" in cron
    assert 'ExecStart="/opt/taxi cli/bin/taxi-cli" --config' in units[0].text


def test_cron_line_runs_under_a_real_shell(tmp_path: Path) -> None:
    """The generated command line is valid sh, and flock -n refuses a second run."""
    state = tmp_path / "state"
    ctx = Context(
        executable=str(TAXI_CLI),
        state_dir=state,
        env=(("TAXI_STATE_DIR", str(state)),),
    )
    line = render_cron([Job(("green",), "pg", "0 9 1 * *")], ctx, "UTC").splitlines()[-1]
    cmd = line.split(" ", 5)[5]
    assert subprocess.run(["sh", "-n", "-c", cmd], check=False).returncode == 0
    # Hold the cron lock ourselves: flock -n must skip the run with exit 1 and no output.
    (state / "locks").mkdir(parents=True)
    (state / "logs").mkdir()
    lock = state / "locks" / "cron-green-pg.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
    try:
        for _ in range(100):
            probe = subprocess.run(["flock", "-n", str(lock), "true"], check=False)
            if probe.returncode != 0:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        skipped = subprocess.run(["sh", "-c", cmd], check=False)
        assert skipped.returncode == 1
        assert (state / "logs" / "schedule-green-pg.log").read_text() == ""
    finally:
        holder.kill()
        holder.wait()


# ---- OnCalendar translation ---------------------------------------------------------------

EXPRESSIONS = [
    "0 9 1 * *",
    "0 10 1 * *",
    "*/15 9-17 * * 1-5",
    "0 0 1,15 * 5",  # cron: the 1st, the 15th, or any Friday
    "30 6 */2 * 1",  # `*/2` starts with *: both day fields must match
    "0 7 1 * 0-6",  # both restricted, weekdays cover all: every day
    "5/20 10 * jan,jul sat,sun",
    "@weekly",
    "0 12 13 * fri",
    "45 23 28-31 2,8-9 *",
    "0 8 * * 7",  # 7 is Sunday too
]


def _cron_matches(expr: str, tz: str, base: datetime, count: int) -> list[datetime]:
    """Brute force over local days: cron's Vixie semantics, straight from crontab(5)."""
    spec = parse_cron(expr)
    zone = ZoneInfo(tz)
    found: list[datetime] = []
    day = base.astimezone(zone).date()
    while len(found) < count:
        dom_ok = day.day in spec.days
        dow_ok = (day.isoweekday() % 7) in spec.weekdays
        either = not (spec.days_star or spec.weekdays_star)  # crontab(5): OR when both set
        day_ok = (dom_ok or dow_ok) if either else (dom_ok and dow_ok)
        if day_ok and day.month in spec.months:
            for hour in spec.hours:
                for minute in spec.minutes:
                    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    moment = local.astimezone(UTC)
                    if moment >= base and len(found) < count:
                        found.append(moment)
        day += timedelta(days=1)
    return found


_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _values(text: str, low: int, high: int) -> set[int]:
    if text == "*":
        return set(range(low, high + 1))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("..")
        out.update(range(int(first), int(last or first) + 1))
    return out


def _calendar_matches(exprs: list[str], base: datetime, count: int) -> list[datetime]:
    """An independent evaluator of the OnCalendar forms we emit (weekday lists and
    ranges, `*-MM-DD`, `HH:MM:SS` lists, a trailing timezone); several lines are ORed."""
    found: set[datetime] = set()
    for expr in exprs:
        parts = expr.split()
        weekdays = set(range(7))
        if parts[0][0].isalpha():
            weekdays = set()
            for item in parts.pop(0).split(","):
                first, _, last = item.partition("..")
                a, b = _DAYS.index(first), _DAYS.index(last or first)
                weekdays.update(range(a, b + 1))
        day_part, clock, tz = parts
        _, month_text, dom_text = day_part.split("-")
        months, days = _values(month_text, 1, 12), _values(dom_text, 1, 31)
        hour_text, minute_text, second_text = clock.split(":")
        assert second_text == "00"
        hours, minutes = _values(hour_text, 0, 23), _values(minute_text, 0, 59)
        zone = ZoneInfo(tz)
        day: date = base.astimezone(zone).date()
        hits: list[datetime] = []
        while len(hits) < count:
            if day.month in months and day.day in days and day.weekday() in weekdays:
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                        if local.astimezone(UTC) >= base:
                            hits.append(local.astimezone(UTC))
            day += timedelta(days=1)
        found.update(hits[:count])
    return sorted(found)[:count]


def _systemd_matches(exprs: list[str], base: datetime, count: int) -> list[datetime]:
    assert SYSTEMD_ANALYZE
    found: set[datetime] = set()
    for expr in exprs:
        proc = subprocess.run(
            [
                SYSTEMD_ANALYZE,
                "calendar",
                f"--iterations={count}",
                f"--base-time={base.strftime('%Y-%m-%d %H:%M:%S')} UTC",
                expr,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        )
        for stamp in re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", proc.stdout):
            found.add(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC))
    return sorted(found)[:count]


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("tz", ["America/New_York", "UTC"])
def test_on_calendar_fires_when_cron_would(expr: str, tz: str) -> None:
    base = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)  # systemd lists elapses after base
    calendars = on_calendar(expr, tz)
    want = _cron_matches(expr, tz, base, 12)
    assert _calendar_matches(calendars, base, 12) == want
    if SYSTEMD_ANALYZE:
        assert _systemd_matches(calendars, base, 12) == want


def test_default_on_calendar_is_the_documented_form() -> None:
    assert on_calendar("0 9 1 * *", "America/New_York") == ["*-*-01 09:00:00 America/New_York"]
    assert on_calendar("0 0 1,15 * 5", "UTC") == [
        "*-*-01,15 00:00:00 UTC",
        "Fri *-*-* 00:00:00 UTC",
    ]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    ctx = Context(
        executable=str(TAXI_CLI), state_dir=tmp_path, env=FIXED.env, env_file=tmp_path / "env"
    )
    units = render_systemd(plan_jobs("yellow,green", "pg", None), ctx, "America/New_York")
    units += render_systemd(plan_jobs("fhv", "gcs+bq", "*/30 6-8 1,15 * mon-fri"), ctx, "UTC")
    paths = []
    for unit in units:
        path = tmp_path / unit.name
        path.write_text(unit.text)
        paths.append(str(path))
    proc = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", *paths],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [
        line
        for line in proc.stderr.splitlines()
        if "taxi-cli" in line  # verify also reports on the host's own units
    ]
    assert proc.returncode == 0, proc.stderr
    assert problems == []


# ---- the CLI --------------------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize(
    "at",
    ["0 9 1 * * *", "0 9 L * *", "0 9 1W * *", "0 25 * * *", "@reboot", "0 9 1 * 8", "5-1 * * * *"],
)
def test_untranslatable_cron_exits_2(at: str) -> None:
    result = runner.invoke(app, ["schedule", "systemd", "--at", at])
    assert result.exit_code == 2
    assert result.stderr.startswith("taxi-cli: error: cannot translate")
    assert result.stdout == ""


def test_unknown_timezone_and_kind_exit_2() -> None:
    result = runner.invoke(app, ["schedule", "cron", "--timezone", "Mars/Olympus"])
    assert result.exit_code == 2
    assert "unknown timezone 'Mars/Olympus'" in result.stderr
    result = runner.invoke(app, ["schedule", "launchd"])
    assert result.exit_code == 2


def test_cli_cron_carries_dirs_and_withholds_the_password(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_PG_URL", "postgresql://ana:s3cret@db.example:5432/taxi")
    monkeypatch.setenv("TAXI_PG_SCHEMA", "trips")
    result = runner.invoke(app, ["schedule", "cron", "--taxis", "green"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "s3cret" not in out + result.stderr
    assert "CRON_TZ=America/New_York" in out
    state = isolated_env / "taxi-state"
    assert f"TAXI_STATE_DIR={state}" in out
    assert "TAXI_PG_SCHEMA=trips" in out
    assert f"flock -n {state}/locks/cron-green-pg.lock" in out
    assert f">> {state}/logs/schedule-green-pg.log 2>&1" in out
    assert "backfill green --catch-up --target pg -q" in out
    assert "TAXI_PG_URL" in result.stderr and "not written into the schedule" in result.stderr
    env_file = isolated_env / "config" / "taxi-cli" / "env"
    assert f"set -a; . {env_file}; set +a; " in out  # where the withheld secret comes from
    assert (state / "locks").is_dir() and (state / "logs").is_dir()


def test_cli_systemd_install_writes_user_units(isolated_env: Path) -> None:
    result = runner.invoke(app, ["schedule", "systemd", "--install"])
    assert result.exit_code == 0, result.stderr
    unit_dir = isolated_env / "config" / "systemd" / "user"
    names = sorted(p.name for p in unit_dir.iterdir())
    assert names == [
        "taxi-cli-green-pg.service",
        "taxi-cli-green-pg.timer",
        "taxi-cli-yellow-pg.service",
        "taxi-cli-yellow-pg.timer",
    ]
    timer = (unit_dir / "taxi-cli-yellow-pg.timer").read_text()
    assert "OnCalendar=*-*-01 10:00:00 America/New_York" in timer
    assert "Persistent=true" in timer
    assert "systemctl --user" in result.stderr
