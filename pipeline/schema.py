"""The schema of a composed project (``params.yaml``): models, and builds that refer to them.

Unknown keys, wrong types and unknown pass / quantizer / target names are errors that name the key
and list the valid choices. Pass, quantizer and target parameters are declared by their
implementations (each has a ``Params`` pydantic model) and looked up through explicit registries.

Layout::

    models:
      NAME: ModelSpec        # a source (torch / keras / tflite / onnx), optional training, export settings
    builds:
      NAME: BuildSpec        # model: NAME, passes: [...], quantization: {...}, target: {...}, evaluate: {...}
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

DType = Literal["float32", "float16", "int64", "int32", "bool"]
_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Model and build names become folder names and command-line arguments of the DVC stages.
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Upper bounds: beyond them a value is a typo (``runs=1e23``) that would hang a stage, not a setting.
MAX_DIM = 1 << 16  # one symbolic dim's value (batch, sequence, pixels)
MAX_SAMPLES = 1 << 16  # reference / fidelity samples
MAX_RUNS = 100_000  # timed runs (p50 over 100 is already stable)
MAX_WARMUP = 10_000
MAX_BATCH = 4096


class Strict(BaseModel):
    """Base for every schema: unknown keys are errors, values are not silently coerced across kinds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def parse_shape(value: Any) -> tuple[int | str, ...]:
    """``[batch, 3, 224, 224]`` (a YAML list) or the string ``"[batch, 3, 224, 224]"`` -> tuple."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith("[") and text.endswith("]")):
            raise ValueError(f"bad shape string {value!r}: expected a list like [batch, 3, 224, 224]")
        inner = text[1:-1].strip()
        items: list[Any] = [] if not inner else [p.strip() for p in inner.split(",")]
        parsed: list[int | str] = []
        for item in items:
            if re.fullmatch(r"-?\d+", item):
                parsed.append(int(item))
            else:
                parsed.append(item)
        value = parsed
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"bad shape {value!r}: expected a list of positive ints and dim names")
    dims: list[int | str] = []
    for dim in value:
        if isinstance(dim, bool):
            raise ValueError(f"bad dim {dim!r} in shape {list(value)}")
        if isinstance(dim, int):
            if dim <= 0:
                raise ValueError(f"bad dim {dim} in shape {list(value)}: dims must be positive")
            dims.append(dim)
        elif isinstance(dim, str) and _DIM_NAME.match(dim):
            dims.append(dim)
        else:
            raise ValueError(
                f"bad dim {dim!r} in shape {list(value)}: use a positive int or a name like 'batch'"
            )
    return tuple(dims)


class Factory(BaseModel):
    """A Hydra-style factory: ``{_target_: module.attr, **kwargs}``.

    The module is located (not imported: neither it nor its parent packages run) when the recipe is
    validated, so a typo is caught early without importing torch or TensorFlow. Which modules a
    recipe may name at all is the project's allowlist (:mod:`pipeline.trust`).
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    target: str = Field(alias="_target_")

    @field_validator("target")
    @classmethod
    def _importable(cls, value: str) -> str:
        from pipeline.trust import locate_module

        module, _, attr = value.rpartition(".")
        if not module or not attr:
            raise ValueError(f"'{value}' is not a dotted path like package.module.function")
        if locate_module(module) is None:
            raise ValueError(f"cannot import '{module}' for factory '{value}': no such module")
        return value

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def as_hydra(self) -> dict[str, Any]:
        return {"_target_": self.target, **self.kwargs}


