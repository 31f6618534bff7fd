"""A forced retrain to a byte-identical model leaves dvc.lock unchanged (training time is not hashed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.reliability.kill import DVC
from tests.reliability.tiny import run


@pytest.mark.slow
def test_retraining_to_the_same_model_leaves_dvc_lock_unchanged(tmp_path, copy_fixture):
    root = copy_fixture(tmp_path / "proj", framework=True)
    run(root, "git", "init", "-q")
    run(root, *DVC, "init", "-q")
    run(root, sys.executable, "-m", "pipeline.compose")
    run(root, *DVC, "repro", "prepare@digits_cnn")
    lock = (root / "dvc.lock").read_bytes()
    model = (root / "artifacts/models/digits_cnn/source/model.pt").read_bytes()
    run(root, *DVC, "repro", "-f", "prepare@digits_cnn")
    assert (root / "artifacts/models/digits_cnn/source/model.pt").read_bytes() == model, "training is not deterministic"
    assert (root / "dvc.lock").read_bytes() == lock
    assert (root / "logs/prepare/digits_cnn.timings.json").exists()  # the training time is kept, unversioned
    assert subprocess.run([*DVC, "status"], cwd=root, capture_output=True, text=True).returncode == 0
