"""Static calibration in bounded memory: estimate, plan, and chunked collection of tensor ranges.

ONNX Runtime's calibrators keep every intermediate output of every calibration sample until the end
(histogram methods: every calibrated tensor, whole; 64 pages of 480x480 through a text detector took
12.5 GB). Here the samples are fed in chunks whose size follows from a memory budget:

- **Estimate** (:func:`estimate_activations`): the bytes of the float tensors the graph's nodes
  produce for one sample, from ONNX shape inference with the inputs fixed to one sample's shape; a
  tensor whose shape inference cannot tell (data-dependent shapes) is measured in one probe run.
- **Plan** (:func:`plan`): session batch and chunk (samples collected before they are reduced) so
  that calibration inputs + session working memory + collected outputs stay within the budget.
  MinMax keeps two numbers per tensor and sample, so only its batch is bounded; the histogram
  methods (entropy, percentile) keep whole tensors for a chunk and copy one tensor at a time
  (``HISTOGRAM_COPIES``) while binning. A budget that cannot hold even one sample is a ConfigError
  before anything runs.
- **Collect** (:func:`collect_ranges`): ONNX Runtime's own calibrators, fed chunk by chunk. MinMax
  merges chunk minima/maxima (exact). The histogram methods first take every tensor's global
  range in one extra pass (reduced batch by batch, nothing kept), then seed ONNX Runtime's histogram
  collector with the bin edges a single unchunked collection would have chosen: every chunk then
  bins into the same edges, so the ranges are the same as unchunked calibration's and independent
  of the chunk size (the budget never changes the artifact).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

GIB = 1024**3
AUTO_CAP_GB = 2.0  # default budget: at most this ...
AUTO_SHARE = 0.5  # ... and at most this share of the RAM available when calibration starts
SESSION_MAX_BATCH = 16  # samples per session run at most
# ONNX Runtime's working memory per sample in a calibration run, as a multiple of the summed float
# activations (measured on PP-OCRv4 det at 480x480, minmax-augmented graph: 0.75 GB per sample in
# the run against 0.375 GB of activations; the CPU arena grows in powers of two)
SESSION_FACTOR = 2
HISTOGRAM_COPIES = 3  # np.asarray of a chunk's list, its flatten, and abs/histogram temporaries
_FLOAT_TYPES = {1: 4, 10: 2, 11: 8, 16: 2}  # ONNX float, float16, double, bfloat16 -> bytes
HISTOGRAM_METHODS = ("entropy", "percentile")


@dataclass(frozen=True)
class Estimate:
    """Float activations of one sample: total and largest tensor (bytes), how many, and how known."""

    per_sample: int
    largest: int
    tensors: int
    source: str  # "shape inference" or "shape inference + probe run"


@dataclass(frozen=True)
class Plan:
    """How calibration runs within ``budget`` bytes (``need``: the planned peak under the model)."""

    method: str
    budget: int
    budget_source: str
    inputs: int  # bytes of the calibration inputs, held throughout
    samples: int
    batch: int  # samples per session run
    chunk: int  # samples whose outputs are collected before they are merged
    need: int

    @property
    def chunks(self) -> int:
        return -(-self.samples // self.chunk)

    def info(self, estimate: Estimate) -> dict[str, Any]:
        """The plan for quantization.json."""
        mb = 1024**2
        return {
            "budget_gb": round(self.budget / GIB, 3),
            "budget_source": self.budget_source,
            "activation_mb_per_sample": round(estimate.per_sample / mb, 2),
            "largest_tensor_mb": round(estimate.largest / mb, 2),
            "tensors": estimate.tensors,
            "estimate_source": estimate.source,
            "inputs_mb": round(self.inputs / mb, 2),
            "batch": self.batch,
            "chunk_samples": self.chunk,
            "chunks": self.chunks,
            "planned_peak_gb": round(self.need / GIB, 3),
        }


def budget_bytes(memory_budget_gb: float | None) -> tuple[int, str]:
    """The budget in bytes and where it came from (set, or derived from the available RAM)."""
    if memory_budget_gb is not None:
        return int(memory_budget_gb * GIB), "set"
    import psutil

    available = psutil.virtual_memory().available
    return int(min(AUTO_CAP_GB * GIB, AUTO_SHARE * available)), (
        f"auto: min({AUTO_CAP_GB} GB, {AUTO_SHARE:.0%} of the available RAM)"
    )


def peak_bytes(method: str, estimate: Estimate, inputs: int, batch: int, chunk: int) -> int:
    """Planned peak: inputs + one run's activations (+ a chunk's kept outputs and binning copies)."""
    need = inputs + SESSION_FACTOR * batch * estimate.per_sample
    if method in HISTOGRAM_METHODS:
        need += chunk * (estimate.per_sample + HISTOGRAM_COPIES * estimate.largest)
    return need


def plan(
    method: str,
    estimate: Estimate,
    inputs: int,
    samples: int,
    budget: int,
    budget_source: str,
    key: str,
    source: str | None = None,
    fixed_batch: int | None = None,
) -> Plan:
    """The largest batch (up to ``SESSION_MAX_BATCH``, or the model's ``fixed_batch``) and chunk
    that fit ``budget``; a ConfigError naming ``key.memory_budget_gb`` / ``key.num_samples`` when
    not even one sample fits."""
    gb = GIB
    if inputs >= budget:
        raise ConfigError(
            f"the {samples} calibration samples alone take {inputs / gb:.2f} GB of the "
            f"{budget / gb:.2f} GB memory budget ({budget_source}): lower {key}.num_samples or raise "
            f"{key}.memory_budget_gb",
            key=f"{key}.num_samples",
            source=source,
        )
    free = budget - inputs
    unit = peak_bytes(method, estimate, 0, 1, 1)
    if fixed_batch is not None:
        batch = fixed_batch
    else:
        batch = max(0, min(SESSION_MAX_BATCH, samples, free // max(unit, 1)))
    if batch < 1 or peak_bytes(method, estimate, inputs, batch, batch) > budget:
        per = peak_bytes(method, estimate, 0, max(batch, 1), max(batch, 1))
        raise ConfigError(
            f"{method} calibration needs about {per / gb:.2f} GB for {max(batch, 1)} sample(s) "
            f"({estimate.per_sample / gb:.3f} GB of activations each, by {estimate.source}) beside "
            f"{inputs / gb:.2f} GB of calibration inputs, over the {budget / gb:.2f} GB budget "
            f"({budget_source}): raise {key}.memory_budget_gb (or lower {key}.num_samples)",
            key=f"{key}.memory_budget_gb",
            source=source,
        )
    if method in HISTOGRAM_METHODS:
        per_sample_kept = estimate.per_sample + HISTOGRAM_COPIES * estimate.largest
        room = (free - SESSION_FACTOR * batch * estimate.per_sample) // max(per_sample_kept, 1)
        chunk = max(batch, min(samples, room) // batch * batch)
    else:
        chunk = max(batch, -(-samples // batch) * batch)
    chunk = min(chunk, max(samples, batch))
    need = peak_bytes(method, estimate, inputs, batch, chunk)
    return Plan(method, budget, budget_source, inputs, samples, batch, chunk, need)


def estimate_activations(path: Path, sample: dict[str, np.ndarray], log: logging.Logger | None = None) -> Estimate:
    """Float activations of one sample (``sample``: one sample per input, batch axis kept)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {init.name for init in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in sample and inp.name not in inits:
            dims = inp.type.tensor_type.shape.dim
            for dim, value in zip(dims, sample[inp.name].shape, strict=False):
                dim.Clear()
                dim.dim_value = int(value)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # a model that onnx cannot infer at all: measure everything
        if log is not None:
            log.info("calibration estimate: shape inference failed (%s); probing", exc)
        inferred = model
    infos = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    sizes: dict[str, int] = {}
    unknown: list[str] = []
    for node in inferred.graph.node:
        for name in node.output:
            if not name or name in sizes:
                continue
            vi = infos.get(name)
            if vi is None or not vi.type.HasField("tensor_type"):
                unknown.append(name)
                continue
            tt = vi.type.tensor_type
            if tt.elem_type not in _FLOAT_TYPES:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if not tt.HasField("shape") or any(d < 0 for d in dims):
                unknown.append(name)
                continue
            count = 1
            for d in dims:
                count *= d
            sizes[name] = count * _FLOAT_TYPES[tt.elem_type]
    source = "shape inference"
    if unknown:
        sizes.update(_probe(path, sample, unknown))
        source = "shape inference + probe run"
    return Estimate(sum(sizes.values()), max(sizes.values(), default=0), len(sizes), source)


def _probe(path: Path, sample: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, int]:
    """Bytes of the float tensors ``names`` in one run of ``sample`` (each made a graph output)."""
    import tempfile

    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    present = {out.name for out in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with tempfile.TemporaryDirectory(prefix="onnxbuild-probe-") as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe), save_as_external_data=model.ByteSize() > 1_800_000_000)
        session = ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: sample[i.name] for i in session.get_inputs()}
        outputs = session.run(list(names), feeds)
    return {
        name: int(value.nbytes)
        for name, value in zip(names, outputs, strict=True)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    }


