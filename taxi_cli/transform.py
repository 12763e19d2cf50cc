"""`transform`: `dbt build` of the shipped project (taxi_cli/dbt_project), in-process.

The profile comes from the loaders' settings (`taxi_cli.dbt_profile`); dbt's own console
log is silenced: we print one progress line per finished node on stderr (from dbt's
NodeStart/NodeFinished events) and a summary table (or JSON) on stdout. dbt's target
dir (compiled SQL, run_results.json) and its debug log go under the state dir, never
into the installed package.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from taxi_cli import dbt_profile, zones_ready
from taxi_cli.config import Settings, exported
from taxi_cli.console import Output
from taxi_cli.errors import ExitCode, TaxiError, UsageError
from taxi_cli.lock import RunLock, lock_path
from taxi_cli.redact import mask_dsn

log = logging.getLogger("taxi_cli.transform")

FAILED = ("error", "fail", "runtime error")
_MESSAGE_MAX = 400


class TransformFailed(TaxiError):
    """A model or data test failed, or dbt could not run (exit 1)."""

    exit_code = ExitCode.RUNTIME


@dataclass(frozen=True)
class NodeResult:
    """One dbt node of the build."""

    name: str
    kind: str  # model, test, seed, ...
    status: str  # success, pass, warn, fail, error, skipped, ...
    rows: int | None  # rows written (models) or failing rows (tests)
    seconds: float
    message: str
    compiled_path: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass
class TransformResult:
    """What `transform` did, for the summary and --json."""

    target: str
    where: str
    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float = 0.0
    target_path: str = ""
    log_path: str = ""

    @property
    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.failed]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = not self.failed
        return data


def project_dir() -> Path:
    """The dbt project shipped inside the package."""
    return Path(str(resources.files("taxi_cli").joinpath("dbt_project")))


def _one_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    joined = mask_dsn("; ".join(lines))
    return joined if len(joined) <= _MESSAGE_MAX else joined[: _MESSAGE_MAX - 3] + "..."


class _Progress:
    """dbt event callback: one stderr line per finished node."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def __call__(self, event: Any) -> None:
        name = event.info.name
        if name == "JinjaLogInfo" and event.data.msg.startswith("taxi-cli: "):
            log.info("%s", event.data.msg.removeprefix("taxi-cli: "))  # the project's notes
        elif name == "LogStartLine":
            self.total = max(self.total, int(event.data.total))
        elif name == "NodeStart":
            info = event.data.node_info
            log.debug("start %s %s", info.resource_type, info.node_name)
        elif name == "NodeFinished":
            self.done += 1
            info, result = event.data.node_info, event.data.run_result
            status = (result.status or info.node_status or "?").upper()
            status = "OK" if status == "SUCCESS" else status
            width = len(str(self.total or self.done))
            counter = f"{self.done:>{width}}/{self.total}" if self.total else str(self.done)
            # models: dbt's "SELECT 75824"; tests: only a failure's message
            detail = "" if status == "PASS" else _one_line(result.message)
            log.info(
                "[%s] %-7s %s %s  %.2fs%s",
                counter,
                status,
                info.resource_type,
                info.node_name,
                result.execution_time,
                f"  {detail}" if detail else "",
            )


def _node_result(item: Any) -> NodeResult:
    node = item.node
    kind = str(node.resource_type)
    rows: int | None
    if kind == "test":
        rows = item.failures
    else:
        affected = (item.adapter_response or {}).get("rows_affected")
        rows = affected if isinstance(affected, int) and affected >= 0 else None
    return NodeResult(
        name=node.name,
        kind=kind,
        status=str(item.status),
        rows=rows,
        seconds=round(float(item.execution_time or 0.0), 3),
        message=_one_line(item.message),
        compiled_path=getattr(node, "compiled_path", None),
    )


def parse_vars(text: str | None) -> dict[str, Any]:
    """dbt's `--vars`: a YAML (or JSON) mapping, e.g. `{payment_type_values: [1, 2]}`."""
    if not text:
        return {}
    import yaml  # PyYAML comes with dbt-core

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--vars {text!r} is not YAML: {_one_line(str(exc))}") from exc
    if not isinstance(parsed, dict):
        raise UsageError(f"--vars must be a YAML mapping like '{{key: value}}', not {text!r}")
    return parsed


def dbt_args(
    target: dbt_profile.DbtTarget,
    *,
    profiles: Path,
    target_path: Path,
    log_path: Path,
    select: str | None,
    full_refresh: bool,
    test_run: bool,
    extra_args: Sequence[str],
    exclude: str | None = None,
    user_vars: dict[str, Any] | None = None,
    threads: int | None = None,
) -> list[str]:
    """The `dbt build` command line (extra args last, so they win)."""
    variables: dict[str, Any] = {"source_schema": target.source_schema, "is_test_run": test_run}
    if target.source_database:
        variables["source_database"] = target.source_database
    variables.update(user_vars or {})  # the user's --vars win over ours
    args = [
        "build",
        "--project-dir",
        str(project_dir()),
        "--profiles-dir",
        str(profiles),
        "--profile",
        dbt_profile.PROFILE,
        "--target",
        target.name,
        "--target-path",
        str(target_path),
        "--log-path",
        str(log_path),
        "--log-level",
        "none",
        "--log-level-file",
        "debug",
        "--no-use-colors-file",
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
        "--vars",
        json.dumps(variables),
    ]
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    if threads is not None:
        args += ["--threads", str(threads)]
    if full_refresh:
        args.append("--full-refresh")
    return args + list(extra_args)


