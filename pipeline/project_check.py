"""``onnxbuild check``: the user's project, checked whole, every error listed (not just the first).

* every YAML file under ``conf/`` parses;
* the default project composes and validates (``conf/config.yaml``);
* every model file in ``conf/model/`` and every recipe in ``conf/recipe/`` composes and validates,
  declared in ``config.yaml`` or not (an opt-in recipe must not rot): all schema errors of a model
  file are shown;
* every ``_target_`` (model factories, datasets, calibration data, custom metrics) imports, with the
  project root on the import path as every entry point has it (:mod:`pipeline.project`);
* every ``path``, ``checkpoint`` and ``watch`` exists (``pkg://`` paths resolve in their package);
* ``params.yaml`` is fresh w.r.t. ``conf/`` and holds every key ``dvc.yaml``'s stages read (what the
  ``params`` stage checks, :mod:`pipeline.stages.check`).

Notes (never failures): a recipe without a header comment saying how to build it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, PipelineError

CHECK_CONFIG = "__onnxbuild_check__"
# Keys of a model that name files: (key, what it is).
_FILE_KEYS = ("path", "checkpoint", "watch")


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def error(self, line: str) -> None:
        if line not in self.errors:
            self.errors.append(line)

    def said(self, text: str) -> bool:
        """Whether ``text`` repeats an error already listed (e.g. a compose error quoting the first of them)."""
        return any(line in text or text in line for line in self.errors)

    @property
    def ok(self) -> bool:
        return not self.errors


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def check_yaml_files(conf: Path, root: Path, report: Report) -> None:
    import yaml

    for path in sorted(conf.rglob("*.yaml")):
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            report.error(f"{_rel(path, root)}{where}: YAML syntax error: {problem}")


def _config(models: dict[str, str], recipes: list[str]) -> str:
    """A primary config declaring ``models`` (name -> file stem) and every recipe as a build of its name."""
    lines = ["defaults:"]
    lines += [f"  - model@models.{name}: {stem}" for name, stem in models.items()]
    lines += [f"  - recipe@builds.{stem}: {stem}" for stem in recipes]
    lines.append("  - _self_")
    return "\n".join(lines) + "\n"


def _declared_models(conf: Path) -> dict[str, str]:
    """``{model name: model file stem}`` from config.yaml's defaults list."""
    import yaml

    try:
        data = yaml.safe_load((conf / "config.yaml").read_text()) or {}
    except Exception:  # noqa: BLE001 - reported by check_yaml_files
        return {}
    out: dict[str, str] = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                if isinstance(k, str) and k.startswith("model@models.") and isinstance(v, str):
                    out[k.split("model@models.", 1)[1]] = v
    return out


