"""Turn a sweep point (a Hydra job folder) into a DVC build: a recipe file plus its line in conf/config.yaml.

    onnxbuild promote sweeps/2026-11-27/14-11-13/2 --name cnn_int8_2t

The recipe holds only what differs from ``conf/build/default.yaml``: ``override`` entries for the
group options the point chose, and the values its overrides changed (``target.threads: 2``). Its
evaluation is the project's default one (a sweep's few timed runs are for ranking, not for the
build's record) with the sweep point's gates. A point that failed, or missed a gate, is refused
unless ``allow_failed``. The new project is composed and validated before anything is written for
good; on any error both files are left as they were.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

BUILD_GROUPS = ("passes", "quantization", "target", "evaluate")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _load_job(job_dir: Path) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    from omegaconf import OmegaConf

    hydra_file, config_file = job_dir / ".hydra" / "hydra.yaml", job_dir / ".hydra" / "config.yaml"
    if not hydra_file.is_file() or not config_file.is_file():
        raise ConfigError(
            "not a sweep job folder (no .hydra/hydra.yaml and .hydra/config.yaml): pass a folder like "
            "sweeps/<date>/<time>/<job number>",
            source=str(job_dir),
        )
    hydra = OmegaConf.load(hydra_file).hydra
    choices = {str(k): str(v) for k, v in hydra.runtime.choices.items() if v is not None}
    overrides = [str(o) for o in hydra.overrides.task]
    cfg = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    return choices, overrides, cfg


def diff(base: Any, new: Any) -> Any:
    """The parts of ``new`` that differ from ``base`` (mappings recursively; anything else whole)."""
    if isinstance(base, dict) and isinstance(new, dict):
        out = {}
        for key, value in new.items():
            if key not in base:
                out[key] = value
                continue
            sub = diff(base[key], value)
            if sub is not _SAME:
                out[key] = sub
        return out if out else _SAME
    return _SAME if base == new else new


_SAME = object()


def _base_defaults(conf_dir: Path) -> dict[str, str]:
    """``{group: option}`` from conf/build/default.yaml's defaults list."""
    import yaml

    data = yaml.safe_load((conf_dir / "build" / "default.yaml").read_text()) or {}
    out = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                group = key.lstrip("/").split("@")[0]
                if group in BUILD_GROUPS:
                    out[group] = str(value)
    return out


