"""The user's project: its root folder, and its own code importable the same way everywhere.

The project root is the folder that holds ``conf/`` (and ``dvc.yaml``). A user's models, datasets and
custom metrics live there as ordinary top-level packages (``mymodels/tiny_resnet.py`` ->
``_target_: mymodels.tiny_resnet.build``). :func:`use_project` puts the root first on ``sys.path``;
every entry point calls it (``onnxbuild`` and its subcommands, ``python -m pipeline.compose``, every
DVC stage through :mod:`pipeline.stages.runner`, sweeps), so no ``PYTHONPATH`` is ever needed and a
``_target_`` resolves the same in compose, in ``onnxbuild check`` and in the stage that calls it.

:func:`own_packages` names the project's top-level packages and modules (for an allowlist of
importable ``_target_`` prefixes); :func:`import_module` imports a ``_target_``'s module and turns a
module that exists but fails on import into one line naming the module and the error's first line.
Nothing here imports a framework.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pipeline.errors import ConfigError, one_line

CONF = "conf"
# Folders of a project root that are never the user's code (outputs, caches, environments).
_NOT_CODE = {
    "conf", "artifacts", "metrics", "reports", "logs", "sweeps", "tests", "benchmarks", "scripts", "docs",
    "requirements", "build", "dist", "node_modules", "__pycache__",
}


def project_root(conf_dir: str | Path = CONF) -> Path:
    """The project root for a config folder: the folder that holds it (absolute)."""
    return Path(conf_dir).resolve().parent


def use_project(root: str | Path | None = None, conf_dir: str | Path = CONF) -> Path:
    """Put the project root (``root``, else the parent of ``conf_dir``) first on ``sys.path`` and
    return it. Idempotent: calling it again moves nothing."""
    root = Path(root).resolve() if root is not None else project_root(conf_dir)
    entry = str(root)
    if entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
    return root


def own_packages(root: str | Path) -> list[str]:
    """The project's own top-level packages (folders with ``__init__.py``) and modules (``*.py``)
    under ``root``, besides the framework (``pipeline``) and output/tooling folders."""
    root = Path(root)
    names: set[str] = set()
    if not root.is_dir():
        return []
    for path in root.iterdir():
        if path.name.startswith((".", "_")) or path.name in _NOT_CODE or path.name == "pipeline":
            continue
        if path.is_dir() and (path / "__init__.py").is_file() and path.name.isidentifier():
            names.add(path.name)
        elif path.suffix == ".py" and path.stem.isidentifier() and path.stem not in ("setup", "conftest"):
            names.add(path.stem)
    return sorted(names)


def import_module(name: str, key: str | None = None, source: str | None = None) -> ModuleType:
    """Import ``name``. A module that cannot be found, or that exists but fails on import (a syntax
    error, a missing dependency, an exception at import time), is one ConfigError line naming the
    module and the error's first line."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(
                f"cannot import '{name}': no module '{exc.name}' (a package of yours belongs in the project "
                f"root, beside conf/: see README 'Your own models and code')",
                key=key,
                source=source,
            ) from None
        raise ConfigError(f"module '{name}' fails on import: {one_line(exc)}", key=key, source=source) from None
    except Exception as exc:  # noqa: BLE001 - any error raised while importing the user's module
        where = ""
        if isinstance(exc, SyntaxError) and exc.filename:
            where = f" ({exc.filename}:{exc.lineno})"
        raise ConfigError(
            f"module '{name}' fails on import{where}: {one_line(exc)}", key=key, source=source
        ) from None


def import_target(target: str, key: str | None = None, source: str | None = None) -> object:
    """``package.module.attr`` -> the attribute, with one-line errors (see :func:`import_module`)."""
    module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"'{target}' is not a dotted path like package.module.function", key=key, source=source)
    module = import_module(module_name, key=key, source=source)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"'{module_name}' has no attribute '{attr}'", key=key, source=source) from None


def locate(module: str) -> bool:
    """Whether ``module`` can be found on the path (its parent packages are imported to look)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
