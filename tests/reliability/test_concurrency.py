"""A sweep while `dvc repro` rebuilds the same project: both finish, nothing is lost or corrupt."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.reliability.kill import DVC, corrupt_files, lock_hashes
from tests.reliability.tiny import env_for, make_dvc_project, run


@pytest.mark.slow
def test_a_sweep_during_dvc_repro_loses_and_corrupts_nothing(tmp_path, bench_lock):
    root = make_dvc_project(tmp_path / "proj")
    run(root, *DVC, "repro")
    reference = lock_hashes(root)
    env = env_for(root)
    for _ in range(2):  # the sweep reads the DVC-built export that the forced repro replaces
        repro = subprocess.Popen([*DVC, "repro", "-f"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sweep = subprocess.run([sys.executable, "-m", "pipeline.sweep", "-m", "quantization=none,dynamic_int8"],
                               cwd=root, env=env, capture_output=True, text=True, timeout=600)
        out, err = repro.communicate(timeout=600)
        assert repro.returncode == 0, err[-2000:]
        assert sweep.returncode == 0, sweep.stderr[-2000:]
    status = run(root, *DVC, "status")
    assert "up to date" in status.stdout + status.stderr
    assert lock_hashes(root) == reference
    assert corrupt_files(root) == []
    points = sorted(root.glob("sweeps/*/*/*/point.json"))
    assert len(points) == 4 and len({p.parent.parent for p in points}) == 2  # two sweeps, own folders
    assert all(json.loads(p.read_text())["status"] == "ok" for p in points), [p.read_text() for p in points]