def compose_raw(conf: Path, config_name: str, overrides: list[str]) -> dict[str, Any]:
    """Hydra composition, resolved, without schema validation (errors as one-line ConfigError)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.compose import _explain, _hydra_compose, _split_hydra

    try:
        cfg, _ = _split_hydra(_hydra_compose(conf, config_name, overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise _explain(exc, conf, config_name, overrides) from None
    return OmegaConf.to_container(cfg, resolve=True)


def _model_errors(data: Any, key: str, source: str) -> list[str]:
    """Every schema error of one model, one line each."""
    from pipeline.schema import ModelSpec

    return _schema_errors(ModelSpec, data, key, source)


def _schema_errors(cls: Any, data: Any, key: str, source: str) -> list[str]:
    """Every pydantic error of ``data`` against ``cls``, one line each."""
    from pydantic import ValidationError

    try:
        cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}"
                for p in err["loc"]
                if not (isinstance(p, str) and p.startswith("function-"))
            )
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("missing", "extra_forbidden") and "input" in err and not isinstance(err["input"], dict):
                msg += f" (got {err['input']!r})"
            lines.append(f"{source}, key '{key}{loc}': {msg}")
        return lines
    return []


def _build_errors(data: Any, key: str, source: str) -> list[str]:
    """Every error of one recipe, one line each. ``validate_build`` stops at the first; here the
    quantizer, the target and each pass are checked on their own (a bad one is replaced by a valid
    stand-in), then the rest of the recipe against the schema."""
    from collections.abc import Mapping

    from pipeline.quantization import QUANTIZERS
    from pipeline.schema import BuildSpec, Selected, validate_build, validate_pass
    from pipeline.targets import TARGETS

    try:
        validate_build(data, key, source)
        return []
    except ConfigError as exc:
        first = str(exc)
    if not isinstance(data, Mapping):
        return [first]
    data, lines = dict(data), []
    for field_, registry, stand_in in (("quantization", QUANTIZERS, "none"), ("target", TARGETS, "cpu")):
        try:
            if field_ not in data:
                raise ConfigError(f"missing key '{field_}'", key=f"{key}.{field_}", source=source)
            selected = validate_build({**_valid_stand_ins(), field_: data[field_]}, key, source)
            data[field_] = getattr(selected, field_)
        except ConfigError as exc:
            lines.append(str(exc))
            data[field_] = Selected(name=stand_in, params=registry[stand_in].Params())
    passes = data.get("passes") or []
    if isinstance(passes, (list, tuple)):
        for i, entry in enumerate(passes):
            try:
                validate_pass(entry, f"{key}.passes[{i}]", source)
            except ConfigError as exc:
                lines.append(str(exc))
                data["passes"] = []
    lines += _schema_errors(BuildSpec, data, key, source)
    return lines or [first]


def _valid_stand_ins() -> dict[str, Any]:
    return {"model": "_", "quantization": {"name": "none"}, "target": {"name": "cpu"}}


def _compose_error(report: Report, source: str, exc: ConfigError, copy: Path, conf: str) -> None:
    """A file that does not compose, with the check's temporary copy of conf/ named as the project's own
    conf/; not listed again when it repeats an error already listed (a YAML syntax error)."""
    text = str(exc).replace(str(copy), conf)
    if not report.said(text):
        report.error(f"{source}: does not compose: {text}")


def check_models_and_recipes(conf: Path, root: Path, report: Report) -> dict[str, Any]:
    """Compose every model file and recipe; validate each; return the composed data (may be partial)."""
    from pipeline.compose import group_options
    from pipeline.schema import check_gate_names, validate_build, validate_model

    models = group_options(conf, "model")
    recipes = group_options(conf, "recipe")
    declared = _declared_models(conf)
    report.counts.update(models=len(models), recipes=len(recipes))
    every_model = {**{m: m for m in models if m not in declared.values()}, **declared}
    with tempfile.TemporaryDirectory(prefix="onnxbuild-check-") as tmp:
        copy = Path(tmp) / "conf"
        shutil.copytree(conf, copy)
        primary = copy / f"{CHECK_CONFIG}.yaml"
        primary.write_text(_config(every_model, recipes))
        try:
            data = compose_raw(copy, CHECK_CONFIG, [])
        except ConfigError:
            data = {"models": {}, "builds": {}}  # find the culprits one at a time
            for name, stem in every_model.items():
                primary.write_text(_config({name: stem}, []))
                try:
                    data["models"].update(compose_raw(copy, CHECK_CONFIG, []).get("models") or {})
                except ConfigError as exc:
                    _compose_error(report, f"conf/model/{stem}.yaml", exc, copy, _rel(conf, root))
            for stem in recipes:
                primary.write_text(_config({}, [stem]))
                try:
                    data["builds"].update(compose_raw(copy, CHECK_CONFIG, []).get("builds") or {})
                except ConfigError as exc:
                    _compose_error(report, f"conf/recipe/{stem}.yaml", exc, copy, _rel(conf, root))
    specs = {}
    for name, spec in (data.get("models") or {}).items():
        source = f"conf/model/{declared.get(name, name)}.yaml"
        lines = _model_errors(spec, f"models.{name}", source)
        for line in lines:
            report.error(line)
        if not lines:
            try:
                specs[name] = validate_model(spec, f"models.{name}", source)
            except ConfigError as exc:
                report.error(str(exc))
    for stem, spec in (data.get("builds") or {}).items():
        source = f"conf/recipe/{stem}.yaml"
        try:
            build = validate_build(spec, f"builds.{stem}", source)
        except ConfigError:
            for line in _build_errors(spec, f"builds.{stem}", source):
                report.error(line)
            continue
        model = specs.get(build.model)
        if build.model not in (data.get("models") or {}):
            report.error(
                f"{source}, key 'model': unknown model '{build.model}' "
                f"(valid choices: {', '.join(sorted(data.get('models') or {})) or 'none: no model composed'})"
            )
        elif model is not None:
            try:
                check_gate_names(build, model, f"builds.{stem}", source)
            except ConfigError as exc:
                report.error(str(exc))
    for stem in recipes:
        text = (conf / "recipe" / f"{stem}.yaml").read_text()
        if not text.lstrip().startswith("#"):
            report.notes.append(
                f"conf/recipe/{stem}.yaml has no header comment: say what it builds and how "
                f"(# Build it:  onnxbuild compose && dvc repro evaluate@{stem})"
            )
    return data


def check_default_project(conf: Path, report: Report) -> None:
    from pipeline.compose import compose

    try:
        comp = compose([], conf)
    except PipelineError as exc:
        if not report.said(str(exc)):
            report.error(f"{_rel(conf / 'config.yaml', conf.resolve().parent)}: the default project does not compose: {exc}")
        return
    report.counts.update(builds=len(comp.data.get("builds") or {}))


def _targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every ``_target_`` under ``node`` as ``(dotted key, target)``."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str):
            yield key, target
        for k, v in node.items():
            if k != "_target_":
                yield from _targets(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{key}[{i}]")


def check_targets(data: dict[str, Any], source_of: Callable[[str], str], report: Report, policy: Any = None) -> None:
    """Import every ``_target_`` (each distinct one once); the first key that names it is reported.
    With ``policy`` (:class:`pipeline.trust.Policy`), a target outside the project's allowlist is an
    error and is never imported (recipes are code: importing runs the module)."""
    from pipeline.project import import_target

    seen: set[str] = set()
    for key, target in _targets(data):
        if target in seen:
            continue
        seen.add(target)
        try:
            if policy is not None:
                policy.check_target(target, f"{key}._target_", source_of(key))
            import_target(target, key=f"{key}._target_", source=source_of(key))
        except ConfigError as exc:
            report.error(str(exc))
    report.counts.update(targets=len(seen))


def check_paths(data: dict[str, Any], root: Path, source_of: Callable[[str], str], report: Report) -> None:
    from pipeline.models import packaged

    for name, model in (data.get("models") or {}).items():
        for key in _FILE_KEYS:
            value = (model or {}).get(key)
            if not isinstance(value, str) or not value:
                continue
            full = f"models.{name}.{key}"
            if packaged.is_packaged(value):
                try:
                    found = packaged.resolve(value, key=full).exists()
                except PipelineError as exc:
                    report.error(f"{source_of(full)}, {exc}")
                    continue
            else:
                path = Path(value).expanduser()
                found = (path if path.is_absolute() else root / path).exists()
            if not found:
                report.error(
                    f"{source_of(full)}, key '{full}': '{value}' does not exist (relative to the project root {root})"
                )


def check_params(conf: Path, params: Path, dvc_yaml: Path, report: Report, log: logging.Logger) -> str | None:
    from pipeline.stages.check import check

    try:
        return check(conf, params, dvc_yaml, log)
    except PipelineError as exc:
        if not report.said(str(exc).split(": ", 1)[-1].split("; and ")[0]):
            report.error(str(exc))
        return None


def check_project(conf: str | Path = "conf", params: str | Path = "params.yaml", dvc_yaml: str | Path = "dvc.yaml",
                  log: logging.Logger | None = None) -> Report:
    """Run every check; the report lists every error found."""
    from pipeline.project import use_project

    conf = Path(conf)
    root = use_project(conf_dir=conf)
    log = log or logging.getLogger("onnxbuild.check")
    report = Report()
    if not (conf / "config.yaml").is_file():
        report.error(f"{conf}/config.yaml: not found (run onnxbuild from the project root, or pass --conf)")
        return report
    check_yaml_files(conf, root, report)
    data = check_models_and_recipes(conf, root, report)
    declared = _declared_models(conf)

    def source_of(key: str) -> str:
        parts = key.split(".")
        if parts[0] == "models" and len(parts) > 1:
            return f"conf/model/{declared.get(parts[1].split('[')[0], parts[1].split('[')[0])}.yaml"
        if parts[0] == "builds" and len(parts) > 1:
            return f"conf/recipe/{parts[1].split('[')[0]}.yaml"
        return "conf/"

    check_default_project(conf, report)
    from pipeline.trust import default_policy, load_policy

    try:
        policy = load_policy(conf / "config.yaml", root)
    except ConfigError as exc:  # a bad project block: reported, and the narrowest default applies
        report.error(str(exc))
        policy = default_policy(root)
    check_targets(data, source_of, report, policy)
    check_paths(data, root, source_of, report)
    why = check_params(conf, Path(params), Path(dvc_yaml), report, log)
    if why:
        report.counts["params_fresh"] = 1
        report.notes.append(f"{params} is fresh: {why}")
    return report
