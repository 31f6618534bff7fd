"""Degenerate references: source outputs against which fidelity means nothing.

A randomly initialised softmax head outputs the same 1e-3 for every class and every sample: any
build then "agrees" with it (top-1 agreement 1.0) while its cosine can read 0. Each reference output
is checked for being constant over samples (every sample equal), all zero, or holding non-finite
values. The export stage warns and records the result in ``export.json`` (``reference_check``); the
evaluate stage records it as ``fidelity.reference_degenerate`` and fails every fidelity, accuracy and
custom-metric gate while a reference output is degenerate (``pipeline.evaluate.gates``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CONSTANT = "constant over samples"
ALL_ZERO = "all zero"
NONFINITE = "non-finite values"


def output_reasons(values: np.ndarray) -> list[str]:
    """Why one output (sample axis first) is degenerate; empty when it is not."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        arr = arr.astype(np.float64, copy=False)
    else:
        return []
    reasons = []
    if len(arr) > 1 and np.array_equal(arr, np.broadcast_to(arr[:1], arr.shape)):
        reasons.append(CONSTANT)
    if arr.size and not np.any(arr):
        reasons.append(ALL_ZERO)
    if not np.isfinite(arr).all():
        reasons.append(NONFINITE)
    return reasons


def degenerate_outputs(outputs: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """``{output name: [reasons]}`` for every degenerate output (empty when all are usable)."""
    found = {}
    for name, values in outputs.items():
        reasons = output_reasons(values)
        if reasons:
            found[name] = reasons
    return found


def describe(degenerate: Mapping[str, list[str]]) -> str:
    """``reference output 'probs' is degenerate (constant over samples)`` (all outputs, joined)."""
    return "; ".join(
        f"reference output '{name}' is degenerate ({', '.join(reasons)})" for name, reasons in degenerate.items()
    )
