"""`schedule`: a crontab entry or systemd user units that run the catch-up backfill.

Each job runs `taxi-cli backfill TAXIS --catch-up --target T -q`: the run loads every
month that is not loaded yet up to the newest month upstream, so a missed or failed run
is made up by the next one. Paths are absolute, and the settings cron or systemd would
not see (the state and data dirs, non-secret settings from the environment, the config
file) are carried explicitly. Secrets are never written: they belong in the config file
or in the env file named by `env_file()`.

Cron expressions (minute hour day-of-month month day-of-week, with `*`, numbers, names,
lists, ranges and steps, or @daily-style macros) are translated to `OnCalendar=`; cron's
rule that a restricted day-of-month OR a restricted day-of-week matches becomes two
`OnCalendar=` lines, since systemd ANDs them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from taxi_cli import __version__
from taxi_cli.catalog import parse_taxis
from taxi_cli.choices import TargetName
from taxi_cli.config import SPECS, Settings
from taxi_cli.errors import ConfigError, TaxiError, UsageError
from taxi_cli.redact import mask_dsn

DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_TAXIS = "yellow,green"
# The course's Kestra triggers: green at 09:00, yellow at 10:00 on the 1st.
DEFAULT_AT = {"green": "0 9 1 * *", "yellow": "0 10 1 * *", "fhv": "0 11 1 * *"}
DEFAULT_AT_OTHER = "0 12 1 * *"
RANDOMIZED_DELAY = "10min"

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
SYSTEMD_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_base: int = 0


FIELDS = (
    CronField("minute", 0, 59),
    CronField("hour", 0, 23),
    CronField("day-of-month", 1, 31),
    CronField("month", 1, 12, MONTH_NAMES, 1),
    CronField("day-of-week", 0, 7, DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field cron expression: the matching values of each field."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday (7 folded into 0)
    days_star: bool  # the field starts with `*` (cron's rule for combining the day fields)
    weekdays_star: bool

    @property
    def day_rule(self) -> str:
        """How cron combines the day fields: 'any', 'days', 'weekdays', 'and' or 'or'."""
        all_days = self.days == tuple(range(1, 32))
        all_weekdays = self.weekdays == tuple(range(7))
        if not self.days_star and not self.weekdays_star:
            # Both restricted: cron matches a day that satisfies either field.
            if all_days or all_weekdays:
                return "any"
            return "or"
        if all_days and all_weekdays:
            return "any"
        if all_weekdays:
            return "days"
        if all_days:
            return "weekdays"
        return "and"


def _value(text: str, spec: CronField, expr: str) -> int:
    lowered = text.lower()
    if spec.names and lowered in spec.names:
        return spec.names.index(lowered) + spec.names_base
    if not text.isdigit():
        raise UsageError(
            f"cannot translate {expr!r}: {text!r} is not a number in the {spec.name} field; "
            "supported: *, numbers, names, lists, ranges a-b and steps */n, a-b/n"
        )
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise UsageError(
            f"cannot translate {expr!r}: {spec.name} {value} is outside {spec.low}-{spec.high}"
        )
    return value


def _parse_field(text: str, spec: CronField, expr: str) -> tuple[tuple[int, ...], bool]:
    """(the matching values, whether the field starts with `*`)."""
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise UsageError(f"cannot translate {expr!r}: bad step {part!r} in {spec.name}")
            step = int(step_text)
        if base == "*":
            first, last = spec.low, spec.high
        elif "-" in base:
            low_text, _, high_text = base.partition("-")
            first, last = _value(low_text, spec, expr), _value(high_text, spec, expr)
            if first > last:
                raise UsageError(f"cannot translate {expr!r}: range {base!r} runs backwards")
        else:
            first = _value(base, spec, expr)
            last = spec.high if slash else first  # `5/15` means 5-max/15, as in cron
        values.update(range(first, last + 1, step))
    if spec.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values)), text.startswith("*")


def parse_cron(expr: str) -> CronSpec:
    """Parse the supported cron subset; anything else is a UsageError (exit 2)."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    if text.startswith("@"):
        raise UsageError(f"cannot translate {expr!r}: supported macros are {', '.join(MACROS)}")
    parts = text.split()
    if len(parts) != 5:
        raise UsageError(
            f"cannot translate {expr!r}: need 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)}"
        )
    parsed = [_parse_field(part, spec, expr) for part, spec in zip(parts, FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, days_star), (months, _), (weekdays, weekdays_star) = parsed
    return CronSpec(text, minutes, hours, days, months, weekdays, days_star, weekdays_star)


def _list(values: Iterable[int]) -> str:
    return ",".join(f"{v:02d}" for v in values)


def _weekday_list(values: Sequence[int]) -> str:
    """Weekdays as systemd names, consecutive runs (Mon..Fri) collapsed."""
    monday_first = sorted(values, key=lambda v: (v + 6) % 7)
    runs: list[list[int]] = []
    for value in monday_first:
        if runs and (runs[-1][-1] + 1) % 7 == value and value != 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    out = []
    for run in runs:
        names = [SYSTEMD_DAYS[v] for v in run]
        out.append(f"{names[0]}..{names[-1]}" if len(names) > 2 else ",".join(names))
    return ",".join(out)


def on_calendar(expr: str, timezone: str) -> list[str]:
    """The `OnCalendar=` values equivalent to the cron expression in `timezone`."""
    cron = parse_cron(expr)
    check_timezone(timezone)
    month = "*" if cron.months == tuple(range(1, 13)) else _list(cron.months)
    hours = "*" if cron.hours == tuple(range(24)) else _list(cron.hours)
    minutes = "*" if cron.minutes == tuple(range(60)) else _list(cron.minutes)
    clock = f"{hours}:{minutes}:00"
    days = _list(cron.days)
    weekdays = _weekday_list(cron.weekdays)

    def line(weekday_part: str, day_part: str) -> str:
        prefix = f"{weekday_part} " if weekday_part else ""
        return f"{prefix}*-{month}-{day_part} {clock} {timezone}"

    rule = cron.day_rule
    if rule == "or":  # systemd ANDs the two, so each gets its own line
        return [line("", days), line(weekdays, "*")]
    return [
        line(
            weekdays if rule in ("weekdays", "and") else "",
            days if rule in ("days", "and") else "*",
        )
    ]


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown timezone {name!r}; use an IANA name such as America/New_York or UTC"
        ) from None
    return name


