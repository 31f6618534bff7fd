"""An existing ONNX file as a model source (framework ``onnx``).

``prepare`` checks the file (``spec.path``: a plain path or ``pkg://<package>/<file>``) and snapshots
it, with its external data, into the source folder. ``export`` reads the input spec from the graph
(or checks the declared one against it), runs the *unmodified* source model in ONNX Runtime at fp32
on the reference samples (that is the fidelity reference for every build of this model), upgrades
the opset with ``onnx.version_converter`` when the recipe asks, and writes ``model.onnx`` (weights in
``model.onnx.data`` beside it when the source keeps them external), ``reference.npz`` and
``export.json``.

Weights never pass through one protobuf serialization: the graph is loaded without its external
data, converted, and saved as a skeleton while the weights are streamed tensor by tensor into the
new data file. Models over 2 GB therefore work, and peak memory stays near the largest tensor.

Refused with one clear message each: a missing, corrupt or truncated file; missing or truncated
external data; an external-data location that leaves the model's folder; a graph the ONNX checker
rejects; an opset conversion that fails; a declared input spec that does not match the graph.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, PipelineError, StageError, first_line

if TYPE_CHECKING:
    import logging

    from pipeline.schema import InputSpec, ModelSpec

SOURCE_INFO = "source.json"
SNAPSHOT_FILE = "model.onnx"
_SUPPORTED_DTYPES = ("float32", "float16", "int64", "int32", "bool")
_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COPY_CHUNK = 64 << 20  # stream external data in 64 MiB pieces
_ALIGN_LARGE = 4096  # page-align big tensors so ONNX Runtime can map them
_ALIGN_SMALL = 64


# ---------------------------------------------------------------------------------------------
# Stage functions
# ---------------------------------------------------------------------------------------------


def prepare(spec: ModelSpec, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    """Check ``spec.path`` and copy it (and its external data files) into ``out_dir``."""
    from pipeline.fsutil import atomic_dir, write_artifact_json
    from pipeline.models import packaged

    src = packaged.resolve(spec.path or "", key="path")
    model = check_file(src, stage="prepare")
    graph_input_specs(model, spec)  # a declared input spec that does not fit fails here, early
    tensors = external_tensors(model, src.parent, stage="prepare")
    files = sorted({t["location"] for t in tensors})
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(src, tmp / SNAPSHOT_FILE)
        for location in files:
            dst = tmp / location
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src.parent / location, dst)
        info = {
            "path": spec.path,  # as declared: no machine-specific absolute path in a DVC output
            "package_version": packaged.package_version(spec.path or ""),
            "opset": _onnx_opset(model),
            "ir_version": model.ir_version,
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "external_data": files,
            "size_mb": round(_size(src, files) / 1e6, 3),
            "trained": False,
        }
        write_artifact_json(tmp / SOURCE_INFO, info)
    log.info(
        "snapshot of %s (opset %s, %s, %.1f MB%s)",
        spec.path, info["opset"], info["producer"] or "unknown producer", info["size_mb"],
        f", external data: {', '.join(files)}" if files else "",
    )
    return info


def export(spec: ModelSpec, source_dir: Path, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    """Reference outputs from the unmodified source, opset conversion, then model.onnx + data."""
    from pipeline.fsutil import atomic_dir
    from pipeline.onnx_utils import DATA_FILE, MODEL_FILE, save_model
    from pipeline.sources.common import finish_export, one_line, reference_samples, run_onnx

    src = Path(source_dir) / SNAPSHOT_FILE
    model = check_file(src, stage="export", check=False)
    inputs = graph_input_specs(model, spec)
    samples = reference_samples(spec, inputs)
    try:  # the unmodified source, fp32, in ONNX Runtime (a stream model run as streams)
        expected = run_onnx(src, samples.inputs, model_spec=spec)
    except PipelineError:
        raise
    except Exception as exc:
        raise StageError("export", "run source model in onnxruntime", one_line(exc)) from exc
    log.info(
        "reference: source model run in onnxruntime on %d %s", len(samples),
        f"streams of {spec.stream.steps} steps" if spec.stream is not None else "samples",
    )

    from_opset, from_ir = _onnx_opset(model), model.ir_version
    model, changes = convert(model, spec.export.opset, stage="export")
    changes.update(name_symbolic_dims(model, inputs, dynamic=spec.export.dynamic, dims=spec.export.dims))
    if changes.get("opset"):
        log.info("opset %s -> %s (onnx.version_converter)", from_opset, spec.export.opset)

    with atomic_dir(out_dir) as tmp:
        dst = tmp / MODEL_FILE
        if external_tensors(model, src.parent, stage="export"):
            moved = relocate_external_data(model, src.parent, tmp, DATA_FILE)
            _save_skeleton(model, dst)
            changes["external_data_bytes"] = moved
        else:
            save_model(model, dst)
        _check(dst, "export", "onnx.checker (converted model)")
        info = finish_export(
            spec,
            tmp,
            samples,
            expected,
            framework="onnx",
            exporter="onnx.version_converter" if changes.get("opset") else "copy",
            log=log,
            extra={"source": {"opset": from_opset, "ir_version": from_ir}, "changes": changes},
        )
    return info


# ---------------------------------------------------------------------------------------------
# Checking a file
# ---------------------------------------------------------------------------------------------


def check_file(path: Path, stage: str, check: bool = True):
    """Load ``path`` without its external data (a small skeleton even for a > 2 GB model) and make
    sure it is an ONNX model; with ``check`` also check its external data and run the ONNX checker
    (path-based, so > 2 GB works). Returns the skeleton ModelProto."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"ONNX file not found: {path}", key="path")
    if not path.is_file():
        raise ConfigError(f"expected an .onnx file, got a directory: {path}", key="path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise StageError(
            stage, f"load {path.name}", f"not a valid ONNX file (corrupt or truncated): {first_line(exc)}"
        ) from exc
    if not model.HasField("graph") or not model.graph.output or not model.opset_import:
        raise StageError(
            stage, f"load {path.name}",
            f"not a valid ONNX file (corrupt or truncated): {path.stat().st_size} bytes hold no complete graph",
        )
    if check:
        external_tensors(model, path.parent, stage=stage)
        _check(path, stage, "onnx.checker")
    return model


