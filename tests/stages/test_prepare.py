"""The prepare stage as DVC runs it: a subprocess reading params.yaml, writing model.pt and metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

CNN = {
    "framework": "torch",
    "factory": {"_target_": "pipeline.models.digits_cnn.build", "width": 8},
    "watch": "pipeline/models/digits_cnn.py",
    "inputs": [{"name": "input", "shape": "[batch, 1, 8, 8]"}],
    "outputs": ["logits"],
    "train": {
        "dataset": {"_target_": "pipeline.data.digits.load", "split": "train"},
        "val_dataset": {"_target_": "pipeline.data.digits.load", "split": "val"},
        "epochs": 1,
    },
}


def _write_params(root: Path, **models: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def _prepare(root: Path, model: str = "cnn") -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "pipeline.stages.prepare", "--params", "params.yaml", "--model", model,
        "--out", f"artifacts/models/{model}/source", "--metrics", f"metrics/models/{model}.json",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONNXBUILD_LOG_DIR": str(root / "logs")}
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_prepare_trains_and_writes_metrics(tmp_path: Path) -> None:
    _write_params(tmp_path, cnn=CNN)
    proc = _prepare(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "artifacts/models/cnn/source/model.pt").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics/models/cnn.json").read_text())
    assert metrics["model"] == "cnn" and metrics["framework"] == "torch" and metrics["trained"] is True
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "epochs", "seconds"):
        assert metrics[key] is not None, key
    assert (tmp_path / "logs/prepare/cnn.log").exists()


def test_missing_checkpoint_one_line_and_earlier_result_kept(tmp_path: Path) -> None:
    _write_params(tmp_path, cnn={**CNN, "train": None})
    assert _prepare(tmp_path).returncode == 0
    before = (tmp_path / "artifacts/models/cnn/source/model.pt").read_bytes()
    metrics_before = (tmp_path / "metrics/models/cnn.json").read_text()

    _write_params(tmp_path, cnn={**CNN, "train": None, "checkpoint": "weights/missing.pt"})
    proc = _prepare(tmp_path)
    assert proc.returncode == 1
    line = _error_line(proc)
    assert line == "error: params.yaml, key 'models.cnn.checkpoint': checkpoint file not found: weights/missing.pt"
    assert (tmp_path / "artifacts/models/cnn/source/model.pt").read_bytes() == before
    assert (tmp_path / "metrics/models/cnn.json").read_text() == metrics_before
    assert "Traceback" in (tmp_path / "logs/prepare/cnn.log").read_text()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            {**CNN, "factory": {"_target_": "pipeline.models.nosuch.build"}},
            "key 'models.cnn.factory._target_'",
        ),
        (
            {**CNN, "factory": {"_target_": "pipeline.models.digits_cnn.nosuch"}},
            "key 'models.cnn.factory._target_': 'pipeline.models.digits_cnn' has no attribute 'nosuch'",
        ),
        (
            {**CNN, "train": {**CNN["train"], "optimizer": "lbfgs"}},
            "key 'models.cnn.train.optimizer'",
        ),
    ],
)
def test_recipe_errors_name_the_key(tmp_path: Path, model: dict, expected: str) -> None:
    _write_params(tmp_path, cnn=model)
    proc = _prepare(tmp_path)
    assert proc.returncode == 1
    assert expected in _error_line(proc)
    assert not (tmp_path / "artifacts/models/cnn/source").exists()
    assert not (tmp_path / "metrics/models/cnn.json").exists()


def test_unknown_model_lists_choices(tmp_path: Path) -> None:
    _write_params(tmp_path, cnn=CNN)
    proc = _prepare(tmp_path, model="resnet")
    assert proc.returncode == 1
    assert "unknown model 'resnet' (valid choices: cnn)" in _error_line(proc)


def test_help_does_not_import_frameworks() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['prepare', '--help']\n"
        "import pipeline.stages.prepare as stage\n"
        "try:\n    stage.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'onnxruntime') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--metrics" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
