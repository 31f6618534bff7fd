"""Every build of the composed project, with its metrics or, when it has none (or only stale ones),
the reason it failed: the input of the report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.evaluate.verdict import FAILED, verdict_for_failure
from pipeline.report.failures import NOT_BUILT, Failure, find_failure
from pipeline.report.project import PlannedBuild, planned_builds
from pipeline.report.summary import COLUMNS, load_metrics, row


@dataclass
class Collected:
    """The report's input: one row per build (keys: COLUMNS) and what explains the rows."""

    table: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]]  # fresh metrics per build (stale and foreign files left out)
    planned: dict[str, PlannedBuild] = field(default_factory=dict)  # empty without a project
    failures: dict[str, Failure] = field(default_factory=dict)  # why builds without metrics failed
    stale: list[str] = field(default_factory=list)  # builds whose metrics predate their failure
    ignored: list[str] = field(default_factory=list)  # metrics files of builds not in the project


def failed_row(build: PlannedBuild, failure: Failure | None) -> dict[str, Any]:
    """The row of a build without metrics: what the project declares, verdict ``failed``."""
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(
        build=build.name, model=build.model, task=build.task, quantization=build.quantization,
        passes="+".join(build.passes) or None, target=build.target, threads=build.threads,
    )
    if failure is None:
        values.update(verdict=FAILED, verdict_reason=NOT_BUILT)
    else:
        values.update(verdict_for_failure(failure.reason))
    return values


def _fill(r: dict[str, Any], build: PlannedBuild) -> dict[str, Any]:
    """Fill what an older metrics file lacks from the project."""
    for key, value in (("model", build.model), ("task", build.task), ("quantization", build.quantization),
                       ("target", build.target), ("threads", build.threads)):
        if r.get(key) is None:
            r[key] = value
    return r


def collect(metrics_dir: str | Path, params: str | Path | None = None, logs_dir: str | Path | None = None) -> Collected:
    """The rows of the report.

    Without ``params``: one row per metrics file (at least one must exist). With ``params``: one row
    per build of the project, in name order; a build with no metrics file, or one older than its
    latest failed stage run (``logs_dir``), gets verdict ``failed`` with the stage's one-line error."""
    if params is None:
        metrics = load_metrics(metrics_dir)
        return Collected([row(name, m) for name, m in sorted(metrics.items())], metrics)
    from pipeline.stages.runner import load_params

    planned = planned_builds(load_params(params), str(params))
    metrics_dir = Path(metrics_dir)
    found = load_metrics(metrics_dir, required=False)
    out = Collected([], {}, planned=planned, ignored=sorted(set(found) - set(planned)))
    for name, build in sorted(planned.items()):
        failure = find_failure(logs_dir, name, build.model) if logs_dir is not None else None
        m = found.get(name)
        if m is not None and failure is not None and failure.started > os.path.getmtime(metrics_dir / f"{name}.json"):
            out.stale.append(name)  # the latest run failed after these metrics were written
            m = None
        if m is None:
            if failure is not None:
                out.failures[name] = failure
            out.table.append(failed_row(build, failure))
        else:
            out.metrics[name] = m
            out.table.append(_fill(row(name, m), build))
    return out


__all__ = ["Collected", "collect", "failed_row"]
