"""Queued experiments with two workers: `dvc exp run --queue` + `dvc queue start -j 2` build both
experiments in their own temporary copies, both measure under the host-wide benchmark lock named by
$ONNXBUILD_BENCH_LOCK (the workers inherit it), and `dvc exp show` has every experiment's metrics."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.e2e.test_dvc_remote import CONFIG, _dvc, _run
from tests.e2e.sweep_project import ROOT, make_project

pytestmark = pytest.mark.slow


def test_queue_with_two_workers_shares_the_benchmark_lock_and_shows_every_experiment(tmp_path):
    project = make_project(tmp_path / "project", framework=True)
    (project / "conf" / "config.yaml").write_text(CONFIG)
    _run(project, "git", "init", "-q")
    _dvc(project, "init", "-q")
    (project / ".dvc" / "config").write_text((ROOT / ".dvc" / "config").read_text())  # Hydra composition on
    _run(project, sys.executable, "-m", "pipeline.cli", "compose")
    _dvc(project, "repro")
    _run(project, "git", "add", "-A")
    _run(project, "git", "commit", "-q", "-m", "baseline")

    _dvc(project, "exp", "run", "--queue", "-S", "builds.mlp_fp32.target.threads=1,2")
    _dvc(project, "queue", "start", "-j", "2")
    deadline = time.time() + 600
    status = ""
    while time.time() < deadline:
        status = _dvc(project, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    _dvc(project, "queue", "stop", check=False)
    assert "Success" in status and "Failed" not in status, status
    names = [line.split()[1] for line in status.splitlines() if line.rstrip().endswith("Success")]
    assert len(names) == 2, status
    lock = str(project / "bench.lock")
    for name in names:
        logs = _dvc(project, "queue", "logs", name).stdout
        assert f"(lock {lock})" in logs, logs[-2000:]

    shown = json.loads(_dvc(project, "exp", "show", "--json").stdout)
    threads = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {}).get("metrics/summary/mlp_fp32.json", {}).get("data", {})
                t = params.get("builds", {}).get("mlp_fp32", {}).get("target", {}).get("threads")
                if t is not None and metrics:
                    threads[t] = metrics
    assert set(threads) == {1, 2}, shown
    assert all(m for m in threads.values())
