"""Evaluate one build on its target: latency (interleaved with the fp32 reference), size, fidelity,
accuracy, environment and gates, as one metrics dict (written to ``metrics/builds/<build>.json``).

Needs no framework: the source model's outputs are in ``export/reference.npz``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, StageError, first_line
from pipeline.evaluate.environment import environment
from pipeline.evaluate.fidelity import (
    accuracy,
    compare,
    fixed_batch,
    match_outputs,
)
from pipeline.evaluate.custom_metrics import run_custom_metrics
from pipeline.evaluate.gates import TASK_METRICS, evaluate_gates
from pipeline.evaluate.latency import benchmark_lock, measure_interleaved, stats_ms
from pipeline.evaluate.reference_check import degenerate_outputs, describe
from pipeline.evaluate.task_metrics import class_scores, task_fidelity
from pipeline.evaluate.verdict import build_verdict, speed_noise
from pipeline.execution import cast_for, one_at_a_time, run_samples, step_feeds
from pipeline.onnx_utils import file_stats, model_path, model_size_mb

REFERENCE_FILE = "reference.npz"
LATENCY_KEYS = ("mean", "std", "min", "p50", "p90", "p99", "max")
BLOCKS = 10  # alternating reference/build blocks per latency measurement


HEADLINE = (
    ("p50_ms", "latency_ms.p50"),
    ("p90_ms", "latency_ms.p90"),
    ("p99_ms", "latency_ms.p99"),
    ("speedup", "speedup"),
    ("size_mb", "model_size_mb"),
    ("cosine_min", "fidelity.cosine_min"),
    ("top1_agreement", "fidelity.top1_agreement"),
    # the task-true fidelity figures (only the model's task's are present)
    *dict.fromkeys(
        (name, path)
        for figures in TASK_METRICS.values()
        for name, path in figures.items()
        if path.startswith("fidelity.") and name != "top1_agreement"
    ),
    ("top1", "accuracy.top1"),
    ("accuracy_drop", "accuracy.drop"),
    ("gates_passed", "gates.passed"),
    ("verdict", "verdict"),
    ("host", "environment.host.id"),  # where the numbers were measured (the report compares it with here)
)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few flat numbers a person compares across builds (for a readable ``dvc metrics show``)."""
    from pipeline.evaluate.gates import metric_value

    out = {}
    for key, path in HEADLINE:
        value = metric_value(metrics, path)
        if value is not None:
            out[key] = value
    return out


