"""End to end: a 3-point Hydra multirun builds every point, shares the model through the cache,
writes the leaderboard; a joblib run works too; `onnxbuild promote` turns a point into a build."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FAST = ["model.train.epochs=1", "model.reference.num_samples=64", "evaluate.runs=10", "evaluate.warmup=2"]


def sweep(tmp_path: Path, name: str, *overrides: str) -> Path:
    out = tmp_path / name
    cmd = [sys.executable, "-m", "pipeline.sweep", "-m", *FAST, *overrides,
           f"hydra.sweep.dir={out}", f"cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_multirun_leaderboard_shared_cache_joblib_and_promote(tmp_path):
    out = sweep(tmp_path, "basic", "quantization=none,dynamic_int8,static_int8")
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"ok"}
    p50 = [float(r["p50_ms"]) for r in rows]
    assert p50 == sorted(p50) and [r["rank"] for r in rows] == ["1", "2", "3"]
    assert all(float(r["cosine_min"]) > 0.9 and r["top1"] for r in rows)
    md = (out / "leaderboard.md").read_text()
    assert "onnxbuild promote" in md and "quantization=static_int8" in md
    # the three points shared one prepare+export
    assert len(list((tmp_path / "cache" / "models").glob("*/done.json"))) == 1

    par = sweep(tmp_path, "joblib", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "target.threads=1,2",
                "quantization=static_int8")
    assert len(list(csv.DictReader((par / "leaderboard.csv").open()))) == 2
    assert len(list((tmp_path / "cache" / "models").glob("*/done.json"))) == 1

    # promote the static int8 point into a copy of conf/
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    job = next(Path(r["job_dir"]) for r in rows if "static_int8" in r["overrides"])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "promote", str(job), "--name", "cnn_swept",
                           "--conf", str(conf)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "next: onnxbuild compose" in proc.stdout
    assert "model settings" in proc.stdout  # the point trained for 1 epoch: said, not silently dropped
    from pipeline.compose import compose

    comp = compose([], conf)
    build = comp.data["builds"]["cnn_swept"]
    assert build["quantization"]["name"] == "static_int8" and build["evaluate"]["runs"] == 10
    assert build["model"] == "digits_cnn"
    recipe = (conf / "recipe" / "cnn_swept.yaml").read_text()
    assert "override /quantization@quantization: static_int8" in recipe
    assert "override /target" not in recipe  # only what differs from the defaults
