"""Model files shipped inside installed Python packages: ``pkg://<package>/<relative path>``.

A recipe can name a third-party model file by the package that ships it, so the build does not
depend on where the virtual environment lives::

    path: pkg://onnx/backend/test/data/light/light_squeezenet.onnx

The package is located with :func:`pipeline.trust.locate_module` (neither it nor its parent
packages are imported), and the file
must lie inside the package's folder. Plain paths pass through unchanged. Nothing here imports a
framework.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path, PurePosixPath

from pipeline.errors import ConfigError

SCHEME = "pkg://"
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_packaged(path: str) -> bool:
    return path.startswith(SCHEME)


def split(path: str, key: str = "path") -> tuple[str, PurePosixPath]:
    """``pkg://onnx/a/b.onnx`` -> ``("onnx", PurePosixPath("a/b.onnx"))``, checked for shape."""
    rest = path[len(SCHEME) :]
    package, _, relative = rest.partition("/")
    if not _PACKAGE.match(package):
        raise ConfigError(f"'{path}': '{package}' is not a package name (pkg://<package>/<file>)", key=key)
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(
            f"'{path}': expected a relative file path inside package '{package}' (pkg://<package>/<file>)", key=key
        )
    return package, rel


def package_dir(package: str, key: str = "path") -> Path:
    """The folder of an installed package, found without importing it."""
    from pipeline.trust import locate_module

    # not importlib.util.find_spec: for 'a.b' it imports (runs) package 'a'
    spec = locate_module(package)
    if spec is None:
        raise ConfigError(f"package '{package}' is not installed", key=key)
    locations = list(spec.submodule_search_locations or [])
    if not locations:
        raise ConfigError(f"'{package}' is a module, not a package: it cannot ship model files", key=key)
    return Path(locations[0])


def resolve(path: str, key: str = "path") -> Path:
    """The file a recipe's ``path`` names: a ``pkg://`` location resolved inside its package, or a
    plain path (``~`` expanded). Raises ConfigError if a packaged file does not exist."""
    if not is_packaged(path):
        return Path(path).expanduser()
    package, rel = split(path, key)
    base = package_dir(package, key)
    target = base.joinpath(*rel.parts)
    if not target.is_file():
        raise ConfigError(f"package '{package}' ({base}) ships no file '{rel}'", key=key)
    return target


def package_version(path: str) -> str | None:
    """The installed distribution version behind a ``pkg://`` path (None for plain paths or when
    the distribution cannot be told), recorded with the snapshot for provenance."""
    if not is_packaged(path):
        return None
    package = split(path)[0].split(".")[0]
    dists = importlib.metadata.packages_distributions().get(package) or [package]
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
