"""PyTorch sources: build the module from a factory, load a checkpoint, train or fine-tune, export.

- :func:`prepare` builds ``spec.factory`` (seeded), loads ``spec.checkpoint`` (``weights_only=True``),
  trains when ``spec.train`` is set, and writes ``out_dir/model.pt`` (the state dict, byte-stable).
- :func:`export` rebuilds the module, loads ``source_dir/model.pt`` and exports it with the exporter
  named by ``spec.export.exporter`` (:data:`EXPORTERS`), then verifies ONNX Runtime against PyTorch
  and writes ``reference.npz`` and ``export.json`` (see :mod:`pipeline.sources.common`).

The module is always called with keyword arguments named after ``spec.inputs``; for export it is
wrapped in :class:`NamedInputs`, which takes the inputs positionally (in the spec's order) and
forwards them by name, so transformers-style ``forward(input_ids, attention_mask, token_type_ids)``
exports on both paths.

ConfigError keys are relative to the model spec (``checkpoint``, ``factory``, ``inputs``); the stage
entry points qualify them as ``models.<name>.<key>``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import ConfigError, PipelineError, StageError
from pipeline.execution import one_at_a_time, run_samples
from pipeline.fsutil import atomic_dir
from pipeline.schema import ModelSpec
from pipeline.sources.common import build_from_factory, finish_export, one_line, output_names, reference_samples, save_onnx
from pipeline.train.torch_train import deterministic
from pipeline.train.torch_train import train as train_module

CHECKPOINT_FILE = "model.pt"
VERIFY_BATCH = 64


# ---------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------


def build_module(spec: ModelSpec) -> nn.Module:
    """Call ``spec.factory`` and check it returns an ``nn.Module`` whose forward takes the inputs."""
    target = spec.factory.target
    module = build_from_factory(spec.factory, nn.Module, "a torch.nn.Module")
    _check_forward(module, [s.name for s in spec.inputs or []], target)
    return module


def _check_forward(module: nn.Module, names: Sequence[str], target: str) -> None:
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [n for n in names if n not in accepted]
    if unknown:
        raise ConfigError(
            f"input(s) {unknown} are not arguments of {target}'s forward({', '.join(accepted)}): "
            "inputs are passed by name",
            key="inputs",
            choices=accepted,
        )


def load_state(path: str | os.PathLike, key: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True`` (also unwraps ``{"state_dict": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint file not found: {path}", key=key)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot load '{path}' with weights_only=True: {one_line(exc)}", key=key) from exc
    if isinstance(state, Mapping):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"'{path}' does not hold a state dict (a mapping of names to tensors)", key=key)
    return dict(state)


def state_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """A one-line description of how ``state`` does not fit ``module``, or None if it fits."""
    own = module.state_dict()
    problems = []
    shapes = [
        f"{k} (checkpoint {list(v.shape)}, model {list(own[k].shape)})"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        problems.append(f"shape mismatch for {len(shapes)} tensor(s): {', '.join(shapes[:3])}")
    missing = [k for k in own if k not in state]
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:3])}")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:3])}")
    return "; ".join(problems) or None


def apply_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, key: str = "checkpoint") -> None:
    problem = state_mismatch(module, state)
    if problem:
        raise ConfigError(f"{what} does not fit the model: {problem}", key=key)
    module.load_state_dict(state, strict=True)


def state_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """``torch.save`` into memory: the bytes depend only on the tensors (not on the file name)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().contiguous() for k, v in state.items()}, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------------