class InputSpec(Strict):
    """One named model input: dtype, shape with symbolic dims, and the value range for samples.

    ``batch_axis``: where the samples of a batch are stacked (0 by default; ``None`` for an input
    with no batch axis, e.g. a scalar sample rate or a recurrent state fed whole). A model with any
    input whose batch axis is not 0, or with a ``stream``, runs one sample at a time.
    ``value``: a constant input (the same value every run, never sampled or stored per sample);
    for a stream's state input it is the initial state (zeros when not given).
    """

    name: str
    dtype: DType = "float32"
    shape: tuple[int | str, ...]
    # Sample values are drawn uniformly from [low, high) when no dataset supplies them
    # (low == high: every sample holds that value).
    range: tuple[float, float] = (0.0, 1.0)
    batch_axis: int | None = 0
    value: float | int | bool | list[Any] | None = None

    @field_validator("shape", mode="before")
    @classmethod
    def _shape(cls, value: Any) -> tuple[int | str, ...]:
        return parse_shape(value)

    @model_validator(mode="after")
    def _range(self) -> InputSpec:
        low, high = self.range
        if not low <= high:
            raise ValueError(f"range [{low}, {high}] is empty: low must not be above high")
        if self.batch_axis is not None and not 0 <= self.batch_axis < max(len(self.shape), 1):
            raise ValueError(
                f"batch_axis {self.batch_axis} is outside the shape {list(self.shape)} "
                f"(0..{max(len(self.shape) - 1, 0)}, or null for no batch axis)"
            )
        if not self.shape and self.batch_axis is not None:
            raise ValueError("a scalar input (shape []) has no batch axis: set batch_axis: null")
        return self

    @property
    def constant(self) -> bool:
        return self.value is not None


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class ExportSpec(Strict):
    """How a source becomes ONNX (or, for ONNX sources, how it is imported)."""

    exporter: Literal["dynamo", "torchscript"] = "dynamo"  # torch only
    opset: int | None = 18  # None: keep an ONNX source's opset / the converter's default
    dynamic: bool = True  # symbolic dims stay symbolic in the exported graph
    dims: dict[str, Annotated[int, Field(ge=1, le=MAX_DIM)]] = Field(default_factory=lambda: {"batch": 1})  # values for symbolic dims
    atol: float = Field(1e-4, ge=0, allow_inf_nan=False)
    rtol: float = Field(1e-3, ge=0, allow_inf_nan=False)
    inputs_as_nchw: list[str] = Field(default_factory=list)  # keras/tflite: transpose these inputs

    @field_validator("opset")
    @classmethod
    def _opset(cls, value: int | None) -> int | None:
        if value is not None and not 7 <= value <= 23:
            raise ValueError(f"opset {value} is outside the supported range 7..23")
        return value


class TrainSpec(Strict):
    """Train from scratch, or fine-tune from the model's checkpoint, on a declared dataset."""

    dataset: Factory  # returns pipeline.data.Samples for the training split
    val_dataset: Factory | None = None
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1, le=MAX_SAMPLES)
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    seed: int = 0


class ReferenceSpec(Strict):
    """Held-out samples on which fidelity and accuracy are measured."""

    dataset: Factory | None = None  # labelled evaluation set; None: draw from the inputs' ranges
    num_samples: int = Field(256, ge=32, le=MAX_SAMPLES)
    seed: int = 0


# What a model is for: decides which task-true fidelity figures are measured (pipeline/evaluate/task_metrics.py)
# and which gates a build of it may declare (pipeline/evaluate/gates.py: gate_names).
Task = Literal["classification", "embedding", "detection", "segmentation", "regression", "other"]
TASKS: tuple[str, ...] = Task.__args__  # type: ignore[attr-defined]


class FidelitySpec(Strict):
    """How the task's fidelity is read from the outputs (one output: ``output``, default the first).

    classification: the class axis is ``class_axis`` of the model's output (default the last; 1 for
    channel-first per-pixel scores ``[batch, classes, h, w]``); the other axes after the batch axis
    are positions (per-sample agreement = share of positions whose argmax matches).
    embedding: ``pooling`` over the positions axis (axis 1 of ``[batch, positions, dim]``):
    ``mean`` (masked by ``mask_input`` when given), ``cls`` (position 0) or ``none`` (already pooled).
    detection / segmentation: the map is binarised at ``threshold`` (``> threshold``) before IoU.
    """

    output: str | None = None
    class_axis: int = -1
    pooling: Literal["mean", "cls", "none"] = "mean"
    mask_input: str | None = None
    threshold: float = 0.5


