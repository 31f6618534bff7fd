"""Compose ``conf/`` (Hydra recipes) into a validated, deterministic ``params.yaml``.

    onnxbuild compose [OVERRIDE...]          (or: python -m pipeline.compose [OVERRIDE...])

The text written is exactly what ``dvc exp run`` writes when it composes ``conf/`` itself
(``OmegaConf.to_yaml`` of the resolved composition), so switching between ``onnxbuild compose`` +
``dvc repro`` and ``dvc exp run`` never shows a spurious parameter change. Composing twice gives
byte-identical files. ``params.yaml`` is written atomically and only after the whole project
validates (:func:`pipeline.schema.validate_project`); a bad override leaves it untouched.

Overrides are Hydra's (``builds.cnn_fp32.target.threads=1``, ``target@builds.cnn_fp32.target=cpu_1thread``,
``+recipe@builds.new=cnn_static_int8``), plus two shorthands that ``onnxbuild compose`` expands:

* ``GROUP=OPTION`` / ``GROUP.key=value`` with GROUP a build group (passes, quantization, target,
  evaluate) applies to every build: ``target.threads=1`` sets every build's thread count;
* ``builds.NAME.GROUP=OPTION`` selects a group option for one build (Hydra alone would assign the
  string ``OPTION`` to the whole section).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

CONF_DIR = Path("conf")
CONFIG_NAME = "config"
PARAMS_FILE = Path("params.yaml")
# Config groups a build is made of (each one a folder of options in conf/).
BUILD_GROUPS = ("passes", "quantization", "target", "evaluate")
_OPTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass
class Composition:
    """A composed project: the resolved data, its YAML text and where each build/model came from."""

    data: dict[str, Any]
    text: str
    choices: dict[str, str]
    conf_dir: Path
    overrides: list[str] = field(default_factory=list)

    def source_of(self, key: str) -> str | None:
        """``builds.X`` -> ``conf/recipe/<recipe>.yaml``; ``models.X`` -> ``conf/model/<file>.yaml``."""
        kind, _, name = key.partition(".")
        group = {"builds": "recipe", "models": "model"}.get(kind)
        if group is None:
            return None
        choice = self.choices.get(f"{group}@{kind}.{name}")
        if choice is None:
            hits = [o for o in self.overrides if o.lstrip("+~").startswith(key)]
            return f"override '{hits[0]}'" if hits else None
        return _display(self.conf_dir / group / f"{choice}.yaml")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Option names of a config group (``conf/<group>/*.yaml``)."""
    folder = Path(conf_dir) / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def config_groups(conf_dir: Path) -> list[str]:
    return sorted(p.name for p in Path(conf_dir).iterdir() if p.is_dir() and any(p.glob("*.yaml")))


# ---------------------------------------------------------------------------------------------
# Hydra composition
# ---------------------------------------------------------------------------------------------


def _skip_unused_interpolation_maps() -> None:
    """Speed-up for many builds: Hydra 1.3's defaults-list builder makes, for every config with a
    defaults list, an OmegaConf copy of all choices known so far (quadratic in the number of builds:
    ~5 s for 50 builds), and uses it only to resolve ``${...}`` entries in that defaults list. Skip it
    when the list has none. The composed result is unchanged (a test compares it with DVC's)."""
    from hydra._internal import defaults_list as dl

    original = dl._create_interpolation_map
    if getattr(original, "_onnxbuild", False):
        return

    def create_interpolation_map(overrides, defaults_list, self_added):
        if not any(isinstance(d, dl.InputDefault) and d.is_interpolation() for d in defaults_list):
            return None  # the caller only reads it for interpolated defaults, and there are none
        return original(overrides, defaults_list, self_added)

    create_interpolation_map._onnxbuild = True  # type: ignore[attr-defined]
    dl._create_interpolation_map = create_interpolation_map


