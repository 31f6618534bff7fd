"""A sweep override is held to the project's _target_ allowlist like a compose override."""

from __future__ import annotations

import json
import sys

from tests.reliability.tiny import make_project, run


def test_a_sweep_point_outside_the_allowlist_runs_nothing(tmp_path, bench_lock):
    root = make_project(tmp_path / "proj")
    # the reference dataset is called when the sweep builds the model's export
    run(root, sys.executable, "-m", "pipeline.sweep", "-m",
        "model.reference.dataset={_target_: os.system, command: 'touch pwned'}")
    assert not (root / "pwned").exists()
    point = json.loads(next(root.glob("sweeps/*/*/0/point.json")).read_text())
    assert point["status"] == "failed"
    assert "models.tiny.reference.dataset._target_" in point["error"] and "'os.system'" in point["error"]