class MetricSpec(Factory):
    """A custom fidelity metric: ``{_target_: pkg.module.fn, provides: [name, ...], **kwargs}``.

    Called as ``fn(source_outputs, build_outputs, inputs, labels, **kwargs)`` (dicts of numpy arrays
    by output / input name, labels or None); returns ``{name: number}`` for every name in
    ``provides``. The numbers land under ``custom.<name>`` in the metrics JSON and can be gated
    (``gates: {min: {name: threshold}}``)."""

    provides: list[str] = Field(min_length=1)

    @field_validator("provides")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _DIM_NAME.match(name):
                raise ValueError(f"metric name {name!r} must be an identifier (letters, digits, _)")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate names in provides {value}")
        from pipeline.evaluate.gates import builtin_metric_names

        taken = sorted(set(value) & builtin_metric_names())
        if taken:
            raise ValueError(
                f"custom metric name(s) {taken} are built-in metric names: a gate on them would read the "
                "built-in figure; choose other names"
            )
        return value

    def as_hydra(self) -> dict[str, Any]:
        return {"_target_": self.target, "provides": list(self.provides), **self.kwargs}


class StateLink(Strict):
    """One recurrent state: ``output`` of step t is fed as ``input`` at step t+1."""

    output: str
    input: str


class StreamSpec(Strict):
    """A stateful streaming model: each reference sample is a stream of ``steps`` calls; the
    ``state`` outputs feed the matching inputs of the next call (initial state: the input's
    ``value``, else zeros). Per-step inputs are stored as ``[samples, steps, *shape]``; latency is
    per step."""

    steps: int = Field(8, ge=2, le=MAX_SAMPLES)
    state: list[StateLink] = Field(min_length=1)


class ModelSpec(Strict):
    framework: Literal["torch", "keras", "tflite", "onnx", "transformers"]
    factory: Factory | None = None  # torch / keras: builds the module
    path: str | None = None  # keras: .keras file or SavedModel dir; tflite: .tflite; onnx: .onnx
    checkpoint: str | None = None  # torch: a state dict (loaded with weights_only=True)
    # A file or folder whose change rebuilds this model (its code, checkpoint or model file): a DVC dep.
    watch: str
    inputs: list[InputSpec] | None = None  # None only for onnx (read from the graph)
    outputs: list[str] | None = None
    task: Task = "classification"
    fidelity: FidelitySpec = Field(default_factory=FidelitySpec)
    metrics: list[MetricSpec] = Field(default_factory=list)  # custom metrics for every build of this model
    stream: StreamSpec | None = None
    train: TrainSpec | None = None
    export: ExportSpec = Field(default_factory=ExportSpec)
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    calibration: Factory | None = None  # default calibration data for static quantization

    @model_validator(mode="before")
    @classmethod
    def _transformers(cls, data: Any) -> Any:
        """``framework: transformers``: what the model file leaves out is read from the folder's config.json."""
        from pipeline.hf_config import expand

        try:
            return expand(data)
        except ConfigError as exc:
            raise ValueError(f"{exc.key or 'path'}: {exc.reason}") from None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        fw = self.framework
        if fw == "transformers" and self.path is None:
            raise ValueError("a transformers model needs 'path' (its folder, or pkg://package/folder)")
        if fw == "torch" and self.factory is None:
            raise ValueError("a torch model needs 'factory' (a _target_ that builds the nn.Module)")
        if fw == "keras" and self.factory is None and self.path is None:
            raise ValueError("a keras model needs 'factory' or 'path' (.keras file or SavedModel dir)")
        if fw in ("tflite", "onnx") and self.path is None:
            raise ValueError(f"a {fw} model needs 'path'")
        if fw in ("tflite", "onnx") and self.train is not None:
            raise ValueError(f"a {fw} model cannot be trained: remove 'train'")
        if fw != "onnx" and not self.inputs:
            raise ValueError(f"a {fw} model needs 'inputs' (name, dtype, shape for each input)")
        if self.checkpoint is not None and fw != "torch":
            raise ValueError("'checkpoint' applies to torch models only")
        if fw in ("torch", "transformers") and self.export.opset is not None:
            if self.export.exporter == "dynamo" and self.export.opset < 18:
                raise ValueError("export.opset: the dynamo exporter needs opset 18 or higher")
            if self.export.exporter == "torchscript" and self.export.opset > 20:
                raise ValueError("export.opset: the torchscript exporter supports opset 20 at most")
        if self.stream is not None and not self.inputs:
            raise ValueError("a stream model needs 'inputs' declared (the state inputs among them)")
        if self.inputs:
            names = [i.name for i in self.inputs]
            if len(set(names)) != len(names):
                raise ValueError(f"inputs: duplicate input names in {names}")
            if self.fidelity.mask_input is not None and self.fidelity.mask_input not in names:
                raise ValueError(
                    f"fidelity.mask_input '{self.fidelity.mask_input}' is not one of the inputs {names}"
                )
            if self.stream is not None:
                for link in self.stream.state:
                    if link.input not in names:
                        raise ValueError(
                            f"stream.state: input '{link.input}' (fed from output '{link.output}') "
                            f"is not one of the inputs {names}"
                        )
                    if self.outputs is not None and link.output not in self.outputs:
                        raise ValueError(
                            f"stream.state: output '{link.output}' (feeding input '{link.input}') "
                            f"is not one of the outputs {list(self.outputs)}"
                        )
            for spec in self.inputs:
                for dim in spec.shape:
                    if isinstance(dim, str) and dim not in self.export.dims:
                        raise ValueError(
                            f"input '{spec.name}' uses dim '{dim}' but export.dims gives it no value "
                            f"(declared: {sorted(self.export.dims)})"
                        )
        return self


