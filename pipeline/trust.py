"""What a recipe may run and read: recipes are code.

Every ``_target_`` in a recipe names a Python callable that the stages import and call, with the
user's rights. So a recipe (or a ``-S`` / command-line override) may only name modules under the
prefixes the project config allows, and model files (``path``, ``checkpoint``, ``watch``) must lie
inside the project folder or an installed package (``pkg://``) unless the config allows a prefix::

    # conf/config.yaml
    project:
      allow_targets: [pipeline, mymodels]   # module prefixes a _target_ may start with
      allow_paths: [/data/models]           # folders outside the project that model files may name

Without a ``project:`` block (or ``allow_targets``) the default is ``pipeline`` plus the project's
own top-level packages and modules beside ``conf/`` (:func:`pipeline.project.own_packages`). The block is read from the config
file itself, never from an override or from ``params.yaml``: an override cannot widen it, and the
stages check a hand-edited ``params.yaml`` against the same file. Checking imports nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

CONFIG_FILE = Path("conf") / "config.yaml"
BUILTIN_TARGETS = ("pipeline",)  # the modules the default recipes use (pipeline.data, pipeline.models)
PATH_KEYS = ("path", "checkpoint", "watch")  # a model's files
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Policy:
    """The allowlists of one project: ``_target_`` module prefixes and path prefixes."""

    root: Path
    targets: tuple[str, ...]
    paths: tuple[str, ...]
    config: str  # the file they come from (for error messages)

    def target_allowed(self, target: str) -> bool:
        return any(target == p or target.startswith(p + ".") for p in self.targets)

    def check_target(self, target: Any, key: str, source: str | None = None) -> None:
        if not isinstance(target, str) or not self.target_allowed(target):
            raise ConfigError(
                f"_target_ '{target}' is outside the modules recipes may import "
                f"(project.allow_targets in {self.config}; recipes are code, see README 'Recipes are code')",
                key=key,
                source=source,
                choices=self.targets,
            )

    def check_path(self, value: Any, key: str, source: str | None = None) -> None:
        if not isinstance(value, str) or value.startswith("pkg://"):
            return
        if "\0" in value:
            raise ConfigError("a path cannot hold a NUL byte", key=key, source=source)
        full = Path(os.path.normpath(self.root / os.path.expanduser(value)))
        if _inside(full, self.root) or any(_inside(full, Path(p)) for p in self.paths):
            return
        raise ConfigError(
            f"'{value}' is outside the project folder {self.root}: name a file inside it, a package "
            f"file (pkg://PACKAGE/FILE), or allow the folder in project.allow_paths of {self.config}",
            key=key,
            source=source,
        )

    def check(self, data: Any, key: str, source: str | None = None) -> None:
        """Every ``_target_`` under ``data`` (a model or build section) and a model's file paths."""
        for where, target in find_targets(data, key):
            self.check_target(target, where, source)
        if key.startswith("models.") and isinstance(data, dict):
            for name in PATH_KEYS:
                self.check_path(data.get(name), f"{key}.{name}", source)


    def check_project(self, data: Any, source_of: Any = lambda key: None) -> None:
        """:meth:`check` every model and build section of a composed project."""
        for kind in ("models", "builds"):
            section = data.get(kind) if isinstance(data, dict) else None
            if isinstance(section, dict):
                for name, spec in section.items():
                    self.check(spec, f"{kind}.{name}", source_of(f"{kind}.{name}"))


def _inside(path: Path, folder: Path) -> bool:
    folder = Path(os.path.normpath(folder))
    return path == folder or folder in path.parents


def find_targets(data: Any, key: str) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of every ``_target_`` in a nested mapping / list."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == "_target_":
                yield f"{key}._target_", v
            else:
                yield from find_targets(v, f"{key}.{k}")
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            yield from find_targets(v, f"{key}[{i}]")