def collect_ranges(
    model: Path,
    chunks: Sequence[Sequence[dict[str, np.ndarray]]],
    method: str,
    op_types: Sequence[str],
    options: dict[str, Any],
    external: bool,
    work_dir: Path,
) -> Any:
    """Tensor ranges (onnxruntime ``TensorsData``) from ONNX Runtime's calibrator for ``method``,
    fed ``chunks`` of feeds one at a time; ``options`` are create_calibrator's extra options."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from pipeline.quantization.calibration import data_reader

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    augmented = work_dir / f"augmented_{method}.onnx"
    calibrator = create_calibrator(
        model,
        list(op_types),
        augmented_model_path=str(augmented),
        calibrate_method=methods[method],
        use_external_data_format=external,
        extra_options=dict(options),
    )
    try:
        if method in HISTOGRAM_METHODS:
            _seed_histograms(calibrator, [feed for chunk in chunks for feed in chunk])
        for chunk in chunks:
            calibrator.collect_data(data_reader(list(chunk)))
        return calibrator.compute_data()
    finally:
        calibrator.infer_session = None
        for leftover in work_dir.glob(f"{augmented.name}*"):
            leftover.unlink()


def _seed_histograms(calibrator: Any, feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """Give ONNX Runtime's histogram collector, before any chunk, the edges that one unchunked
    collection would choose: the global range of each tensor, reduced batch by batch."""
    import numpy as np
    from onnxruntime.quantization.calibrate import HistogramCollector

    absolute = calibrator.method == "percentile" and calibrator.symmetric  # HistogramCollector.collect
    names = [out.name for out in calibrator.infer_session.get_outputs()]
    wanted = [(i, name) for i, name in enumerate(names) if name in calibrator.tensors_to_calibrate]
    ranges: dict[str, list[Any]] = {}
    for feed in feeds:
        outputs = calibrator.infer_session.run(None, feed)
        for i, name in wanted:
            arr = outputs[i]
            if arr.size == 0:
                continue
            found = [np.nanmin(arr), np.nanmax(arr)]
            if absolute:
                magnitude = np.absolute(arr)
                found += [magnitude.min(), magnitude.max()]
            old = ranges.get(name)
            ranges[name] = found if old is None else [
                min(old[0], found[0]), max(old[1], found[1]), *([min(old[2], found[2]), max(old[3], found[3])] if absolute else [])
            ]
        del outputs
    bins = calibrator.num_bins
    collector = HistogramCollector(
        method=calibrator.method,
        symmetric=calibrator.symmetric,
        num_bins=bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=calibrator.percentile,
        scenario=calibrator.scenario,
    )
    for name, found in ranges.items():
        low, high = found[0], found[1]
        dtype = np.asarray(low).dtype
        if absolute:
            edges = np.histogram(np.array(found[2:4], dtype=dtype), bins=bins)[1].astype(dtype)
            collector.histogram_dict[name] = (np.zeros(bins, dtype=np.int64), edges, low, high)
        else:
            threshold = np.array(max(abs(low), abs(high)), dtype=dtype)
            edges = np.histogram(np.empty(0, dtype=dtype), bins, range=(-threshold, threshold))[1]
            collector.histogram_dict[name] = (np.zeros(bins, dtype=np.int64), edges, low, high, threshold)
    calibrator.collector = collector