# ---------------------------------------------------------------------------------------------
# Builds
# ---------------------------------------------------------------------------------------------


class PassSpec(Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Selected(BaseModel):
    """A registry entry chosen by ``name`` with its validated parameters (quantization, target)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    params: Any  # an instance of the implementation's Params model


class Gates(Strict):
    """Thresholds that fail a build that got worse. ``None`` disables a gate.

    The named gates below are shorthands; ``min`` / ``max`` gate any metric by its short name
    (``{min: {iou_min: 0.95}, max: {rel_err_max: 0.05}}``): the names valid for a model's task and
    its custom metrics are listed by ``pipeline.evaluate.gates.gate_names`` (unknown names are
    compose-time errors). NaN and infinite thresholds are errors (a NaN gate always fails)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    min_speedup: float | None = None
    min_cosine: float | None = None
    max_abs_err: float | None = None
    max_accuracy_drop: float | None = None  # vs the source model's accuracy, as a fraction (0.01 = 1 pt)
    min_top1_agreement: float | None = None
    max_p50_ms: float | None = None
    max_size_mb: float | None = None


class EvaluateSpec(Strict):
    warmup: int = Field(10, ge=1, le=MAX_WARMUP)
    runs: int = Field(100, ge=10, le=MAX_RUNS)
    batch_size: int = Field(1, ge=1, le=MAX_BATCH)
    # at most the model's reference.num_samples (checked with the model: validate_project)
    fidelity_samples: int = Field(64, ge=32, le=MAX_SAMPLES)
    metrics: list[MetricSpec] = Field(default_factory=list)  # custom metrics of this build (beside the model's)
    gates: Gates = Field(default_factory=Gates)


class BuildSpec(Strict):
    model: str
    passes: list[PassSpec] = Field(default_factory=list)
    quantization: Selected
    target: Selected
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)


