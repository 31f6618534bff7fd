"""Verdicts in the report: each build's (from its metrics, or derived for old metrics files) and
the build to ship per model.

The rules live in :mod:`pipeline.evaluate.verdict` (one implementation); this module only applies
them to metrics files written before builds carried a verdict, and picks what to ship:
the fastest build whose verdict is ``faster`` (gates pass, beyond noise), else the model's fp32
build. A build that is not ``faster`` is never recommended as an optimization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.evaluate.gates import metric_value
from pipeline.evaluate.verdict import FAILED, FAILS_GATES, FASTER, NOT_FASTER, VERDICTS, decide

DERIVED_NOTE = "derived by the report: the metrics file has no verdict"
# speedup below this is reported as slower (equal-speed builds measure 0.98-1.02 on a quiet machine);
# a metrics file without a measured noise interval is judged with this band on either side
SLOWER_BELOW = 0.95


def verdict_of(metrics: Mapping[str, Any]) -> tuple[str, str]:
    """``(verdict, verdict_reason)``: as recorded in the metrics, or derived with the evaluate
    stage's rules (:func:`pipeline.evaluate.verdict.decide`) for a file written before verdicts."""
    recorded = metrics.get("verdict")
    if recorded in VERDICTS:
        return recorded, str(metrics.get("verdict_reason") or "")
    failures = list(metric_value(metrics, "gates.failures") or [])
    speedup = metrics.get("speedup")
    p50 = metric_value(metrics, "latency_ms.p50")
    if speedup is None or p50 is None:
        if failures:
            return FAILS_GATES, f"fails gates: {'; '.join(failures)} ({DERIVED_NOTE})"
        return NOT_FASTER, f"no speedup over the fp32 export was measured, so it is not shown to be faster ({DERIVED_NOTE})"
    data = dict(metrics)
    note = DERIVED_NOTE
    if metric_value(metrics, "reference.latency_ms.p50") is None:  # speedup = reference p50 / build p50
        data["reference"] = {"latency_ms": {"p50": float(speedup) * float(p50)}}
    if metric_value(metrics, "speedup_noise.interval") is None:  # "clearly faster": beyond the assumed band
        band = (float(speedup) * SLOWER_BELOW, float(speedup) / SLOWER_BELOW)
        data["speedup_noise"] = {**(metrics.get("speedup_noise") or {}), "interval": list(band)}
        note += f" and no noise interval, so ±{100 * (1 - SLOWER_BELOW):.0f}% is assumed"
    out = decide(data)
    return out["verdict"], f"{out['verdict_reason']} ({note})"


@dataclass(frozen=True)
class Recommendation:
    """What to ship for one model: a build name (or None) and why."""

    model: str
    build: str | None
    why: str


def _listing(rows: Sequence[Mapping[str, Any]]) -> str:
    by_verdict: dict[str, list[str]] = {}
    for r in rows:
        by_verdict.setdefault(r["verdict"], []).append(f"`{r['build']}`")
    return "; ".join(f"{v}: {', '.join(names)}" for v, names in sorted(by_verdict.items()))


def _p50(r: Mapping[str, Any]) -> float:
    return float("inf") if r.get("p50_ms") is None else float(r["p50_ms"])


def _measured_apart(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the p50s of ``rows`` do not compare (measured on different hosts or at different batch
    sizes), or None when they were all measured on one host at one batch size."""
    hosts = {r.get("host") for r in rows}
    batches = {r.get("batch_size") for r in rows}
    reasons = []
    if len(hosts) > 1:
        reasons.append("measured on different hosts")
    if len(batches) > 1:
        reasons.append("at different batch sizes")
    return " and ".join(reasons) or None


def recommend(model: str, rows: Sequence[Mapping[str, Any]], fp32: set[str]) -> Recommendation:
    """The build of ``model`` to ship among its report ``rows`` (``fp32``: names of its float32 builds).

    The fastest (lowest p50) build whose verdict is ``faster`` with its gates passing (by speedup over
    its own fp32 export when those builds were measured on different hosts or batch sizes, whose
    p50s do not compare); else the
    fastest fp32 build that did not fail and passes its gates; else none."""
    faster = [r for r in rows if r["verdict"] == FASTER and r.get("gates_passed") is not False]
    if faster:
        apart = _measured_apart(faster)
        if apart:  # p50s from other hosts or batch sizes do not compare: each build's speedup does
            best = max(faster, key=lambda r: (float(r.get("speedup") or 0.0), -_p50(r), r["build"]))
            why = (f"the largest speedup over its own fp32 export among the builds that beat it beyond noise with "
                   f"their gates passing ({apart}, so their p50s are not compared): {best['verdict_reason']}")
        else:
            best = min(faster, key=lambda r: (_p50(r), r["build"]))
            why = f"the fastest build that beats its fp32 export beyond noise with its gates passing: {best['verdict_reason']}"
        others = [r for r in faster if r is not best]
        if others:
            names = ", ".join(f"`{r['build']}`" for r in others)
            why += f" (also faster, but {'with smaller speedups' if apart else 'slower than it'}: {names})"
        return Recommendation(model, best["build"], why)
    rest = _listing(rows)
    usable = [r for r in rows if r["build"] in fp32 and r["verdict"] not in (FAILED, FAILS_GATES)]
    if usable:
        best = min(usable, key=lambda r: (_p50(r), r["build"]))
        return Recommendation(
            model, best["build"],
            f"the fp32 build: no build of this model is faster than its fp32 export beyond noise with its "
            f"gates passing ({rest})",
        )
    return Recommendation(
        model, None,
        f"none is faster than the fp32 export with its gates passing and no fp32 build "
        f"passed ({rest}); the model's plain fp32 export is the fallback",
    )


__all__ = ["DERIVED_NOTE", "SLOWER_BELOW", "Recommendation", "recommend", "verdict_of"]
