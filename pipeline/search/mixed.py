"""Accuracy-aware mixed precision: keep the most sensitive nodes in float, in order, until the
build's fidelity and accuracy gates hold.

The nodes are ranked by the error each adds when quantized (:mod:`pipeline.search.sensitivity`).
Step k re-quantizes with the k most sensitive nodes in ``nodes_to_exclude`` and measures the
result. The counts grow 1, 2, 4, 8, ... until the quality gates hold; then the gap between the last
failing and the first passing count is bisected, so the build keeps as few nodes in float as the
ranking allows. Every step (excluded nodes, speed, fidelity, gates) is recorded; at most
``max_steps`` steps run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Step = Callable[[list[str], int], dict[str, Any]]  # (excluded nodes, step number) -> record with "quality_passed"


def search_exclusions(ranked: Sequence[str], try_step: Step, max_steps: int) -> dict[str, Any]:
    """Run the steps; ``{"steps": [...], "passing": the smallest passing record or None}``.

    ``ranked``: node names, most sensitive first. ``try_step(nodes, i)`` quantizes with ``nodes``
    kept in float and returns its record (``quality_passed``: the fidelity/accuracy gates hold)."""
    steps: list[dict[str, Any]] = []
    results: dict[int, dict[str, Any]] = {}
    n = len(ranked)

    def attempt(k: int) -> bool:
        record = dict(try_step(list(ranked[:k]), len(steps) + 1))
        record["kept_float"] = k
        steps.append(record)
        results[k] = record
        return bool(record["quality_passed"])

    if n == 0:
        return {"steps": steps, "passing": None}
    failing, passing, k = 0, None, 1
    while len(steps) < max_steps:
        if attempt(k):
            passing = k
            break
        failing = k
        if k >= n:
            break
        k = min(2 * k, n)
    while passing is not None and passing - failing > 1 and len(steps) < max_steps:
        mid = (failing + passing) // 2
        if attempt(mid):
            passing = mid
        else:
            failing = mid
    return {"steps": steps, "passing": results[passing] if passing is not None else None}
