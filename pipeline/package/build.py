"""Assemble a deployment package for one build: a folder and a zip of it.

    <out>/<BUILD>/
      model/model.onnx (+ its external data files)   the build's artifact, as evaluated
      session.json        ONNX Runtime settings the evaluate stage used (settings.session_settings)
      recipe.yaml         the build's section of params.yaml (and its model's), as composed
      metrics.json        metrics/builds/<BUILD>.json (latency, fidelity, gates, verdict, host)
      passes.json, quantization.json, search.json   what the passes / quantize stages recorded (when present)
      example_inputs.npz  one input feed from the model's reference samples (what latency was timed on)
      infer.py            loads the model with session.json and runs one example (numpy + onnxruntime)
      package.json        build, model, verdict, host, versions; why it was packaged despite a refusal
      SHA256SUMS          SHA-256 of every other file (``sha256sum -c SHA256SUMS``)
    <out>/<BUILD>.zip     the same folder, zipped (fixed timestamps: same files, same zip)

The folder is written atomically (an existing package is replaced only with ``force``), and the
model is loaded with the package's settings before anything is replaced.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.package.manifest import MANIFEST, package_files, write_manifest
from pipeline.package.readiness import Layout, read_metrics, refusal, stale

INFER = Path(__file__).resolve().parent / "infer.py"
MODEL_DIR = "model"
DEFAULT_OUT = "packages"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries' timestamp: the zip is a function of its files
RECORDS = ("passes.json", "quantization.json", "search.json")  # copied when the stages wrote them


class PackageError(PipelineError):
    """A build that cannot or must not be packaged, or a package that would overwrite another."""


@dataclass
class Packaged:
    """What :func:`package_build` wrote."""

    folder: Path
    zip: Path
    files: list[str] = field(default_factory=list)
    overridden: str | None = None  # the refusal that --allow-failed overrode
    warning: str | None = None  # e.g. code changed since it was measured (the model and settings did not)


def _json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _copy_model(artifact: Path, dest: Path) -> str:
    """Copy model.onnx and its external data files into ``dest``; the model's path in the package."""
    from pipeline.onnx_utils import external_files, model_path

    src = model_path(artifact)
    dest.mkdir()
    shutil.copy2(src, dest / src.name)
    for data in external_files(src):
        rel = data.relative_to(src.parent)
        if not data.is_file():
            raise PackageError(f"{src} refers to external data {rel}, which is missing")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data, dest / rel)
    return f"{MODEL_DIR}/{src.name}"


def _example_inputs(session: Any, layout: Layout, model_spec: Any, path: Path) -> list[str]:
    """One feed of the reference inputs, as the build's session takes it; the input names."""
    import numpy as np

    from pipeline.evaluate.metrics import REFERENCE_FILE, Reference
    from pipeline.execution import cast_for, step_feeds

    ref = Reference(layout.export / REFERENCE_FILE)
    feeds = cast_for(session, step_feeds(session, ref.inputs, model_spec, 1))
    np.savez(path, **{k: np.asarray(v) for k, v in feeds.items()})
    return sorted(feeds)


def _zip(folder: Path, top: str, target: Path) -> None:
    """Zip ``folder``'s files under ``top/`` into ``target`` (atomically, fixed timestamps, sorted)."""
    from pipeline.fsutil import atomic_file

    with atomic_file(target, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in [*package_files(folder), MANIFEST]:
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name == "infer.py" else 0o644) << 16
            zf.writestr(info, (folder / name).read_bytes())


def _not_a_package(folder: Path, zip_path: Path, build: str) -> str | None:
    """Why ``folder`` or ``zip_path`` (when they exist) is not an earlier package of ``build``, or None.
    (``--out artifacts/builds`` would otherwise replace the build's own DVC outputs.)"""
    if folder.exists() or folder.is_symlink():
        if folder.is_symlink() or not folder.is_dir():
            return f"{folder} exists and is not a package folder"
        if not ((folder / MANIFEST).is_file() and (folder / "package.json").is_file()):
            return f"{folder} exists and is not a package (no {MANIFEST} and package.json)"
    if zip_path.exists() or zip_path.is_symlink():
        try:
            with zipfile.ZipFile(zip_path) as zf:
                names = zf.namelist()
        except (OSError, zipfile.BadZipFile):
            names = []
        if zip_path.is_symlink() or not names or any(not n.startswith(f"{build}/") for n in names):
            return f"{zip_path} exists and is not a package of build '{build}'"
    return None


def _readme(build: str, metrics: dict[str, Any], settings: dict[str, Any], overridden: str | None) -> str:
    from pipeline.report.verdicts import verdict_of

    verdict, why = verdict_of(metrics) if metrics else ("none", "never evaluated")
    host = ((metrics.get("environment") or {}).get("host") or {}).get("id", "an unrecorded host")
    n = settings["intra_op_num_threads"]
    threads = "ONNX Runtime's default intra-op threads (one per physical core)" if n == 0 else f"{n} intra-op threads"
    lines = [
        f"# {build}",
        "",
        f"Verdict: {verdict}: {why}",
        f"Measured on {host}; runs with {settings['provider']}, {threads}, "
        f"graph optimization {settings['graph_optimization_level']}, {settings['execution_mode']}.",
        "",
        "Run it (needs numpy and onnxruntime; checks SHA256SUMS first):",
        "",
        "    python infer.py                     # the example inputs shipped here",
        "    python infer.py --inputs x.npz      # one array per model input, by name",
        "",
        "session.json holds the session settings; recipe.yaml the recipe as composed; metrics.json the measurements.",
    ]
    if overridden:
        lines += ["", f"WARNING: packaged with --allow-failed although this build {overridden}"]
    return "\n".join(lines) + "\n"


