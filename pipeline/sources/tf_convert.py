"""tf2onnx plumbing shared by the Keras/SavedModel and TFLite sources.

TensorFlow and tf2onnx are imported inside the functions (``import_tf`` quiets TensorFlow's C++
logging first), so importing this module costs nothing. What lives here:

- input signatures built from a recipe's input spec (symbolic dims -> ``None`` when dynamic);
- running a tf2onnx conversion and turning its failures into one-line StageErrors, including ops
  that tf2onnx could not map (it leaves them in the graph under their TensorFlow names);
- naming the converted graph's inputs, outputs and symbolic dims after the recipe;
- the NHWC -> NCHW view of samples for inputs converted with ``inputs_as_nchw``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, StageError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples
    from pipeline.schema import InputSpec, ModelSpec

# ONNX domains whose ops ONNX Runtime may implement although onnx.defs does not know them
_RUNTIME_DOMAINS = ("com.microsoft", "com.microsoft.nchwc", "ai.onnx.contrib")
_NCHW = (0, 3, 1, 2)  # NHWC -> NCHW for a rank-4 input
TF_BATCH = 64  # samples per TensorFlow call when computing reference outputs


def import_tf():
    """Import TensorFlow with its C++ log noise off (INFO/WARNING), returning the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def versions() -> dict[str, str]:
    import keras
    import tf2onnx

    tf = import_tf()
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": tf2onnx.__version__}


def check_nchw(spec: ModelSpec) -> list[str]:
    """``spec.export.inputs_as_nchw``: each name must be a declared rank-4 input."""
    by_name = {s.name: s for s in spec.inputs or []}
    for name in spec.export.inputs_as_nchw:
        if name not in by_name:
            raise ConfigError(f"'{name}' is not a declared input", key="export.inputs_as_nchw", choices=by_name)
        if len(by_name[name].shape) != 4:
            raise ConfigError(
                f"input '{name}' has rank {len(by_name[name].shape)}; only rank-4 NHWC inputs can be transposed to NCHW",
                key="export.inputs_as_nchw",
            )
    return list(spec.export.inputs_as_nchw)


def input_signature(spec: ModelSpec) -> list[Any]:
    """One ``tf.TensorSpec`` per declared input, named after it; symbolic dims are ``None`` when
    ``spec.export.dynamic`` (else their ``export.dims`` values)."""
    tf = import_tf()
    sig = []
    for s in spec.inputs or []:
        shape = [
            (None if spec.export.dynamic else spec.export.dims[d]) if isinstance(d, str) else d for d in s.shape
        ]
        sig.append(tf.TensorSpec(shape=shape, dtype=tf.as_dtype(s.dtype), name=s.name))
    return sig


def run_tf(fn: Callable[..., Any], samples: Samples, names: Sequence[str], batch: int | None = None) -> list[Any]:
    """Call ``fn(*inputs)`` on all samples in batches; returns the concatenated outputs in the
    structure of the first call flattened: a dict ``{name: array}`` or a list of arrays."""
    import numpy as np

    tf = import_tf()
    n = len(samples)
    step = batch or TF_BATCH
    parts: list[Any] = []
    for start in range(0, n, step):
        rows = min(step, n - start)
        args = []
        for name in names:
            arr = samples.inputs[name][start : start + rows]
            if rows < step and batch:  # fixed batch: pad the last chunk, trim the result
                arr = np.concatenate([arr, np.repeat(arr[-1:], step - rows, axis=0)])
            args.append(tf.constant(arr))
        out = fn(*args)
        parts.append((out, rows))
    first = parts[0][0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([np.asarray(o[k])[:r] for o, r in parts]) for k in first}  # type: ignore[return-value]
    if isinstance(first, (list, tuple)):
        return [np.concatenate([np.asarray(o[i])[:r] for o, r in parts]) for i in range(len(first))]
    return [np.concatenate([np.asarray(o)[:r] for o, r in parts])]