# ---- jobs and their environment -------------------------------------------------------


@dataclass(frozen=True)
class Job:
    taxis: tuple[str, ...]
    target: str
    at: str

    @property
    def name(self) -> str:
        return f"{'-'.join(self.taxis)}-{self.target.replace('+', '-')}"

    @property
    def unit(self) -> str:
        return f"taxi-cli-{self.name}"


def plan_jobs(taxis: str | None, target: str, at: str | None) -> list[Job]:
    """One job per taxi at the course's hours, or one job for all taxis at `--at`."""
    TargetName(target)  # the CLI passes a valid one; a library caller gets ValueError
    names = [t.name for t in parse_taxis(taxis or DEFAULT_TAXIS)]
    if at is not None:
        parse_cron(at)
        return [Job(tuple(names), target, at)]
    jobs = [Job((name,), target, DEFAULT_AT.get(name, DEFAULT_AT_OTHER)) for name in names]
    return sorted(jobs, key=lambda job: parse_cron(job.at).hours)


@dataclass(frozen=True)
class Context:
    """Everything outside the jobs that ends up in the entries (fixed in golden tests)."""

    executable: str
    state_dir: Path
    env: tuple[tuple[str, str], ...]  # carried inline: non-secret, absolute
    global_args: tuple[str, ...] = ()  # --config FILE / --profile NAME
    secrets: tuple[str, ...] = ()  # names withheld: they must come from env_file
    env_file: Path | None = None  # NAME=value lines (secrets), mode 600
    env_file_needed: bool = False  # secrets were withheld, or the file exists already
    notes: list[str] = field(default_factory=list)


