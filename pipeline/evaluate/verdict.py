"""Verdicts: what a build's numbers mean, in one word and one sentence.

Every build's metrics carry ``verdict`` (one of :data:`VERDICTS`) and ``verdict_reason`` (a human
sentence with the numbers), so a slower int8 build is never presented as an optimization:

- ``failed``: a stage crashed (written by the report for builds with no metrics: :func:`verdict_for_failure`);
- ``fails_gates``: a gate was missed (the reason lists them);
- ``unchanged``: quantization was asked for but nothing was quantized, or the artifact's graph is
  the fp32 export's;
- ``faster``: gates pass and the build beats the fp32 export beyond measurement noise;
- ``not_faster``: gates pass, but the build is slower or within noise of the export.

Noise: the latency harness runs reference and build in alternating blocks
(:func:`pipeline.evaluate.latency.measure_interleaved`). The speedup is computed per block pair
(median reference time / median build time of the same block), and the noise interval is the
10th..90th percentile of those per-block ratios (linear interpolation; deterministic, no resampling).
With 10 blocks it drops the most extreme block pair at each end, which is what a burst from a
neighbour on a shared machine disturbs. ``faster`` only when the interval's lower end is above 1.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FASTER, NOT_FASTER, UNCHANGED, FAILS_GATES, FAILED = "faster", "not_faster", "unchanged", "fails_gates", "failed"
VERDICTS: tuple[str, ...] = (FASTER, NOT_FASTER, UNCHANGED, FAILS_GATES, FAILED)
NOISE_PERCENTILES = (10.0, 90.0)
NOISE_METHOD = (
    "per-block speedup (median reference / median build time of each alternating block pair); "
    "interval = 10th..90th percentile of the block ratios"
)
# op types that only a quantized graph holds
QUANT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
     "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def block_ratios(reference_ns: Sequence[int], build_ns: Sequence[int], sizes: Sequence[int]) -> list[float]:
    """Speedup of each block pair: median reference time / median build time (``sizes``: runs per block)."""
    if sum(sizes) != len(reference_ns) or sum(sizes) != len(build_ns):
        raise ValueError(f"block sizes add up to {sum(sizes)} but there are {len(reference_ns)} / {len(build_ns)} runs")
    ratios, start = [], 0
    for size in sizes:
        ref = statistics.median(reference_ns[start : start + size])
        bld = statistics.median(build_ns[start : start + size])
        ratios.append(ref / bld if bld > 0 else float("inf"))
        start += size
    return ratios


def noise_interval(ratios: Sequence[float]) -> tuple[float, float]:
    """The 10th..90th percentile of per-block speedups (one block: that ratio twice)."""
    if not ratios:
        raise ValueError("no block ratios")
    low, high = NOISE_PERCENTILES
    return _percentile(ratios, low), _percentile(ratios, high)


def speed_noise(reference_ns: Sequence[int], build_ns: Sequence[int], blocks: int) -> dict[str, Any]:
    """``{block_ratios, interval: [lo, hi], method}`` for one interleaved measurement."""
    from pipeline.evaluate.latency import block_sizes

    ratios = block_ratios(reference_ns, build_ns, block_sizes(len(build_ns), blocks))
    lo, hi = noise_interval(ratios)
    return {"block_ratios": [round(r, 6) for r in ratios], "interval": [lo, hi], "method": NOISE_METHOD}


def beats(interval: Sequence[float]) -> bool:
    """Faster beyond noise: the interval's lower end is above 1."""
    return float(interval[0]) > 1.0


# ---------------------------------------------------------------------------------------------
# unchanged: nothing quantized, or the artifact is the export
# ---------------------------------------------------------------------------------------------


