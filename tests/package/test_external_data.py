"""Packaging a build whose model keeps its weights in an external data file (no DVC: a composed
fixture project with hand-made artifacts), and running its infer.py in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipeline.onnx_utils import external_files, save_model
from pipeline.package import package_build
from pipeline.package.manifest import check_manifest


def _mlp(path, seed=0):
    """features [batch, 16] -> scores [batch, 4]; 4 KB of weights (external data above 1 KB)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["scores"])],
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return save_model(model, path, external_data=True)


def test_external_data_is_packaged_and_infer_runs(fixture_project, tmp_path, monkeypatch):
    root = fixture_project
    monkeypatch.chdir(root)
    subprocess.run([sys.executable, "-m", "pipeline.cli", "compose"], cwd=root, check=True, capture_output=True)
    export = root / "artifacts/models/tiny_mlp/export"
    artifact = _mlp(root / "artifacts/builds/mlp_fp32/model/model.onnx")
    _mlp(export / "model.onnx")
    assert [p.name for p in external_files(artifact)] == ["model.onnx.data"]
    inputs = np.random.default_rng(1).uniform(-1, 1, (8, 16)).astype(np.float32)
    scores = ort.InferenceSession(str(artifact)).run(None, {"features": inputs})[0]
    np.savez(export / "reference.npz", **{"input/features": inputs, "output/scores": scores})
    metrics = root / "metrics/builds/mlp_fp32.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"latency_ms": {"p50": 0.01}, "speedup": 1.0, "gates": {"passed": True, "failures": []},
                                   "verdict": "unchanged", "verdict_reason": "nothing was changed"}))

    done = package_build("mlp_fp32", root=root, out=tmp_path / "out")
    assert {"model/model.onnx", "model/model.onnx.data"} <= set(done.files)
    assert (done.folder / "model/model.onnx.data").read_bytes() == (artifact.parent / "model.onnx.data").read_bytes()
    assert check_manifest(done.folder) == []
    assert json.loads((done.folder / "package.json").read_text())["verdict"] == "unchanged"

    proc = subprocess.run([sys.executable, "-I", str(done.folder / "infer.py"), "--save", str(tmp_path / "o.npz")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "input  features: shape [1, 16] float32 (example_inputs.npz)" in proc.stdout
    with np.load(tmp_path / "o.npz") as out:
        np.testing.assert_allclose(out["scores"], scores[:1], rtol=1e-6, atol=1e-6)  # sample 0 of the reference

    (done.folder / "model/model.onnx.data").unlink()  # a missing weights file stops infer.py before loading
    proc = subprocess.run([sys.executable, "-I", str(done.folder / "infer.py")], capture_output=True, text=True)
    assert proc.returncode != 0 and "model/model.onnx.data is listed in SHA256SUMS but missing" in proc.stderr