def _check(path: Path, stage: str, step: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise StageError(stage, step, f"{path.name}: {first_line(exc)}") from exc


def external_tensors(model, model_dir: Path, stage: str) -> list[dict[str, Any]]:
    """Every tensor stored outside the .onnx file: ``{tensor, location, offset, length}``.

    Refuses a location that is absolute or resolves outside ``model_dir`` (``../../etc/passwd``,
    symlinks included), a missing file, and a file too short for the tensor's offset + length."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from pipeline.onnx_utils import _all_tensors

    base = Path(model_dir).resolve()
    found = []
    sizes: dict[str, int] = {}
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        location = info.location or ""
        name = tensor.name or "<unnamed>"
        if not location or os.path.isabs(location) or Path(location).is_absolute():
            raise StageError(
                stage, "external data",
                f"tensor '{name}' refers to external data at '{location}': only paths relative to the "
                "model's folder are allowed; refused",
            )
        target = (base / location).resolve()
        if not target.is_relative_to(base):
            raise StageError(
                stage, "external data",
                f"tensor '{name}' refers to external data at '{location}', outside the model's folder; refused",
            )
        if location not in sizes:
            if not target.is_file():
                raise StageError(
                    stage, "external data",
                    f"tensor '{name}': external data file '{location}' is missing beside {base}",
                )
            sizes[location] = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length is not None else sizes[location] - offset
        if offset + length > sizes[location] or length < 0:
            raise StageError(
                stage, "external data",
                f"tensor '{name}': external data file '{location}' is truncated ({sizes[location]} bytes, "
                f"the tensor needs bytes {offset}..{offset + length})",
            )
        found.append({"tensor": tensor, "location": location, "offset": offset, "length": length})
    return found


# ---------------------------------------------------------------------------------------------
# Input specs
# ---------------------------------------------------------------------------------------------


def graph_inputs(model) -> list[dict[str, Any]]:
    """The model's real inputs (initializers listed as inputs by old exporters are left out):
    ``{name, dtype, shape}`` with ints for fixed dims, names for named symbolic dims, None otherwise."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    result = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        ttype = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            dtype = value.type.WhichOneof("value") or "unknown"
        else:
            try:
                dtype = helper.tensor_dtype_to_np_dtype(ttype.elem_type).name
            except (KeyError, TypeError, ValueError):
                dtype = f"elem_type {ttype.elem_type}"
        shape: list[int | str | None] = []
        for dim in ttype.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(int(dim.dim_value))
            elif dim.HasField("dim_value"):  # -1 / 0: how some exporters (Paddle2ONNX) mark a free dim
                shape.append(None)
            elif dim.dim_param:
                shape.append(dim.dim_param)
            else:
                shape.append(None)
        result.append({"name": value.name, "dtype": dtype, "shape": shape})
    return result


def _dim_name(graph_dim: int | str | None, input_name: str, axis: int) -> str:
    if isinstance(graph_dim, str) and _DIM_NAME.match(graph_dim):
        return graph_dim
    if axis == 0:
        return "batch"
    return re.sub(r"\W", "_", f"{input_name}_{axis}").lstrip("0123456789") or f"dim_{axis}"


def graph_input_specs(model, spec: ModelSpec) -> list[InputSpec]:
    """The input spec for this model: read from the graph (``spec.inputs`` is None; symbolic dims
    take their values from ``spec.export.dims``) or the declared one, checked against the graph."""
    from pipeline.schema import InputSpec

    found = graph_inputs(model)
    if spec.inputs is None:
        specs = []
        for g in found:
            if g["dtype"] not in _SUPPORTED_DTYPES:
                raise ConfigError(
                    f"input '{g['name']}' has dtype {g['dtype']}, which input specs do not support",
                    key="inputs", choices=_SUPPORTED_DTYPES,
                )
            shape = []
            for axis, dim in enumerate(g["shape"]):
                if isinstance(dim, int):
                    shape.append(dim)
                    continue
                name = _dim_name(dim, g["name"], axis)
                if name not in spec.export.dims:
                    raise ConfigError(
                        f"input '{g['name']}' has symbolic dim '{name}' (axis {axis}) with no value: "
                        f"set export.dims.{name}",
                        key="export.dims", choices=spec.export.dims,
                    )
                shape.append(name)
            specs.append(InputSpec(name=g["name"], dtype=g["dtype"], shape=shape))
        return specs
    by_name = {g["name"]: g for g in found}
    declared = {s.name for s in spec.inputs}
    for i, s in enumerate(spec.inputs):
        g = by_name.get(s.name)
        if g is None:
            raise ConfigError(
                f"input '{s.name}' is not an input of the model", key=f"inputs[{i}].name", choices=by_name
            )
        if g["dtype"] != s.dtype:
            raise ConfigError(
                f"input '{s.name}' is declared {s.dtype} but the model takes {g['dtype']}", key=f"inputs[{i}].dtype"
            )
        if len(g["shape"]) != len(s.shape):
            raise ConfigError(
                f"input '{s.name}' is declared with shape {list(s.shape)} (rank {len(s.shape)}) but the model "
                f"takes {_show(g['shape'])} (rank {len(g['shape'])})",
                key=f"inputs[{i}].shape",
            )
        for axis, (want, have) in enumerate(zip(s.shape, g["shape"])):
            value = spec.export.dims[want] if isinstance(want, str) else want
            if isinstance(have, int) and value != have:
                raise ConfigError(
                    f"input '{s.name}' is declared with shape {list(s.shape)} but the model takes "
                    f"{_show(g['shape'])}: axis {axis} is fixed at {have}, not {value}",
                    key=f"inputs[{i}].shape",
                )
    missing = [n for n in by_name if n not in declared]
    if missing:
        raise ConfigError(
            f"the model also takes input(s) {missing} which 'inputs' does not declare", key="inputs",
            choices=by_name,
        )
    from pipeline.execution import constant_feeds, initial_state

    constant_feeds(spec)  # constant values and initial states must have their input's shape
    initial_state(spec)
    check_state_links(model, spec)
    return list(spec.inputs)


def check_state_links(model, spec: ModelSpec) -> None:
    """Every ``stream.state`` link names a graph output whose shape can be its input's: one line
    naming both otherwise."""
    if spec.stream is None:
        return
    outputs = {o.name: _value_shape(o) for o in model.graph.output}
    declared = {s.name: s for s in spec.inputs or []}
    for i, link in enumerate(spec.stream.state):
        if link.output not in outputs:
            raise ConfigError(
                f"output '{link.output}' (feeding input '{link.input}') is not an output of the model",
                key=f"stream.state[{i}].output", choices=outputs,
            )
        have, want = outputs[link.output], declared[link.input]
        wanted = [spec.export.dims[d] if isinstance(d, str) else d for d in want.shape]
        if want.batch_axis is not None:
            wanted[want.batch_axis] = 1  # streams run at batch 1
        clash = have is not None and len(have) != len(wanted) or have is not None and any(
            isinstance(h, int) and h != w and not (want.batch_axis == axis)
            for axis, (h, w) in enumerate(zip(have, wanted))
        )
        if clash:
            raise ConfigError(
                f"output '{link.output}' has shape {_show(have)} but the input it feeds, '{link.input}', "
                f"is declared {_show(want.shape)}",
                key=f"stream.state[{i}]",
            )


def _value_shape(value) -> list[int | str | None] | None:
    """A graph value's shape (ints, dim names, None for unknown dims); None when it has no shape."""
    if not value.type.tensor_type.HasField("shape"):
        return None
    shape: list[int | str | None] = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or None)
    return shape