def prepare(spec: ModelSpec, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    """Build (seeded), load the checkpoint, train if declared; write ``out_dir/model.pt``."""
    seed = spec.train.seed if spec.train else 0
    with deterministic(seed):
        module = build_module(spec)
        if spec.checkpoint:
            apply_state(module, load_state(spec.checkpoint), f"checkpoint '{spec.checkpoint}'")
            log.info("loaded checkpoint %s", spec.checkpoint)
        if spec.train is not None:
            metrics = train_module(module, spec.train, spec.inputs or [], log)
            metrics["fine_tuned"] = spec.checkpoint is not None
        else:
            metrics = {"trained": False}
        data = state_bytes(module.state_dict())
    metrics["num_parameters"] = int(sum(p.numel() for p in module.parameters()))
    with atomic_dir(out_dir) as tmp:
        (tmp / CHECKPOINT_FILE).write_bytes(data)
    log.info("wrote %s (%d bytes)", Path(out_dir) / CHECKPOINT_FILE, len(data))
    return metrics


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


class NamedInputs(nn.Module):
    """Takes the inputs positionally (spec order), calls the module by name, returns a flat tuple."""

    def __init__(self, module: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.module = module
        self.names = list(names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(**dict(zip(self.names, args)))
        return tuple(flatten_outputs(out))


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """Tensor / tuple / list / dict / transformers ModelOutput -> the tensors in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "to_tuple"):  # transformers ModelOutput (skips None fields)
        out = out.to_tuple()
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in flatten_outputs(item)]
    if out is None:
        return []
    raise TypeError(f"model output of type {type(out).__name__} is not a tensor, tuple, list or dict")


def torch_outputs(model: nn.Module, inputs: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Run ``model`` (a :class:`NamedInputs`) on N samples in chunks; one array per output."""
    total = len(inputs[names[0]])
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, total, VERIFY_BATCH):
            args = [torch.from_numpy(np.ascontiguousarray(inputs[n][start : start + VERIFY_BATCH])) for n in names]
            outs = model(*args)
            if not parts:
                parts = [[] for _ in outs]
            for acc, t in zip(parts, outs):
                acc.append(t.detach().cpu().numpy())
    return [np.concatenate(p) for p in parts]


def _feeds_runner(model: nn.Module, names: Sequence[str], spec: ModelSpec):
    """``model`` (a :class:`NamedInputs`) as a ``pipeline.execution`` runner: feeds -> outputs by
    their names (``spec.outputs``, else ``output_<i>``), which stream state links refer to."""

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outs = model(*[torch.from_numpy(np.array(feeds[n])) for n in names])
        return dict(zip(output_names(spec, len(outs)), (t.detach().cpu().numpy() for t in outs)))

    return run


def example_dims(spec: ModelSpec) -> dict[str, int]:
    """Values for symbolic dims in the example inputs. Dynamic dims get at least 2 and distinct values
    (torch.export specializes sizes 0/1 and would unify dims with equal example sizes)."""
    dims = dict(spec.export.dims)
    if not spec.export.dynamic:
        return dims
    used: set[int] = set()
    for name in sorted(_symbolic_dims(spec)):
        value = max(dims[name], 2)
        while value in used:
            value += 1
        used.add(value)
        dims[name] = value
    return dims


def _symbolic_dims(spec: ModelSpec) -> list[str]:
    seen: list[str] = []
    for inp in spec.inputs or []:
        for d in inp.shape:
            if isinstance(d, str) and d not in seen:
                seen.append(d)
    return seen


def example_inputs(spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    from pipeline.data import concrete_shape, sample_inputs

    dims = example_dims(spec)
    tensors = []
    states = {link.input for link in spec.stream.state} if spec.stream is not None else set()
    for inp in spec.inputs or []:
        shape = concrete_shape(inp, dims)
        if inp.value is not None and inp.name not in states:  # a constant input: its value
            arr = np.asarray(inp.value, dtype=inp.dtype)
        else:  # one whole example of the input's shape, drawn from its range
            whole = inp.model_copy(update={"batch_axis": None, "value": None})
            arr = sample_inputs([whole], dims, n=1, seed=spec.reference.seed)[inp.name][0]
        tensors.append(torch.from_numpy(np.require(arr.reshape(shape), requirements="C")))  # scalars stay 0-d
    return tuple(tensors)


def _export_dynamo(model: nn.Module, args: tuple, spec: ModelSpec, in_names: list[str], out_names: list[str], tmp: Path):
    dynamic_shapes = None
    if spec.export.dynamic and _symbolic_dims(spec):
        dim_objs = {name: torch.export.Dim(name, min=1) for name in _symbolic_dims(spec)}
        per_input = tuple(
            {axis: dim_objs[d] for axis, d in enumerate(inp.shape) if isinstance(d, str)} or None
            for inp in spec.inputs or []
        )
        dynamic_shapes = (per_input,)  # NamedInputs.forward(*args): one entry, the args tuple
    program = torch.onnx.export(
        model,
        args,
        input_names=in_names,
        output_names=out_names,
        opset_version=spec.export.opset,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        external_data=False,
    )
    return program.model_proto


def _export_torchscript(model: nn.Module, args: tuple, spec: ModelSpec, in_names: list[str], out_names: list[str], tmp: Path):
    import onnx

    dynamic_axes = None
    if spec.export.dynamic and _symbolic_dims(spec):
        dynamic_axes = {
            inp.name: {axis: d for axis, d in enumerate(inp.shape) if isinstance(d, str)}
            for inp in spec.inputs or []
            if any(isinstance(d, str) for d in inp.shape)
        }
    path = tmp / "torchscript-export.onnx"
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=in_names,
        output_names=out_names,
        opset_version=spec.export.opset,
        dynamo=False,
        dynamic_axes=dynamic_axes,
    )
    proto = onnx.load(str(path), load_external_data=True)
    path.unlink()
    return proto


def strip_node_metadata(proto) -> int:
    """Drop the per-node debug metadata the dynamo exporter writes (Python stack traces with absolute
    paths of the checkout, FX node dumps, name scopes): with it, the same recipe exported from two
    folders gave different bytes, so DVC hashes differed between clones. Returns how many were dropped."""
    dropped = 0

    def graph(g) -> None:
        nonlocal dropped
        for node in g.node:
            dropped += len(node.metadata_props)
            del node.metadata_props[:]
            for attr in node.attribute:
                if attr.HasField("g"):
                    graph(attr.g)
                for sub in attr.graphs:
                    graph(sub)

    graph(proto.graph)
    for fn in proto.functions:
        for node in fn.node:
            dropped += len(node.metadata_props)
            del node.metadata_props[:]
    return dropped


# exporter name (ExportSpec.exporter) -> function(model, args, spec, input names, output names, tmp dir) -> ModelProto
EXPORTERS: dict[str, Callable[..., Any]] = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


class _Collector(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _quiet(log: logging.Logger) -> Iterator[None]:
    """Send the exporter's stdout chatter and warnings to the log file (debug), not the console."""
    buf = io.StringIO()
    # torch.onnx also logs notices through `logging` (e.g. "torchvision is not installed"): collect
    # them for the log file instead of stderr
    records: list[logging.LogRecord] = []
    collector = _Collector(records)
    torch_log = logging.getLogger("torch.onnx")
    saved = (torch_log.propagate, list(torch_log.handlers))
    torch_log.handlers = [collector]
    torch_log.propagate = False
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            torch_log.propagate, torch_log.handlers = saved
            for record in records:
                log.debug("exporter log: %s", record.getMessage())
            for line in buf.getvalue().splitlines():
                if line.strip():
                    log.debug("exporter: %s", line)
            for w in caught:
                log.debug("exporter warning: %s: %s", w.category.__name__, w.message)


def _root_cause(exc: BaseException) -> str:
    """One line: the outer error, plus the innermost cause when torch.onnx wraps it."""
    inner = exc
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    if inner is exc:
        return one_line(exc)
    return f"{one_line(inner)} (from {type(exc).__name__})"


def export(spec: ModelSpec, source_dir: Path, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    """Export ``source_dir/model.pt`` to ``out_dir/model.onnx``; verify; write reference.npz and export.json."""
    exporter = spec.export.exporter
    state_path = Path(source_dir) / CHECKPOINT_FILE
    if not state_path.is_file():
        raise StageError("export", "load source", f"{state_path} not found: run the prepare stage first")
    with deterministic(0):
        module = build_module(spec)
    try:
        apply_state(module, load_state(state_path), str(state_path))
    except ConfigError as exc:
        raise StageError("export", "load source", exc.reason) from exc
    module.eval()
    in_names = [i.name for i in spec.inputs or []]
    model = NamedInputs(module, in_names).eval()

    samples = reference_samples(spec)
    if one_at_a_time(spec):  # a stream, constant inputs or other batch axes (pipeline.execution)
        expected = list(run_samples(_feeds_runner(model, in_names, spec), samples.inputs, spec).values())
    else:
        expected = torch_outputs(model, samples.inputs, in_names)
    out_names = output_names(spec, len(expected))
    args = example_inputs(spec)
    step = f"torch.onnx.export ({exporter})"
    log.info(
        "exporting with %s (opset %s, %s dims %s)",
        exporter, spec.export.opset, "dynamic" if spec.export.dynamic else "fixed", spec.export.dims,
    )
    with atomic_dir(out_dir) as tmp:
        with tempfile.TemporaryDirectory(dir=tmp) as scratch:
            try:
                with _quiet(log):
                    proto = EXPORTERS[exporter](model, args, spec, in_names, out_names, Path(scratch))
            except PipelineError:
                raise
            except Exception as exc:
                raise StageError("export", step, _root_cause(exc)) from exc
        strip_node_metadata(proto)
        save_onnx(proto, tmp)
        info = finish_export(
            spec,
            tmp,
            samples,
            dict(zip(out_names, expected)),
            framework="torch",
            exporter=exporter,
            log=log,
            extra={
                "torch_version": torch.__version__,
                "dynamic": spec.export.dynamic,
                "dims": dict(spec.export.dims),
                "requested_opset": spec.export.opset,
            },
        )
    return info
