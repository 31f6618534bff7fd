"""Per-build metrics as flat rows (one per build, keys :data:`COLUMNS`) and as ``builds.csv``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import StageError
from pipeline.evaluate.gates import TASK_METRICS, metric_value

FALLBACK_FIGURE = "cosine_min"  # metrics files written before task-true fidelity carry only this


def task_figures(task: str | None) -> list[str]:
    """The task-true fidelity figures of ``task`` that are a per-sample worst case (a minimum, or a
    maximum for errors), by short name: the numbers a build of that task is judged by."""
    return [
        name for name, path in TASK_METRICS.get(task or "", {}).items()
        if path.startswith("fidelity.") and name.endswith(("_min", "_max"))
    ]


def model_figures(task: str | None, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fidelity columns of one model's table: its task's worst-case figures that its builds
    report; the raw-output cosine_min for metrics files that predate them."""
    figures = task_figures(task)
    present = [f for f in figures if any(r.get(f) is not None for r in rows)]
    if present:
        return present
    if any(r.get(FALLBACK_FIGURE) is not None for r in rows):
        return [FALLBACK_FIGURE]
    return figures


# every task's worst-case figures -> metric path, once each, in catalogue order (one CSV column each)
FIGURE_PATHS: dict[str, str] = {f: TASK_METRICS[task][f] for task in TASK_METRICS for f in task_figures(task)}
FIGURE_COLUMNS: tuple[str, ...] = tuple(FIGURE_PATHS)

# CSV columns, in order (one row per build; empty when a build has no such value)
COLUMNS = (
    "build",
    "model",
    "task",
    "quantization",
    "passes",
    "target",
    "threads",
    "batch_size",
    "warmup",
    "runs",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "reference_p50_ms",
    "speedup",
    "speedup_low",
    "speedup_high",
    "size_mb",
    "num_nodes",
    "cosine_min",
    "max_abs_err",
    "mean_abs_err",
    "top1_agreement",
    *FIGURE_COLUMNS,
    "top1",
    "source_top1",
    "accuracy_drop",
    "gates_passed",
    "gate_failures",
    "gates_checked",
    "verdict",
    "verdict_reason",
    "host",
)


def load_metrics(metrics_dir: str | Path, required: bool = True) -> dict[str, dict[str, Any]]:
    """``{build name: metrics}`` from ``metrics_dir/*.json``, sorted by name (``required``: at least one)."""
    metrics_dir = Path(metrics_dir)
    files = sorted(metrics_dir.glob("*.json")) if metrics_dir.is_dir() else []
    if not files and required:
        raise StageError("report", "metrics", f"no metrics files (*.json) in {metrics_dir}: run the evaluate stages first")
    out = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise StageError("report", "metrics", f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or "latency_ms" not in data:
            raise StageError("report", "metrics", f"{path} is not a build metrics file (no latency_ms)")
        out[path.stem] = data
    return out


def row(name: str, m: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a build's metrics (keys: COLUMNS); the verdict derived when the file has none."""
    from pipeline.report.verdicts import verdict_of

    build = m.get("build") or {}
    gates = m.get("gates") or {}
    interval = metric_value(m, "speedup_noise.interval") or [None, None]
    verdict, reason = verdict_of(m)
    values = {
        "build": name,
        "model": build.get("model"),
        "task": build.get("task"),
        "quantization": build.get("quantization"),
        "passes": "+".join(build.get("passes") or []) or None,
        "target": build.get("target"),
        "threads": metric_value(m, "environment.threads.intra_op"),
        "batch_size": metric_value(m, "benchmark.batch_size"),
        "warmup": metric_value(m, "benchmark.warmup"),
        "runs": metric_value(m, "benchmark.runs"),
        "p50_ms": metric_value(m, "latency_ms.p50"),
        "p90_ms": metric_value(m, "latency_ms.p90"),
        "p99_ms": metric_value(m, "latency_ms.p99"),
        "mean_ms": metric_value(m, "latency_ms.mean"),
        "std_ms": metric_value(m, "latency_ms.std"),
        "throughput_per_s": m.get("throughput_per_s"),
        "reference_p50_ms": metric_value(m, "reference.latency_ms.p50"),
        "speedup": m.get("speedup"),
        "speedup_low": interval[0],
        "speedup_high": interval[1],
        "size_mb": m.get("model_size_mb"),
        "num_nodes": m.get("num_nodes"),
        "cosine_min": metric_value(m, "fidelity.cosine_min"),
        "max_abs_err": metric_value(m, "fidelity.max_abs_err"),
        "mean_abs_err": metric_value(m, "fidelity.mean_abs_err"),
        "top1_agreement": metric_value(m, "fidelity.top1_agreement"),
        **{f: metric_value(m, path) for f, path in FIGURE_PATHS.items()},
        "top1": metric_value(m, "accuracy.top1"),
        "source_top1": metric_value(m, "accuracy.source_top1"),
        "accuracy_drop": metric_value(m, "accuracy.drop"),
        "gates_passed": gates.get("passed"),
        "gate_failures": "; ".join(gates.get("failures") or []) or None,
        "gates_checked": ",".join(sorted(gates.get("checked") or {})) or None,
        "verdict": verdict,
        "verdict_reason": reason,
        "host": metric_value(m, "environment.host.id"),
    }
    return {col: values[col] for col in COLUMNS}


def rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [row(name, m) for name, m in sorted(metrics.items())]


def to_csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: _csv_value(v) for k, v in r.items()})
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return float(f"{value:.7g}")  # measurement noise is far above 7 digits
    return value