class Reference:
    """``reference.npz``: inputs, the source framework's outputs, optional labels."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StageError("evaluate", "reference", f"{path} not found: run the export stage first")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:
            raise StageError("evaluate", "reference", f"cannot read {path}: {exc}") from None
        self.inputs = {k[len("input/") :]: v for k, v in arrays.items() if k.startswith("input/")}
        self.outputs = {k[len("output/") :]: v for k, v in arrays.items() if k.startswith("output/")}
        self.labels = arrays.get("labels")
        if not self.inputs or not self.outputs:
            raise StageError(
                "evaluate", "reference", f"{path} needs input/<name> and output/<name> arrays, has {sorted(arrays)}"
            )
        lengths = {len(v) for v in [*self.inputs.values(), *self.outputs.values()]}
        if len(lengths) != 1:
            raise StageError("evaluate", "reference", f"{path}: arrays have different sample counts {sorted(lengths)}")
        self.num_samples = lengths.pop()

    def take_inputs(self, n: int) -> dict[str, np.ndarray]:
        return {k: v[:n] for k, v in self.inputs.items()}

    def batch(self, size: int) -> dict[str, np.ndarray]:
        """``size`` samples for latency runs (wrapping around when there are fewer samples)."""
        idx = np.arange(size) % self.num_samples
        return {k: np.ascontiguousarray(v[idx]) for k, v in self.inputs.items()}


def _session(target: Any, path: Path, params: Any, what: str) -> Any:
    if not path.is_file():
        raise StageError("evaluate", "load", f"{what} {path} not found")
    try:
        return target.session(path, params)
    except ConfigError:
        raise
    except Exception as exc:
        first = first_line(exc)
        raise StageError("evaluate", "load", f"ONNX Runtime cannot load {what} {path}: {first}") from None


def _latency_batch(session: Any, batch_size: int, key: str) -> int:
    fixed = fixed_batch(session)
    if fixed is not None and fixed != batch_size:
        raise ConfigError(
            f"the model's batch dim is fixed at {fixed}, so evaluate.batch_size must be {fixed} "
            f"(or export with dynamic: true); got {batch_size}",
            key=key,
        )
    return batch_size


def read_quantized_nodes(artifact_dir: str | Path) -> dict[str, int] | None:
    """``{total, in_subgraphs}``: the quantization nodes the quantize stage added (its quantization.json)."""
    import json

    path = Path(artifact_dir) / "quantization.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    if "quantized_nodes" not in info:
        return None
    return {"total": int(info["quantized_nodes"]), "in_subgraphs": int(info.get("quantized_in_subgraphs", 0))}


def read_search(artifact_dir: str | Path) -> dict[str, Any] | None:
    """The search record (``search.json``) an ``auto`` build left in its artifact folder, summarised."""
    from pipeline.search.record import summary

    return summary(Path(artifact_dir))


def quality_metrics(
    session: Any, ref: Reference, samples: int, model_spec: Any, log: logging.Logger, build: Any = None
) -> dict[str, Any]:
    """``{"fidelity": ..., "accuracy": ..., "custom": ...}`` of ``session`` on ``samples`` reference
    samples, exactly as :func:`evaluate_build` measures them, with the model's and the ``build``'s
    custom metrics (the search evaluates its candidates' gates with it)."""
    custom_specs = [*model_spec.metrics, *(build.evaluate.metrics if build is not None else [])]
    fid, acc, custom = _fidelity_and_accuracy(session, ref, samples, model_spec, log, custom_specs)
    return {"fidelity": fid, **custom} if acc is None else {"fidelity": fid, "accuracy": acc, **custom}


def _fidelity_and_accuracy(
    session: Any, ref: Reference, samples: int, model_spec: Any, log: logging.Logger, custom: Any = ()
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """``(fidelity, accuracy or None, {"custom": ..., "custom_errors": ...})``: the generic and the
    task's fidelity figures, top-1 accuracy (classification with labels) and the ``custom`` metrics."""
    classification = model_spec.task == "classification"
    n_fid = min(samples, ref.num_samples)
    if n_fid < samples:
        log.warning("reference.npz holds %d samples; fidelity uses %d (asked for %d)", ref.num_samples, n_fid, samples)
    use_labels = ref.labels is not None and classification
    if ref.labels is not None and not classification:
        log.info("reference.npz has labels but the task is not classification: no top-1 accuracy")
    n_run = ref.num_samples if use_labels else n_fid
    try:  # batches, or one sample / stream at a time (pipeline.execution)
        outputs = run_samples(session, ref.take_inputs(n_run), model_spec)
    except ValueError as exc:
        raise StageError("evaluate", "fidelity", str(exc)) from None
    fid = compare({k: v[:n_fid] for k, v in outputs.items()}, {k: v[:n_fid] for k, v in ref.outputs.items()})
    if len(fid["per_output"]) < 2:
        del fid["per_output"]  # one output: identical to the totals
    # the task's figures, per sample, on its output (fidelity.output, else the first reference output)
    build_out = {ref_name: outputs[out_name] for out_name, ref_name in match_outputs(outputs, ref.outputs)}
    build_n = {k: v[:n_fid] for k, v in build_out.items()}
    ref_n = {k: v[:n_fid] for k, v in ref.outputs.items()}
    inputs_n = ref.take_inputs(n_fid)
    stream = getattr(model_spec, "stream", None) is not None
    task_figures = task_fidelity(model_spec.task, ref_n, build_n, inputs_n, model_spec.fidelity, stream)
    fid.update(task_figures)
    log.info("%s fidelity of output '%s': %s", model_spec.task, task_figures["output"], ", ".join(
        f"{k} {v:.6g}" for k, v in task_figures.items() if k not in ("task", "output")))
    fid["reference_degenerate"] = degenerate_outputs(ref.outputs)
    if fid["reference_degenerate"]:
        log.warning("%s: its fidelity, accuracy and custom gates cannot pass", describe(fid["reference_degenerate"]))
    extra: dict[str, Any] = {}
    if custom:
        labels_n = None if ref.labels is None else ref.labels[:n_fid]
        extra["custom"], errors = run_custom_metrics(custom, ref_n, build_n, inputs_n, labels_n, log)
        if errors:
            extra["custom_errors"] = errors
    first_out, first_ref = (class_scores(o[fid["output"]], stream, model_spec.fidelity.class_axis)
                            for o in (build_out, ref.outputs))
    acc = None
    if use_labels:
        top1 = accuracy(first_out, ref.labels)
        source = accuracy(first_ref, ref.labels)
        acc = {"top1": top1, "source_top1": source, "drop": source - top1, "samples": int(ref.num_samples)}
    return fid, acc, extra


def evaluate_build(
    build: Any,
    model_spec: Any,
    artifact_dir: str | Path,
    export_dir: str | Path,
    log: logging.Logger | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Measure the build in ``artifact_dir`` against the fp32 export in ``export_dir``; the metrics dict.

    ``build`` is a validated :class:`pipeline.schema.BuildSpec`, ``model_spec`` its ModelSpec.
    Gates are evaluated into ``metrics["gates"]`` (never raised here).
    """
    from pipeline.targets import get_target

    log = log or logging.getLogger("onnxbuild.evaluate")
    where = f"builds.{name}" if name else "build"
    artifact_dir, export_dir = Path(artifact_dir), Path(export_dir)
    spec = build.evaluate
    params = build.target.params
    target = get_target(build.target.name, key=f"{where}.target.name")
    target.check_available(params, key=f"{where}.target.name")

    ref = Reference(export_dir / REFERENCE_FILE)
    artifact = model_path(artifact_dir)
    build_sess = _session(target, artifact, params, "build artifact")
    ref_sess = _session(target, model_path(export_dir), params, "reference export")

    log.info("fidelity on %d held-out samples", min(spec.fidelity_samples, ref.num_samples))
    try:
        fidelity, acc, custom = _fidelity_and_accuracy(
            build_sess, ref, spec.fidelity_samples, model_spec, log, [*model_spec.metrics, *spec.metrics]
        )
    except ConfigError as exc:  # the model spec's task / fidelity keys
        key = exc.key if (exc.key or "").startswith(("models.", "builds.")) else f"models.{build.model}.{exc.key or 'task'}"
        raise ConfigError(exc.reason, key=key, choices=exc.choices) from None

    if one_at_a_time(model_spec):  # streams, constants, other batch axes: batch 1 (a stream: per step)
        batch = 1
    else:
        batch = _latency_batch(build_sess, spec.batch_size, f"{where}.evaluate.batch_size")
        _latency_batch(ref_sess, spec.batch_size, f"{where}.evaluate.batch_size")
    inputs = step_feeds(ref_sess, ref.inputs, model_spec, spec.batch_size, key=f"{where}.evaluate.batch_size")
    sessions = {
        "reference": (ref_sess, cast_for(ref_sess, inputs)),
        "build": (build_sess, cast_for(build_sess, inputs)),
    }
    with benchmark_lock(log=log) as lock:
        log.info("latency: %d warm-up + %d timed runs at batch %d (lock %s)", spec.warmup, spec.runs, batch, lock)
        times = measure_interleaved(sessions, spec.warmup, spec.runs, BLOCKS)
    build_stats = stats_ms(times["build"], batch)
    ref_stats = stats_ms(times["reference"], batch)

    metrics: dict[str, Any] = {
        "build": {
            "name": name,
            "model": build.model,
            "task": model_spec.task,
            "passes": [p.name for p in build.passes],
            "quantization": build.quantization.name,
            "target": build.target.name,
        },
        "latency_ms": {k: build_stats[k] for k in LATENCY_KEYS},
        "throughput_per_s": build_stats["throughput_per_s"],
        "benchmark": {
            "warmup": spec.warmup,
            "runs": spec.runs,
            "batch_size": batch,
            "blocks": min(BLOCKS, spec.runs),
            "method": "per-run perf_counter_ns, reference and build in alternating blocks, no trimming",
            # a stream's latency is one step's (its middle step, state included)
            **({"per": "step", "steps": model_spec.stream.steps} if getattr(model_spec, "stream", None) else {}),
        },
        "reference": {
            "latency_ms": {k: ref_stats[k] for k in LATENCY_KEYS},
            "throughput_per_s": ref_stats["throughput_per_s"],
            "model_size_mb": model_size_mb(model_path(export_dir)),
            "num_nodes": file_stats(model_path(export_dir))["num_nodes"],
        },
        "speedup": ref_stats["p50"] / build_stats["p50"],
        "model_size_mb": model_size_mb(artifact),
        "num_nodes": file_stats(artifact)["num_nodes"],
        "fidelity": fidelity,
        "environment": environment(target.describe(params), name, artifact_dir),
    }
    if acc is not None:
        metrics["accuracy"] = acc
    metrics.update(custom)
    metrics["speedup_noise"] = speed_noise(times["reference"], times["build"], BLOCKS)
    search = read_search(artifact_dir)
    if search is not None:
        metrics["search"] = search
    quantized = read_quantized_nodes(artifact_dir)
    if quantized is not None:
        metrics["quantized_nodes"] = quantized
    metrics["gates"] = evaluate_gates(metrics, spec.gates)
    metrics.update(build_verdict(metrics, artifact_dir, export_dir))
    log.info(
        "p50 %.3f ms (reference %.3f ms, speedup %.2fx), cosine_min %.6f%s",
        build_stats["p50"],
        ref_stats["p50"],
        metrics["speedup"],
        fidelity["cosine_min"],
        f", top1 {acc['top1']:.4f} (source {acc['source_top1']:.4f})" if acc else "",
    )
    return metrics
