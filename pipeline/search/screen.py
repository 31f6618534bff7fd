"""Measuring candidates: fidelity on reference samples, latency interleaved with the fp32 export,
and the build's own gates on a metrics dict shaped like :func:`pipeline.evaluate.metrics.evaluate_build`'s.

Fidelity comes from :func:`pipeline.evaluate.metrics.quality_metrics` (the evaluate stage's own
code); latency from :func:`pipeline.evaluate.latency.measure_interleaved` under the host-wide
benchmark lock, every candidate and the export in one run, so their ratios share the noise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

QUALITY_PREFIXES = ("fidelity.", "accuracy.", "custom.")  # gates a mixed-precision step must make hold


def candidate_metrics(
    task: str, quality: Mapping[str, Any], speed: Mapping[str, Any] | None, size_mb: float
) -> dict[str, Any]:
    """The metrics dict the build's gates read (same paths as the evaluate stage writes)."""
    metrics: dict[str, Any] = {"build": {"task": task}, "model_size_mb": size_mb, **quality}
    if speed is not None:
        metrics["speedup"] = speed["speedup"]
        metrics["latency_ms"] = {"p50": speed["p50_ms"], "p90": speed["p90_ms"], "p99": speed["p99_ms"]}
    return metrics


def gate_result(metrics: Mapping[str, Any], gates: Any) -> dict[str, Any]:
    """``gates_passed`` (every gate), ``quality_passed`` (fidelity, accuracy and custom-metric gates)
    and the failure lines of each."""
    from pipeline.evaluate.gates import evaluate_gates

    result = evaluate_gates(metrics, gates)
    # every failure line starts with the metric's path (gates.evaluate_gates)
    quality_failures = [f for f in result["failures"] if f.startswith(QUALITY_PREFIXES)]
    return {
        "gates_passed": result["passed"],
        "quality_passed": not quality_failures,
        "failures": result["failures"],
        "quality_failures": quality_failures,
    }


def headline_fidelity(quality: Mapping[str, Any]) -> dict[str, Any]:
    """Fidelity and accuracy figures without the per-output breakdown (kept small in search.json)."""
    fid = {k: v for k, v in (quality.get("fidelity") or {}).items() if k != "per_output"}
    acc = quality.get("accuracy")
    if acc:
        fid.update({f"accuracy_{k}": v for k, v in acc.items() if k in ("top1", "drop")})
    return fid


class Bench:
    """Sessions of the build's target over the reference samples of the export."""

    def __init__(self, build: Any, model_spec: Any, export_dir: Path, log: logging.Logger) -> None:
        from pipeline.evaluate.metrics import REFERENCE_FILE, Reference
        from pipeline.onnx_utils import model_path
        from pipeline.targets import get_target

        self.build = build
        self.model_spec = model_spec
        self.log = log
        self.target = get_target(build.target.name)
        self.params = build.target.params
        self.ref = Reference(Path(export_dir) / REFERENCE_FILE)
        self.export = model_path(export_dir)

    def session(self, path: Path) -> Any:
        return self.target.session(path, self.params)

    def quality(self, path: Path, samples: int) -> dict[str, Any]:
        from pipeline.evaluate.metrics import quality_metrics

        return quality_metrics(self.session(path), self.ref, samples, self.model_spec, self.log, build=self.build)

    def speed(self, paths: Mapping[str, Path], warmup: int, runs: int, blocks: int) -> dict[str, Any]:
        """One interleaved run of the export and every model in ``paths``: per name
        ``{p50_ms, p90_ms, p99_ms, speedup, interval, block_medians_ms}`` and ``reference``."""
        import statistics

        from pipeline.evaluate.fidelity import cast_feeds, fixed_batch
        from pipeline.evaluate.latency import benchmark_lock, block_sizes, measure_interleaved, stats_ms
        from pipeline.evaluate.verdict import speed_noise
        from pipeline.execution import one_at_a_time, step_feeds

        sessions = {"reference": self.session(self.export)}
        sessions.update({name: self.session(path) for name, path in paths.items()})
        batch = 1 if one_at_a_time(self.model_spec) else fixed_batch(sessions["reference"]) or self.build.evaluate.batch_size
        # a stream: the feed of its middle step (state included); else ``batch`` samples
        inputs = step_feeds(sessions["reference"], self.ref.inputs, self.model_spec, batch)
        feeds = {name: (s, cast_feeds(s, inputs)) for name, s in sessions.items()}
        with benchmark_lock(log=self.log):
            times = measure_interleaved(feeds, warmup, runs, blocks)
        sizes = block_sizes(runs, blocks)
        out: dict[str, Any] = {}
        ref_stats = stats_ms(times["reference"], batch)
        for name, ns in times.items():
            st = stats_ms(ns, batch)
            medians, start = [], 0
            for size in sizes:
                medians.append(statistics.median(ns[start : start + size]) / 1e6)
                start += size
            row = {"p50_ms": st["p50"], "p90_ms": st["p90"], "p99_ms": st["p99"], "block_medians_ms": medians}
            if name != "reference":
                row["speedup"] = ref_stats["p50"] / st["p50"]
                row["interval"] = speed_noise(times["reference"], ns, len(sizes))["interval"]
            out[name] = row
        return out