def executable() -> str:
    """The absolute path of the running taxi-cli (falls back to PATH)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "taxi-cli" and argv0.exists():
        return str(argv0.resolve())
    found = shutil.which("taxi-cli")
    if found:
        return str(Path(found).resolve())
    return str(Path(sys.executable).resolve().parent / "taxi-cli")


def env_file() -> Path:
    return platformdirs.user_config_path("taxi-cli") / "env"


def context(cfg: Settings, *, exe: str | None = None) -> Context:
    """What the scheduled command needs from this shell's settings, secrets withheld."""
    env: dict[str, str] = {
        "TAXI_DATA_DIR": str(cfg.data_path.resolve()),
        "TAXI_STATE_DIR": str(cfg.state_path.resolve()),
    }
    secrets: list[str] = []
    notes: list[str] = []
    for spec in SPECS:
        source = cfg.source_of(spec.name)
        if not source.startswith("env ") or spec.env is None or spec.env in env:
            continue
        value = str(getattr(cfg, spec.name))
        if spec.secret == "full" or (spec.secret == "dsn" and mask_dsn(value) != value):
            secrets.append(spec.env)
        else:
            env[spec.env] = value
    for name, value in cfg.pg_env.items():
        if name == "PGPASSWORD":
            secrets.append(name)
        else:
            env[name] = value
    global_args: list[str] = []
    if cfg.config_file is not None:
        global_args += ["--config", str(cfg.config_file.resolve())]
    if cfg.profile and cfg.profile != "default":
        global_args += ["--profile", cfg.profile]
    path = env_file()
    if secrets:
        notes.append(
            f"{', '.join(secrets)} hold(s) a secret and is not written into the schedule: "
            f"put it in {path} (NAME=value lines, chmod 600) or in the config file"
        )
    return Context(
        executable=exe or executable(),
        state_dir=cfg.state_path.resolve(),
        env=tuple(sorted(env.items())),
        global_args=tuple(global_args),
        secrets=tuple(secrets),
        env_file=path,
        env_file_needed=bool(secrets) or path.is_file(),
        notes=notes,
    )


def command(job: Job, ctx: Context) -> list[str]:
    return [
        ctx.executable,
        *ctx.global_args,
        "backfill",
        ",".join(job.taxis),
        "--catch-up",
        "--target",
        job.target,
        "-q",
    ]


def describe(job: Job, timezone: str) -> str:
    taxis = ",".join(job.taxis)
    return f"catch-up backfill of {taxis} into {job.target} at `{job.at}` ({timezone})"


# ---- cron -------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _cron_word(word: str, what: str) -> str:
    """`word` as one /bin/sh word inside a crontab line, whatever it holds.

    cron turns an unescaped `%` into a newline and drops the `\\` of `\\%`, wherever
    they are (shell quotes do not protect them). So every piece between two `%` is
    single-quoted for the shell and each `%` written as `\\%` outside the quotes: cron
    hands `'a'%'b'` to sh, which reads `a%b`. A `\\` before a `%` of the value stays
    inside its quotes, where cron keeps it and sh takes it literally. A crontab entry is
    one line: a line break (or another control character) cannot be carried, and is
    refused rather than allowed to start a line of its own.
    """
    if _CONTROL.search(word):
        raise ConfigError(
            f"{what} holds a line break or another control character, which a crontab "
            "line cannot carry; remove it (or use `schedule systemd`)"
        )
    return "\\%".join(_quote_piece(piece) for piece in word.split("%"))


def _quote_piece(piece: str) -> str:
    if piece and re.fullmatch(r"[A-Za-z0-9_@+=:,./-]+", piece):
        return piece
    return "'" + piece.replace("'", "'\"'\"'") + "'"


