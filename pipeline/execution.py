"""How samples are stored and fed to a model: the one place that knows it.

Storage (``reference.npz``, datasets, calibration arrays): every per-sample input is stored with the
sample axis first:

* ``batch_axis: k`` -> ``[N, *shape without axis k]``; a batch is fed by stacking samples on axis k;
* ``batch_axis: null`` -> ``[N, *shape]``; fed one sample at a time, as stored;
* constant inputs (``value`` set) are not stored; they are fed as ``np.asarray(value, dtype)`` every run;
* a stream model (``stream``) stores per-step inputs as ``[N, steps, *per-step shape]`` and its outputs
  as ``[N, steps, *output of one step]``; it runs one stream at a time (batch 1): each state input
  starts at its ``value`` (else zeros of its declared shape, symbolic dims from ``export.dims``, the
  batch axis 1) and each step's state outputs feed the next step's state inputs. State inputs are
  not stored per sample.

Outputs are stored with the sample axis first too. A model whose inputs are all per-sample and
batched on axis 0 runs in batches exactly as before (outputs concatenated on axis 0; a fixed batch
dim is fed whole batches, the last padded by repeating its final sample); any other model runs one
sample at a time and its outputs are stacked (``[N, *output of one run]``).

A *runner* is an ONNX Runtime session (anything with ``get_inputs``/``get_outputs``/``run``) or a
callable ``fn(feeds) -> {output name: array}`` (a source framework's model).

Framework-free: numpy, and onnxruntime inside :func:`cpu_session` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.schema import InputSpec, ModelSpec

Arrays = Mapping[str, "np.ndarray"]
CHUNK = 32  # samples per batch when the model's batch dim is free

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


# ---------------------------------------------------------------------------------------------
# What is stored, what is fed
# ---------------------------------------------------------------------------------------------


def state_inputs(model_spec: ModelSpec | None) -> dict[str, str]:
    """``{state input: the output that feeds it}`` of a stream model (empty otherwise)."""
    stream = getattr(model_spec, "stream", None)
    return {link.input: link.output for link in stream.state} if stream is not None else {}


def stored_specs(inputs: Sequence[InputSpec], stream: Any = None) -> list[InputSpec]:
    """The inputs stored per sample: neither constant nor a stream's state."""
    states = {link.input for link in stream.state} if stream is not None else set()
    return [s for s in inputs if s.value is None and s.name not in states]


def stored_shape(spec: InputSpec, dims: Mapping[str, int]) -> tuple[int, ...]:
    """One sample's stored shape: the declared shape (symbolic dims from ``dims``) without its batch axis."""
    shape = [dims[d] if isinstance(d, str) else d for d in spec.shape]
    if spec.batch_axis is not None:
        del shape[spec.batch_axis]
    return tuple(shape)


def one_at_a_time(model_spec: ModelSpec | None) -> bool:
    """True when the model runs one sample (or stream) per call: a stream, a constant input, or an
    input whose batch axis is not 0. Models without declared inputs batch on axis 0."""
    if model_spec is None or not model_spec.inputs:
        return False
    if model_spec.stream is not None:
        return True
    return any(s.value is not None or s.batch_axis != 0 for s in model_spec.inputs)


def constant_feeds(model_spec: ModelSpec) -> dict[str, np.ndarray]:
    """The constant inputs (not a stream's state) as arrays of their declared dtype."""
    import numpy as np

    states = state_inputs(model_spec)
    out = {}
    for i, spec in enumerate(model_spec.inputs or []):
        if spec.value is not None and spec.name not in states:
            value = np.asarray(spec.value, dtype=spec.dtype)
            _check_value_shape(spec, value, model_spec.export.dims, "value", f"inputs[{i}].value")
            out[spec.name] = value
    return out


def initial_state(model_spec: ModelSpec) -> dict[str, np.ndarray]:
    """Each state input's first value: its ``value``, else zeros of its declared shape (batch 1)."""
    import numpy as np

    index = {s.name: i for i, s in enumerate(model_spec.inputs or [])}
    out = {}
    for name in state_inputs(model_spec):
        spec = model_spec.inputs[index[name]]
        shape = _one_sample_shape(spec, model_spec.export.dims)
        if spec.value is None:
            out[name] = np.zeros(shape, dtype=spec.dtype)
        else:
            value = np.asarray(spec.value, dtype=spec.dtype)
            _check_value_shape(spec, value, model_spec.export.dims, "initial state", f"inputs[{index[name]}].value")
            out[name] = value
    return out


def _one_sample_shape(spec: InputSpec, dims: Mapping[str, int]) -> tuple[int, ...]:
    shape = [dims[d] if isinstance(d, str) else d for d in spec.shape]
    if spec.batch_axis is not None:
        shape[spec.batch_axis] = 1
    return tuple(shape)


