"""Why a build has no (fresh) metrics: the failed stage and its one-line error, read from the stage logs.

Every stage run rewrites ``<logs>/<stage>/<item>.log`` (:func:`pipeline.stages.runner.stage_logger`):
the model stages (prepare, export) are logged per model, the build stages (passes, quantize,
evaluate) per build. Lines look like ``2026-01-31 12:00:00,123 LEVEL message``; a successful run ends
with ``done in <seconds>s``; a failed one holds the traceback (its last line names the exception)
while the one-line ``error: ...`` goes to the terminal. The failure of a build is the first stage of
its chain, in DVC order, whose latest run failed (or never finished: killed, e.g. out of memory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# the stages a build runs, in DVC order (dvc.yaml): logged per model, then per build
MODEL_STAGES = ("prepare", "export")
BUILD_STAGES = ("passes", "quantize", "evaluate")
DONE_PREFIX = "done in "  # runner.main_for's last log message on success
NOT_BUILT = "not built: no metrics and no error log"

_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) ")
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Failure:
    """The failed stage of a build: its one-line reason, its log and when that run started."""

    stage: str
    log: Path
    reason: str
    started: float  # seconds since the epoch (the run's first log line, else the log's mtime)


def stage_logs(logs_dir: str | Path, build: str, model: str) -> list[tuple[str, str, Path]]:
    """``(stage, item, log path)`` for every stage of ``build`` (of ``model``), in DVC order."""
    logs_dir = Path(logs_dir)
    items = [(s, model) for s in MODEL_STAGES] + [(s, build) for s in BUILD_STAGES]
    return [(stage, item, logs_dir / stage / f"{item}.log") for stage, item in items]


def _split(line: str) -> tuple[str | None, str | None, str]:
    """``(timestamp, level, message)`` of a log line; continuation lines have no timestamp."""
    m = _PREFIX.match(line)
    if m is None:
        return None, None, line
    return m.group(1), m.group(2), line[m.end():]


def _exception_reason(exc_line: str, stage: str, item: str, log: Path) -> str:
    """What the runner printed for the exception named on a traceback's last line."""
    from pipeline import errors

    qualified, sep, message = exc_line.partition(": ")
    message = message.strip() if sep else ""
    short = qualified.rsplit(".", 1)[-1]
    cls = getattr(errors, short, None) if qualified.startswith("pipeline.errors.") else None
    if isinstance(cls, type) and issubclass(cls, errors.PipelineError) and message:
        if issubclass(cls, errors.StageError) and "(full log:" not in message:
            return f"{message} (full log: {log})"
        return message
    cause = f"{short}: {message}" if message else short
    return str(errors.StageError(stage, item, cause, str(log)))


def log_failure(log: str | Path, stage: str, item: str) -> str | None:
    """The one-line error of the run logged in ``log``, or None when that run succeeded.

    A run whose last message is ``done in ...`` succeeded (it may have logged errors it survived). Else, in
    order: the last ``error: ...`` line; the exception of the last traceback, as the stage printed
    it; the last ERROR-level message; that the run did not finish."""
    log = Path(log)
    lines = log.read_text(errors="replace").splitlines()
    messages = [_split(line) for line in lines]
    last = next((msg for _, level, msg in reversed(messages) if level is not None), "")
    if last.startswith(DONE_PREFIX):
        return None
    for _, _, msg in reversed(messages):
        if msg.startswith("error: "):
            return msg[len("error: "):].strip()
    tracebacks = [i for i, (_, _, msg) in enumerate(messages) if msg.strip() == _TRACEBACK]
    if tracebacks:
        for _, _, msg in messages[tracebacks[-1] + 1:]:
            if msg.strip() and not msg[0].isspace():
                return _exception_reason(msg.strip(), stage, item, log)
    for _, level, msg in reversed(messages):
        if level in ("ERROR", "CRITICAL"):
            return msg.strip()
    return (
        f"{stage} stage did not finish: its log {log} ends without an error or 'done' "
        "(killed, e.g. out of memory, or still running)"
    )


def run_started(log: str | Path) -> float:
    """When the logged run started: its first line's timestamp (local time), else the file's mtime."""
    log = Path(log)
    with open(log, errors="replace") as fh:
        stamp, _, _ = _split(fh.readline())
    if stamp is not None:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return log.stat().st_mtime


def find_failure(logs_dir: str | Path, build: str, model: str) -> Failure | None:
    """The first stage of ``build``'s chain whose latest run failed, or None."""
    for stage, item, log in stage_logs(logs_dir, build, model):
        if not log.is_file():
            continue
        reason = log_failure(log, stage, item)
        if reason is not None:
            return Failure(stage=stage, log=log, reason=reason, started=run_started(log))
    return None


__all__ = ["BUILD_STAGES", "DONE_PREFIX", "Failure", "MODEL_STAGES", "NOT_BUILT", "find_failure", "log_failure",
           "run_started", "stage_logs"]
