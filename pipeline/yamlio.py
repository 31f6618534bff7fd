"""Reading YAML (recipes, the project config, params.yaml) with one-line errors.

A syntax error or a duplicate key becomes ``FILE:LINE: <problem>``, not PyYAML's multi-line report.
Duplicate keys are errors (PyYAML would silently keep the last one; OmegaConf refuses them too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def _loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys in a mapping."""

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                hashable = key in seen
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if hashable:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def yaml_error(exc: BaseException, path: str | os.PathLike | None = None) -> ConfigError:
    """A one-line ConfigError ``FILE:LINE: problem`` for a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[-1]
    context = getattr(exc, "context", None)
    name = getattr(mark, "name", None) if mark is not None else None
    where = str(path) if path is not None else (name if name and not name.startswith("<") else "YAML")
    where = _display(where)
    if mark is not None:
        where += f":{mark.line + 1}"
    text = f"YAML syntax error: {problem}"
    if problem.startswith("found duplicate key "):  # OmegaConf's loader (Hydra's recipes)
        text = f"duplicate key '{problem.removeprefix('found duplicate key ').strip()}'"
    elif "duplicate key" in problem:
        text = problem
    elif context:
        text += f" ({context})"
    return ConfigError(" ".join(text.split()), source=where)


def _display(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def load_yaml_text(text: str, path: str | os.PathLike | None = None) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path) from None


def load_yaml_file(path: str | os.PathLike) -> Any:
    """Parse a YAML file strictly (duplicate keys refused); ConfigError ``FILE:LINE: ...`` on error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=_display(str(path))) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=_display(str(path))) from None
    return load_yaml_text(text, path)


def check_yaml_tree(folder: str | os.PathLike) -> None:
    """Parse every ``*.yaml`` under ``folder`` strictly: the first bad file is a one-line error."""
    for file in sorted(Path(folder).rglob("*.yaml")):
        load_yaml_file(file)