def package_build(
    build: str,
    root: str | Path = ".",
    out: str | Path | None = None,
    force: bool = False,
    allow_failed: bool = False,
    params_file: str = "params.yaml",
    logs: str | Path | None = None,
    log: logging.Logger | None = None,
) -> Packaged:
    """Package ``build`` of the project at ``root`` into ``out/<build>/`` and ``out/<build>.zip``
    (``out`` default: ``<root>/packages``). Raises :class:`PackageError` naming why a build is not
    packaged (not built, not evaluated, crashed, gates failed, out of date) unless ``allow_failed``."""
    from pipeline.fsutil import atomic_dir
    from pipeline.stages.runner import LOG_ROOT, build_spec, load_params
    from pipeline.targets import get_target

    log = log or logging.getLogger("onnxbuild.package")
    root = Path(root).resolve()
    params_path = root / params_file
    params = load_params(params_path)
    spec, model_spec = build_spec(params, build, str(params_path))
    logs_dir = Path(logs) if logs is not None else (LOG_ROOT if LOG_ROOT.is_absolute() else root / LOG_ROOT)
    layout = Layout(root=root, build=build, model=spec.model, logs=logs_dir)

    reason = refusal(layout)
    warning = None
    if reason is None:
        reason, warning = stale(layout)
    if warning:
        log.info("build '%s' %s", build, warning)
    if reason and not allow_failed:
        raise PackageError(f"build '{build}' {reason}: not packaged (--allow-failed packages it anyway)")
    if reason:
        log.warning("packaging build '%s' although it %s (--allow-failed)", build, reason)
    from pipeline.onnx_utils import model_path

    if not model_path(layout.artifact).is_file():  # --allow-failed cannot make a model appear
        raise PackageError(f"build '{build}' has no model to package: {model_path(layout.artifact)} does not exist "
                           f"(run `dvc repro evaluate@{build}`)")

    out_dir = Path(out) if out is not None else root / DEFAULT_OUT
    folder, zip_path = out_dir / build, out_dir / f"{build}.zip"
    if not force and (folder.exists() or zip_path.exists()):
        existing = folder if folder.exists() else zip_path
        raise PackageError(f"{existing} already exists: pass --force to replace it")
    not_ours = _not_a_package(folder, zip_path, build)
    if not_ours:  # --force replaces an earlier package, never a folder or file of something else
        raise PackageError(f"{not_ours}: not replaced, even with --force (choose another --out)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(f"cannot write packages into {out_dir}: {exc.strerror or exc} (choose another --out)") from None

    metrics = read_metrics(layout.metrics) or {}
    target = get_target(spec.target.name, key=f"builds.{build}.target.name", source=str(params_path))
    target.check_available(spec.target.params, key=f"builds.{build}.target.name", source=str(params_path))

    from pipeline.package.settings import session_settings

    with atomic_dir(folder) as tmp:
        model_file = _copy_model(layout.artifact, tmp / MODEL_DIR)
        settings = session_settings(target, spec.target.params, model_file)
        _json(tmp / "session.json", settings)
        try:  # the package's model must load with the package's settings before anything is replaced
            session = target.session(tmp / model_file, spec.target.params)
        except Exception as exc:
            from pipeline.errors import first_line

            raise PackageError(f"ONNX Runtime cannot load {model_file} with session.json: {first_line(exc)}") from None
        inputs = _example_inputs(session, layout, model_spec, tmp / "example_inputs.npz")
        import yaml

        section = {"builds": {build: params["builds"][build]}, "models": {spec.model: params["models"][spec.model]}}
        (tmp / "recipe.yaml").write_text(
            f"# builds.{build} of {params_file} as composed (and its model, models.{spec.model})\n"
            + yaml.safe_dump(section, sort_keys=False)
        )
        if metrics:
            _json(tmp / "metrics.json", metrics)
        for name, src in (("passes.json", layout.passes / "passes.json"),
                          ("quantization.json", layout.artifact / "quantization.json"),
                          ("search.json", layout.artifact / "search.json")):
            if src.is_file():
                shutil.copy2(src, tmp / name)
        shutil.copy2(INFER, tmp / "infer.py")
        (tmp / "infer.py").chmod(0o755)
        from pipeline.report.verdicts import verdict_of

        verdict, why = verdict_of(metrics) if metrics else (None, None)
        _json(tmp / "package.json", {
            "build": build,
            "model": spec.model,
            "task": model_spec.task,
            "inputs": inputs,
            "verdict": verdict,
            "verdict_reason": why,
            "gates_passed": (metrics.get("gates") or {}).get("passed"),
            "host": ((metrics.get("environment") or {}).get("host") or {}).get("id"),
            "versions": (metrics.get("environment") or {}).get("versions"),
            "packaged_despite": reason,
        })
        (tmp / "README.md").write_text(_readme(build, metrics, settings, reason))
        write_manifest(tmp)
        files = [*package_files(tmp), MANIFEST]
        _zip(tmp, build, zip_path)  # last: a failure before it leaves the earlier package whole
    log.info("packaged %s: %s (%d files) and %s", build, folder, len(files), zip_path)
    return Packaged(folder=folder, zip=zip_path, files=files, overridden=reason, warning=warning)


__all__ = ["DEFAULT_OUT", "PackageError", "Packaged", "package_build"]