def _compose_sweep(conf_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """conf/sweep.yaml with these overrides, unresolved (``cache_dir`` needs a running Hydra app)."""
    from omegaconf import OmegaConf

    from pipeline.compose import _hydra_compose

    cfg = OmegaConf.to_container(_hydra_compose(conf_dir, "sweep", overrides), resolve=False)
    cfg.pop("hydra", None)
    return cfg


def render_recipe(name: str, model: str, options: dict[str, str], base: dict[str, str], values: dict[str, Any], job_dir: Path, overrides: list[str]) -> str:
    import yaml

    lines = [
        f"# Promoted from sweep point {job_dir} (overrides: {' '.join(overrides) or 'none'}).",
        f"# Build it:  onnxbuild compose && dvc repro evaluate@{name}",
        f"# A second build from this recipe: onnxbuild compose '+recipe@builds.NEW={name}'",
        "defaults:",
        "  - /build@_here_: default",
    ]
    for group in BUILD_GROUPS:
        if options[group] != base.get(group):
            lines.append(f"  - override /{group}@{group}: {options[group]}")
    lines += ["  - _self_", "", f"model: {model}"]
    if values:
        lines.append(yaml.safe_dump(values, sort_keys=False, default_flow_style=False).rstrip())
    return "\n".join(lines) + "\n"


def _insert_after_last(text: str, prefix: str, line: str) -> str:
    rows = text.splitlines(keepends=True)
    last = max((i for i, r in enumerate(rows) if r.strip().startswith(prefix)), default=None)
    if last is None:
        raise ConfigError(f"no '{prefix}...' line in the defaults list to add '{line.strip()}' after")
    rows.insert(last + 1, line)
    return "".join(rows)


def check_point(job_dir: Path, allow_failed: bool) -> list[str]:
    """Refuse a point that failed or missed a gate (one line with the reason) unless ``allow_failed``;
    the notes to print when it is let through."""
    import json

    from pipeline.sweep import POINT_FILE

    point_file = job_dir / POINT_FILE
    if not point_file.is_file():
        reason = "it has no point.json (the job did not finish)"
    else:
        try:
            point = json.loads(point_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"unreadable point.json ({str(exc).splitlines()[0]}): not promoted",
                              source=str(point_file)) from None
        if not isinstance(point, dict):
            raise ConfigError("point.json is not a JSON object: not promoted", source=str(point_file))
        status = point.get("status")
        if status == "ok":
            return []
        reason = f"it {'missed its gates' if status == 'gates failed' else 'failed'}: {point.get('error')}"
    if not allow_failed:
        raise ConfigError(f"not promoted: {reason} (--allow-failed to promote it anyway)", source=str(job_dir))
    return [f"promoted although {reason}"]


def promote(
    job_dir: str | Path, name: str, conf_dir: str | Path = "conf", force: bool = False, allow_failed: bool = False
) -> dict[str, Any]:
    """Write conf/recipe/<name>.yaml and register it; returns what was done and the next command."""
    from pipeline.compose import compose
    from pipeline.fsutil import write_text

    job_dir, conf_dir = Path(job_dir), Path(conf_dir)
    if not _NAME.match(name):
        raise ConfigError(f"bad build name '{name}': use letters, digits and underscores", key="--name")
    choices, overrides, job_cfg = _load_job(job_dir)
    notes = check_point(job_dir, allow_failed)
    recipe_file = conf_dir / "recipe" / f"{name}.yaml"
    config_file = conf_dir / "config.yaml"
    project = compose([], conf_dir)
    if recipe_file.exists() and not force:
        raise ConfigError("a recipe of this name exists (use --force to replace it)", source=str(recipe_file))
    if name in (project.data.get("builds") or {}) and not force:
        raise ConfigError(f"build '{name}' is already declared (use --force)", source=str(config_file))
    others = sorted(k.split("@builds.", 1)[1] for k, v in project.choices.items()
                    if k.startswith("recipe@builds.") and v == name and k != f"recipe@builds.{name}")
    if others and recipe_file.exists():  # --force replaces this build's recipe, never silently other builds'
        raise ConfigError(f"this recipe is also the recipe of build(s) {', '.join(others)}: not replaced, even "
                          "with --force (choose another --name)", source=str(recipe_file))

    model_choice = choices.get("model")
    declared = {k.split("@models.", 1)[1]: v for k, v in project.choices.items() if k.startswith("model@models.")}
    model_name = next((n for n, option in declared.items() if option == model_choice), None)
    base_options = _base_defaults(conf_dir)
    options = {g: choices[g] for g in BUILD_GROUPS}
    # the project's default evaluation, with the sweep point's gates
    options["evaluate"] = base_options.get("evaluate", options["evaluate"])
    target_cfg = {**job_cfg}
    base_cfg = _compose_sweep(conf_dir, [f"{g}={options[g]}" for g in BUILD_GROUPS] + [f"model={model_choice}"])
    target_cfg["evaluate"] = {**base_cfg["evaluate"], "gates": job_cfg["evaluate"]["gates"]}
    values = {}
    for group in BUILD_GROUPS:
        d = diff(base_cfg[group], target_cfg[group])
        if d is not _SAME:
            values[group] = d
    model_diff = diff(base_cfg["model"], job_cfg["model"])
    if model_diff is not _SAME:
        notes.append(
            f"the point changed model settings ({', '.join(o for o in overrides if o.startswith('model.'))}); "
            "models are shared between builds, so the build uses conf/model/"
            f"{model_choice}.yaml as it is: edit it or add a model file to keep them"
        )

    text = render_recipe(name, model_name or model_choice, options, base_options, values, job_dir, overrides)
    old_recipe = recipe_file.read_text() if recipe_file.exists() else None
    old_config = config_file.read_text()
    new_config = old_config
    if name not in (project.data.get("builds") or {}):
        new_config = _insert_after_last(new_config, "- recipe@builds.", f"  - recipe@builds.{name}: {name}\n")
    if model_name is None:
        new_config = _insert_after_last(new_config, "- model@models.", f"  - model@models.{model_choice}: {model_choice}\n")
    write_text(recipe_file, text)
    write_text(config_file, new_config)
    try:
        comp = compose([], conf_dir)
        build = comp.data["builds"][name]
        for group in BUILD_GROUPS:
            if build[group] != _resolved(target_cfg[group]):
                raise ConfigError(
                    f"the promoted recipe composes a different '{group}' than the sweep point", source=str(recipe_file)
                )
    except BaseException:
        if old_recipe is None:
            recipe_file.unlink(missing_ok=True)
        else:
            write_text(recipe_file, old_recipe)
        write_text(config_file, old_config)
        raise
    return {
        "recipe": str(recipe_file),
        "config": str(config_file),
        "model": model_name or model_choice,
        "notes": notes,
        "next": f"onnxbuild compose && dvc repro evaluate@{name}",
    }


def _resolved(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=True)["v"]
