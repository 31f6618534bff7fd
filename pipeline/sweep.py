"""Hydra multirun sweeps: build and evaluate one build per sweep point, then rank the points.

    python -m pipeline.sweep -m quantization=none,dynamic_int8,static_int8 target.threads=1,2
    python -m pipeline.sweep -m hydra/launcher=joblib hydra.launcher.n_jobs=2 quantization=none,static_int8

The app composes ``conf/sweep.yaml``: ONE build at the config root (``model``, ``passes``,
``quantization``, ``target``, ``evaluate``), so overrides are short. Each job writes its artifacts,
``metrics.json`` and ``point.json`` (overrides, choices, status) into its own job folder.

Upstream work is shared between jobs through a content-addressed cache: the model's prepared
source and ONNX export live in ``<cache_dir>/models/<key>/``, where ``key`` hashes the validated
model spec, the content of its ``watch`` path and the code of the prepare/export stages. A file
lock per key makes concurrent jobs (joblib launcher) wait for the first one instead of repeating
it. Latency is measured under the host-wide benchmark lock (inside ``evaluate_build``), so parallel
jobs never time each other. A failing point is recorded (status ``failed`` with its one-line
error) and the sweep goes on; the ``LeaderboardCallback`` (``pipeline.leaderboard``) writes
``leaderboard.md`` and ``leaderboard.csv`` into the sweep folder at the end.

Turn a point into a DVC build: ``onnxbuild promote <job dir> --name NAME``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
BUILD_GROUPS = ("passes", "quantization", "target", "evaluate")
POINT_FILE = "point.json"
METRICS_FILE = "metrics.json"
POINT_BUILD = "point"
# Code whose change invalidates a cached prepare/export (the deps of prepare@M / export@M in dvc.yaml).
UPSTREAM_CODE = (
    "pipeline/stages/prepare.py",
    "pipeline/stages/export.py",
    "pipeline/sources/common.py",
    "pipeline/train",
)


def hash_path(path: Path, h: Any) -> None:
    """Feed a file's bytes, or a folder's relative names and bytes (sorted), into ``h``."""
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(sub.relative_to(path)).encode())
            h.update(sub.read_bytes())
    else:
        h.update(b"<missing>")


def model_key(spec: Any, cwd: Path) -> str:
    """Content address of a model's upstream work: its spec, its watch path and the stage code."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True).encode())
    watch = Path(spec.watch)
    hash_path(watch if watch.is_absolute() else cwd / watch, h)
    code = [*UPSTREAM_CODE, f"pipeline/sources/{spec.framework}_source.py"]
    for rel in code:
        h.update(rel.encode())
        hash_path(REPO_ROOT / rel, h)
    return h.hexdigest()[:20]


def shared_export(spec: Any, cache_root: Path, cwd: Path, log: logging.Logger) -> Path:
    """The model's export folder from the cache, building it (prepare + export) on first use."""
    from filelock import FileLock

    from pipeline.fsutil import write_json
    from pipeline.stages.export import export_model
    from pipeline.stages.prepare import prepare_model

    key = model_key(spec, cwd)
    root = cache_root / "models" / key
    done = root / "done.json"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f"{key}.lock")):
        if done.is_file():
            log.info("reusing prepared/exported model from the sweep cache (%s)", root)
            return root / "export"
        log.info("preparing and exporting the model into the sweep cache (%s)", root)
        start = time.perf_counter()
        prepared = prepare_model(spec, root / "source", log)
        exported = export_model(spec, root / "source", root / "export", log)
        write_json(done, {"prepare": prepared, "export": exported, "seconds": time.perf_counter() - start})
    return root / "export"


def point_project(cfg: Any, model_name: str) -> dict[str, Any]:
    """The sweep config as a one-build project (``models: {M: ...}, builds: {point: ...}``)."""
    from omegaconf import OmegaConf

    def part(key: str) -> Any:
        node = cfg[key]
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    build = {"model": model_name, **{g: part(g) for g in BUILD_GROUPS}}
    return {"models": {model_name: part("model")}, "builds": {POINT_BUILD: build}}


def run_point(cfg: Any) -> dict[str, Any]:
    """Build and evaluate the point described by ``cfg`` in Hydra's job folder; returns point.json."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from pipeline.fsutil import write_json
    from pipeline.schema import validate_project
    from pipeline.evaluate.metrics import evaluate_build
    from pipeline.stages.passes import run_passes
    from pipeline.stages.quantize import quantize_build

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    cwd = Path(hc.runtime.cwd)
    choices = {k: v for k, v in OmegaConf.to_container(hc.runtime.choices).items() if not k.startswith("hydra/")}
    model_name = choices.get("model") or "model"
    log = logging.getLogger("onnxbuild.sweep")
    point: dict[str, Any] = {
        "job": hc.job.num if hc.mode.name == "MULTIRUN" else None,
        "overrides": list(hc.overrides.task),
        "choices": choices,
        "model": model_name,
        "status": "failed",
        "error": None,
    }
    start = time.perf_counter()
    try:
        project = validate_project(point_project(cfg, model_name), lambda key: f"conf/sweep.yaml ({key})")
        spec, build = project.models[model_name], project.builds[POINT_BUILD]
        cache_root = Path(cfg.cache_dir)
        export_dir = shared_export(spec, cache_root, cwd, log)
        run_passes(build, spec, export_dir, job_dir / "passes", log)
        quantize_build(build, spec, job_dir / "passes", job_dir / "model", log)
        metrics = evaluate_build(build, spec, job_dir / "model", export_dir, log, name=POINT_BUILD)
        write_json(job_dir / METRICS_FILE, metrics)
        failures = metrics["gates"]["failures"]
        point["status"] = "gates failed" if failures else "ok"
        point["error"] = "; ".join(failures) or None
    except PipelineError as exc:
        point["error"] = str(exc)
        log.error("point failed: %s", exc)
    except Exception as exc:  # keep the sweep going; the traceback is in the job's log
        point["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        log.exception("point failed")
    point["seconds"] = round(time.perf_counter() - start, 2)
    write_json(job_dir / POINT_FILE, point)
    log.info("point %s: %s%s", " ".join(point["overrides"]), point["status"], f" ({point['error']})" if point["error"] else "")
    return point


def _app() -> Any:
    import hydra

    @hydra.main(config_path=str(CONF_DIR), config_name="sweep", version_base=None)
    def app(cfg: Any) -> dict[str, Any]:
        return run_point(cfg)

    return app


def main() -> None:
    from pipeline.project import use_project

    use_project(conf_dir=CONF_DIR)  # the project's own models, datasets and metrics (joblib workers inherit sys.path)
    _app()()


if __name__ == "__main__":
    sys.exit(main())
