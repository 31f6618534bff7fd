"""Calibration data for static quantization.

Where samples come from, in order: the quantizer's ``calibration.dataset``, the model's
``calibration`` factory, or random samples from the model's input ranges (``pipeline.data.sample_inputs``;
random noise calibrates poorly, and the info says which source was used).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.quantization.base import QuantContext
    from pipeline.schema import Factory, InputSpec, ModelSpec

# ONNX TensorProto element type -> numpy dtype name
_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 9: "bool", 2: "uint8", 3: "int8"}
_SPEC_DTYPES = {"float32", "float16", "int64", "int32", "bool"}


def graph_inputs(path: Path) -> list[tuple[str, str, list[int | str]]]:
    """``(name, numpy dtype, shape)`` of the model's real inputs (initializers excluded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {init.name for init in model.graph.initializer}
    found = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch") for d in tt.shape.dim
        ]
        found.append((inp.name, _ONNX_DTYPES.get(tt.elem_type, "float32"), shape))
    return found


def _specs_from_graph(path: Path) -> list[InputSpec]:
    from pipeline.schema import InputSpec

    specs = []
    for name, dtype, shape in graph_inputs(path):
        specs.append(InputSpec(name=name, dtype=dtype if dtype in _SPEC_DTYPES else "float32", shape=shape))
    return specs


def calibration_samples(
    path: Path, dataset: Factory | None, num_samples: int, seed: int, ctx: QuantContext
) -> tuple[dict[str, np.ndarray], str]:
    """Up to ``num_samples`` inputs for ``path`` (batch axis first) and where they came from."""
    from pipeline.data import load_samples, sample_inputs

    from pipeline.execution import state_inputs

    spec = ctx.model_spec
    fed = {i.name for i in (spec.inputs or []) if i.value is not None} | set(state_inputs(spec)) if spec else set()
    wanted = [w for w in graph_inputs(path) if w[0] not in fed]  # constants and states are fed, not sampled
    if dataset is not None:
        samples = load_samples(dataset, key=f"{ctx.key}.calibration.dataset", source=ctx.source)
        arrays, origin = samples.take(num_samples).inputs, f"dataset {dataset.target}"
        key = f"{ctx.key}.calibration.dataset"
    elif ctx.model_spec is not None and ctx.model_spec.calibration is not None:
        factory = ctx.model_spec.calibration
        samples = load_samples(factory, key=f"{ctx.model_key}.calibration", source=ctx.source)
        arrays, origin = samples.take(num_samples).inputs, f"model calibration {factory.target}"
        key = f"{ctx.model_key}.calibration"
    else:
        specs = ctx.model_spec.inputs if ctx.model_spec is not None and ctx.model_spec.inputs else None
        dims = dict(ctx.dims)
        for _, _, shape in wanted:  # symbolic dims of an ONNX source that the recipe does not name
            for dim in shape:
                if isinstance(dim, str):
                    dims.setdefault(dim, 1)
        stream = ctx.model_spec.stream if ctx.model_spec is not None else None
        arrays = sample_inputs(specs or _specs_from_graph(path), dims, num_samples, seed=seed, stream=stream)
        origin = "random samples from the input ranges"
        key = f"{ctx.model_key}.inputs"
        ctx.log.warning("calibrating on random inputs: accuracy after static quantization may suffer")
    names = [name for name, _, _ in wanted]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ConfigError(
            f"calibration data lacks model input(s) {missing} (it has {sorted(arrays)})",
            key=key,
            source=ctx.source,
            choices=names,
        )
    out = {name: arrays[name].astype(dtype, copy=False) for name, dtype, _ in wanted}
    count = len(next(iter(out.values()))) if out else 0
    if count == 0:
        raise ConfigError("calibration data is empty", key=key, source=ctx.source)
    if count < num_samples:
        ctx.log.info("calibration: %d samples available (asked for %d)", count, num_samples)
    return out, origin


def batches(
    path: Path, arrays: dict[str, np.ndarray], max_batch: int = 16, model_spec: ModelSpec | None = None
) -> list[dict[str, np.ndarray]]:
    """Split the samples into feeds the model accepts: one sample at a time when the batch dim is
    fixed; a model that runs one sample at a time (stream, constant inputs, other batch axes) gets
    ``pipeline.execution.calibration_feeds`` (a stream: one feed per step, state from an fp32 run)."""
    from pipeline.execution import calibration_feeds, cpu_session, one_at_a_time

    if one_at_a_time(model_spec):
        return calibration_feeds(cpu_session(path), arrays, model_spec)
    fixed = [shape[0] for _, _, shape in graph_inputs(path) if shape and isinstance(shape[0], int) and shape[0] > 0]
    count = len(next(iter(arrays.values())))
    if fixed:  # a fixed batch dim: whole batches only (a remainder would not fit the model)
        size, stop = fixed[0], max(count - fixed[0] + 1, 1)
    else:
        size, stop = max_batch, count
    return [{k: v[i : i + size] for k, v in arrays.items()} for i in range(0, stop, size)]


def first_sample(path: Path, arrays: dict[str, np.ndarray], model_spec: ModelSpec | None = None) -> dict[str, np.ndarray]:
    """One sample as the model takes it (batch axis kept), for estimating its activations: the
    first row of each array, or for a one-at-a-time model its first feed (a stream's first step)."""
    from pipeline.execution import calibration_feeds, cpu_session, one_at_a_time

    first = {k: v[:1] for k, v in arrays.items()}
    if not one_at_a_time(model_spec):
        return first
    if model_spec.stream is not None:  # the first step only: no need to run the whole stream
        first = {k: v[:, :1] for k, v in first.items()}
        model_spec = model_spec.model_copy(update={"stream": model_spec.stream.model_copy(update={"steps": 1})})
    return calibration_feeds(cpu_session(path), first, model_spec)[0]


def data_reader(feeds: list[dict[str, Any]]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over prepared feeds (rewindable)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = feeds
            self._pos = 0

        def get_next(self) -> dict[str, Any] | None:
            if self._pos >= len(self._feeds):
                return None
            feed = self._feeds[self._pos]
            self._pos += 1
            return feed

        def __len__(self) -> int:
            return len(self._feeds)

        def rewind(self) -> None:
            self._pos = 0

        def set_range(self, start_index: int, end_index: int) -> None:
            self._feeds = feeds[start_index:end_index]
            self._pos = 0

    return _Reader()
