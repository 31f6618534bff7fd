"""Framework-free helpers shared by every model source (torch, keras, tflite, onnx).

A source's ``export(spec, source_dir, out_dir, log)`` typically does::

    samples = reference_samples(spec)                      # N held-out inputs (+ labels)
    expected = <run the source framework on samples.inputs> # {output name or position: array}
    with atomic_dir(out_dir) as tmp:
        <write tmp/model.onnx>                             # e.g. save_onnx(onnx_model, tmp)
        info = finish_export(spec, tmp, samples, expected,
                             framework="keras", exporter="tf2onnx", log=log,
                             extra={"tf2onnx": version})
    return info

``finish_export`` runs ONNX Runtime on the written model, compares its outputs with the framework's
(``spec.export.atol`` / ``rtol``; a mismatch raises a one-line :class:`StageError` with the measured
max abs / rel error), then writes ``reference.npz`` (keys ``input/<name>``, ``output/<name>``,
optional ``labels``; outputs are the *framework's* own) and ``export.json``.

Error keys: sources raise :class:`ConfigError` with keys *relative to the model spec*
(``checkpoint``, ``factory._target_``, ``reference.dataset``); the stage entry point qualifies them
as ``models.<name>.<key>`` with :func:`qualify_config_error`.

Nothing here imports torch or TensorFlow; numpy, onnx and onnxruntime are imported inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, StageError

if TYPE_CHECKING:
    import logging

    import numpy as np

    from pipeline.data import Samples
    from pipeline.schema import InputSpec, ModelSpec

REFERENCE_FILE = "reference.npz"
EXPORT_INFO_FILE = "export.json"
MIN_REFERENCE_SAMPLES = 32


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def qualify_config_error(err: ConfigError, model: str, source: str | None = None) -> ConfigError:
    """Turn a ConfigError raised with a spec-relative key (``checkpoint``) into one naming
    ``models.<model>.checkpoint`` in ``source`` (params.yaml). Already-qualified keys are kept."""
    key = err.key
    if key is None:
        key = f"models.{model}"
    elif not key.startswith("models."):
        key = f"models.{model}.{key}"
    return ConfigError(err.reason, key=key, source=err.source or source, choices=err.choices)


from pipeline.errors import one_line  # noqa: E402,F401  (the sources import it from here)


def build_from_factory(factory: Any, expected: type, what: str, key: str = "factory") -> Any:
    """Call a model factory (``_target_`` + kwargs); a failure or a result that is not ``expected``
    is a ConfigError naming ``key``."""
    from pipeline.data import call_factory
    from pipeline.errors import ConfigError, PipelineError

    try:
        obj = call_factory(factory, key)
    except PipelineError:
        raise
    except Exception as exc:
        raise ConfigError(f"factory '{factory.target}' failed: {one_line(exc)}", key=key) from exc
    if not isinstance(obj, expected):
        raise ConfigError(
            f"factory '{factory.target}' returned {type(obj).__name__}, expected {what}", key=f"{key}._target_"
        )
    return obj


# ---------------------------------------------------------------------------------------------
# Names and samples
# ---------------------------------------------------------------------------------------------


def output_names(spec: ModelSpec, count: int) -> list[str]:
    """``spec.outputs`` if declared (its length must match), else ``output_0 .. output_{count-1}``."""
    if spec.outputs:
        if len(spec.outputs) != count:
            raise ConfigError(
                f"declares {len(spec.outputs)} output name(s) {list(spec.outputs)} but the model has {count} output(s)",
                key="outputs",
            )
        return list(spec.outputs)
    return [f"output_{i}" for i in range(count)]


def reference_samples(
    spec: ModelSpec, inputs: Sequence[InputSpec] | None = None, key: str = "reference.dataset"
) -> Samples:
    """``spec.reference.num_samples`` held-out samples: from ``spec.reference.dataset`` (first N) or,
    if none is declared, drawn from the inputs' ranges (``pipeline.data.sample_inputs`` with
    ``spec.export.dims`` and ``spec.reference.seed``). ``inputs`` defaults to ``spec.inputs`` (ONNX
    sources pass the specs read from the graph). Arrays are cast to the declared dtypes."""
    from pipeline.data import Samples, load_samples, sample_inputs
    from pipeline.execution import stored_specs

    inputs = list(inputs if inputs is not None else (spec.inputs or []))
    n = spec.reference.num_samples
    if spec.reference.dataset is None:
        return Samples(sample_inputs(inputs, spec.export.dims, n, seed=spec.reference.seed, stream=spec.stream))
    inputs = stored_specs(inputs, spec.stream)  # constants and stream states are not stored per sample
    data = load_samples(spec.reference.dataset, key)
    if len(data) < MIN_REFERENCE_SAMPLES:
        raise ConfigError(
            f"dataset '{spec.reference.dataset.target}' has {len(data)} samples; "
            f"at least {MIN_REFERENCE_SAMPLES} are needed",
            key=key,
        )
    return conform_samples(data.take(n), inputs, key)


def conform_samples(data: Samples, inputs: Sequence[InputSpec], key: str) -> Samples:
    """Check a dataset provides every declared input (by name) and cast each to its declared dtype."""
    import numpy as np

    from pipeline.data import NUMPY_DTYPES, Samples

    if not inputs:
        return data
    missing = [s.name for s in inputs if s.name not in data.inputs]
    if missing:
        raise ConfigError(
            f"dataset provides inputs {sorted(data.inputs)} but the model needs {missing}",
            key=key,
            choices=[s.name for s in inputs],
        )
    arrays = {s.name: np.ascontiguousarray(data.inputs[s.name], dtype=NUMPY_DTYPES[s.dtype]) for s in inputs}
    return Samples(arrays, data.labels)


# ---------------------------------------------------------------------------------------------
# ONNX Runtime
# ---------------------------------------------------------------------------------------------


def ort_session(model_path: str | os.PathLike, threads: int = 1):
    """A plain CPU session (sequential, ``threads`` intra-op threads) for verification."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def run_onnx(
    model_path: str | os.PathLike, inputs: Mapping[str, np.ndarray], chunk: int = 64, model_spec: ModelSpec | None = None
) -> dict[str, np.ndarray]:
    """Run an ONNX model on N stored samples; returns ``{output name: array with N rows}``.

    Samples are fed as ``pipeline.execution.run_samples`` does for ``model_spec``: batches of
    ``chunk`` on axis 0 (a fixed batch dim fed whole, the last batch padded, then trimmed), or one
    sample / stream at a time for streams, constant inputs and other batch axes."""
    from pipeline.execution import run_samples

    return run_samples(ort_session(model_path), inputs, model_spec, chunk=chunk)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def compare_outputs(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    atol: float,
    rtol: float,
    *,
    framework: str,
    stage: str = "export",
    step: str = "verify",
) -> dict[str, dict[str, float]]:
    """Compare ONNX Runtime outputs (``actual``) with the framework's (``expected``), name by name.

    Passes when ``|actual - expected| <= atol + rtol * |expected|`` everywhere (numpy.allclose).
    Returns ``{name: {"max_abs_err", "max_rel_err"}}``; raises a one-line StageError naming the
    output and the measured max abs / rel error otherwise (also on shape mismatch or NaN).
    ``max_rel_err`` is taken over elements with ``|expected| > atol``."""
    import numpy as np

    errors: dict[str, dict[str, float]] = {}
    for name, ref in expected.items():
        got = actual[name]
        ref = np.asarray(ref)
        got = np.asarray(got)
        if ref.shape != got.shape:
            raise StageError(
                stage, step,
                f"output '{name}': ONNX Runtime gives shape {list(got.shape)}, {framework} gives {list(ref.shape)}",
            )
        ref64 = ref.astype(np.float64)
        got64 = got.astype(np.float64)
        diff = np.abs(got64 - ref64)
        if diff.size and not np.all(np.isfinite(diff) | (ref64 == got64)):
            raise StageError(stage, step, f"output '{name}': ONNX Runtime gives NaN/inf where {framework} does not")
        max_abs = float(diff.max()) if diff.size else 0.0
        # relative error over elements whose reference magnitude exceeds atol (near-zero
        # references would make any difference look infinitely large)
        big = np.abs(ref64) > atol
        max_rel = float((diff[big] / np.abs(ref64[big])).max()) if big.any() else 0.0
        errors[name] = {"max_abs_err": max_abs, "max_rel_err": max_rel}
        if diff.size and not np.all(diff <= atol + rtol * np.abs(ref64)):
            worst = int(np.argmax(diff - (atol + rtol * np.abs(ref64))))
            raise StageError(
                stage,
                step,
                f"ONNX Runtime output '{name}' differs from {framework}: max abs err {max_abs:.3g} > "
                f"atol {atol:g} + rtol {rtol:g} * |ref| (max rel err {max_rel:.3g}; worst element "
                f"{got64.flat[worst]:.6g} vs {ref64.flat[worst]:.6g}; {len(ref)} samples)",
            )
    return errors