def render_cron(jobs: Sequence[Job], ctx: Context, timezone: str) -> str:
    check_timezone(timezone)
    lines = [
        f"# taxi-cli {__version__} schedule: loads each new month once it is released.",
        "# flock -n skips a run while the previous one still runs; --catch-up makes up a",
        "# missed or failed month on the next run. CRON_TZ needs cronie or a cron that",
        "# supports it (Debian's cron does not: it runs in the system timezone).",
        f"CRON_TZ={timezone}",
    ]
    for job in jobs:
        when = parse_cron(job.at).text  # one line, single spaces, whatever --at held
        when = " ".join(when.split())
        lock = ctx.state_dir / "locks" / f"cron-{job.name}.lock"
        log = ctx.state_dir / "logs" / f"schedule-{job.name}.log"
        prefix = [f"{k}={_cron_word(v, k)}" for k, v in ctx.env]
        if ctx.env_file is not None and ctx.env_file_needed:
            env_file = _cron_word(str(ctx.env_file), "the env file path")
            prefix = ["set -a;", ".", env_file + ";", "set +a;", *prefix]
        words = [*prefix, "flock", "-n", _cron_word(str(lock), "the state dir")]
        words += [_cron_word(word, "the command") for word in command(job, ctx)]
        words += [">>", _cron_word(str(log), "the state dir"), "2>&1"]
        lines.append(f"# {describe(job, timezone)}".replace("\n", " "))
        lines.append(f"{when} {' '.join(words)}")
    return "\n".join(lines) + "\n"


# ---- systemd ----------------------------------------------------------------------------


