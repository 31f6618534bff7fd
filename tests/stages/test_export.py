"""The export stage as DVC runs it: a subprocess reading params.yaml, writing model.onnx atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


CNN = {
    "framework": "torch",
    "factory": {"_target_": "pipeline.models.digits_cnn.build", "width": 8},
    "watch": "pipeline/models/digits_cnn.py",
    "inputs": [{"name": "input", "shape": "[batch, 1, 8, 8]"}],
    "outputs": ["logits"],
    "reference": {"dataset": {"_target_": "pipeline.data.digits.load", "split": "test"}, "num_samples": 48},
}


class ShapeBranch(nn.Module):
    """Branches on the batch size in Python: the TorchScript export bakes in one branch, so ONNX
    Runtime disagrees with PyTorch at other batch sizes (used through its dotted path)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        return y * 2 if x.shape[0] == 2 else y








def test_export_writes_artifacts_and_keeps_them_on_failure(tmp_path: Path, stages) -> None:
    stages.write_params(tmp_path, cnn=CNN)
    assert stages.run(tmp_path, "prepare").returncode == 0
    proc = stages.run(tmp_path, "export")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "artifacts/models/cnn/export"
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx", "reference.npz"]
    info = json.loads((out / "export.json").read_text())
    assert info["exporter"] == "dynamo" and info["outputs"][0]["name"] == "logits"
    ref = np.load(out / "reference.npz")
    assert sorted(ref.files) == ["input/input", "labels", "output/logits"] and len(ref["labels"]) == 48
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": ref["input/input"]})
    np.testing.assert_allclose(got, ref["output/logits"], atol=1e-4, rtol=1e-3)
    before = (out / "model.onnx").read_bytes()

    # the recipe's model changed but prepare was not rerun: export fails, the earlier export stays
    stages.write_params(tmp_path, cnn={**CNN, "factory": {**CNN["factory"], "width": 16}})
    proc = stages.run(tmp_path, "export")
    assert proc.returncode == 1
    line = stages.error_line(proc)
    assert line.startswith("error: export stage, load source failed: ") and "shape mismatch" in line
    assert line.endswith("(full log: " + str(tmp_path / "logs/export/cnn.log") + ")")
    assert (out / "model.onnx").read_bytes() == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".export")]


def test_verification_failure_leaves_no_model(tmp_path: Path, stages) -> None:
    model = {
        "framework": "torch",
        "factory": {"_target_": f"{__name__}.ShapeBranch"},
        "watch": "tests",
        "inputs": [{"name": "x", "shape": "[batch, 4]", "range": [-1, 1]}],
        "export": {"exporter": "torchscript", "opset": 17},
        "reference": {"num_samples": 32},
    }
    stages.write_params(tmp_path, branchy=model)
    (tmp_path / "conf").mkdir()  # recipes are code: the project allows this test module's factory
    (tmp_path / "conf" / "config.yaml").write_text("project:\n  allow_targets: [pipeline, tests]\n")
    assert stages.run(tmp_path, "prepare", "branchy").returncode == 0
    proc = stages.run(tmp_path, "export", "branchy")
    assert proc.returncode == 1
    line = stages.error_line(proc)
    assert line.startswith("error: export stage, verify failed: ONNX Runtime output 'output_0' differs from torch: max abs err ")
    assert "> atol 0.0001" in line
    assert not (tmp_path / "artifacts/models/branchy/export").exists()
    assert "Traceback" in (tmp_path / "logs/export/branchy.log").read_text()


def test_help_does_not_import_frameworks(stages) -> None:
    proc = stages.help_imports("export", ('torch', 'tensorflow', 'onnxruntime', 'onnx'))
    assert proc.returncode == 0, proc.stderr
    assert "--source" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