def _show(shape: Iterable[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def name_symbolic_dims(model, inputs: list[InputSpec], dynamic: bool, dims: dict[str, int]) -> dict[str, Any]:
    """Give unnamed symbolic input dims the spec's names; with ``dynamic`` False, fix every
    symbolic input dim to its value from ``dims``. Returns what changed."""
    by_name = {s.name: s for s in inputs}
    named, fixed = [], []
    for value in model.graph.input:
        s = by_name.get(value.name)
        if s is None:
            continue
        for axis, (dim, want) in enumerate(zip(value.type.tensor_type.shape.dim, s.shape)):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if not dynamic:
                size = dims[want] if isinstance(want, str) else want
                dim.Clear()
                dim.dim_value = size
                fixed.append(f"{value.name}[{axis}]={size}")
            elif isinstance(want, str) and not _DIM_NAME.match(dim.dim_param):  # unnamed, -1, or '?'
                dim.Clear()
                dim.dim_param = want
                named.append(f"{value.name}[{axis}]={want}")
    out: dict[str, Any] = {}
    if named:
        out["named_dims"] = named
    if fixed:
        out["fixed_dims"] = fixed
    return out


# ---------------------------------------------------------------------------------------------
# Opset conversion
# ---------------------------------------------------------------------------------------------


def convert(model, opset: int | None, stage: str = "export"):
    """Convert ``model`` (a skeleton is fine: external data references survive) to ``opset`` with
    onnx.version_converter, raise its IR version to what the opset needs, and drop initializers
    that old exporters list as graph inputs (ONNX Runtime would treat them as overridable and
    neither fold nor quantize them). Returns ``(model, changes)``."""
    from onnx import helper, version_converter

    changes: dict[str, Any] = {}
    current = _onnx_opset(model)
    if opset is not None and current != opset:
        try:
            model = version_converter.convert_version(model, opset)
        except Exception as exc:  # the converter raises plain RuntimeError/ValueError/Exception subclasses
            raise StageError(
                stage, "opset conversion",
                f"onnx.version_converter cannot convert opset {current} -> {opset}: {first_line(exc)}",
            ) from exc
        changes["opset"] = {"from": current, "to": opset}
    min_ir = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.ir_version < max(min_ir, 4):
        changes["ir_version"] = {"from": model.ir_version, "to": max(min_ir, 4)}
        model.ir_version = max(min_ir, 4)
    inits = {i.name for i in model.graph.initializer}
    keep = [v for v in model.graph.input if v.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
        changes["initializer_inputs_removed"] = dropped
    return model, changes


# ---------------------------------------------------------------------------------------------
# External data, streamed
# ---------------------------------------------------------------------------------------------


def relocate_external_data(model, src_dir: Path, dst_dir: Path, data_name: str) -> int:
    """Copy every external tensor of ``model`` (a skeleton loaded without external data, its
    locations relative to ``src_dir``) into one file ``dst_dir/data_name``, tensor by tensor in
    bounded chunks, and point the tensors at it. Returns the bytes written."""
    tensors = external_tensors(model, src_dir, stage="export")
    dst = Path(dst_dir) / data_name
    written = 0
    handles: dict[str, Any] = {}
    try:
        with open(dst, "wb") as out:
            for t in tensors:
                align = _ALIGN_LARGE if t["length"] >= (1 << 20) else _ALIGN_SMALL
                pad = (-written) % align
                if pad:
                    out.write(b"\0" * pad)
                    written += pad
                fh = handles.get(t["location"])
                if fh is None:
                    fh = handles[t["location"]] = open(Path(src_dir) / t["location"], "rb")
                fh.seek(t["offset"])
                remaining = t["length"]
                while remaining:
                    chunk = fh.read(min(_COPY_CHUNK, remaining))
                    if not chunk:
                        raise StageError("export", "external data", f"'{t['location']}' ended early")
                    out.write(chunk)
                    remaining -= len(chunk)
                _point_at(t["tensor"], data_name, written, t["length"])
                written += t["length"]
    finally:
        for fh in handles.values():
            fh.close()
    return written


def _point_at(tensor, location: str, offset: int, length: int) -> None:
    """Point a tensor (no raw_data: it is external already) at ``location``/``offset``/``length``."""
    from onnx import TensorProto

    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = value
    tensor.data_location = TensorProto.EXTERNAL


def _save_skeleton(model, path: Path) -> None:
    """Write the graph only: its tensors already point at their external data."""
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _onnx_opset(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _size(src: Path, files: list[str]) -> int:
    return src.stat().st_size + sum((src.parent / f).stat().st_size for f in files)


