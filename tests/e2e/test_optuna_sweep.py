"""A 12-trial Optuna search on the fixture project's MLP: points that miss the fidelity gate are
infeasible and never best; the best feasible point passes its gates and is promoted into a build.
A search-space key the sweep config does not have is one line before any trial runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.sweep_project import env, make_project, points, run_sweep, sweep_cmd

pytestmark = pytest.mark.slow

SEARCH = """\
# @package _global_
defaults:
  - override /model: tiny_mlp
  - override /hydra/sweeper: onnxbuild_optuna
evaluate:
  runs: 10
  warmup: 2
  gates:
    max_abs_err: 1.0e-4   # int8 points miss it (abs err ~3e-3): infeasible
hydra:
  sweeper:
    n_trials: 12
    n_startup_trials: 6
    seed: 0
    params:
      quantization: choice(none, dynamic_int8, static_int8)
      target.threads: choice(1, 2)
      quantization.calibration.method:
        values: choice(minmax, entropy)
        when: {quantization: static_int8}
"""


def test_optuna_search_best_feasible_point_passes_gates_and_is_promoted(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "conf" / "hparams_search").mkdir()
    (project / "conf" / "hparams_search" / "mlp.yaml").write_text(SEARCH)
    out = run_sweep(project, "hparams_search=mlp")
    res = json.loads((out / "optuna.json").read_text())
    trials = res["trials"]
    assert len(trials) == 12
    infeasible = [t for t in trials if t["state"] == "complete" and t["constraint"] > 0]
    feasible = [t for t in trials if t["state"] == "complete" and t["constraint"] == 0]
    assert infeasible and feasible
    best = res["best"]
    assert best["constraint"] == 0 and best["value"] == min(t["value"] for t in feasible)
    assert all("quantization=none" in " ".join(t["overrides"]) for t in feasible)
    pts = {p["dir"]: p for p in points(out).values()}
    assert pts[best["job_dir"]]["status"] == "ok" and pts[best["job_dir"]]["objective"]["value"] == best["value"]
    # every launched job is a distinct point (repeats are told their earlier result, not rebuilt)
    assert len(pts) == len({t["job_dir"] for t in trials})

    bad = next(t["job_dir"] for t in infeasible)
    for job, name, code in ((bad, "mlp_bad", 1), (best["job_dir"], "mlp_best", 0)):
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "promote", job, "--name", name, "--conf",
                               str(project / "conf")], cwd=project, env=env(project), capture_output=True, text=True)
        assert (proc.returncode != 0) == bool(code), proc.stderr
    from pipeline.compose import compose

    build = compose([], project / "conf").data["builds"]["mlp_best"]
    assert build["model"] == "tiny_mlp" and build["quantization"]["name"] == "none"
    assert build["evaluate"]["gates"]["max_abs_err"] == 1.0e-4 and build["evaluate"]["runs"] == 100
    assert "mlp_bad" not in compose([], project / "conf").data["builds"]


def test_a_search_key_the_config_lacks_is_one_line_before_any_trial(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "conf" / "hparams_search").mkdir()
    (project / "conf" / "hparams_search" / "bad.yaml").write_text(
        SEARCH.replace("target.threads: choice(1, 2)", "target.thread: choice(1, 2)"))
    proc = subprocess.run(sweep_cmd("hparams_search=bad"), cwd=project, env=env(project), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "hydra.sweeper.params.target.thread" in err[0] and "conf/hparams_search/bad.yaml" in err[0]
    assert not list(project.glob("sweeps/*/*/0"))
