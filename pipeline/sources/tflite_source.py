"""TFLite files as sources (framework ``tflite``), converted with tf2onnx's TFLite path.

- :func:`prepare` checks that ``spec.path`` is a TFLite flatbuffer the interpreter can load and
  copies it to ``model.tflite``.
- :func:`export` runs the TFLite interpreter on the reference samples (its outputs are the fidelity
  reference), converts with ``tf2onnx.convert.from_tflite`` at ``export.opset`` (``inputs_as_nchw``
  as declared), renames the graph's inputs and outputs after the recipe (TFLite names them like
  ``serving_default_input:0`` and ``StatefulPartitionedCall:0``), and checks ONNX Runtime against
  the interpreter (``export.atol``/``rtol``).

Declared inputs are matched to the TFLite inputs by name (``input`` matches
``serving_default_input:0``) or, for a single input, by position; dtypes must agree.
TensorFlow is imported inside these functions only.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, PipelineError, StageError

if TYPE_CHECKING:
    import logging

    from pipeline.data import Samples
    from pipeline.schema import ModelSpec

TFLITE_FILE = "model.tflite"
SOURCE_INFO = "source.json"
_MAGIC = b"TFL3"  # flatbuffer file identifier at bytes 4..8
_CHUNK = 64


def prepare(spec: ModelSpec, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    from pipeline.fsutil import atomic_dir, write_json
    from pipeline.sources.tf_convert import versions

    path = Path(spec.path or "")
    if not path.is_file():
        raise ConfigError(f"TFLite file not found: {path}", key="path")
    interp = load_interpreter(path, "prepare")
    match_inputs(spec, interp.get_input_details())
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(path, tmp / TFLITE_FILE)
        write_json(tmp / SOURCE_INFO, {"path": spec.path, "size_bytes": path.stat().st_size, **versions()})
    log.info("snapshot of %s (%d bytes)", path, path.stat().st_size)
    return {"trained": False}


def export(spec: ModelSpec, source_dir: Path, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    import tf2onnx

    from pipeline.fsutil import atomic_dir
    from pipeline.sources.common import finish_export, output_names, reference_samples, save_onnx
    from pipeline.sources.tf_convert import check_nchw, convert, name_graph, onnx_samples, versions

    path = Path(source_dir) / TFLITE_FILE
    interp = load_interpreter(path, "export")
    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    to_tflite = match_inputs(spec, in_details)  # spec name -> TFLite tensor name
    ours = output_names(spec, len(out_details))
    nchw = check_nchw(spec)

    samples = reference_samples(spec)
    try:
        expected = run_interpreter(interp, samples, to_tflite, ours)
    except PipelineError:
        raise
    except Exception as exc:
        from pipeline.sources.common import one_line

        raise StageError("export", "run TFLite interpreter", one_line(exc)) from exc

    model = convert(
        lambda: tf2onnx.convert.from_tflite(
            str(path), opset=spec.export.opset, inputs_as_nchw=[to_tflite[n] for n in nchw] or None
        ),
        "from_tflite",
        spec.export.opset,
    )
    name_graph(
        model,
        spec.inputs or [],
        nchw,
        spec.export.dynamic,
        input_names={v: k for k, v in to_tflite.items()},
        output_names={d["name"]: o for d, o in zip(out_details, ours)},
    )
    with atomic_dir(out_dir) as tmp:
        save_onnx(model, tmp)
        info = finish_export(
            spec,
            tmp,
            onnx_samples(samples, nchw),
            expected,
            framework="tflite",
            exporter="tf2onnx.from_tflite",
            log=log,
            extra={"inputs_as_nchw": nchw, "versions": versions()},
        )
    return info


def load_interpreter(path: Path, stage: str):
    """A TFLite interpreter for ``path``; a file that is not a TFLite model is a one-line error."""
    from pipeline.sources.common import one_line
    from pipeline.sources.tf_convert import import_tf

    check_flatbuffer(path, stage)
    tf = import_tf()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            interp = tf.lite.Interpreter(model_path=str(path))
        interp.allocate_tensors()
    except Exception as exc:
        raise StageError(stage, f"load {path.name}", f"the TFLite interpreter cannot load it: {one_line(exc)}") from exc
    return interp


def check_flatbuffer(path: Path, stage: str) -> None:
    """Walk the whole flatbuffer (tf2onnx's TFLite schema) with bounds checks before the interpreter
    sees it: the interpreter does not verify its input and crashes the process on a truncated file."""
    import struct

    from tf2onnx.tflite.Model import Model

    buf = bytearray(path.read_bytes())
    size = len(buf)
    step = f"load {path.name}"
    if size < 8 or bytes(buf[4:8]) != _MAGIC:
        raise StageError(stage, step, "not a TFLite model (no TFL3 identifier): corrupt or truncated")
    try:
        model = Model.GetRootAsModel(buf, 0)
        for i in range(model.OperatorCodesLength()):
            model.OperatorCodes(i).BuiltinCode()
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            graph.InputsAsNumpy(), graph.OutputsAsNumpy()
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                tensor.ShapeAsNumpy(), tensor.Buffer(), tensor.Name()
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                op.InputsAsNumpy(), op.OutputsAsNumpy(), op.OpcodeIndex()
        for b in range(model.BuffersLength()):
            buffer = model.Buffers(b)
            field = buffer._tab.Offset(4)  # the `data` vector
            if field and buffer._tab.Vector(field) + buffer._tab.VectorLen(field) > size:
                raise IndexError(f"buffer {b} ends past the end of the file")
            if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > size:
                raise IndexError(f"buffer {b} ends past the end of the file")
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise StageError(stage, step, f"corrupt or truncated TFLite file ({size} bytes): {exc}") from exc


def _bare(name: str) -> str:
    """``serving_default_input:0`` -> ``input``."""
    name = re.sub(r":\d+$", "", name)
    return name[len("serving_default_") :] if name.startswith("serving_default_") else name


def match_inputs(spec: ModelSpec, details: list[dict[str, Any]]) -> dict[str, str]:
    """``{spec input name: TFLite input name}``, checking count and dtypes."""
    import numpy as np

    declared = spec.inputs or []
    names = [d["name"] for d in details]
    if len(declared) != len(details):
        raise ConfigError(
            f"the TFLite model takes {len(details)} input(s) {names} but 'inputs' declares {len(declared)}",
            key="inputs",
        )
    by_bare = {_bare(n): d for n, d in zip(names, details)}
    by_name = {d["name"]: d for d in details}
    mapping: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(declared):
        d = by_name.get(s.name) or by_bare.get(s.name)
        if d is None and len(details) == 1:
            d = details[0]
        if d is None:
            raise ConfigError(f"input '{s.name}' is not an input of the TFLite model", key=f"inputs[{i}].name", choices=names)
        have = np.dtype(d["dtype"]).name
        if have != s.dtype:
            raise ConfigError(
                f"input '{s.name}' is declared {s.dtype} but the TFLite model takes {have}", key=f"inputs[{i}].dtype"
            )
        sig = list(d.get("shape_signature", d["shape"]))
        want = [spec.export.dims[x] if isinstance(x, str) else x for x in s.shape]
        if len(sig) != len(want) or any(h != -1 and h != w for h, w in zip(sig, want)):
            shown = "[" + ", ".join("?" if h == -1 else str(h) for h in sig) + "]"
            raise ConfigError(
                f"input '{s.name}' is declared with shape {list(s.shape)} but the TFLite model takes {shown}",
                key=f"inputs[{i}].shape",
            )
        mapping[s.name] = d
    return {k: d["name"] for k, d in mapping.items()}


def run_interpreter(interp, samples: Samples, to_tflite: dict[str, str], outputs: list[str]) -> dict[str, Any]:
    """Run the interpreter on every sample, in chunks (a fixed batch dim is fed exactly)."""
    import numpy as np

    details = {d["name"]: d for d in interp.get_input_details()}
    out_details = interp.get_output_details()
    fixed = {int(d["shape_signature"][0]) for d in details.values() if len(d["shape_signature"]) and d["shape_signature"][0] != -1}
    step = fixed.pop() if len(fixed) == 1 else _CHUNK
    n = len(samples)
    parts: dict[str, list[np.ndarray]] = {o: [] for o in outputs}
    current: dict[str, tuple[int, ...]] = {}
    for start in range(0, n, step):
        rows = min(step, n - start)
        feed = {}
        for ours, theirs in to_tflite.items():
            arr = samples.inputs[ours][start : start + rows]
            if fixed and rows < step:  # pad the last chunk to the fixed batch; trimmed below
                arr = np.concatenate([arr, np.repeat(arr[-1:], step - rows, axis=0)])
            feed[theirs] = np.ascontiguousarray(arr)
        if any(current.get(t) != a.shape for t, a in feed.items()):
            for t, a in feed.items():
                interp.resize_tensor_input(details[t]["index"], list(a.shape))
            interp.allocate_tensors()
            current = {t: a.shape for t, a in feed.items()}
        for t, a in feed.items():
            interp.set_tensor(details[t]["index"], a)
        interp.invoke()
        for d, name in zip(out_details, outputs):
            parts[name].append(np.array(interp.get_tensor(d["index"]))[:rows])
    return {k: np.concatenate(v) for k, v in parts.items()}
