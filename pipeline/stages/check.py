"""Stage ``params``: stop ``dvc repro`` before anything builds when ``params.yaml`` is stale.

    python -m pipeline.stages.check --conf conf --params params.yaml --dvc-yaml dvc.yaml --out artifacts/params.ok

``dvc repro`` never composes ``conf/`` (only ``dvc exp run`` does), so after a recipe edit it would
build from an old ``params.yaml``. This stage depends on ``conf/`` (not on ``params.yaml``: a
params-only change must rerun only the stages that read the changed keys) and runs first
(every other stage depends on its stamp); it fails with one line naming the command to run
(``onnxbuild compose``, or ``dvc exp run``) instead of recomposing behind the user's back.

How a fresh ``params.yaml`` is told from a stale one, in order:

1. **Under ``dvc exp run``** (DVC sets ``DVC_EXP_NAME`` for the stages it runs) with Hydra
   composition enabled in ``.dvc/config``: DVC has just composed ``params.yaml`` from ``conf/``
   plus the ``-S`` overrides, so it is fresh by construction (this covers queued experiments,
   which run in a temporary copy where every file's mtime is the checkout time).
2. **Same content as composing ``conf/`` now** (no overrides): fresh. This is the common case,
   and it does not depend on file times, so a fresh clone passes.
3. **Composed with overrides** (``onnxbuild compose target.threads=1``, or a workspace
   ``dvc exp run -S ...`` followed by ``dvc repro``): the content differs from the plain
   composition, so file times decide: if ``params.yaml`` is newer than every file under ``conf/``,
   it was composed after the last recipe edit and is accepted; otherwise a recipe changed after
   it was composed: stale.

Then the project is validated (``dvc exp run`` writes ``params.yaml`` without validating it) and
every key that a stage in ``dvc.yaml`` lists under ``params`` must exist, with a message naming
the model or recipe file to fix (DVC's own error would only say the key is missing).

The stamp has constant content, so rerunning this stage never makes other stages rerun.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.stages.runner import main_for

STAMP = "params.yaml is consistent with conf/ (checked by pipeline.stages.check)\n"
FIX = "run `onnxbuild compose [OVERRIDE...]` (then `dvc repro`), or build with `dvc exp run`"


def hydra_enabled(repo_root: Path) -> bool:
    """Whether ``.dvc/config`` turns on DVC's Hydra composition (``[hydra] enabled = true``)."""
    cfg = repo_root / ".dvc" / "config"
    if not cfg.is_file():
        return False
    section = None
    for line in cfg.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip().strip("'\"")
        elif section == "hydra" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == "enabled":
                return value.strip().lower() in ("true", "1", "yes")
    return False


def newest(conf_dir: Path) -> tuple[float, Path | None]:
    """The most recent modification time under ``conf_dir`` and the file it belongs to."""
    best, where = 0.0, None
    for path in conf_dir.rglob("*"):
        if path.is_file():
            mtime = path.stat().st_mtime
            if mtime > best:
                best, where = mtime, path
    return best, where


