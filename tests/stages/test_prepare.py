"""The prepare stage as DVC runs it: a subprocess reading params.yaml, writing model.pt and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


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








def test_prepare_trains_and_writes_metrics(tmp_path: Path, stages) -> None:
    stages.write_params(tmp_path, cnn=CNN)
    proc = stages.run(tmp_path, "prepare")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "artifacts/models/cnn/source/model.pt").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics/models/cnn.json").read_text())
    assert metrics["model"] == "cnn" and metrics["framework"] == "torch" and metrics["trained"] is True
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "epochs"):
        assert metrics[key] is not None, key
    assert (tmp_path / "logs/prepare/cnn.log").exists()
    # the metrics file is a DVC output: no wall-clock field, so retraining to the same model leaves
    # dvc.lock unchanged; the training time is kept in an unversioned file beside the log
    assert "seconds" not in metrics
    timings = json.loads((tmp_path / "logs/prepare/cnn.timings.json").read_text())
    from pipeline.evaluate.environment import host

    assert timings["host"] == host()["id"] and "host" not in metrics  # the time says where it was measured
    assert timings["seconds"] > 0 and {k: v for k, v in timings.items() if k not in ("seconds", "host")} == metrics
    first = (tmp_path / "metrics/models/cnn.json").read_bytes()
    model = (tmp_path / "artifacts/models/cnn/source/model.pt").read_bytes()
    assert stages.run(tmp_path, "prepare").returncode == 0
    if (tmp_path / "artifacts/models/cnn/source/model.pt").read_bytes() == model:  # deterministic training
        assert (tmp_path / "metrics/models/cnn.json").read_bytes() == first


def test_missing_checkpoint_one_line_and_earlier_result_kept(tmp_path: Path, stages) -> None:
    stages.write_params(tmp_path, cnn={**CNN, "train": None})
    assert stages.run(tmp_path, "prepare").returncode == 0
    before = (tmp_path / "artifacts/models/cnn/source/model.pt").read_bytes()
    metrics_before = (tmp_path / "metrics/models/cnn.json").read_text()

    stages.write_params(tmp_path, cnn={**CNN, "train": None, "checkpoint": "weights/missing.pt"})
    proc = stages.run(tmp_path, "prepare")
    assert proc.returncode == 1
    line = stages.error_line(proc)
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
def test_recipe_errors_name_the_key(tmp_path: Path, model: dict, expected: str, stages) -> None:
    stages.write_params(tmp_path, cnn=model)
    proc = stages.run(tmp_path, "prepare")
    assert proc.returncode == 1
    assert expected in stages.error_line(proc)
    assert not (tmp_path / "artifacts/models/cnn/source").exists()
    assert not (tmp_path / "metrics/models/cnn.json").exists()


def test_unknown_model_lists_choices(tmp_path: Path, stages) -> None:
    stages.write_params(tmp_path, cnn=CNN)
    proc = stages.run(tmp_path, "prepare", "resnet")
    assert proc.returncode == 1
    assert "unknown model 'resnet' (valid choices: cnn)" in stages.error_line(proc)


def test_help_does_not_import_frameworks(stages) -> None:
    proc = stages.help_imports("prepare", ('torch', 'tensorflow', 'onnxruntime'))
    assert proc.returncode == 0, proc.stderr
    assert "--metrics" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