def _hydra_compose(conf_dir: Path, config_name: str, overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _skip_unused_interpolation_maps()

    from pipeline.yamlio import yaml_error

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except Exception as exc:
        bad = _yaml_cause(exc)
        if bad is not None:  # a recipe's syntax error or duplicate key: FILE:LINE, one line
            raise yaml_error(bad) from None
        raise
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _yaml_cause(exc: BaseException | None):
    import yaml

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, yaml.YAMLError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _split_hydra(cfg) -> tuple[Any, dict[str, str]]:
    from omegaconf import OmegaConf, open_dict

    choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg, choices


def _parse(overrides: Sequence[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except (OverrideParseException, HydraException) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"cannot parse override '{text}': {first}") from None
        if not override.key_or_group or any(not part for part in override.key_or_group.split(".")):
            raise ConfigError(f"cannot parse override '{text}': expected KEY=VALUE with a dotted key like builds.NAME.target.threads")
        parsed.append(override)
    return parsed


def _expand_shorthands(overrides: Sequence[str], conf_dir: Path, config_name: str) -> list[str]:
    """Expand ``GROUP...=`` (every build) and ``builds.NAME.GROUP=OPTION`` into Hydra overrides."""
    parsed = _parse(overrides)
    # Root keys of the plain composition decide what a top-level GROUP override means.
    needs_builds = any(
        p.key_or_group.split(".")[0] in BUILD_GROUPS and p.package is None and not p.is_delete()
        for p in parsed
    )
    builds: list[str] = []
    if needs_builds:
        plain = [o for o, p in zip(overrides, parsed) if p.key_or_group.split(".")[0] not in BUILD_GROUPS]
        cfg = _compose_or_raise(conf_dir, config_name, plain)
        builds = list((cfg.get("builds") or {}).keys())
    out: list[str] = []
    for text, p in zip(overrides, parsed):
        parts = p.key_or_group.split(".")
        value = text.split("=", 1)[1] if "=" in text else None
        prefix = "+" if p.is_add() else ("++" if p.is_force_add() else "")
        if parts[0] in BUILD_GROUPS and p.package is None and not p.is_delete():
            group, rest = parts[0], ".".join(parts[1:])
            for name in builds:
                if rest:
                    out.append(f"{prefix}builds.{name}.{group}.{rest}={value}")
                else:
                    _check_option(conf_dir, group, value, text)
                    out.append(f"{group}@builds.{name}.{group}={value}")
            continue
        if (
            len(parts) == 3
            and parts[0] == "builds"
            and parts[2] in BUILD_GROUPS
            and p.package is None
            and not p.is_delete()
            and value is not None
            and _OPTION.match(value)
        ):
            _check_option(conf_dir, parts[2], value, text)
            out.append(f"{parts[2]}@builds.{parts[1]}.{parts[2]}={value}")
            continue
        out.append(text)
    return out


def _check_option(conf_dir: Path, group: str, value: str | None, text: str) -> None:
    options = group_options(conf_dir, group)
    if value not in options:
        raise ConfigError(f"override '{text}': unknown {group} option '{value}'", choices=options)


_MISSING = re.compile(r"Could not find '([^']+)/([^'/]+)'")
_NO_MATCH = re.compile(r"Could not (?:override|delete) '([^']+)'")
_NOT_IN_STRUCT = re.compile(r"Key '([^']+)' is not in struct")


def _compose_or_raise(conf_dir: Path, config_name: str, overrides: Sequence[str]):
    """Compose; turn Hydra's multi-line errors into one ConfigError line with the valid choices."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return _split_hydra(_hydra_compose(conf_dir, config_name, overrides))[0]
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError, AttributeError, AssertionError) as exc:
        # Hydra raises plain ValueError / TypeError / AssertionError for some malformed overrides ('=1', '+=')
        raise _explain(exc, conf_dir, config_name, overrides) from None


def _explain(exc: BaseException, conf_dir: Path, config_name: str, overrides: Sequence[str]) -> ConfigError:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    text = str(exc)
    cause = exc.__cause__
    while cause is not None:
        text += "\n" + str(cause)
        cause = cause.__cause__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__

    m = _MISSING.search(text)
    if m:
        group, option = m.group(1), m.group(2)
        group = group.split("/")[-1] if not (Path(conf_dir) / group).is_dir() else group
        culprit = _culprit(overrides, option) or ""
        where = f"override '{culprit}': " if culprit else ""
        return ConfigError(f"{where}unknown {group} option '{option}'", choices=group_options(conf_dir, group))

    m = _NOT_IN_STRUCT.search(text)
    if m:
        bad = m.group(1)
        culprit = _culprit(overrides, bad)
        key = culprit.lstrip("+~").split("=", 1)[0] if culprit else bad
        parts = key.split(".")
        parent = ".".join(parts[: parts.index(bad)]) if bad in parts else ""
        choices = _keys_at(conf_dir, config_name, overrides, culprit, parent)
        msg = f"override '{culprit}': unknown key '{bad}'" if culprit else f"unknown key '{bad}'"
        if parent:
            msg += f" under '{parent}'"
        msg += " (to add a new key on purpose, prefix the override with '+')"
        return ConfigError(msg, choices=choices)

    m = _NO_MATCH.search(text)
    if m:
        key = m.group(1)
        culprit = _culprit(overrides, key)
        inside = re.match(r"In '([^']+)':", text.strip())
        if culprit is None:  # a defaults list in a config file names something that is not there
            where = f"conf/{inside.group(1)}.yaml: " if inside else ""
            return ConfigError(f"{where}cannot override '{key}': nothing by that name in the composed defaults")
        head = key.split("@")[0].split(".")[0]
        if head in config_groups(conf_dir) and "." not in key.split("@")[0]:
            msg = f"override '{culprit}': group '{head}' is not in the defaults list here; use '+{culprit.lstrip('+')}' to add it"
            if head == "recipe":
                msg = (
                    f"override '{culprit}': say which build: 'recipe@builds.NAME=RECIPE' replaces a "
                    f"build's recipe, '+recipe@builds.NEW=RECIPE' adds a build"
                )
            elif head == "model":
                msg = (
                    f"override '{culprit}': say which model: 'model@models.NAME=FILE' replaces a "
                    f"model, '+model@models.NEW=FILE' adds one"
                )
            return ConfigError(msg, choices=group_options(conf_dir, head))
        choices = _keys_at(conf_dir, config_name, overrides, culprit, key.rsplit(".", 1)[0] if "." in key else "")
        return ConfigError(f"override '{culprit}': no key or group '{key}' to override", choices=choices)

    if not isinstance(exc, (HydraException, OmegaConfBaseException)) and overrides:
        return ConfigError(f"cannot apply the overrides {' '.join(map(repr, overrides))}: {first}")
    return ConfigError(f"cannot compose {_display(Path(conf_dir))}: {first}")


def _culprit(overrides: Sequence[str], needle: str) -> str | None:
    """The override that mentions ``needle``: an exact key match first, then any mention."""
    for text in overrides:
        if text.lstrip("+~").split("=", 1)[0] == needle:
            return text
    for text in overrides:
        key = text.split("=", 1)[0]
        if needle in key or needle in text.split("=", 1)[-1]:
            return text
    return None


def _keys_at(conf_dir: Path, config_name: str, overrides: Sequence[str], culprit: str | None, parent: str) -> list[str] | None:
    """The keys that exist at ``parent`` when composing without the offending override."""
    rest = [o for o in overrides if o != culprit]
    try:
        cfg = _split_hydra(_hydra_compose(conf_dir, config_name, rest))[0]
    except Exception:
        return None
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        return [str(k) for k in node.keys()]
    return None


def compose(
    overrides: Sequence[str] = (),
    conf_dir: str | Path = CONF_DIR,
    config_name: str = CONFIG_NAME,
) -> Composition:
    """Compose and validate; raise ConfigError (one line, with choices) on any problem."""
    from omegaconf import OmegaConf

    from pipeline.schema import validate_project
    from pipeline.trust import load_policy

    conf_dir = Path(conf_dir)
    if not (conf_dir / f"{config_name}.yaml").is_file():
        raise ConfigError("config not found", source=_display(conf_dir / f"{config_name}.yaml"))
    # what recipes may import and read: from the config file itself, before any override applies
    policy = load_policy(conf_dir / f"{config_name}.yaml", conf_dir.resolve().parent)
    expanded = _expand_shorthands(list(overrides), conf_dir, config_name)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg, choices = _split_hydra(_hydra_compose(conf_dir, config_name, expanded))
    except (HydraException, OmegaConfBaseException, ValueError, TypeError, KeyError, AttributeError, AssertionError) as exc:
        raise _explain(exc, conf_dir, config_name, expanded) from None
    data = OmegaConf.to_container(cfg, resolve=True)
    comp = Composition(
        data=data, text=OmegaConf.to_yaml(cfg), choices=choices, conf_dir=conf_dir, overrides=expanded
    )
    try:
        check_trust(data, policy, conf_dir / f"{config_name}.yaml", comp.source_of)
        validate_project(data, comp.source_of)
        check_watch(data, conf_dir.resolve().parent, comp.source_of)
        check_providers(data, comp.source_of)
    except ConfigError as exc:
        hit = _override_for(exc.key, expanded)
        if hit is None:
            raise
        raise ConfigError(
            f"{exc.reason} (set by override '{hit}')", key=exc.key, source=exc.source, choices=exc.choices
        ) from None
    return comp


def check_trust(data: dict[str, Any], policy: Any, config_file: Path, source_of: Any = lambda key: None) -> None:
    """Recipes are code: every ``_target_`` within the allowlist, every model file inside the project
    (or an allowed folder), and the ``project:`` block exactly as the config file says (an override or
    an experiment cannot widen what recipes may import)."""
    from pipeline.schema import ProjectSpec, _validate
    from pipeline.trust import project_block

    declared = _validate(ProjectSpec, project_block(config_file) or {}, "project", policy.config)
    composed = data.get("project")
    if composed is not None or project_block(config_file) is not None:
        got = _validate(ProjectSpec, composed or {}, "project", policy.config)
        if got != declared:
            raise ConfigError(
                f"'project' is set in {policy.config} only: an override or experiment cannot change "
                "what recipes may import or read",
                key="project",
            )
    policy.check_project(data, source_of)


def check_providers(data: dict[str, Any], source_of: Any = lambda key: None) -> None:
    """A build whose execution provider this onnxruntime lacks fails now, not after its passes and
    quantization ran: the error names the installed providers and the package to install."""
    from pipeline.targets import TARGETS

    for name, build in (data.get("builds") or {}).items():
        target = (build or {}).get("target") or {}
        impl = TARGETS.get(target.get("name"))
        if impl is not None:
            impl().check_available(None, key=f"builds.{name}.target.name", source=source_of(f"builds.{name}"))


def check_watch(data: dict[str, Any], root: Path, source_of: Any = lambda key: None) -> None:
    """Every model's ``watch`` (a DVC dependency of its prepare stage) must exist under ``root``;
    otherwise DVC would stop with a bare "No such file or directory" naming no key. Checked only in
    a DVC project (``root/dvc.yaml``): a bare conf/ folder has no files to watch."""
    if not (root / "dvc.yaml").is_file():
        return
    for name, model in (data.get("models") or {}).items():
        watch = (model or {}).get("watch")
        if isinstance(watch, str) and not (root / watch).exists():
            raise ConfigError(
                f"'{watch}' does not exist: name the file or folder whose change should rebuild this model "
                "(its code, checkpoint or model file), relative to the project root",
                key=f"models.{name}.watch",
                source=source_of(f"models.{name}"),
            )


def _override_for(key: str | None, overrides: Sequence[str]) -> str | None:
    if not key:
        return None
    key = re.sub(r"\[(\d+)\]", r".\1", key)  # pydantic's inputs[0] is Hydra's inputs.0
    for text in overrides:
        k = text.lstrip("+~").split("=", 1)[0]
        if "@" in k:
            k = k.split("@", 1)[1]
        if key == k or key.startswith(k + "."):
            return text
    return None


def write_params(comp: Composition, out: str | Path = PARAMS_FILE) -> Path:
    """Write the composed text atomically (after validation, which :func:`compose` did)."""
    from pipeline.fsutil import write_text

    out = Path(out)
    write_text(out, comp.text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out, 0o666 & ~umask)  # a normal file, not the temp file's 0600
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="onnxbuild compose",
        description="Compose conf/ with Hydra overrides into a validated params.yaml (then: dvc repro).",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. builds.cnn_fp32.target.threads=1")
    parser.add_argument("--conf", default=str(CONF_DIR), help="config directory (default: conf)")
    parser.add_argument("--config-name", default=CONFIG_NAME, help="primary config (default: config)")
    parser.add_argument("--out", default=str(PARAMS_FILE), help="output file (default: params.yaml)")
    parser.add_argument("--print", dest="print_only", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    from pipeline.project import use_project

    use_project(conf_dir=args.conf)  # the project's own packages resolve for _target_ checks
    start = time.perf_counter()
    try:
        comp = compose(args.overrides, args.conf, args.config_name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: still one line (the reliability suite counts these)
        from pipeline.errors import one_line

        print(f"error: compose failed unexpectedly: {one_line(exc)}", file=sys.stderr)
        return 2
    if args.print_only:
        sys.stdout.write(comp.text)
        return 0
    out = write_params(comp, args.out)
    n_models, n_builds = len(comp.data.get("models") or {}), len(comp.data.get("builds") or {})
    print(
        f"composed {out} ({n_models} models, {n_builds} builds) in {time.perf_counter() - start:.2f}s; "
        f"next: dvc repro",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