def unsupported_ops(model) -> list[str]:
    """Ops left in a converted graph that ONNX does not define: what tf2onnx could not convert."""
    import onnx

    missing: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            domain = node.domain or ""
            if domain in _RUNTIME_DOMAINS:
                continue
            if not onnx.defs.has(node.op_type, domain):
                missing.add(node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    return sorted(missing)


def convert(run: Callable[[], Any], what: str, opset: int | None) -> Any:
    """Run a tf2onnx conversion (``run()`` returns ``(model_proto, external_storage)``) and check
    every op was converted. Returns the ModelProto."""
    from pipeline.sources.common import one_line

    try:
        model, _ = run()
    except ConfigError:
        raise
    except Exception as exc:
        raise StageError("export", f"tf2onnx ({what})", one_line(exc)) from exc
    missing = unsupported_ops(model)
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise StageError(
            "export", f"tf2onnx ({what})",
            f"TensorFlow op{plural} {', '.join(missing)} cannot be converted to ONNX by tf2onnx "
            f"(opset {opset if opset is not None else 'default'})",
        )
    canonical_constant_names(model)
    return model


_GENERATED = re.compile(r"__\d+$")  # tf2onnx's counter-suffixed names: const_starts__31, ...


def canonical_constant_names(model) -> int:
    """Rename tf2onnx's generated initializers ``const_*__N`` to ``const__K`` in order of first use, and
    order the initializers the same way.

    tf2onnx merges equal constants and which duplicate survives varies between runs (``starts=[0]``
    and ``axes=[0]`` share one tensor named after either), so the same recipe gave different bytes.
    Names the graph exposes (inputs, outputs) and non-generated names are kept. Returns the count."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    exposed = {v.name for v in graph.input} | {v.name for v in graph.output}
    order: dict[str, int] = {}
    mapping: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits and name not in order:
                order[name] = len(order)
                if name not in exposed and _GENERATED.search(name):
                    mapping[name] = f"const__{len(mapping)}"
    taken = {n for node in graph.node for n in (*node.input, *node.output)} - set(mapping)
    if taken & set(mapping.values()):  # never collide with a name already in the graph
        mapping = {old: f"{new}_c" for old, new in mapping.items()}
    for tensor in graph.initializer:
        tensor.name = mapping.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
    for value in graph.value_info:
        value.name = mapping.get(value.name, value.name)
    renamed = {mapping.get(k, k): v for k, v in order.items()}
    ranked = sorted(graph.initializer, key=lambda t: (renamed.get(t.name, len(renamed)), t.name))
    del graph.initializer[:]
    graph.initializer.extend(ranked)
    return len(mapping)


def name_graph(
    model,
    inputs: Sequence[InputSpec],
    nchw: Sequence[str],
    dynamic: bool,
    input_names: Mapping[str, str] | None = None,
    output_names: Mapping[str, str] | None = None,
) -> None:
    """Rename graph inputs (``{converted name: spec name}``) and outputs, everywhere they are used,
    and give each input's symbolic dims the spec's names (axes permuted for NCHW inputs)."""
    renames = {**(input_names or {}), **(output_names or {})}
    if renames:
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name in renames:
                    node.input[i] = renames[name]
            for i, name in enumerate(node.output):
                if name in renames:
                    node.output[i] = renames[name]
        for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
            if value.name in renames:
                value.name = renames[value.name]
    if not dynamic:
        return
    by_name = {s.name: s for s in inputs}
    for value in model.graph.input:
        s = by_name.get(value.name)
        if s is None:
            continue
        shape = [s.shape[a] for a in _NCHW] if value.name in nchw else list(s.shape)
        for dim, want in zip(value.type.tensor_type.shape.dim, shape):
            if isinstance(want, str) and not dim.HasField("dim_value"):
                dim.dim_param = want
    # tf2onnx names unknown output dims unk__N; the batch axis of each output is the inputs' batch
    batch = {s.shape[0] for s in inputs if s.shape and isinstance(s.shape[0], str)}
    if len(batch) == 1:
        name = batch.pop()
        for value in model.graph.output:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].dim_param.startswith("unk__"):
                dims[0].dim_param = name


def onnx_samples(samples: Samples, nchw: Sequence[str]) -> Samples:
    """The samples as the ONNX graph takes them: NCHW for inputs converted with inputs_as_nchw."""
    import numpy as np

    from pipeline.data import Samples

    arrays: dict[str, np.ndarray] = {
        k: (np.ascontiguousarray(v.transpose(_NCHW)) if k in nchw else v) for k, v in samples.inputs.items()
    }
    return Samples(arrays, samples.labels)
