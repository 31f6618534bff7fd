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


def _gate_items(gates: Any) -> dict[str, float]:
    if gates is None:
        return {}
    data = gates.model_dump() if hasattr(gates, "model_dump") else dict(gates)
    unknown = set(data) - set(GATES)
    if unknown:
        raise ValueError(f"unknown gate(s) {sorted(unknown)}; valid: {sorted(GATES)}")
    return {name: float(v) for name, v in data.items() if v is not None}


def evaluate_gates(metrics: Mapping[str, Any], gates: Any) -> dict[str, Any]:
    """``{passed, failures: [...], checked: {gate: {metric, threshold, value, passed}}}``."""
    checked: dict[str, Any] = {}
    failures: list[str] = []
    for gate, threshold in sorted(_gate_items(gates).items()):
        path, kind = GATES[gate]
        value = metric_value(metrics, path)
        if value is None:
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