def project_block(config_file: Path) -> dict[str, Any] | None:
    """The raw ``project:`` block of a config file (None when the file or the block is absent)."""
    from pipeline.yamlio import load_yaml_file

    if not config_file.is_file():
        return None
    data = load_yaml_file(config_file)
    if not isinstance(data, dict):
        return None
    block = data.get("project")
    if block is not None and not isinstance(block, dict):
        raise ConfigError("expected a mapping (allow_targets, allow_paths)", key="project", source=str(config_file))
    return block


def load_policy(config_file: str | os.PathLike = CONFIG_FILE, root: str | os.PathLike | None = None) -> Policy:
    """The policy of the project whose config is ``config_file`` (root: its ``conf/``'s parent)."""
    from pipeline.project import own_packages
    from pipeline.schema import ProjectSpec, _validate

    config_file = Path(config_file)
    root = Path(root) if root is not None else config_file.resolve().parent.parent
    root = Path(os.path.normpath(root.resolve()))
    block = project_block(config_file)
    spec = _validate(ProjectSpec, block or {}, "project", _display(config_file))
    targets = spec.allow_targets
    if targets is None:
        targets = [*BUILTIN_TARGETS, *(p for p in own_packages(root) if p not in BUILTIN_TARGETS)]
    paths = tuple(os.path.normpath(os.path.expanduser(p)) for p in spec.allow_paths)
    return Policy(root=root, targets=tuple(targets), paths=paths, config=_display(config_file))


def default_policy(root: str | os.PathLike, config: str = "conf/config.yaml") -> Policy:
    """The policy without a ``project:`` block: ``pipeline`` and the project's own packages."""
    from pipeline.project import own_packages

    root = Path(os.path.normpath(Path(root).resolve()))
    targets = (*BUILTIN_TARGETS, *(p for p in own_packages(root) if p not in BUILTIN_TARGETS))
    return Policy(root=root, targets=targets, paths=(), config=config)


def stage_policy() -> Policy:
    """The policy a stage enforces: from ``conf/config.yaml`` of the project it runs in (the current
    folder, as under ``dvc repro``), never from ``params.yaml``."""
    return load_policy(CONFIG_FILE, Path.cwd())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def locate_module(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of module ``name`` found WITHOUT importing it or any parent package.

    ``importlib.util.find_spec("a.b")`` imports ``a`` (running ``a/__init__.py``); here each level is
    searched on its parent's ``__path__`` as read from the finder, so no code of the project runs."""
    parts = name.split(".")
    if not all(_IDENT.match(p) for p in parts):
        return None
    spec = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        loaded = sys.modules.get(full)
        if loaded is not None and getattr(loaded, "__spec__", None) is not None:
            spec = loaded.__spec__
            continue
        if i == 0:
            try:
                spec = importlib.util.find_spec(full)  # a top-level name: finders only, no import
            except (ImportError, ValueError):
                return None
        else:
            locations = spec.submodule_search_locations if spec is not None else None
            if locations is None:  # the parent is a plain module, not a package
                return None
            # a namespace package's _NamespacePath recomputes itself from sys.modules[parent]
            # (absent: nothing was imported); its stored folders are what the finder found
            spec = _find_in(full, parts[i], list(getattr(locations, "_path", locations)))
        if spec is None:
            return None
    return spec


def _find_in(full: str, part: str, locations: list[str]) -> importlib.machinery.ModuleSpec | None:
    """Module ``part`` in the folders of its parent package, the way the path finder looks (a package
    folder with ``__init__``, a module file, else a namespace folder), without importing anything."""
    portions = []
    for location in locations:
        base = Path(location) / part
        for init in ("__init__.py", "__init__.pyc"):
            if (base / init).is_file():
                return importlib.util.spec_from_file_location(full, base / init, submodule_search_locations=[str(base)])
        for suffix in importlib.machinery.all_suffixes():
            file = Path(location) / f"{part}{suffix}"
            if file.is_file():
                return importlib.util.spec_from_file_location(full, file)
        if base.is_dir():
            portions.append(str(base))
    if portions:
        spec = importlib.machinery.ModuleSpec(full, None, is_package=True)
        spec.submodule_search_locations = portions
        return spec
    return None