class ProjectSpec(Strict):
    """``project:`` in conf/config.yaml: what recipes may import and read (:mod:`pipeline.trust`)."""

    # module prefixes a _target_ may start with; None: pipeline + the project's own top-level packages
    allow_targets: list[str] | None = None
    # folders outside the project that a model's path / checkpoint / watch may name (absolute)
    allow_paths: list[str] = Field(default_factory=list)

    @field_validator("allow_targets")
    @classmethod
    def _modules(cls, value: list[str] | None) -> list[str] | None:
        for prefix in value or []:
            if not all(_DIM_NAME.match(part) for part in str(prefix).split(".")):
                raise ValueError(f"'{prefix}' is not a module prefix like 'pipeline' or 'mypkg.models'")
        return value

    @field_validator("allow_paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith(("/", "~")) or prefix.strip("/") == "":
                raise ValueError(f"'{prefix}' must be an absolute folder (not / itself)")
        return value


class Project(Strict):
    project: ProjectSpec = Field(default_factory=ProjectSpec)
    models: dict[str, ModelSpec]
    builds: dict[str, BuildSpec]


# ---------------------------------------------------------------------------------------------
# Validation entry points
# ---------------------------------------------------------------------------------------------

SourceOf = Callable[[str], "str | None"]


def _no_source(_: str) -> str | None:
    return None


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


def _validate(cls: type[BaseModel], data: Any, key: str, source: str | None) -> Any:
    """Validate ``data`` against ``cls``; turn the first pydantic error into a ConfigError."""
    if isinstance(data, BaseModel):
        return data
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full_key = _loc(key, loc)
        choices = None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner: Any = cls
            for part in loc[:-1]:
                field = getattr(owner, "model_fields", {}).get(part)
                owner = _model_of(field.annotation) if field is not None else None
                if owner is None:
                    break
            if owner is not None and hasattr(owner, "model_fields"):
                choices = [f.alias or n for n, f in owner.model_fields.items()]
            msg = "unknown key"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        more = len(exc.errors()) - 1
        if more:
            msg += f"; and {more} more error(s)"
        raise ConfigError(msg, key=full_key, source=source, choices=choices) from None


def _model_of(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _select(kind: str, registry: Mapping[str, Any], data: Any, key: str, source: str | None) -> Selected:
    if isinstance(data, Selected):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping with a 'name', got {data!r}", key=key, source=source)
    data = dict(data)
    name = data.get("name")
    if name is None:
        raise ConfigError(f"missing '{kind}' name", key=f"{key}.name", source=source, choices=registry)
    if name not in registry:
        raise ConfigError(f"unknown {kind} '{name}'", key=f"{key}.name", source=source, choices=registry)
    params = _validate(registry[name].Params, data, key, source)
    return Selected(name=name, params=params)


def validate_pass(spec: Any, key: str, source: str | None = None) -> tuple[PassSpec, Any]:
    """Validate one ``{name, params}`` pass entry; return it with its typed params."""
    from pipeline.passes import PASSES

    entry = _validate(PassSpec, spec, key, source)
    if entry.name not in PASSES:
        raise ConfigError(f"unknown pass '{entry.name}'", key=f"{key}.name", source=source, choices=PASSES)
    params = _validate(PASSES[entry.name].Params, entry.params, f"{key}.params", source)
    return entry, params


def validate_model(data: Any, key: str, source: str | None = None) -> ModelSpec:
    return _validate(ModelSpec, data, key, source)


def validate_build(data: Any, key: str, source: str | None = None) -> BuildSpec:
    from pipeline.quantization import QUANTIZERS
    from pipeline.targets import TARGETS

    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping, got {data!r}", key=key, source=source)
    data = dict(data)
    for required in ("model", "quantization", "target"):
        if required not in data:
            raise ConfigError(f"missing key '{required}'", key=f"{key}.{required}", source=source)
    data["quantization"] = _select("quantizer", QUANTIZERS, data["quantization"], f"{key}.quantization", source)
    data["target"] = _select("target", TARGETS, data["target"], f"{key}.target", source)
    TARGETS[data["target"].name]().check_options(data["target"].params, f"{key}.target", source)
    passes = data.get("passes") or []
    if not isinstance(passes, (list, tuple)):
        raise ConfigError(f"expected a list of {{name, params}}, got {passes!r}", key=f"{key}.passes", source=source)
    for i, p in enumerate(passes):
        validate_pass(p, f"{key}.passes[{i}]", source)
    return _validate(BuildSpec, data, key, source)


def validate_project(data: Any, source_of: SourceOf = _no_source) -> Project:
    """Validate a whole composed project. ``source_of(key)`` names the recipe file behind a key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping with 'models' and 'builds', got {type(data).__name__}")
    extra = set(map(str, data)) - {"project", "models", "builds"}
    if extra:
        raise ConfigError("unknown key", key=sorted(extra)[0], choices=["project", "models", "builds"])
    project = _validate(ProjectSpec, data.get("project") or {}, "project", None)
    models_in = data.get("models") or {}
    builds_in = data.get("builds") or {}
    for kind, section in (("models", models_in), ("builds", builds_in)):
        if not isinstance(section, Mapping):
            raise ConfigError(f"expected a mapping of names, got {type(section).__name__}", key=kind)
        for name in section:
            check_name(name, kind)
    if not builds_in:
        raise ConfigError("no builds declared", key="builds")
    models = {
        name: validate_model(spec, f"models.{name}", source_of(f"models.{name}"))
        for name, spec in models_in.items()
    }
    builds = {}
    for name, spec in builds_in.items():
        key = f"builds.{name}"
        build = validate_build(spec, key, source_of(key))
        if build.model not in models:
            raise ConfigError(
                f"unknown model '{build.model}'", key=f"{key}.model", source=source_of(key), choices=models
            )
        check_gate_names(build, models[build.model], key, source_of(key))
        check_samples(build, models[build.model], key, source_of(key))
        builds[name] = build
    return Project(project=project, models=models, builds=builds)


def check_name(name: Any, kind: str) -> None:
    """Model and build names become folders and stage arguments: ``[A-Za-z0-9_.-]+``, not . or .."""
    what = "model" if kind == "models" else "build"
    if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
        raise ConfigError(
            f"{what} name {name!r} must be letters, digits, '_', '.' or '-' (it names folders and "
            f"DVC stages; no spaces, slashes or other characters, and not '.' or '..')",
            key=f"{kind}.{''.join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))}",  # one line
        )


def check_samples(build: BuildSpec, model: ModelSpec, key: str, source: str | None = None) -> None:
    """``fidelity_samples`` above the model's reference samples would be cut silently: an error."""
    asked, held = build.evaluate.fidelity_samples, model.reference.num_samples
    if asked > held:
        raise ConfigError(
            f"fidelity_samples {asked} is more than the {held} reference samples of model "
            f"'{build.model}' (the stage could measure only {held}): lower it, or raise "
            f"models.{build.model}.reference.num_samples",
            key=f"{key}.evaluate.fidelity_samples",
            source=source,
        )


def check_gate_names(build: BuildSpec, model: ModelSpec, key: str, source: str | None = None) -> None:
    """Every ``gates.min`` / ``gates.max`` name must be measurable for the model's task (or be a
    custom metric the model or the build declares); one error naming the key and the valid names."""
    from pipeline.evaluate.gates import GATES, gate_names, impossible_gate

    gates = build.evaluate.gates
    valid = gate_names(model.task, [*model.metrics, *build.evaluate.metrics])
    for kind in ("min", "max"):
        for name, threshold in getattr(gates, kind).items():
            if name not in valid:
                raise ConfigError(
                    f"gate '{name}' cannot be measured for a model with task '{model.task}'",
                    key=f"{key}.evaluate.gates.{kind}.{name}",
                    source=source,
                    choices=sorted(valid),
                )
            if not math.isfinite(threshold):  # the schema refuses these already; kept for built objects
                raise ConfigError(
                    f"a gate threshold must be a finite number, got {threshold}",
                    key=f"{key}.evaluate.gates.{kind}.{name}",
                    source=source,
                )
            why = impossible_gate(valid[name], kind, threshold)
            if why:
                raise ConfigError(f"this gate can never pass: {why}", key=f"{key}.evaluate.gates.{kind}.{name}",
                                  source=source)
    for name, (path, kind) in GATES.items():
        threshold = getattr(gates, name)
        why = None if threshold is None else impossible_gate(path, kind, threshold)
        if why:
            raise ConfigError(f"this gate can never pass: {why}", key=f"{key}.evaluate.gates.{name}", source=source)


def pass_params(spec: PassSpec, key: str = "passes") -> Any:
    """The typed params of an already validated pass entry."""
    return validate_pass(spec, key)[1]