def run(
    cfg: Settings,
    *,
    target: str = "pg",
    select: str | None = None,
    full_refresh: bool = False,
    test_run: bool = False,
    extra_args: Sequence[str] = (),
    exclude: str | None = None,
    variables: str | None = None,
    threads: int | None = None,
) -> TransformResult:
    """Build the dbt project on `target` ("pg" or "bq"); failed nodes are in the result."""
    from dbt.cli.main import dbtRunner

    user_vars = parse_vars(variables)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    resolved = dbt_profile.resolve(cfg, target)
    work = cfg.state_path / "dbt" / resolved.name
    target_path, log_path = work / "target", work / "logs"
    target_path.mkdir(parents=True, exist_ok=True)
    log_path.mkdir(parents=True, exist_ok=True)
    log.info("dbt build on %s", resolved.description)
    started = time.monotonic()
    # one dbt per target dir: two builds would overwrite each other's compiled SQL
    lock = RunLock(lock_path(cfg, f"dbt-{resolved.name}"), what=f"transform --target {target}")
    with lock, dbt_profile.profiles_dir(resolved, work / "profiles") as profiles:
        zones_ready.ensure(cfg, resolved.name)  # dim_zones needs them; a new project has none
        args = dbt_args(
            resolved,
            profiles=profiles,
            target_path=target_path,
            log_path=log_path,
            select=select,
            full_refresh=full_refresh,
            test_run=test_run,
            extra_args=extra_args,
            exclude=exclude,
            user_vars=user_vars,
            threads=threads,
        )
        if resolved.name == "bq":
            dbt_profile.forget_cached_credentials()
        with exported(resolved.environment):  # the credentials file for dbt's `oauth`
            outcome = dbtRunner(callbacks=[_Progress()]).invoke(args)
    result = TransformResult(
        target=resolved.name,
        where=resolved.description,
        seconds=round(time.monotonic() - started, 2),
        target_path=str(target_path),
        log_path=str(log_path / "dbt.log"),
    )
    if isinstance(outcome.exception, KeyboardInterrupt):
        raise outcome.exception
    if outcome.exception is not None:
        raise TransformFailed(
            f"dbt could not build the project: {_one_line(str(outcome.exception))}"
            f" (log: {result.log_path})"
        )
    executed = getattr(outcome.result, "results", None)
    if executed is None:
        raise TransformFailed(f"dbt returned no results (log: {result.log_path})")
    result.nodes = [_node_result(item) for item in executed]
    log.info("dbt's compiled SQL and run_results.json: %s; its log: %s", target_path, log_path)
    if not result.nodes and (select or exclude):
        chosen = " ".join(
            f"{f} {v!r}" for f, v in (("--select", select), ("--exclude", exclude)) if v
        )
        raise UsageError(f"{chosen} matched no model or test of the project")
    return result


def report(result: TransformResult, out: Output) -> None:
    """The summary on stdout: a table, or JSON with --json."""
    if out.json:
        out.emit_json(result.as_dict())
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"dbt build on {result.where}"), title_justify="left")
    table.add_column("node", no_wrap=True)
    table.add_column("status")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    for node in result.nodes:
        style = "red" if node.failed else ("yellow" if node.status == "warn" else "")
        table.add_row(
            escape(f"{node.kind} {node.name}"),
            f"[{style}]{node.status}[/{style}]" if style else node.status,
            "" if node.rows is None else f"{node.rows:,}",
            f"{node.seconds:.2f}",
        )
    console = out.out
    if not console.is_terminal:  # piped: keep whole node names rather than cut at 80
        console = Console(file=out.stdout, width=160, soft_wrap=True, color_system=None)
    console.print(table)
    counts: dict[str, int] = {}
    for node in result.nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    console.print(f"{len(result.nodes)} nodes in {result.seconds:.1f}s: {summary}")


def check(result: TransformResult) -> None:
    """Raise `TransformFailed` naming the first failed node, if any failed."""
    failed = result.failed
    if not failed:
        return
    first = failed[0]
    skipped = sum(1 for n in result.nodes if n.status == "skipped")
    more = f"; {len(failed) - 1} more failed" if len(failed) > 1 else ""
    more += f", {skipped} skipped" if skipped else ""
    where = f"; SQL: {first.compiled_path}" if first.compiled_path else ""
    raise TransformFailed(
        f"{first.kind} {first.name} {first.status}: {first.message}{more}{where}"
        f" (log: {result.log_path})"
    )
