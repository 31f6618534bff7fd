"""Gates: thresholds a build's metrics must meet (``evaluate.gates`` in a recipe)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# gate -> (metric path, "min" = value must be >= threshold, "max" = value must be <= threshold)
GATES: dict[str, tuple[str, str]] = {
    "min_speedup": ("speedup", "min"),
    "min_cosine": ("fidelity.cosine_min", "min"),
    "max_abs_err": ("fidelity.max_abs_err", "max"),
    "max_accuracy_drop": ("accuracy.drop", "max"),
    "min_top1_agreement": ("fidelity.top1_agreement", "min"),
    "max_p50_ms": ("latency_ms.p50", "max"),
    "max_size_mb": ("model_size_mb", "max"),
}


# Short metric names that ``gates.min`` / ``gates.max`` accept -> metric path in the metrics JSON.
# One place: the fidelity code writes exactly these paths, the schema checks gate names against them.
COMMON_METRICS: dict[str, str] = {
    "speedup": "speedup",
    "p50_ms": "latency_ms.p50",
    "p90_ms": "latency_ms.p90",
    "p99_ms": "latency_ms.p99",
    "size_mb": "model_size_mb",
    "cosine_min": "fidelity.cosine_min",
    "cosine_mean": "fidelity.cosine_mean",
    "max_abs_err": "fidelity.max_abs_err",
    "mean_abs_err": "fidelity.mean_abs_err",
}
# per task: the task-true fidelity figures (every one a per-sample minimum / maximum, or a mean beside one)
TASK_METRICS: dict[str, dict[str, str]] = {
    "classification": {
        "top1_agreement": "fidelity.top1_agreement",
        "top1_agreement_min": "fidelity.top1_agreement_min",
        "top1": "accuracy.top1",
        "accuracy_drop": "accuracy.drop",
    },
    "embedding": {
        "embedding_cosine_min": "fidelity.embedding_cosine_min",
        "embedding_cosine_mean": "fidelity.embedding_cosine_mean",
    },
    "detection": {"iou_min": "fidelity.iou_min", "iou_mean": "fidelity.iou_mean"},
    "segmentation": {"iou_min": "fidelity.iou_min", "iou_mean": "fidelity.iou_mean"},
    "regression": {
        "abs_err_max": "fidelity.abs_err_max",
        "abs_err_mean": "fidelity.abs_err_mean",
        "rel_err_max": "fidelity.rel_err_max",
        "rel_err_mean": "fidelity.rel_err_mean",
    },
}
TASK_METRICS["other"] = TASK_METRICS["regression"]
# the one figure that says how faithful a build is for its task (worst sample), and its direction
# (+1: higher is better): the search ranks and describes candidates by it
TASK_HEADLINE: dict[str, tuple[str, int]] = {
    "classification": ("top1_agreement_min", 1),
    "embedding": ("embedding_cosine_min", 1),
    "detection": ("iou_min", 1),
    "segmentation": ("iou_min", 1),
    "regression": ("rel_err_max", -1),
    "other": ("rel_err_max", -1),
}
CUSTOM_PREFIX = "custom."
# the values a figure can take (by metric path): a min gate above the top, or a max gate below the
# bottom, can never pass, and is refused at compose; figures not listed are unbounded above, >= 0
_UNIT = (0.0, 1.0)
FIGURE_RANGES: dict[str, tuple[float, float]] = {
    "fidelity.cosine_min": (-1.0, 1.0),
    "fidelity.cosine_mean": (-1.0, 1.0),
    "fidelity.embedding_cosine_min": (-1.0, 1.0),
    "fidelity.embedding_cosine_mean": (-1.0, 1.0),
    "fidelity.top1_agreement": _UNIT,
    "fidelity.top1_agreement_min": _UNIT,
    "fidelity.iou_min": _UNIT,
    "fidelity.iou_mean": _UNIT,
    "accuracy.top1": _UNIT,
    "accuracy.drop": (-1.0, 1.0),
}


def impossible_gate(path: str, kind: str, threshold: float) -> str | None:
    """Why a ``kind`` ("min"/"max") gate at ``threshold`` on the figure at ``path`` can never pass, or None."""
    if path.startswith(CUSTOM_PREFIX):
        return None  # a custom metric's range is its author's
    lo, hi = FIGURE_RANGES.get(path, (0.0, math.inf))
    if kind == "min" and threshold > hi:
        return f"it asks for at least {threshold:g}, but {path} is at most {hi:g}"
    if kind == "max" and threshold < lo:
        return f"it asks for at most {threshold:g}, but {path} is at least {lo:g}"
    return None


# metrics measured against the source's outputs: no gate on them passes while a reference output is
# degenerate (constant over samples, all zero, non-finite; pipeline.evaluate.reference_check)
REFERENCE_BOUND: tuple[str, ...] = ("fidelity.", "accuracy.", CUSTOM_PREFIX)
DEGENERATE_PATH = "fidelity.reference_degenerate"


def builtin_metric_names() -> set[str]:
    """Every built-in short name (any task) and named gate: custom metrics may not take them."""
    return {*COMMON_METRICS, *(n for names in TASK_METRICS.values() for n in names), *GATES}


def gate_names(task: str, custom: Any = ()) -> dict[str, str]:
    """Every short name a build of a ``task`` model may gate -> its metric path (custom metrics:
    each name in a MetricSpec's ``provides`` -> ``custom.<name>``)."""
    names = {**COMMON_METRICS, **TASK_METRICS[task]}
    for spec in custom:
        for name in spec.provides:
            names[name] = CUSTOM_PREFIX + name
    return names


def metric_value(metrics: Mapping[str, Any], path: str) -> Any:
    """``metrics["a"]["b"]`` for path ``a.b``; None when any part is missing."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _fmt_pair(value: float, threshold: float) -> tuple[str, str]:
    """The threshold as written; the value with just enough digits to read differently from it."""
    shown = repr(threshold)
    for digits in range(3, 13):
        text = f"{value:.{digits}g}"
        if text != shown and float(text) != threshold:
            return text, shown
    return repr(value), shown


def gate_items(gates: Any, task: str = "classification") -> list[tuple[str, str, str, float]]:
    """``(gate label, metric path, "min"/"max", threshold)`` for every gate that is set.

    Named gates (``min_cosine``) and the ``min`` / ``max`` maps by short metric name
    (``{min: {iou_min: 0.95}}``); a short name that is no built-in metric of ``task`` is a custom
    metric (``custom.<name>``), checked against the declared ``provides`` at compose time."""
    if gates is None:
        return []
    data = gates.model_dump() if hasattr(gates, "model_dump") else dict(gates)
    data = dict(data)
    by_name = {"min": dict(data.pop("min", None) or {}), "max": dict(data.pop("max", None) or {})}
    unknown = set(data) - set(GATES)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; valid: {sorted([*GATES, 'min', 'max'])}")
    items = [(gate, *GATES[gate], float(v)) for gate, v in sorted(data.items()) if v is not None]
    known = {**COMMON_METRICS, **TASK_METRICS.get(task, {})}
    for kind in ("min", "max"):
        for name, v in sorted(by_name[kind].items()):
            items.append((f"{kind}.{name}", known.get(name, CUSTOM_PREFIX + name), kind, float(v)))
    return items


# the figures over every output at once (the rest of fidelity.* reads the task's output)
ALL_OUTPUT_FIGURES = ("fidelity.cosine_min", "fidelity.cosine_mean", "fidelity.max_abs_err",
                      "fidelity.mean_abs_err", "fidelity.nonfinite")


def _blocking(path: str, degenerate: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The degenerate reference outputs that make the gate on ``path`` meaningless: for a figure over
    every output, only when all of them are degenerate; otherwise when the task's output
    (``fidelity.output``, which accuracy and custom metrics also judge) is; else none."""
    if not degenerate or not path.startswith(REFERENCE_BOUND):
        return {}
    per_output = metric_value(metrics, "fidelity.per_output")
    if path in ALL_OUTPUT_FIGURES:
        outputs = set(per_output) if isinstance(per_output, Mapping) else set(degenerate)
        return dict(degenerate) if outputs <= set(degenerate) else {}
    task_output = metric_value(metrics, "fidelity.output")
    if task_output is None or task_output in degenerate:
        return {k: v for k, v in degenerate.items() if task_output is None or k == task_output}
    return {}


def evaluate_gates(metrics: Mapping[str, Any], gates: Any) -> dict[str, Any]:
    """``{passed, failures: [...], checked: {gate: {metric, threshold, value, passed}}}``.

    While ``fidelity.reference_degenerate`` names a degenerate reference output that a gate's metric
    is measured on (see :func:`_blocking`), the gate fails, whatever its value."""
    checked: dict[str, Any] = {}
    failures: list[str] = []
    task = metric_value(metrics, "build.task") or "classification"
    all_degenerate = metric_value(metrics, DEGENERATE_PATH) or {}
    for gate, path, kind, threshold in gate_items(gates, task):
        value = metric_value(metrics, path)
        degenerate = _blocking(path, all_degenerate, metrics)
        if degenerate:
            from pipeline.evaluate.reference_check import describe

            ok, value = False, None if value is None else float(value)
            failures.append(f"{describe(degenerate)}: {path.split('.')[0]} gate {gate} cannot pass")
        elif value is None:
            ok = False
            failures.append(f"{path} was not measured, but {gate} {threshold!r} requires it")
        else:
            value = float(value)
            ok = not math.isnan(value) and (value >= threshold if kind == "min" else value <= threshold)
            if not ok:
                v, t = _fmt_pair(value, threshold)
                op = "<" if kind == "min" else ">"
                if math.isnan(value):
                    op = "is not comparable with"
                failures.append(f"{path} {v} {op} {gate} {t}")
        checked[gate] = {"metric": path, "threshold": threshold, "value": value, "passed": ok}
    return {"passed": not failures, "failures": failures, "checked": checked}


def check_gates(metrics: Mapping[str, Any], gates: Any) -> list[str]:
    """The missed gates, one message each (``"speedup 0.93 < min_speedup 1"``); empty when all pass."""
    return evaluate_gates(metrics, gates)["failures"]
