"""Whether a build may be packaged: built, evaluated, not crashed, gates passed, still what was measured.

Each check returns one sentence naming the reason and what to run; ``onnxbuild package`` refuses the
build with it unless ``--allow-failed`` is given (then the reason is recorded in ``package.json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.evaluate.verdict import FAILED, FAILS_GATES


@dataclass(frozen=True)
class Layout:
    """Where a project keeps one build's files (the paths of ``dvc.yaml``)."""

    root: Path
    build: str
    model: str
    logs: Path

    @property
    def artifact(self) -> Path:
        return self.root / "artifacts" / "builds" / self.build / "model"

    @property
    def passes(self) -> Path:
        return self.root / "artifacts" / "builds" / self.build / "passes"

    @property
    def export(self) -> Path:
        return self.root / "artifacts" / "models" / self.model / "export"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / "builds" / f"{self.build}.json"


def read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "latency_ms" in data else None


def crashed(layout: Layout) -> str | None:
    """The one-line error of the build's failed stage when its latest run failed after its metrics."""
    from pipeline.report.failures import find_failure

    failure = find_failure(layout.logs, layout.build, layout.model) if layout.logs.is_dir() else None
    if failure is None:
        return None
    if layout.metrics.is_file() and failure.started <= os.path.getmtime(layout.metrics):
        return None  # an older failure, fixed since
    return f"crashed in its {failure.stage} stage: {failure.reason}"


def _changes(status: dict[str, Any], layout: Layout) -> tuple[list[str], list[str]]:
    """``(changes to what was measured, other changes)`` of ``dvc status --json``: the build's or its
    model's artifacts, its params or its metrics file changed, vs. code and other inputs changed."""
    mine = (f"artifacts/builds/{layout.build}/", f"artifacts/models/{layout.model}/", "metrics/")
    measured, other = [], []
    for stage, entries in sorted(status.items()):
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                other.append(f"{stage}: {entry}")
                continue
            for what, paths in entry.items():
                for path, state in (paths.items() if isinstance(paths, dict) else [(str(paths), "")]):
                    text = f"{path}" + (f" {state}" if isinstance(state, str) and state else "")
                    params = isinstance(state, dict)  # params.yaml: {key: modified}
                    if params:
                        text = f"params {', '.join(sorted(state))} of {path}"
                    text = f"{text} ({stage}, {what})" if what != "changed deps" else text
                    (measured if params or (path + "/").startswith(mine) else other).append(text)
    return measured, other


def _short(items: list[str], limit: int = 6) -> str:
    """The distinct items, the first ``limit`` of them, and how many more."""
    distinct = list(dict.fromkeys(items))
    more = len(distinct) - limit
    return ", ".join(distinct[:limit]) + (f" and {more} more" if more > 0 else "")


def stale(layout: Layout) -> tuple[str | None, str | None]:
    """``(refusal, warning)`` from ``dvc status --with-deps evaluate@BUILD``: a refusal when the build's
    artifact, its params or its metrics changed since it was measured (the package would not be what
    was measured); a warning when only code or other inputs changed. ``(None, None)`` when current or
    when the project has no ``dvc.lock``."""
    if not (layout.root / "dvc.lock").is_file():
        return None, None
    stage = f"evaluate@{layout.build}"
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "--with-deps", stage], cwd=layout.root,
                          capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"could not ask DVC whether it is current (`dvc status {stage}`: {last})"
    try:
        status = json.loads(proc.stdout or "{}")
    except ValueError:
        return None, f"could not read `dvc status {stage}`"
    measured, other = _changes(status if isinstance(status, dict) else {}, layout)
    if measured:
        return (f"is out of date: its artifact, params or metrics changed since it was measured "
                f"({_short(measured)}); run `dvc repro {stage}` first"), None
    if other:
        return None, (f"was measured before inputs of its stages changed ({_short(other)}); its model and "
                      f"settings are the ones measured (`dvc repro {stage}` would re-measure it)")
    return None, None


def refusal(layout: Layout) -> str | None:
    """Why the build must not be packaged (one sentence), or None. Out-of-date checks: :func:`stale`."""
    from pipeline.onnx_utils import model_path
    from pipeline.report.verdicts import verdict_of

    reason = crashed(layout)
    if reason:
        return reason
    if not model_path(layout.artifact).is_file():
        return f"was not built: {layout.artifact} holds no model (run `dvc repro evaluate@{layout.build}`)"
    metrics = read_metrics(layout.metrics)
    if metrics is None:
        return f"was not evaluated: no metrics file {layout.metrics} (run `dvc repro evaluate@{layout.build}`)"
    failures = (metrics.get("gates") or {}).get("failures") or []
    if failures:
        return f"failed its gates: {'; '.join(failures)}"
    verdict, why = verdict_of(metrics)
    if verdict in (FAILED, FAILS_GATES):
        return f"has verdict {verdict}: {why}"
    return None


__all__ = ["Layout", "crashed", "read_metrics", "refusal", "stale"]
