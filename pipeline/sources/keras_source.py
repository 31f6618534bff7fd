"""Keras 3 / TensorFlow sources (framework ``keras``): a factory, a ``.keras`` file or a SavedModel.

- :func:`prepare` trains (``spec.train``: from the factory, or fine-tunes a ``.keras`` file) and
  writes ``model.keras``; without training it snapshots the source: the factory's model saved as
  ``model.keras`` (built with seeded initial weights), the ``.keras``/``.h5`` file copied, or the
  SavedModel folder copied to ``saved_model/``. Either way the source is loaded once to check it.
- :func:`export` wraps the model in a ``tf.function`` whose ``input_signature`` comes from the
  recipe's input spec (names, dtypes, ``None`` for symbolic dims when ``export.dynamic``) and
  converts it with ``tf2onnx.convert.from_function`` (Keras 3 breaks ``from_keras``; SavedModels go
  through their serving signature the same way), at ``export.opset`` with ``inputs_as_nchw``. ONNX
  Runtime's outputs are then checked against TensorFlow's (``export.atol``/``rtol``).

TensorFlow is imported inside these functions only. ConfigError keys are relative to the model spec.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, PipelineError, StageError

if TYPE_CHECKING:
    import logging

    from pipeline.schema import ModelSpec

KERAS_FILE = "model.keras"
H5_FILE = "model.h5"
SAVED_MODEL_DIR = "saved_model"
SOURCE_INFO = "source.json"
SERVING = "serving_default"


# ---------------------------------------------------------------------------------------------
# Stage functions
# ---------------------------------------------------------------------------------------------


def source_kind(spec: ModelSpec) -> str:
    """``factory``, ``keras_file`` or ``saved_model``, from the spec (``path`` wins over ``factory``)."""
    if spec.path is None:
        return "factory"
    path = Path(spec.path)
    if not path.exists():
        raise ConfigError(f"Keras model not found: {path}", key="path")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ConfigError(f"'{path}' is a folder without saved_model.pb: not a SavedModel", key="path")
        return "saved_model"
    if path.suffix not in (".keras", ".h5"):
        raise ConfigError(
            f"'{path}' is neither a .keras/.h5 file nor a SavedModel folder", key="path", choices=[".keras", ".h5"]
        )
    return "keras_file"


def save_keras(model: Any, path: Path) -> Path:
    """``model.save(path)``, then make the archive byte-stable: Keras writes the save time into
    ``metadata.json``, Python object ids (``shared_object_id``) into ``config.json`` and file times into
    the zip, so the same weights gave a new file (and new DVC hashes downstream) on every run. The
    ids are renumbered in order of appearance (they only link shared objects inside the file)."""
    import json
    import re
    import zipfile

    model.save(path)
    with zipfile.ZipFile(path) as zf:
        entries = [(info.filename, zf.read(info.filename)) for info in zf.infolist()]
    ids: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        return f'"shared_object_id": {ids.setdefault(match.group(1), str(len(ids) + 1))}'

    stable = []
    for name, data in entries:
        if name == "metadata.json":
            meta = json.loads(data)
            meta.pop("date_saved", None)
            data = json.dumps(meta, sort_keys=True).encode()
        elif name == "config.json":
            data = re.sub(r'"shared_object_id": (\d+)', renumber, data.decode()).encode()
        stable.append((name, data))
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in stable:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
    return path


def prepare(spec: ModelSpec, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    from pipeline.fsutil import atomic_dir, write_artifact_json
    from pipeline.sources.tf_convert import versions
    from pipeline.train import keras_train

    kind = source_kind(spec)
    if spec.train is not None and kind == "saved_model":
        raise ConfigError("a SavedModel cannot be trained here: use a factory or a .keras file", key="train")
    metrics: dict[str, Any] = {"trained": False}
    with atomic_dir(out_dir) as tmp:
        if spec.train is not None:
            with keras_train.deterministic(spec.train.seed):
                model = _build_or_load(spec, kind, stage="prepare")
                check_model_inputs(model, spec, dims=None)
                metrics = keras_train.train(model, spec.train, spec.inputs or [], log)
            save_keras(model, tmp / KERAS_FILE)
        elif kind == "factory":
            with keras_train.deterministic(0):  # as torch sources: untrained weights from a fixed seed
                model = _build_or_load(spec, kind, stage="prepare")
            check_model_inputs(model, spec, dims=None)
            save_keras(model, tmp / KERAS_FILE)
        elif kind == "keras_file":
            check_model_inputs(_build_or_load(spec, kind, stage="prepare"), spec, dims=None)
            shutil.copyfile(spec.path, tmp / (KERAS_FILE if Path(spec.path).suffix == ".keras" else H5_FILE))
        else:
            _serving_signature(_load_saved_model(Path(spec.path), "prepare"), "prepare")
            shutil.copytree(spec.path, tmp / SAVED_MODEL_DIR)
        write_artifact_json(tmp / SOURCE_INFO, {"kind": kind, "path": spec.path, **versions(), **metrics})
    log.info("prepared keras source (%s)%s", kind, " after training" if metrics.get("trained") else "")
    return metrics


def export(spec: ModelSpec, source_dir: Path, out_dir: Path, log: logging.Logger) -> dict[str, Any]:
    import tf2onnx

    from pipeline.fsutil import atomic_dir
    from pipeline.sources.common import finish_export, reference_samples, save_onnx
    from pipeline.sources.tf_convert import (
        check_nchw, convert, import_tf, input_signature, name_graph, onnx_samples, run_tf, versions,
    )

    tf = import_tf()
    nchw = check_nchw(spec)
    sig = input_signature(spec)
    names = [s.name for s in spec.inputs or []]
    source_dir = Path(source_dir)
    if (source_dir / SAVED_MODEL_DIR).is_dir():
        kind = "saved_model"
        body = _saved_model_body(spec, source_dir / SAVED_MODEL_DIR)
    else:
        kind = "keras"
        model = _load_keras(spec, _keras_file(source_dir), stage="export")
        check_model_inputs(model, spec, dims=spec.export.dims)
        body = _keras_body(spec, model)
    fn = tf.function(body, input_signature=sig, autograph=False)

    samples = reference_samples(spec)
    try:
        expected = run_tf(fn, samples, names, batch=fixed_batch(spec))
    except PipelineError:
        raise
    except Exception as exc:
        from pipeline.sources.common import one_line

        raise StageError("export", "run TensorFlow model", one_line(exc)) from exc
    model_proto = convert(
        lambda: tf2onnx.convert.from_function(
            fn, input_signature=sig, opset=spec.export.opset, inputs_as_nchw=nchw or None
        ),
        "from_function",
        spec.export.opset,
    )
    name_graph(model_proto, spec.inputs or [], nchw, spec.export.dynamic)
    with atomic_dir(out_dir) as tmp:
        save_onnx(model_proto, tmp)
        info = finish_export(
            spec,
            tmp,
            onnx_samples(samples, nchw),
            expected,
            framework="keras",
            exporter="tf2onnx.from_function",
            log=log,
            extra={"source_kind": kind, "inputs_as_nchw": nchw, "versions": versions()},
        )
    return info


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _import_factory_module(spec: ModelSpec) -> None:
    """Import the factory's module so custom layers it registers are known when loading."""
    if spec.factory is not None:
        from pipeline.project import import_module

        import_module(spec.factory.target.rpartition(".")[0], key="factory._target_")


