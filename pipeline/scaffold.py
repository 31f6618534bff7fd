"""``onnxbuild new``: commented model files and recipes, registered in ``conf/config.yaml``.

    onnxbuild new model NAME --framework onnx --path models/net.onnx
    onnxbuild new model NAME --framework transformers --path pkg://some_package/model_folder
    onnxbuild new model NAME --framework torch        (also writes mymodels/NAME.py, a factory to edit)
    onnxbuild new model NAME --framework keras        (also writes mymodels/NAME.py; or --path net.keras)
    onnxbuild new recipe NAME --model M [--quantization Q]

An ONNX file or a transformers folder is read at scaffold time: the inputs (names, dtypes, shapes with
named dynamic axes), the task and the output come from the graph or from the folder's
``config.json`` (its architecture names the head), so the result composes and builds without edits.
A transformers folder becomes a ``framework: transformers`` model (:mod:`pipeline.sources.transformers_source`)
with what its ``config.json`` implies written out: the factory reads it offline with eager attention and
the TorchScript exporter writes the graph ONNX Runtime's transformer optimizer fuses (FIELD-NOTES
"Measured 2026-11-30"); reference and calibration data are real sentences tokenized with the folder's
``tokenizer.json`` when it has one.

Files are written atomically; ``conf/config.yaml`` gets one line in its defaults list (its comments
kept); the project is composed afterwards and both files are restored when it does not compose.
An existing name is refused unless ``force``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

FRAMEWORKS = ("torch", "keras", "onnx", "transformers")
PACKAGE = "mymodels"  # where scaffolded torch / keras factories go (a top-level package in the project root)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}
SEQ_LEN = 128


def _check_name(name: str, what: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"bad {what} name '{name}': use letters, digits and underscores (not starting with a digit)")


def _yaml_value(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _inputs_yaml(inputs: list[dict[str, Any]]) -> str:
    lines = []
    for spec in inputs:
        lines.append(f"  - name: {spec['name']}")
        lines.append(f"    dtype: {spec['dtype']}")
        lines.append(f"    shape: {_yaml_value(spec['shape'])}")
        if "range" in spec:
            comment = f"   # {spec['why']}" if spec.get("why") else ""
            lines.append(f"    range: {_yaml_value(spec['range'])}{comment}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Reading a model at scaffold time
# ---------------------------------------------------------------------------------------------


def onnx_inputs(path: Path) -> tuple[list[dict[str, Any]], dict[str, int], list[str]]:
    """``(inputs, dims, outputs)`` of an ONNX graph: symbolic or unknown dims get names (the first
    axis ``batch``) with a value in ``dims``; initializers that are also inputs are left out."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-ONNX file
        raise ConfigError(f"cannot read '{path}' as an ONNX model: {exc}", key="--path") from None
    inits = {i.name for i in model.graph.initializer}
    inputs, dims = [], {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise ConfigError(f"input '{value.name}' of '{path}' has an unsupported element type {tensor.elem_type}",
                              choices=_ONNX_DTYPES.values())
        shape: list[int | str] = []
        for axis, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(int(dim.dim_value))
                continue
            name = re.sub(r"[^A-Za-z0-9_]", "_", dim.dim_param) if dim.HasField("dim_param") else ""
            if axis == 0:
                name = "batch"
            elif not name or not re.match(r"^[A-Za-z_]", name):
                name = f"{value.name}_dim{axis}".replace(".", "_")
                name = re.sub(r"[^A-Za-z0-9_]", "_", name)
            shape.append(name)
            dims.setdefault(name, 1)
        spec: dict[str, Any] = {"name": value.name, "dtype": dtype, "shape": shape}
        if dtype in ("int64", "int32"):
            spec["range"], spec["why"] = [0, 2], "sample values in [0, 2): set the real range (e.g. a vocabulary)"
        elif dtype == "bool":
            spec["range"] = [0, 2]
        inputs.append(spec)
    return inputs, dims, [o.name for o in model.graph.output]


def transformers_folder(path: str) -> tuple[Path, dict[str, Any]]:
    from pipeline.hf_config import read_config

    return read_config(path, key="--path")


# ---------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------

_COMMON_TAIL = """metrics: []      # custom metrics: [{_target_: pkg.mod.fn, provides: [name]}]
stream: null     # a stateful streaming model: {steps, state: [{output, input}]}
"""


def _watch(path: str | None, root: Path, fallback: str) -> str:
    """What should rebuild the model when it changes: the model file itself, or for a packaged one
    the pinned requirements (the package version), else ``fallback``."""
    if path and not path.startswith("pkg://") and (root / path).exists():
        return path
    for candidate in ("requirements/constraints.txt", "pyproject.toml"):
        if (root / candidate).is_file():
            return candidate
    return fallback


def _project_relative(path: str | None, root: Path) -> str | None:
    """A path inside the project as written in the model file: relative to the root (stages run there)."""
    if not path or path.startswith("pkg://"):
        return path
    full = Path(path).expanduser()
    full = full if full.is_absolute() else Path.cwd() / full
    try:
        return full.resolve().relative_to(root).as_posix()
    except ValueError:
        return path


def render_onnx(name: str, path: str, root: Path) -> str:
    from pipeline.models import packaged

    src = packaged.resolve(path, key="--path") if packaged.is_packaged(path) else (root / path)
    if not src.is_file():
        raise ConfigError(f"'{path}' is not a file (relative to the project root {root})", key="--path")
    inputs, dims, outputs = onnx_inputs(src)
    dims = {"batch": 1, **dims}
    watch = _watch(path, root, f"conf/model/{name}.yaml")
    return f"""# {name}: an existing ONNX model ({path}), written by `onnxbuild new model {name} --framework onnx`.
# Inputs as read from the graph: dynamic axes got names, with the value used for the export and the
# reference samples in export.dims (set the sizes you serve). Sample values are drawn from each input's
# range (no dataset is declared): for a fidelity figure that means something, declare a dataset under
# reference.dataset and calibration (a _target_ returning pipeline.data.Samples).
# task: classification | embedding | detection | segmentation | regression | other (decides the fidelity figures).
# Builds of it:  onnxbuild new recipe {name}_fp32 --model {name}   (then: onnxbuild compose && dvc repro)
framework: onnx
factory: null
path: {path}
checkpoint: null
watch: {watch}   # a change to this rebuilds the model
inputs:
{_inputs_yaml(inputs)}
outputs: null    # the graph's own output names: {', '.join(outputs)}
task: other
fidelity: {{}}     # task-true fidelity settings (output, pooling, mask_input, threshold): defaults
{_COMMON_TAIL}train: null
export:
  opset: null    # keep the file's opset (static int8 per-channel needs 13 or higher)
  dynamic: true
  dims: {_yaml_value(dims)}
reference:
  dataset: null
  num_samples: 256
  seed: 0
calibration: null
"""


def _block(values: dict[str, Any], indent: str) -> str:
    return "\n".join(f"{indent}{key}: {_yaml_value(value)}" for key, value in values.items())


def transformers_head(config: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(head, task, output, fidelity as flow YAML)`` that a transformers config implies
    (:mod:`pipeline.hf_config`)."""
    from pipeline.hf_config import head_of, task_of

    head = head_of(config)
    task, output, fidelity = task_of(head)
    return head, task, output, _yaml_value(fidelity)


def transformers_inputs(config: dict[str, Any]) -> list[dict[str, Any]]:
    from pipeline.hf_config import derived_inputs

    why = {
        "input_ids": "the vocabulary (the export's example inputs; reference data are real text when tokenizer.json exists)",
        "attention_mask": "0/1: the traced graph must not assume no padding",
    }
    return [{**spec, "why": why.get(spec["name"])} for spec in derived_inputs(config)]


def render_transformers(name: str, path: str, root: Path) -> str:
    from pipeline.hf_config import FACTORY, seq_len, sentences

    folder, config = transformers_folder(path)
    head, task, output, fidelity = transformers_head(config)
    inputs = transformers_inputs(config)
    seq = seq_len(config)
    watch = _watch(path, root, f"conf/model/{name}.yaml")
    arch = ", ".join(config.get("architectures") or [config.get("model_type", "?")])
    reference = sentences(path, folder, "test", 256, seq)
    calibration = sentences(path, folder, "calib", 128, seq)
    if reference and calibration:
        data = f"""reference:
  dataset:   # prose sentences tokenized with the model's tokenizer.json
{_block(reference, '    ')}
  num_samples: 256
  seed: 0
calibration:
{_block(calibration, '  ')}"""
    else:
        data = """reference:
  dataset: null    # no tokenizer.json in the folder: samples drawn from the input ranges
  num_samples: 256
  seed: 0
calibration: null"""
    return f"""# {name}: a Hugging Face transformers model ({arch}, model_type {config.get('model_type')}) read offline from
# {path}, written by `onnxbuild new model {name} --framework transformers`.
# `framework: transformers` reads what a key leaves out (null) from the folder's config.json
# (pipeline/hf_config.py); the values below are what it read, written out so that you can change them:
# inputs and dynamic axes (batch, seq), head '{head}' -> output {output}, task {task}. The factory
# ({FACTORY}) runs the model with eager attention and the TorchScript exporter writes the graph
# whose attention ONNX Runtime fuses (recipes: passes transformer, or quantization auto).
# Builds of it:  onnxbuild new recipe {name}_fp32 --model {name}   (then: onnxbuild compose && dvc repro)
framework: transformers
path: {path}
factory: null    # from_folder(path, head: {head}, attn_implementation: eager); or your own _target_
checkpoint: null
watch: {watch}   # a change to this rebuilds the model (the weights' package pin, or the folder)
inputs:
{_inputs_yaml(inputs)}
outputs: [{output}]
task: {task}
fidelity: {fidelity}
{_COMMON_TAIL}train: null
export:
  exporter: torchscript      # with eager attention: the graph whose attention fuses
  opset: 17
  dynamic: true
  dims: {{batch: 1, seq: {seq}}}
  atol: 1.0e-4
  rtol: 1.0e-3
{data}
"""


_TORCH_FACTORY = '''"""{name}: a PyTorch model factory (written by `onnxbuild new model {name} --framework torch`).

Replace the network with yours; keep ``build`` (its keyword arguments come from the model file's
``factory`` section) and the input name(s) declared in conf/model/{name}.yaml.
"""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        return self.body(input)


def build(features: int = 16, hidden: int = 64, classes: int = 10) -> nn.Module:
    """Factory for recipes: ``_target_: {module}.build``."""
    torch.manual_seed(0)
    return Net(features, hidden, classes)
'''

_KERAS_FACTORY = '''"""{name}: a Keras model factory (written by `onnxbuild new model {name} --framework keras`).

Replace the network with yours; keep ``build`` (its keyword arguments come from the model file's
``factory`` section) and the input name declared in conf/model/{name}.yaml.
"""

from __future__ import annotations


def build(features: int = 16, hidden: int = 64, classes: int = 10):
    """Factory for recipes: ``_target_: {module}.build``. Returns a keras.Model."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(features,), name="input")
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="{name}")
'''


def render_code_model(name: str, framework: str, module: str, path: str | None) -> str:
    if framework == "keras" and path:
        factory, path_line = "factory: null", f"path: {path}"
        watch = path
    else:
        factory = f"factory:\n  _target_: {module}.build\n  features: 16\n  hidden: 64\n  classes: 10"
        path_line, watch = "path: null", module.replace(".", "/") + ".py"
    export = (
        "export:\n  exporter: dynamo\n  opset: 18\n  dynamic: true\n  dims: {batch: 1}"
        if framework == "torch"
        else "export:\n  opset: 17\n  dynamic: true\n  dims: {batch: 1}"
    )
    origin = (f"It is loaded from {path} (a file in the project);" if framework == "keras" and path else
              f"The factory builds it ({watch}, in a package of yours in the project root: edit the network there);")
    checkpoint = "checkpoint: null   # a state dict to load (weights_only), e.g. checkpoints/" + name + ".pt" if framework == "torch" else "checkpoint: null"
    return f"""# {name}: a {framework} model, written by `onnxbuild new model {name} --framework {framework}`.
# {origin}
# declare its inputs below (name, dtype, shape with named dynamic axes and their export values).
# Train it here (train: {{dataset: {{_target_: ...}}, epochs: ...}}) or load a checkpoint; give a real
# dataset under reference.dataset / calibration for fidelity figures that mean something.
# task: classification | embedding | detection | segmentation | regression | other.
# Builds of it:  onnxbuild new recipe {name}_fp32 --model {name}   (then: onnxbuild compose && dvc repro)
framework: {framework}
{factory}
{path_line}
{checkpoint}
watch: {watch}   # a change to this rebuilds the model
inputs:
  - name: input
    dtype: float32
    shape: [batch, 16]
    range: [-1.0, 1.0]
outputs: null
task: classification
fidelity: {{}}     # task-true fidelity settings (output, pooling, mask_input, threshold): defaults
{_COMMON_TAIL}train: null
{export}
reference:
  dataset: null    # {{_target_: your_package.data.load, split: test}} returning pipeline.data.Samples
  num_samples: 256
  seed: 0
calibration: null  # the same for static int8 calibration
"""


# ---------------------------------------------------------------------------------------------
# Registering and writing
# ---------------------------------------------------------------------------------------------


def register(text: str, prefix: str, line: str) -> str:
    """Insert ``line`` after the last defaults entry starting with ``prefix`` (else before the opt-in
    ``experiment`` slot or ``_self_``), keeping every comment."""
    rows = text.splitlines(keepends=True)
    if rows and not rows[-1].endswith("\n"):
        rows[-1] += "\n"
    last = max((i for i, r in enumerate(rows) if r.strip().startswith(prefix)), default=None)
    if last is None:
        last = next(
            (i - 1 for i, r in enumerate(rows) if r.strip().startswith(("- experiment", "- _self_"))), None
        )
        if last is None:
            raise ConfigError(f"conf/config.yaml has no defaults list to add '{line.strip()}' to")
    indent = re.match(r"\s*", rows[last] if rows[last].strip().startswith("-") else "  ").group(0) or "  "
    rows.insert(last + 1, f"{indent}{line.strip()}\n")
    return "".join(rows)


def _write_checked(conf: Path, files: dict[Path, str], config_text: str, key: str) -> None:
    """Write ``files`` and the new config.yaml; compose; restore everything when it does not compose."""
    from pipeline.compose import compose
    from pipeline.fsutil import write_text

    config_file = conf / "config.yaml"
    old = {path: (path.read_text() if path.exists() else None) for path in [*files, config_file]}
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
        write_text(config_file, config_text)
        try:
            data = compose([], conf).data
        except ConfigError as exc:
            if exc.key != "builds" or not key.startswith("models."):
                raise
            data = _model_alone(conf, key)  # a project with no build yet: validate the model by itself
        if key.split(".", 1)[1] not in (data.get(key.split(".")[0]) or {}):
            raise ConfigError(f"'{key}' is not in the composed project after registering it", source=str(config_file))
    except BaseException:
        for path, text in old.items():
            if text is None:
                path.unlink(missing_ok=True)
            else:
                write_text(path, text)
        raise


def _model_alone(conf: Path, key: str) -> dict[str, Any]:
    """Compose ``conf`` without validating the project, then validate the model ``key`` names."""
    from pipeline.project_check import compose_raw
    from pipeline.schema import validate_model

    data = compose_raw(conf, "config", [])
    name = key.split(".", 1)[1]
    validate_model((data.get("models") or {}).get(name), key, f"conf/model/{name}.yaml")
    return data


def new_model(name: str, framework: str, path: str | None = None, conf: str | Path = "conf",
              force: bool = False, package: str = PACKAGE) -> dict[str, Any]:
    """Write conf/model/NAME.yaml (and, for torch/keras without a file, PACKAGE/NAME.py) and declare it."""
    from pipeline.project import project_root

    _check_name(name, "model")
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework '{framework}'", key="--framework", choices=FRAMEWORKS)
    conf = Path(conf)
    root = project_root(conf)
    model_file = conf / "model" / f"{name}.yaml"
    config_text = (conf / "config.yaml").read_text()
    declared = re.search(rf"^\s*-\s*model@models\.{re.escape(name)}\s*:", config_text, re.M) is not None
    if (model_file.exists() or declared) and not force:
        raise ConfigError(f"model '{name}' exists (use --force to replace it)", source=str(model_file))
    path = _project_relative(path, root)
    files: dict[Path, str] = {}
    if framework == "onnx":
        if not path:
            raise ConfigError("an onnx model needs --path (the .onnx file, or pkg://package/file.onnx)", key="--path")
        files[model_file] = render_onnx(name, path, root)
    elif framework == "transformers":
        if not path:
            raise ConfigError("a transformers model needs --path (its folder, or pkg://package/folder)", key="--path")
        files[model_file] = render_transformers(name, path, root)
    else:
        module = f"{package}.{name}"
        code = root / package / f"{name}.py"
        if not (framework == "keras" and path):
            if code.exists() and not force:
                raise ConfigError(f"{code} exists (use --force to replace it)", key="--framework")
            files[code] = (_TORCH_FACTORY if framework == "torch" else _KERAS_FACTORY).format(name=name, module=module)
            init = root / package / "__init__.py"
            if not init.exists():
                files[init] = f'"""Your models: factories referenced by recipes (``_target_: {package}.<module>.build``)."""\n'
        files[model_file] = render_code_model(name, framework, module, path)
    if not declared:
        config_text = register(config_text, "- model@models.", f"- model@models.{name}: {name}")
    _write_checked(conf, files, config_text, f"models.{name}")
    lines = [f"wrote {p}" for p in files] + [f"declared model@models.{name} in {conf / 'config.yaml'}"]
    lines.append(f"next: onnxbuild new recipe {name}_fp32 --model {name}, then onnxbuild compose && dvc repro")
    return {"files": [str(p) for p in files], "lines": lines}


def new_recipe(name: str, model: str, quantization: str = "none", conf: str | Path = "conf",
               force: bool = False) -> dict[str, Any]:
    """Write conf/recipe/NAME.yaml (a build of ``model`` with ``quantization``) and declare it."""
    from pipeline.compose import compose, group_options

    _check_name(name, "build")
    conf = Path(conf)
    options = group_options(conf, "quantization")
    if quantization not in options:
        raise ConfigError(f"unknown quantization option '{quantization}'", key="--quantization", choices=options)
    try:
        project = compose([], conf).data
    except ConfigError as exc:
        if exc.key != "builds":
            raise
        from pipeline.project_check import compose_raw

        project = compose_raw(conf, "config", [])  # no build yet: this recipe is the first
    models = project.get("models") or {}
    if model not in models:
        raise ConfigError(f"unknown model '{model}' (declare it first: onnxbuild new model)", key="--model",
                          choices=models)
    recipe_file = conf / "recipe" / f"{name}.yaml"
    config_text = (conf / "config.yaml").read_text()
    declared = name in (project.get("builds") or {})
    if (recipe_file.exists() or declared) and not force:
        raise ConfigError(f"recipe '{name}' exists (use --force to replace it)", source=str(recipe_file))
    task = models[model].get("task")
    fused = models[model].get("framework") == "transformers" or "hf_transformers" in str(
        (models[model].get("factory") or {}).get("_target_"))
    lines = [
        f"# {name}: model {model}, quantization {quantization}, written by `onnxbuild new recipe`.",
        "# A recipe lists only what differs from conf/build/default.yaml (passes default, quantization none,",
        "# target cpu, evaluate default); group options: onnxbuild list.",
        f"# Build it:  onnxbuild compose && dvc repro evaluate@{name}",
        "defaults:",
        "  - /build@_here_: default",
    ]
    if fused and quantization == "auto":
        lines.append("  - override /passes@passes: none   # the search tries the export as is and fused (transformer_optimize)")
    elif fused:
        lines.append("  - override /passes@passes: transformer   # ONNX Runtime's attention/LayerNorm fusions")
    if quantization != "none":
        lines.append(f"  - override /quantization@quantization: {quantization}")
    lines += ["  - _self_", "", f"model: {model}"]
    gate = {"classification": "min_top1_agreement: 0.99", "embedding": "min:\n      embedding_cosine_min: 0.99"}.get(task)
    if quantization == "none":
        lines += ["evaluate:", "  gates:", "    min_cosine: 0.999   # float32: the passes must not change results"]
    elif gate:
        lines += ["evaluate:", "  gates:", f"    {gate}"]
    else:
        lines += ["evaluate:", "  gates:", "    min_cosine: 0.99"]
    if not declared:
        config_text = register(config_text, "- recipe@builds.", f"- recipe@builds.{name}: {name}")
    _write_checked(conf, {recipe_file: "\n".join(lines) + "\n"}, config_text, f"builds.{name}")
    return {
        "files": [str(recipe_file)],
        "lines": [f"wrote {recipe_file}", f"declared recipe@builds.{name} in {conf / 'config.yaml'}",
                  f"next: onnxbuild compose && dvc repro evaluate@{name}"],
    }