def _check_value_shape(spec: InputSpec, value: np.ndarray, dims: Mapping[str, int], what: str, key: str) -> None:
    want = _one_sample_shape(spec, dims)
    if tuple(value.shape) != want:
        raise ConfigError(
            f"input '{spec.name}': the {what} has shape {list(value.shape)} but the input is declared "
            f"{list(spec.shape)} ({list(want)} for one sample)",
            key=key,
        )


def _sample(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One stored sample as the model takes it: the batch axis (size 1) put back."""
    import numpy as np

    return arr if spec.batch_axis is None else np.expand_dims(arr, spec.batch_axis)


def count(inputs: Arrays) -> int:
    """The number of samples (streams) stored in ``inputs``."""
    if not inputs:
        raise ValueError("no stored inputs: cannot tell how many samples there are")
    return len(next(iter(inputs.values())))


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------


class _Runner:
    """A session or a callable behind one interface: ``run(feeds) -> {name: array}``."""

    def __init__(self, runner: Any) -> None:
        self.session = runner if hasattr(runner, "get_inputs") and hasattr(runner, "run") else None
        self.fn: Callable[[dict[str, Any]], Any] | None = None if self.session is not None else runner
        if self.session is not None:
            self.input_types = {i.name: _ORT_TYPES.get(i.type) for i in self.session.get_inputs()}
            self.output_names = [o.name for o in self.session.get_outputs()]

    def fixed_batch(self) -> int | None:
        if self.session is None:
            return None
        fixed = {i.shape[0] for i in self.session.get_inputs() if i.shape and isinstance(i.shape[0], int)}
        if len(fixed) > 1:
            raise ValueError(f"inputs have different fixed batch dims {sorted(fixed)}")
        return fixed.pop() if fixed else None

    def cast(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """The session's inputs picked from ``feeds`` and cast to the dtypes it expects."""
        import numpy as np

        if self.session is None:
            return dict(feeds)
        missing = [n for n in self.input_types if n not in feeds]
        if missing:
            raise ValueError(f"no values for model input(s) {missing} (have {sorted(feeds)})")
        out = {}
        for name, want in self.input_types.items():
            arr = np.asarray(feeds[name])
            arr = arr.astype(want, copy=False) if want is not None else arr
            out[name] = np.require(arr, requirements="C")  # (np.ascontiguousarray makes scalars 1-d)
        return out

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        import numpy as np

        if self.session is not None:
            values = self.session.run(self.output_names, self.cast(feeds))
            return {n: np.asarray(v) for n, v in zip(self.output_names, values)}
        result = self.fn(dict(feeds))
        if not isinstance(result, Mapping):
            raise TypeError(f"a runner callable must return {{output name: array}}, got {type(result).__name__}")
        return {n: np.asarray(v) for n, v in result.items()}


def cpu_session(model_path: Any) -> Any:
    """A plain sequential CPU session with one thread (for calibration feeds and verification)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def cast_for(session: Any, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``feeds`` restricted to ``session``'s inputs and cast to their dtypes (scalars stay scalars)."""
    return _Runner(session).cast(feeds)


# ---------------------------------------------------------------------------------------------
# Running samples
# ---------------------------------------------------------------------------------------------


def run_samples(runner: Any, inputs: Arrays, model_spec: ModelSpec | None = None, chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """Run every stored sample (stream) of ``inputs`` through ``runner``; outputs by name, sample axis first."""
    run = _Runner(runner)
    if not one_at_a_time(model_spec):
        return _run_batched(run, inputs, chunk)
    if model_spec.stream is not None:
        return _stack([_run_stream(run, inputs, i, model_spec)[0] for i in range(count(inputs))])
    return _stack([run.run(sample_feed(inputs, i, model_spec)) for i in range(count(inputs))])


def _run_batched(run: _Runner, inputs: Arrays, chunk: int) -> dict[str, np.ndarray]:
    import numpy as np

    total = count(inputs)
    fixed = run.fixed_batch()
    size = fixed or chunk
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, size):
        batch = {k: np.asarray(v[start : start + size]) for k, v in inputs.items()}
        real = min(size, total - start)
        if fixed is not None and real < size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], size - real, axis=0)]) for k, v in batch.items()}
        for name, value in run.run(batch).items():
            if value.ndim == 0:
                raise ValueError(f"output '{name}' is a scalar, not one value per sample")
            parts.setdefault(name, []).append(value[:real])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _stack(per_sample: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    import numpy as np

    names = list(per_sample[0])
    for i, outs in enumerate(per_sample):
        for name in names:
            if outs[name].shape != per_sample[0][name].shape:
                raise ValueError(
                    f"output '{name}' has shape {list(outs[name].shape)} for sample {i} but "
                    f"{list(per_sample[0][name].shape)} for sample 0: samples cannot be stacked"
                )
    return {name: np.stack([outs[name] for outs in per_sample]) for name in names}


def sample_feed(inputs: Arrays, index: int, model_spec: ModelSpec) -> dict[str, np.ndarray]:
    """The feed of stored sample ``index`` (not a stream): batch axes put back, constants added."""
    by_name = {s.name: s for s in model_spec.inputs or []}
    feed = {name: _sample(arr[index], by_name[name]) if name in by_name else arr[index] for name, arr in inputs.items()}
    feed.update(constant_feeds(model_spec))
    return feed


def _step_feed(inputs: Arrays, index: int, step: int, model_spec: ModelSpec, state: Mapping[str, Any]) -> dict[str, Any]:
    by_name = {s.name: s for s in model_spec.inputs or []}
    feed = {
        name: _sample(arr[index, step], by_name[name]) if name in by_name else arr[index, step]
        for name, arr in inputs.items()
    }
    feed.update(constant_feeds(model_spec))
    feed.update(state)
    return feed


def _check_steps(inputs: Arrays, model_spec: ModelSpec) -> int:
    steps = model_spec.stream.steps
    for name, arr in inputs.items():
        if arr.ndim < 2 or arr.shape[1] != steps:
            raise ValueError(
                f"stream input '{name}' is stored with shape {list(arr.shape)}: expected "
                f"[streams, {steps} steps, ...] (stream.steps {steps})"
            )
    return steps


def _run_stream(
    run: _Runner, inputs: Arrays, index: int, model_spec: ModelSpec, keep_feeds: bool = False, stop: int | None = None
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Run stream ``index`` step by step; ``({output: [steps, ...]}, the feeds if kept)``."""
    import numpy as np

    steps = _check_steps(inputs, model_spec)
    links = state_inputs(model_spec)
    state = initial_state(model_spec)
    per_step: list[dict[str, np.ndarray]] = []
    feeds: list[dict[str, Any]] = []
    for step in range(steps if stop is None else stop + 1):
        feed = _step_feed(inputs, index, step, model_spec, state)
        if keep_feeds:
            feeds.append(feed)
        outs = run.run(feed)
        per_step.append(outs)
        for state_in, state_out in links.items():
            if state_out not in outs:
                raise ConfigError(
                    f"stream.state: output '{state_out}' (feeding input '{state_in}') is not an output of "
                    f"the model (outputs: {', '.join(outs)})",
                    key="stream.state",
                    choices=list(outs),
                )
            new = outs[state_out]
            if new.shape != np.shape(state[state_in]):
                raise ConfigError(
                    f"stream.state: output '{state_out}' has shape {list(new.shape)} but the input it feeds, "
                    f"'{state_in}', takes {list(np.shape(state[state_in]))}",
                    key="stream.state",
                )
            state[state_in] = new
    stacked = {name: np.stack([o[name] for o in per_step]) for name in per_step[0]}
    return stacked, feeds


# ---------------------------------------------------------------------------------------------
# Feeds for latency and calibration
# ---------------------------------------------------------------------------------------------


def step_feeds(runner: Any, inputs: Arrays, model_spec: ModelSpec | None, batch_size: int = 1,
               key: str = "evaluate.batch_size") -> dict[str, np.ndarray]:
    """One representative feed for latency: ``batch_size`` samples (wrapping around) for a batched
    model; sample 0 for a one-at-a-time model; for a stream, the feed of its middle step (state
    included, from running stream 0 up to it). One-at-a-time models are measured at batch 1."""
    import numpy as np

    run = _Runner(runner)
    if not one_at_a_time(model_spec):
        idx = np.arange(batch_size) % count(inputs)
        return run.cast({k: np.ascontiguousarray(np.asarray(v)[idx]) for k, v in inputs.items()})
    if batch_size != 1:
        what = "a stream model" if model_spec.stream is not None else "a model that runs one sample at a time"
        raise ConfigError(f"{what} is measured at batch 1, got {batch_size}", key=key)
    if model_spec.stream is None:
        return run.cast(sample_feed(inputs, 0, model_spec))
    _, feeds = _run_stream(run, inputs, 0, model_spec, keep_feeds=True, stop=model_spec.stream.steps // 2)
    return run.cast(feeds[-1])


def calibration_feeds(runner: Any, inputs: Arrays, model_spec: ModelSpec | None) -> list[dict[str, np.ndarray]]:
    """One feed per sample (per step of every stream, state included, taken from a run of ``runner``,
    the fp32 model) for static quantization's calibrator."""
    run = _Runner(runner)
    n = count(inputs)
    if model_spec is None or not one_at_a_time(model_spec):
        return [run.cast({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(n)]
    if model_spec.stream is None:
        return [run.cast(sample_feed(inputs, i, model_spec)) for i in range(n)]
    feeds: list[dict[str, Any]] = []
    for i in range(n):
        feeds.extend(run.cast(f) for f in _run_stream(run, inputs, i, model_spec, keep_feeds=True)[1])
    return feeds