def _build_or_load(spec: ModelSpec, kind: str, stage: str):
    """The model to train or snapshot: the factory's, or the ``.keras``/``.h5`` file."""
    import keras

    from pipeline.sources.common import build_from_factory

    if kind == "keras_file":
        return _load_keras(spec, Path(spec.path), stage)
    return build_from_factory(spec.factory, keras.Model, "a keras.Model")


def _keras_file(source_dir: Path) -> Path:
    for name in (KERAS_FILE, H5_FILE):
        if (source_dir / name).is_file():
            return source_dir / name
    raise StageError("export", "load source", f"{source_dir} holds no {KERAS_FILE}, {H5_FILE} or {SAVED_MODEL_DIR}/")


def _load_keras(spec: ModelSpec, path: Path, stage: str):
    import keras

    from pipeline.sources.common import one_line

    _import_factory_module(spec)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise StageError(stage, f"load {path.name}", f"not a loadable Keras model: {one_line(exc)}") from exc


def _load_saved_model(path: Path, stage: str):
    from pipeline.sources.common import one_line
    from pipeline.sources.tf_convert import import_tf

    tf = import_tf()
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:
        raise StageError(stage, "load SavedModel", f"{path}: {one_line(exc)}") from exc


def _serving_signature(loaded, stage: str):
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if SERVING in signatures:
        return signatures[SERVING]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    raise StageError(
        stage, "SavedModel signature",
        f"no '{SERVING}' signature to convert (signatures: {sorted(signatures) or 'none'})",
    )