_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _systemd_quoted(text: str) -> str:
    """A double-quoted systemd word: C escapes for `\\`, `"` and every control
    character, so that a value never spans, or starts, a line of the unit."""
    out = []
    for ch in text:
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif _CONTROL.match(ch):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _systemd_word(word: str) -> str:
    """One ExecStart= argument: `%%` for specifiers, `$$` for variable expansion."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", escaped):
        return escaped
    return _systemd_quoted(escaped)


def _systemd_env(name: str, value: str) -> str:
    """One Environment= assignment: specifiers expand there, variables do not."""
    escaped = f"{name}={value}".replace("%", "%%")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", escaped):
        return escaped
    return _systemd_quoted(escaped)


def _systemd_path(path: str, what: str) -> str:
    """A path setting (EnvironmentFile=) takes the rest of the line as it is."""
    if _CONTROL.search(path) or path != path.strip():
        raise ConfigError(
            f"{what} {path!r} has a control character or surrounding spaces, which a unit "
            "file cannot carry; choose another path"
        )
    return path.replace("%", "%%")


def _exec_words(words: Sequence[str]) -> list[str]:
    exe, *args = words
    # systemd expands no variables in the executable's path, and refuses quotes,
    # backslashes and control characters there whatever the quoting
    if re.search(r"[\"'\\\x00-\x1f\x7f]", exe):
        raise ConfigError(
            f"the taxi-cli executable {exe!r} has a quote, backslash or control character "
            "in its path, which systemd refuses in ExecStart=; install it under another path"
        )
    escaped = exe.replace("%", "%%")
    first = escaped if re.fullmatch(r"[A-Za-z0-9_@%+=:,./$-]+", escaped) else f'"{escaped}"'
    # a lone `;` separates commands in ExecStart=: written `\\;` it is an argument
    return [first, *("\\;" if word == ";" else _systemd_word(word) for word in args)]


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


def render_systemd(jobs: Sequence[Job], ctx: Context, timezone: str) -> list[Unit]:
    check_timezone(timezone)
    units: list[Unit] = []
    for job in jobs:
        taxis = ",".join(job.taxis)
        service = [
            "[Unit]",
            f"Description=taxi-cli: {describe(job, timezone)}".replace("%", "%%"),
            "",
            "[Service]",
            "Type=oneshot",
            *(f"Environment={_systemd_env(k, v)}" for k, v in ctx.env),
        ]
        if ctx.env_file is not None:
            # "-": optional unless secrets were withheld (then a missing file must fail).
            optional = "" if ctx.secrets else "-"
            env_file = _systemd_path(str(ctx.env_file), "the env file")
            service.append(f"EnvironmentFile={optional}{env_file}")
        service += [
            f"ExecStart={' '.join(_exec_words(command(job, ctx)))}",
            "# SIGTERM stops taxi-cli cleanly: running loads roll back, the next run redoes them.",
            "TimeoutStopSec=120",
            "Nice=10",
            "",
        ]
        timer = [
            "[Unit]",
            f"Description=taxi-cli timer: {taxis} into {job.target}",
            "",
            "[Timer]",
            *(f"OnCalendar={value}" for value in on_calendar(job.at, timezone)),
            "# Persistent: a run missed while the machine was off starts at the next boot.",
            "Persistent=true",
            f"RandomizedDelaySec={RANDOMIZED_DELAY}",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
        header = f"{HEADER} {__version__} schedule systemd."
        units.append(Unit(f"{job.unit}.service", "\n".join([header, *service])))
        units.append(Unit(f"{job.unit}.timer", "\n".join([header, *timer])))
    return units


def show_units(units: Sequence[Unit]) -> str:
    return "\n".join(f"# ---- {unit.name} ----\n{unit.text}" for unit in units)


def user_unit_dir() -> Path:
    return platformdirs.user_config_path() / "systemd" / "user"


HEADER = "# Generated by taxi-cli"


def _user_manager(target: Path) -> bool:
    """Whether to talk to the user's systemd: only where it looks by default (units
    written elsewhere, a custom XDG_CONFIG_HOME or a test, must not touch it)."""
    return bool(shutil.which("systemctl")) and target == Path.home() / ".config/systemd/user"


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, check=False
    )


def _why(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return f"exit {done.returncode}: {lines[0].strip()}" if lines else f"exit {done.returncode}"


def install_units(units: Sequence[Unit]) -> tuple[list[Path], str, bool]:
    """Write the units; enable the timers if a user systemd answers.

    Returns (written paths, the enable command, whether it was run successfully);
    enabling that was tried and failed raises (exit 1), saying why and what to run.
    """
    target = user_unit_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for unit in units:
            path = target / unit.name
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(unit.text)
            tmp.replace(path)
            written.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the units to {target}: {exc}") from exc
    timers = [unit.name for unit in units if unit.name.endswith(".timer")]
    enable = "systemctl --user daemon-reload && systemctl --user enable --now " + " ".join(timers)
    if not _user_manager(target):
        return written, enable, False
    done = _systemctl("daemon-reload")
    if done.returncode == 0:
        done = _systemctl("enable", "--now", *timers)
    if done.returncode != 0:
        raise TaxiError(
            f"wrote {len(written)} unit(s) to {target}, but enabling the timers failed "
            f"({_why(done)}); is a user systemd running (loginctl enable-linger $USER)? "
            f"then run: {enable}"
        )
    return written, enable, True


def uninstall_units() -> tuple[list[Path], list[str]]:
    """Stop, disable and remove every unit taxi-cli generated in the user unit dir
    (found by the header it writes), and the timers' enablement links.

    Returns (removed paths, notes).
    """
    target = user_unit_dir()
    ours = sorted(
        path
        for path in (target.glob("taxi-cli-*") if target.is_dir() else [])
        if path.suffix in (".service", ".timer") and _generated(path)
    )
    notes: list[str] = []
    timers = [p.name for p in ours if p.suffix == ".timer"]
    manager = bool(timers) and _user_manager(target)
    if manager:
        done = _systemctl("disable", "--now", *timers)
        if done.returncode != 0:  # no user manager: nothing runs; the files go below
            manager = False
            notes.append(
                f"systemctl --user disable failed ({_why(done)}): removed the units and "
                "their links by hand; a running user systemd needs: "
                "systemctl --user daemon-reload"
            )
    removed: list[Path] = []
    try:
        # what `enable` links (WantedBy=timers.target), in case systemd was not asked
        for link in target.glob("*.wants/taxi-cli-*"):
            if link.is_symlink() and link.resolve() in {p.resolve() for p in ours}:
                link.unlink()
                removed.append(link)
        for path in ours:
            path.unlink()
            removed.append(path)
    except OSError as exc:
        raise ConfigError(f"cannot remove the units in {target}: {exc}") from exc
    if manager:
        _systemctl("daemon-reload")
    if not ours:
        notes.append(f"no taxi-cli units in {target}: nothing to remove")
    return removed, notes


def _generated(path: Path) -> bool:
    try:
        with path.open() as handle:
            return handle.readline().startswith(HEADER)
    except OSError:
        return False


def prepare_dirs(ctx: Context) -> None:
    """The lock and log dirs the cron line writes into (flock and >> do not create dirs)."""
    for sub in ("locks", "logs"):
        (ctx.state_dir / sub).mkdir(parents=True, exist_ok=True)


def check_settings(cfg: Settings, target: str) -> None:
    """The settings the scheduled run will need, checked now rather than at 09:00 on
    the first of the month (ConfigError, exit 2, naming the setting)."""
    names = TargetName(target).destinations
    needs: list[tuple[str, str]] = []
    if {"gcs", "bq"} & set(names):
        needs.append(("gcs_bucket", "TAXI_GCS_BUCKET"))
    if "bq" in names:
        needs.append(("bq_dataset", "TAXI_BQ_DATASET"))
    for name, env in needs:
        if not str(getattr(cfg, name)).strip():
            raise ConfigError(
                f"schedule --target {target} needs {name} ({env} or `{name}` in the config "
                "file): the scheduled run would fail without it"
            )
    if cfg.gcp_credentials and {"gcs", "bq"} & set(names):
        keyfile = Path(cfg.gcp_credentials).expanduser()
        if not keyfile.is_file():
            raise ConfigError(
                f"gcp_credentials (from {cfg.source_of('gcp_credentials')}) names {keyfile}, "
                "which is not a file"
            )


def run(
    cfg: Settings,
    kind: str,
    *,
    taxis: str | None,
    target: str,
    at: str | None,
    timezone: str,
    install: bool,
    uninstall: bool = False,
) -> tuple[str, list[str]]:
    """The `schedule` command: (text for stdout, notes for stderr)."""
    if kind not in ("cron", "systemd"):
        raise UsageError(f"schedule kind must be cron or systemd, not {kind!r}")
    if uninstall:
        if kind == "cron" or install:
            raise UsageError(
                "--uninstall is for systemd alone (cron entries are not installed by "
                "taxi-cli: remove them with crontab -e)"
            )
        removed, notes = uninstall_units()
        return "".join(f"removed {path}\n" for path in removed), notes
    check_timezone(timezone)
    jobs = plan_jobs(taxis, target, at)
    check_settings(cfg, target)
    ctx = context(cfg)
    notes = list(ctx.notes)
    if kind == "cron":
        if install:
            raise UsageError(
                "--install is for systemd; add the cron entries with: "
                "(crontab -l; taxi-cli schedule cron) | crontab -"
            )
        prepare_dirs(ctx)
        notes.append(
            f"logs go to {ctx.state_dir / 'logs'}; add with: (crontab -l; taxi-cli "
            "schedule cron ...) | crontab -"
        )
        return render_cron(jobs, ctx, timezone), notes
    units = render_systemd(jobs, ctx, timezone)
    if not install:
        notes.append(f"save these under {user_unit_dir()}/ (or pass --install)")
        return show_units(units), notes
    written, enable, ran = install_units(units)
    notes.append("wrote " + ", ".join(str(p) for p in written))
    if ran:
        notes.append("enabled and started the timers: systemctl --user list-timers 'taxi-cli-*'")
    else:
        notes.append(f"enable them with: {enable}")
        notes.append("for timers that run while you are logged out: loginctl enable-linger")
    return show_units(units), notes