def first_difference(a: Any, b: Any, key: str = "") -> str | None:
    """The first key where two parsed YAML documents differ, as ``key: old -> new``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{key}.{k}" if key else str(k)
            if k not in a:
                return f"{sub}: (absent) -> {_short(b[k])}"
            if k not in b:
                return f"{sub}: {_short(a[k])} -> (absent)"
            found = first_difference(a[k], b[k], sub)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{key}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{key}: {len(a)} -> {len(b)} entries"
        return None
    return None if a == b else f"{key}: {_short(a)} -> {_short(b)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_fresh(conf_dir: Path, params_file: Path, log: logging.Logger | None = None) -> str:
    """Raise ConfigError when ``params_file`` is stale w.r.t. ``conf_dir``; return why it is fresh."""
    import yaml

    from pipeline.compose import compose

    if not params_file.is_file():
        raise ConfigError(f"not found: {FIX}", source=str(params_file))
    if os.environ.get("DVC_EXP_NAME") and hydra_enabled(Path.cwd()):
        return f"composed by `dvc exp run` (experiment {os.environ['DVC_EXP_NAME']}) from {conf_dir}"
    try:
        comp = compose([], conf_dir)
    except ConfigError as exc:
        raise ConfigError(f"the recipes in {conf_dir} do not compose: {exc}") from None
    text = params_file.read_text()
    if text == comp.text:
        return f"same as composing {conf_dir}"
    conf_time, conf_file = newest(conf_dir)
    if params_file.stat().st_mtime > conf_time:
        return f"composed with overrides after the last change under {conf_dir}"
    diff = first_difference(yaml.safe_load(text) or {}, comp.data)
    detail = f"; first difference (params.yaml -> {conf_dir}): {diff}" if diff else ""
    raise ConfigError(
        f"stale: {conf_file} changed after it was composed{detail}; {FIX}", source=str(params_file)
    )


_TEMPLATE = re.compile(r"\$\{\s*([^}]+?)\s*\}")


def required_keys(dvc_yaml: Path, params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(stage@item, key)`` for every params key that a stage of ``dvc_yaml`` will read."""
    import yaml

    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    needed: list[tuple[str, str]] = []
    for stage, body in stages.items():
        if "foreach" in body:
            over = _TEMPLATE.fullmatch(str(body["foreach"]).strip())
            items = params.get(over.group(1), {}) if over else {}
            template = body.get("do") or {}
        else:
            items, template = {None: None}, body
        for key, item in (items or {}).items():
            for entry in template.get("params") or []:
                names = entry if isinstance(entry, str) else None
                if names is None:
                    continue  # {file: [keys]} entries: other params files
                name = _TEMPLATE.sub(lambda m: _lookup(m.group(1), key, item), names)
                needed.append((f"{stage}@{key}" if key is not None else stage, name))
    return needed


def _lookup(expr: str, key: Any, item: Any) -> str:
    if expr == "key":
        return str(key)
    if expr.startswith("item.") and isinstance(item, dict):
        value: Any = item
        for part in expr[len("item.") :].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return str(value)
    return "${" + expr + "}"


def _has(data: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def check_keys(dvc_yaml: Path, params: dict[str, Any], params_file: Path) -> None:
    for stage, key in required_keys(dvc_yaml, params):
        if not _has(params, key):
            kind, name = key.split(".")[:2]
            what = {"models": "its model file in conf/model/", "builds": "its recipe in conf/recipe/"}.get(kind, "conf/")
            raise ConfigError(
                f"stage {stage} reads this key but it is missing: declare it in {what} "
                f"(null when unused), then {FIX}",
                key=key,
                source=str(params_file),
            )


def check(conf_dir: Path, params_file: Path, dvc_yaml: Path | None, log: logging.Logger) -> str:
    """The whole check: fresh, valid, and every key the stages read is present."""
    from pipeline.schema import validate_project
    from pipeline.stages.runner import load_params

    why = check_fresh(conf_dir, params_file, log)
    log.info("params.yaml is fresh: %s", why)
    params = load_params(params_file)
    validate_project(params, lambda key: str(params_file))
    from pipeline.compose import check_watch

    check_watch(params, conf_dir.resolve().parent, lambda key: str(params_file))
    if dvc_yaml is not None and dvc_yaml.is_file():
        check_keys(dvc_yaml, params, params_file)
    return why


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", default="conf", help="the recipes folder")
    parser.add_argument("--dvc-yaml", default="dvc.yaml", help="stage file whose params keys must exist")
    parser.add_argument("--out", default=None, help="stamp file to write when the check passes")


def _body(args: argparse.Namespace, log: logging.Logger) -> None:
    from pipeline.fsutil import write_text

    check(Path(args.conf), Path(args.params), Path(args.dvc_yaml) if args.dvc_yaml else None, log)
    if args.out:
        write_text(args.out, STAMP)


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("check", _configure, _body, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
