"""The verdict check that ends a build: every build of the project, and the ones that must not ship.

Gates that fail do not stop the DVC graph (evaluate writes the verdict ``fails_gates`` and locks, so
the report stays current); this check is what makes ``make build`` and CI exit non-zero, naming each
build whose gates failed or whose stages crashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# verdicts that fail the main job (the others: faster, not_faster, unchanged are honest outcomes)
FAILING_VERDICTS = ("fails_gates", "failed")


def failing(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose verdict fails the job."""
    return [r for r in table if r.get("verdict") in FAILING_VERDICTS]


def check_verdicts(params: str | Path, metrics_dir: str | Path, logs_dir: str | Path) -> tuple[list[str], list[str]]:
    """``(one line per build, one line per failing build)`` for every build of ``params``."""
    from pipeline.report.collect import collect

    report = collect(metrics_dir, params=params, logs_dir=logs_dir)
    lines = [f"{r['build']:<28} {r.get('verdict') or '?':<12} {r.get('verdict_reason') or ''}" for r in report.table]
    bad = [f"{r['build']}: {r.get('verdict')}: {r.get('verdict_reason') or ''}" for r in failing(report.table)]
    return lines, bad
