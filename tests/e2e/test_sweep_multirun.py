"""End to end on the fixture project: a multirun builds every point, shares the model through the
cache, ranks only gate-passing points; promote refuses a gate-failed point and writes the project's
default evaluation with the sweep's gates; two sweeps started at once never overwrite each other;
a sweep reuses the export that `dvc repro` built."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.sweep_project import MLP, env, make_project, points, run_sweep, sweep_cmd, sweep_dir_of

pytestmark = pytest.mark.slow
CNN = ["model.train.epochs=1", "model.reference.num_samples=64", "evaluate.runs=10", "evaluate.warmup=2"]


def test_multirun_leaderboard_shared_cache_and_promote(tmp_path):
    project = make_project(tmp_path / "project")
    # the fp32 point misses a size gate the int8 points pass: ranked apart, refused by promote
    out = run_sweep(project, *CNN, "quantization=none,dynamic_int8,static_int8", "evaluate.gates.max_size_mb=0.02",
                    "evaluate.gates.min_cosine=0.9")
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(rows) == 3
    by_q = {r["overrides"].split("quantization=")[1].split()[0]: r for r in rows}
    assert by_q["none"]["rank"] == "" and "max_size_mb 0.02" in by_q["none"]["gates"]
    ranked = [r for r in rows if r["rank"]]
    assert len(ranked) == 2 and all(r["gates"] == "pass" for r in ranked)
    assert [float(r["p50_ms"]) for r in ranked] == sorted(float(r["p50_ms"]) for r in ranked)
    assert all(float(r["cosine_min"]) > 0.9 and r["top1"] for r in rows)
    md = (out / "leaderboard.md").read_text()
    assert "onnxbuild promote" in md and "Not ranked (1" in md
    assert len(list((project / ".onnxbuild-cache" / "models").glob("*/done.json"))) == 1
    assert {p["host"] for p in points(out).values()} and all(p["benchmark_lock_held"] for p in points(out).values())

    def promote(job: str, name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "promote", job, "--name", name,
                               "--conf", str(project / "conf"), *extra], cwd=project, env=env(project),
                              capture_output=True, text=True)

    failed = promote(by_q["none"]["job_dir"], "cnn_fp32_swept")
    assert failed.returncode != 0 and "missed its gates" in failed.stderr and "--allow-failed" in failed.stderr
    assert not (project / "conf" / "recipe" / "cnn_fp32_swept.yaml").exists()
    done = promote(by_q["static_int8"]["job_dir"], "cnn_swept")
    assert done.returncode == 0, done.stderr
    assert "next: onnxbuild compose" in done.stdout and "model settings" in done.stdout
    from pipeline.compose import compose

    build = compose([], project / "conf").data["builds"]["cnn_swept"]
    assert build["quantization"]["name"] == "static_int8" and build["model"] == "digits_cnn"
    # the project's default evaluation (100 timed runs), with the sweep's gates
    assert build["evaluate"]["runs"] == 100 and build["evaluate"]["gates"]["max_size_mb"] == 0.02
    recipe = (project / "conf" / "recipe" / "cnn_swept.yaml").read_text()
    assert "override /quantization@quantization: static_int8" in recipe
    assert "override /target" not in recipe and "override /evaluate" not in recipe
    assert promote(by_q["none"]["job_dir"], "cnn_fp32_forced", "--allow-failed").returncode == 0

    # --force replaces the promoted build's recipe, never one that another build uses too
    config = project / "conf" / "config.yaml"
    line = "  - recipe@builds.cnn_swept: cnn_swept\n"
    config.write_text(config.read_text().replace(line, line + "  - recipe@builds.cnn_swept_copy: cnn_swept\n"))
    shared = promote(by_q["dynamic_int8"]["job_dir"], "cnn_swept", "--force")
    assert shared.returncode != 0 and "also the recipe of build(s) cnn_swept_copy" in shared.stderr
    assert len(shared.stderr.strip().splitlines()) == 1
    assert (project / "conf" / "recipe" / "cnn_swept.yaml").read_text() == recipe
    forced = promote(by_q["dynamic_int8"]["job_dir"], "cnn_fp32_forced", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "dynamic_int8" in (project / "conf" / "recipe" / "cnn_fp32_forced.yaml").read_text()


def test_two_sweeps_started_at_once_never_overwrite_each_other(tmp_path):
    project = make_project(tmp_path / "project")
    procs = [subprocess.Popen(sweep_cmd(*MLP, f"quantization={q}", "target.threads=1,2"), cwd=project, env=env(project),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for q in ("none", "dynamic_int8")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    dirs = [sweep_dir_of(o) for o in outs]
    assert dirs[0] != dirs[1]
    for d, q in zip(dirs, ("none", "dynamic_int8")):
        pts = points(d)
        assert len(pts) == 2 and all(f"quantization={q}" in k and p["status"] == "ok" for k, p in pts.items())
    # a sweep told to write into a folder that holds points is refused, and the points stay
    before = (dirs[0] / "0" / "point.json").read_text()
    proc = subprocess.run(sweep_cmd(*MLP, f"hydra.sweep.dir={dirs[0]}"), cwd=project, env=env(project),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "holds an earlier sweep's points" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (dirs[0] / "0" / "point.json").read_text() == before


def test_sweep_reuses_the_export_dvc_built(tmp_path):
    project = make_project(tmp_path / "project", framework=True)
    e = env(project)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), cwd=project, env=e, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "pipeline.cli", "compose")
    run(sys.executable, "-m", "dvc", "repro", "export@tiny_mlp")
    out = run_sweep(project, *MLP, "quantization=none,dynamic_int8")
    done = [json.loads(p.read_text()) for p in (project / ".onnxbuild-cache" / "models").glob("*/done.json")]
    assert len(done) == 1 and done[0]["source"] == "dvc" and done[0]["stage"] == "export@tiny_mlp"
    lock = (project / "dvc.lock").read_text()
    assert done[0]["dvc_hash"] in lock
    assert all(p["status"] == "ok" for p in points(out).values())
    # other model settings than the DVC build's: built in the sweep's cache instead
    run_sweep(project, *MLP, "model.factory.hidden=16")
    sources = sorted(json.loads(p.read_text())["source"] for p in (project / ".onnxbuild-cache" / "models").glob("*/done.json"))
    assert sources == ["dvc", "sweep"]
