"""A copy of the fixture project (tests/fixtures/project) with the framework's sweep config, and a
runner for `python -m pipeline.sweep` in it (the sweep e2e, launcher, Optuna, remote and queue tests)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "project"
FRAMEWORK = ("pipeline", "dvc.yaml", ".dvcignore", "requirements", "pyproject.toml")
# the fixture's untrained MLP: no training, sub-second export; few timed runs
MLP = ["model=tiny_mlp", "evaluate.runs=10", "evaluate.warmup=2"]


def make_project(dest: Path, framework: bool = False) -> Path:
    """The fixture project at ``dest`` with conf/sweep.yaml from the framework (and ``pipeline/``,
    ``dvc.yaml``... when ``framework``, for DVC runs)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(FIXTURE, dest, ignore=ignore)
    shutil.copy2(ROOT / "conf" / "sweep.yaml", dest / "conf" / "sweep.yaml")
    shutil.copytree(ROOT / "conf" / "hydra", dest / "conf" / "hydra", ignore=ignore)  # launcher examples
    if framework:
        for name in FRAMEWORK:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=ignore)
            else:
                shutil.copy2(src, dest / name)
    return dest


def env(project: Path) -> dict[str, str]:
    out = {**os.environ, "ONNXBUILD_BENCH_LOCK": str(project / "bench.lock"), "DVC_NO_ANALYTICS": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    out.pop("RAY_ADDRESS", None)
    return out


def sweep_cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.sweep", "-m", *overrides]


def run_sweep(project: Path, *overrides: str, timeout: float = 900, extra_env: dict[str, str] | None = None) -> Path:
    """Run a sweep in ``project``; its folder (from the leaderboard line it prints)."""
    proc = subprocess.run(sweep_cmd(*overrides), cwd=project, env={**env(project), **(extra_env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return sweep_dir_of(proc.stdout + proc.stderr)


def sweep_dir_of(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("leaderboard: "))
    return Path(line.split()[1]).parent


def points(sweep_dir: Path) -> dict[str, dict]:
    """point.json of each job, by its overrides (sorted, joined)."""
    out = {}
    for path in sorted(sweep_dir.glob("*/point.json")):
        point = json.loads(path.read_text())
        point["dir"] = str(path.parent)
        out[" ".join(sorted(point["overrides"]))] = point
    return out


def artifact_hashes(sweep_dir: Path) -> dict[str, str]:
    """SHA-256 of every point's model.onnx, by the point's overrides."""
    return {k: hashlib.sha256((Path(p["dir"]) / "model" / "model.onnx").read_bytes()).hexdigest()
            for k, p in points(sweep_dir).items()}


def lock_intervals_disjoint(*sweep_dirs: Path) -> bool:
    spans = sorted(tuple(p["benchmark_lock_held"]) for d in sweep_dirs for p in points(d).values())
    return all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