def match_outputs(onnx_names: Sequence[str], expected: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                  framework: str) -> dict[str, np.ndarray]:
    """Key the framework's outputs by the ONNX output names: by name when they agree, else by position."""
    if isinstance(expected, Mapping):
        if set(expected) == set(onnx_names):
            return {n: expected[n] for n in onnx_names}
        values = list(expected.values())
    else:
        values = list(expected)
    if len(values) != len(onnx_names):
        raise StageError(
            "export", "verify",
            f"the ONNX model has {len(onnx_names)} output(s) {list(onnx_names)}, {framework} gives {len(values)}",
        )
    return dict(zip(onnx_names, values))


# ---------------------------------------------------------------------------------------------
# Writing artifacts
# ---------------------------------------------------------------------------------------------


def save_onnx(model, out_dir: str | os.PathLike) -> Path:
    """Save a loaded ModelProto as ``out_dir/model.onnx`` (+ ``model.onnx.data`` only when large)."""
    from pipeline.onnx_utils import model_path, save_model

    return save_model(model, model_path(out_dir))


def write_reference(
    out_dir: str | os.PathLike,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
) -> Path:
    """Write ``out_dir/reference.npz``: ``input/<name>``, ``output/<name>``, optional ``labels``."""
    import numpy as np

    arrays = {f"input/{k}": np.asarray(v) for k, v in inputs.items()}
    arrays.update({f"output/{k}": np.asarray(v) for k, v in outputs.items()})
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    path = Path(out_dir) / REFERENCE_FILE
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def read_reference(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
    """``(inputs, outputs, labels)`` from a reference.npz (a file or the directory holding it)."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        path = path / REFERENCE_FILE
    with np.load(path, allow_pickle=False) as data:
        inputs = {k[len("input/"):]: data[k] for k in data.files if k.startswith("input/")}
        outputs = {k[len("output/"):]: data[k] for k in data.files if k.startswith("output/")}
        labels = data["labels"] if "labels" in data.files else None
    return inputs, outputs, labels


def describe_onnx(model_path: str | os.PathLike) -> dict[str, Any]:
    """Inputs/outputs (name, dtype, shape with symbolic dims as names) and opsets of an ONNX file."""
    from pipeline.onnx_utils import load_model

    model = load_model(model_path, load_external_data=False)

    def value_info(v) -> dict[str, Any]:
        t = v.type.tensor_type
        shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
                 for d in t.shape.dim]
        import onnx

        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape}

    init = {i.name for i in model.graph.initializer}
    return {
        "inputs": [value_info(v) for v in model.graph.input if v.name not in init],
        "outputs": [value_info(v) for v in model.graph.output],
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
    }


def write_export_info(out_dir: str | os.PathLike, info: Mapping[str, Any]) -> Path:
    from pipeline.fsutil import write_artifact_json

    path = Path(out_dir) / EXPORT_INFO_FILE
    write_artifact_json(path, dict(info))
    return path


def fits_task(spec: ModelSpec, outputs: Mapping[str, np.ndarray]) -> None:
    """The model's task metric applies to its fidelity output (a ConfigError naming ``task`` /
    ``fidelity.*``, the output and its shape, otherwise)."""
    import numpy as np

    from pipeline.evaluate.task_metrics import check_task_fits, fidelity_output

    name = fidelity_output(spec.fidelity, outputs)
    check_task_fits(spec.task, spec.fidelity, name, np.shape(outputs[name]), spec.stream is not None)


def check_reference(outputs: Mapping[str, np.ndarray], log: logging.Logger | None) -> dict[str, list[str]]:
    """``{output: [reasons]}`` for degenerate reference outputs (constant over samples, all zero,
    non-finite), each with a warning: fidelity measured against them means nothing."""
    from pipeline.evaluate.reference_check import degenerate_outputs, describe

    degenerate = degenerate_outputs(outputs)
    if degenerate and log is not None:
        log.warning("%s: fidelity and accuracy gates of its builds cannot pass", describe(degenerate))
    return degenerate


def finish_export(
    spec: ModelSpec,
    out_dir: str | os.PathLike,
    samples: Samples,
    expected: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    *,
    framework: str,
    exporter: str,
    log: logging.Logger | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify ``out_dir/model.onnx`` against the framework's outputs and write reference.npz and
    export.json beside it. Call it inside the ``atomic_dir`` block. Returns the export.json content.

    ``expected``: the framework's outputs on ``samples.inputs`` (N rows each), keyed by ONNX output
    name or given in graph order. ``extra`` is merged into export.json (versions, options)."""
    from pipeline.onnx_utils import external_files, model_path

    path = model_path(out_dir)
    desc = describe_onnx(path)
    onnx_outputs = [o["name"] for o in desc["outputs"]]
    expected_by_name = match_outputs(onnx_outputs, expected, framework)
    fits_task(spec, expected_by_name)
    try:
        actual = run_onnx(path, samples.inputs, model_spec=spec)
    except Exception as exc:
        raise StageError("export", "verify (onnxruntime run)", one_line(exc)) from exc
    errors = compare_outputs(
        expected_by_name, actual, spec.export.atol, spec.export.rtol, framework=framework
    )
    write_reference(out_dir, samples.inputs, expected_by_name, samples.labels)
    dynamic = sorted({d for io in desc["inputs"] for d in io["shape"] if isinstance(d, str)})
    info: dict[str, Any] = {
        "framework": framework,
        "exporter": exporter,
        "opset": desc["opset"],
        "opsets": desc["opsets"],
        "inputs": desc["inputs"],
        "outputs": desc["outputs"],
        "dynamic_dims": dynamic,
        "external_data": [p.name for p in external_files(path)],
        "verification": {
            "samples": len(samples),
            "atol": spec.export.atol,
            "rtol": spec.export.rtol,
            "max_abs_err": max((e["max_abs_err"] for e in errors.values()), default=0.0),
            "max_rel_err": max((e["max_rel_err"] for e in errors.values()), default=0.0),
            "per_output": errors,
        },
        **dict(extra or {}),
    }
    info["reference_check"] = check_reference(expected_by_name, log)
    write_export_info(out_dir, info)
    if log is not None:
        log.info(
            "verified %s vs onnxruntime on %d samples: max abs err %.3g, max rel err %.3g",
            framework, len(samples), info["verification"]["max_abs_err"], info["verification"]["max_rel_err"],
        )
    return info
