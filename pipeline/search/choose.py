"""The choice of the build to ship: a pure function of the recorded measurements.

Input: the candidate records of ``search.json`` (each with its ``final`` numbers from one
interleaved run: speedup over the fp32 export, noise interval, per-block medians, gates). Rules:

1. Only candidates passing every gate of the build compete.
2. The leader is the fastest (p50). A candidate is *faster* than another only beyond noise: the
   10th..90th percentile of their per-block time ratios (same blocks of the same run) lies above 1
   (:func:`pipeline.evaluate.verdict.noise_interval`). Every competitor the leader does not beat is
   tied with it; among tied candidates the one with fewer changes wins (the fp32-optimized model
   before a fused graph before a quantized one), then the more faithful (the task's worst-sample
   figure, :data:`pipeline.evaluate.gates.TASK_HEADLINE`: ``iou_min``, ``embedding_cosine_min``, ...),
   then the faster.
3. So when no quantized candidate beats the fp32-optimized model beyond noise, the fp32-optimized
   model ships, and the reason says so.
4. When every candidate fails the gates, the fp32-optimized model ships (never int8 silently) and
   the search's verdict is ``fails_gates``, with the best candidate's numbers in the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.evaluate.verdict import FAILS_GATES, FASTER, NOT_FASTER, beats, noise_interval

FP32 = "fp32"  # the fp32-optimized candidate: the passes' output, unquantized


def _final(cand: Mapping[str, Any]) -> Mapping[str, Any]:
    return cand.get("final") or {}


def task_figure(fidelity: Mapping[str, Any]) -> tuple[str, float | None, int]:
    """``(name, value, direction)`` of the task's worst-sample figure in a fidelity dict (the
    flattened ``cosine_min`` for records without a task)."""
    from pipeline.evaluate.gates import TASK_HEADLINE

    name, sign = TASK_HEADLINE.get(fidelity.get("task"), ("cosine_min", 1))
    value = fidelity.get(name)
    if value is None:
        name, sign, value = "cosine_min", 1, fidelity.get("cosine_min")
    return name, None if value is None else float(value), sign


def faithfulness(cand: Mapping[str, Any], stage: str = "final") -> float:
    """Higher is more faithful: the task's worst-sample figure (negated for errors)."""
    _, value, sign = task_figure(cand.get(stage) and cand[stage].get("fidelity") or {})
    return sign * value if value is not None and value == value else float("-inf")


def pair_interval(fast: Mapping[str, Any], slow: Mapping[str, Any]) -> tuple[float, float]:
    """Noise interval of ``slow``'s time over ``fast``'s, block by block (> 1: ``fast`` is faster)."""
    a, b = _final(fast).get("block_medians_ms"), _final(slow).get("block_medians_ms")
    if a and b and len(a) == len(b):
        return noise_interval([s / f if f > 0 else float("inf") for f, s in zip(a, b)])
    # no per-block numbers: compare the intervals against the export (conservative)
    fa, fb = _final(fast)["interval"], _final(slow)["interval"]
    return (fa[0] / fb[1], fa[1] / fb[0])


def beats_beyond_noise(fast: Mapping[str, Any], slow: Mapping[str, Any]) -> bool:
    return beats(pair_interval(fast, slow))


def describe(cand: Mapping[str, Any]) -> str:
    """``static-pc-minmax 1.85x (noise 1.71-1.93x, iou_min 0.96100)``: the task's worst-sample figure."""
    f = _final(cand)
    lo, hi = f["interval"]
    name, value, _ = task_figure(f.get("fidelity") or {})
    extra = f", {name} {value:.5f}" if value is not None else ""
    return f"{cand['name']} {f['speedup']:.2f}x (noise {lo:.2f}-{hi:.2f}x{extra})"


def _tie_key(cand: Mapping[str, Any]) -> tuple[Any, ...]:
    return (int(cand.get("changes", 0)), -faithfulness(cand), -float(_final(cand)["speedup"]), cand["name"])


def _best_failing(cands: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The best of the failing candidates: fewest missed gates, then most faithful, then fastest."""
    return min(
        cands,
        key=lambda c: (len(_final(c).get("failures") or []), -faithfulness(c), -float(_final(c)["speedup"]), c["name"]),
    )


def choose(candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{chosen, reason, verdict, tied}`` from the candidate records (those with ``final`` numbers)."""
    finalists = [c for c in candidates if c.get("final")]
    by_name = {c["name"]: c for c in finalists}
    if FP32 not in by_name:
        raise ValueError(f"the fp32-optimized candidate '{FP32}' has no final measurement")
    fp32 = by_name[FP32]
    passing = [c for c in finalists if _final(c).get("gates_passed")]
    if not passing:
        quantized = [c for c in finalists if c["name"] != FP32] or [fp32]
        best = _best_failing(quantized)
        misses = "; ".join(_final(best).get("failures") or [])
        return {
            "chosen": FP32,
            "verdict": FAILS_GATES,
            "tied": [],
            "reason": (
                f"every candidate fails the gates, so the fp32-optimized model ships, not int8; best candidate "
                f"{describe(best)} fails: {misses}"
            ),
        }
    leader = max(passing, key=lambda c: (float(_final(c)["speedup"]), c["name"]))
    tied = [c for c in passing if c is leader or not beats_beyond_noise(leader, c)]
    chosen = min(tied, key=_tie_key)
    others = [c["name"] for c in tied if c is not chosen]
    verdict = FASTER if beats(_final(chosen)["interval"]) else NOT_FASTER
    if chosen["name"] == FP32:
        quantized = [c for c in passing if c.get("changes", 0) > 0]
        if quantized:
            best = max(quantized, key=lambda c: float(_final(c)["speedup"]))
            why = f"no other candidate passing the gates beats it beyond noise (best: {describe(best)})"
        else:
            why = "no other candidate passes the gates"
        reason = f"shipped the fp32-optimized model {describe(chosen)}: {why}"
    else:
        why = "the fastest candidate passing every gate"
        if others:
            why += f"; within noise of it and preferred for fewer changes or fidelity: {', '.join(others)}"
        elif leader is chosen and len(passing) > 1:
            why += " beyond noise"
        if chosen is not leader:
            why = f"within noise of the fastest ({describe(leader)}) with fewer changes or higher fidelity"
        reason = f"shipped {describe(chosen)}: {why}"
    if FP32 in {c["name"] for c in passing} and chosen["name"] != FP32:
        lo, hi = pair_interval(chosen, fp32)
        reason += f"; vs the fp32-optimized model {lo:.2f}-{hi:.2f}x"
    return {"chosen": chosen["name"], "verdict": verdict, "tied": others, "reason": reason}