def nothing_quantized(quantization: Mapping[str, Any] | None) -> str | None:
    """Why quantization.json shows that nothing was quantized, or None (quantized, or no quantizer asked).

    ``quantized_nodes`` when the quantize stage recorded it; otherwise the op histograms before and
    after: no quantized op type appeared."""
    if not quantization or quantization.get("quantizer") in (None, "none"):
        return None
    if (quantization.get("info") or {}).get("float_chosen"):  # a search chose to ship float on purpose
        return None
    name = quantization["quantizer"]
    count = quantization.get("quantized_nodes")
    if isinstance(count, Mapping):  # a per-op breakdown: total it
        count = sum(int(v) for v in count.values())
    if count is not None:
        return f"{name} quantized no node (quantized_nodes 0)" if int(count) == 0 else None
    ops = quantization.get("ops")
    if ops is None:
        return None
    before = set(quantization.get("ops_before") or {})
    added = {op.split(".")[-1] for op in ops if op not in before}
    if not added & QUANT_OPS:
        return f"{name} added no quantized op (ops before and after: {sum(ops.values())} nodes, no Q/DQ or integer op)"
    return None


def same_graph(export_model: str | Path, artifact_model: str | Path) -> bool:
    """The artifact computes exactly what the export does: same ops, wiring and weights (shape
    annotations aside)."""
    from pipeline.onnx_utils import file_stats
    from pipeline.passes.base import signature

    a, b = file_stats(export_model), file_stats(artifact_model)
    if a["ops"] != b["ops"]:
        return False
    sa, sb = signature(Path(export_model)), signature(Path(artifact_model))
    return all(sa[k] == sb[k] for k in ("ops", "opsets", "wiring", "weights"))


def unchanged_reason(quantization: Mapping[str, Any] | None, export_model: Path, artifact_model: Path) -> str | None:
    """Why the build is unchanged, or None."""
    reason = nothing_quantized(quantization)
    if reason is not None:
        return reason
    if same_graph(export_model, artifact_model):
        return "the artifact's graph equals the fp32 export (same ops, wiring and weights)"
    return None


# ---------------------------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def speed_phrase(label: str, speedup: float, build_p50: float, ref_p50: float, interval: Sequence[float]) -> str:
    lo, hi = interval
    return (
        f"{label} is {speedup:.2f}x the fp32 export (p50 {_ms(build_p50)} vs {_ms(ref_p50)} ms, "
        f"noise {lo:.2f}-{hi:.2f}x)"
    )


def decide(metrics: Mapping[str, Any], unchanged: str | None = None) -> dict[str, str]:
    """``{verdict, verdict_reason}`` from a build's metrics (speedup, latency, ``speedup_noise``,
    gates) and the reason it is unchanged (or None)."""
    from pipeline.evaluate.gates import metric_value

    label = f"{metric_value(metrics, 'build.quantization') or 'the'} build"
    speedup = float(metrics["speedup"])
    interval = metric_value(metrics, "speedup_noise.interval") or [speedup, speedup]
    phrase = speed_phrase(
        label, speedup, float(metrics["latency_ms"]["p50"]), float(metrics["reference"]["latency_ms"]["p50"]), interval
    )
    failures = list(metric_value(metrics, "gates.failures") or [])
    if failures:
        return {"verdict": FAILS_GATES, "verdict_reason": f"{phrase}; fails gates: {'; '.join(failures)}"}
    gates = "gates pass" if metric_value(metrics, "gates.checked") else "no gates set"
    if unchanged is not None:
        return {"verdict": UNCHANGED, "verdict_reason": f"{phrase}: unchanged, {unchanged}; {gates}"}
    if beats(interval):
        return {"verdict": FASTER, "verdict_reason": f"{phrase}: faster beyond noise; {gates}"}
    slower = "slower" if interval[1] < 1.0 else "within noise"
    return {"verdict": NOT_FASTER, "verdict_reason": f"{phrase}: not faster ({slower}); {gates}"}


def verdict_for_failure(reason: str) -> dict[str, str]:
    """The verdict of a build whose stages crashed (no metrics): ``reason`` is the one-line error."""
    return {"verdict": FAILED, "verdict_reason": f"the build failed: {reason}"}


def build_verdict(metrics: Mapping[str, Any], artifact_dir: str | Path, export_dir: str | Path) -> dict[str, str]:
    """:func:`decide` for a build on disk: reads ``artifact_dir/quantization.json`` (when present)
    and compares the artifact with the export for ``unchanged``."""
    import json

    from pipeline.onnx_utils import model_path

    qfile = Path(artifact_dir) / "quantization.json"
    quantization = json.loads(qfile.read_text()) if qfile.is_file() else None
    return decide(metrics, unchanged_reason(quantization, model_path(export_dir), model_path(artifact_dir)))
