"""The project code a module runs, derived from its source (no import needed).

A stage's DVC deps must cover every ``pipeline`` file its entry point can execute, or an edit to
that file would not rebuild what it affects (a build system that rebuilds too little is the worst
bug it can have). :func:`closure` follows ``import`` / ``from ... import`` statements anywhere in a
file (function-level imports included) and string literals naming ``pipeline.`` modules (registries
that import lazily by name), transitively. Tests compare it with ``dvc.yaml``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = "pipeline"
_MODULE_STRING = re.compile(rf"^{PACKAGE}(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def module_file(root: Path, module: str) -> Path | None:
    """``pipeline.a.b`` -> ``root/pipeline/a/b.py`` or ``root/pipeline/a/b/__init__.py`` (None if neither)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolve(root: Path, module: str) -> Path | None:
    """The file of ``module``, or of its parent when ``module`` names an attribute (``pipeline.data.load``)."""
    while module.startswith(PACKAGE):
        found = module_file(root, module)
        if found is not None:
            return found
        module = module.rpartition(".")[0]
    return None


def imported_modules(path: Path) -> set[str]:
    """``pipeline.*`` modules a file imports or names in a string literal."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value):
            found.add(node.value)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


# The schema validates every stage's section of params.yaml through the pass / quantizer / target
# registries; a stage that *runs* one of those implementations imports it itself. So the schema's
# imports of them do not make, say, the prepare stage depend on every quantizer.
VALIDATION_ONLY: dict[str, tuple[str, ...]] = {
    "pipeline/schema.py": ("pipeline/passes/", "pipeline/quantization/", "pipeline/targets/", "pipeline/evaluate/"),
    # build_spec checks that the build's execution provider is installed (a validation, like the schema's)
    "pipeline/stages/runner.py": ("pipeline/targets/",),
}


def closure(root: Path, module: str, validation_only: dict[str, tuple[str, ...]] | None = None) -> set[Path]:
    """Every project file (relative to ``root``) that running ``module`` may execute, including the
    ``__init__.py`` of each package on the way. Edges listed in ``validation_only`` (default
    :data:`VALIDATION_ONLY`: importer file -> imported folders) are not followed."""
    skip = VALIDATION_ONLY if validation_only is None else validation_only
    root = Path(root)
    start = _resolve(root, module)
    if start is None:
        raise ValueError(f"no file for module {module} under {root}")
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        rel = path.relative_to(root)
        for i in range(1, len(rel.parts)):  # parent packages' __init__.py run first
            init = root.joinpath(*rel.parts[:i], "__init__.py")
            if init.is_file() and init not in seen:
                todo.append(init)
        skipped = skip.get(rel.as_posix(), ())
        for mod in imported_modules(path):
            found = _resolve(root, mod)
            if found is None or found in seen:
                continue
            if found.relative_to(root).as_posix().startswith(skipped) and skipped:
                continue
            todo.append(found)
    return {p.relative_to(root) for p in seen}