def check_model_inputs(model, spec: ModelSpec, dims: Mapping[str, int] | None) -> None:
    """The declared inputs must fit the Keras model's inputs (count, rank, fixed dims), by position.

    ``dims`` gives symbolic dims their values (the export stage); the prepare stage passes None and
    compares only the declared fixed dims, since it does not read ``export`` (a DVC param of export)."""
    declared = spec.inputs or []
    model_inputs = list(getattr(model, "inputs", None) or [])
    if not model_inputs:
        return  # a subclassed model not yet built: the TensorFlow run will tell
    if len(model_inputs) != len(declared):
        raise ConfigError(
            f"the Keras model takes {len(model_inputs)} input(s) but 'inputs' declares {len(declared)} "
            f"({[s.name for s in declared]})",
            key="inputs",
        )
    for i, (s, t) in enumerate(zip(declared, model_inputs)):
        have = tuple(t.shape)
        want = tuple((dims or {}).get(d) if isinstance(d, str) else d for d in s.shape)
        bad = len(have) != len(want) or any(h is not None and w is not None and h != w for h, w in zip(have, want))
        if bad:
            shown = "(" + ", ".join("None" if h is None else str(h) for h in have) + ")"
            raise ConfigError(
                f"input '{s.name}' is declared with shape {list(s.shape)} but the Keras model takes {shown}",
                key=f"inputs[{i}].shape",
            )


def fixed_batch(spec: ModelSpec) -> int | None:
    """The batch size TensorFlow must be called with when the signature fixes it, else None."""
    first = (spec.inputs or [None])[0]
    if first is None or not first.shape:
        return None
    dim = first.shape[0]
    if isinstance(dim, int):
        return dim
    return None if spec.export.dynamic else spec.export.dims[dim]


# ---------------------------------------------------------------------------------------------
# The function tf2onnx converts: positional inputs in spec order -> {output name: tensor}
# ---------------------------------------------------------------------------------------------


def _keras_body(spec: ModelSpec, model):
    from pipeline.sources.common import output_names

    names = [s.name for s in spec.inputs or []]
    model_names = [getattr(t, "name", "").split(":")[0] for t in (getattr(model, "inputs", None) or [])]
    by_name = len(names) > 1 and set(model_names) == set(names)

    def body(*args):
        if len(args) == 1:
            feed = args[0]
        elif by_name:
            feed = dict(zip(names, args))
        else:
            feed = list(args)
        out = model(feed, training=False)
        if isinstance(out, Mapping):
            keys = list(out)
            return dict(zip(_rename(spec, keys), (out[k] for k in keys)))
        values = list(out) if isinstance(out, (list, tuple)) else [out]
        return dict(zip(output_names(spec, len(values)), values))

    return body


def _saved_model_body(spec: ModelSpec, path: Path):
    loaded = _load_saved_model(path, "export")
    signature = _serving_signature(loaded, "export")
    sig_inputs = list(signature.structured_input_signature[1])
    names = [s.name for s in spec.inputs or []]
    if set(sig_inputs) == set(names):
        mapping = names
    elif len(sig_inputs) == len(names) == 1:
        mapping = sig_inputs
    else:
        raise ConfigError(
            f"the SavedModel's serving signature takes {sorted(sig_inputs)} but 'inputs' declares {names}",
            key="inputs",
            choices=sig_inputs,
        )
    out_keys = sorted(signature.structured_outputs)
    renamed = _rename(spec, out_keys)

    def body(*args):
        _keep_alive = loaded  # the signature's variables live on the loaded object
        out = signature(**dict(zip(mapping, args)))
        return {new: out[old] for old, new in zip(out_keys, renamed)}

    return body


def _rename(spec: ModelSpec, keys: Sequence[str]) -> list[str]:
    """Output keys of a model/signature -> the recipe's ``outputs`` (by name, else by position)."""
    if not spec.outputs:
        return list(keys)
    if set(spec.outputs) == set(keys):
        return list(keys)
    if len(spec.outputs) != len(keys):
        raise ConfigError(
            f"declares {len(spec.outputs)} output name(s) {list(spec.outputs)} but the model has "
            f"{len(keys)} output(s) {list(keys)}",
            key="outputs",
        )
    return list(spec.outputs)
