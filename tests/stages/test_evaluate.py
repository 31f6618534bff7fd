"""The evaluate stage as DVC runs it: a subprocess reading params.yaml, writing metrics JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]


def _linear(path: Path, offset: float) -> None:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.full((3,), offset, dtype=np.float32), "B"),
    ]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


@pytest.fixture
def workspace(tmp_path):
    import onnxruntime as ort

    export = tmp_path / "artifacts" / "models" / "m" / "export"
    _linear(export / "model.onnx", 0.0)
    x = np.random.default_rng(1).normal(size=(40, 6)).astype(np.float32)
    y = ort.InferenceSession(str(export / "model.onnx")).run(None, {"x": x})[0]
    np.savez(export / "reference.npz", **{"input/x": x, "output/y": y, "labels": y.argmax(1)})
    _linear(tmp_path / "artifacts" / "builds" / "b" / "model" / "model.onnx", 0.5)
    return tmp_path


def _params(root: Path, gates: dict) -> None:
    params = {
        "models": {"m": {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "task": "classification"}},
        "builds": {
            "b": {
                "model": "m",
                "quantization": {"name": "none"},
                "target": {"name": "cpu", "threads": 1},
                "evaluate": {"warmup": 1, "runs": 10, "fidelity_samples": 32, "gates": gates},
            }
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _run(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONNXBUILD_BENCH_LOCK": str(root / "bench.lock")}
    cmd = [
        sys.executable, "-m", "pipeline.stages.evaluate", "--build", "b",
        "--artifact", "artifacts/builds/b/model", "--export", "artifacts/models/m/export",
        "--out", "metrics/builds/b.json", *extra,
    ]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_writes_metrics(workspace):
    _params(workspace, {"max_abs_err": 1.0, "min_top1_agreement": 0.0})
    proc = _run(workspace)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((workspace / "metrics" / "builds" / "b.json").read_text())
    for key in ("latency_ms", "throughput_per_s", "speedup", "model_size_mb", "num_nodes", "fidelity",
                "accuracy", "environment", "gates", "reference", "benchmark"):
        assert key in metrics
    assert metrics["fidelity"]["max_abs_err"] == pytest.approx(0.5, abs=1e-5)
    assert metrics["gates"]["passed"] is True
    assert (workspace / "logs" / "evaluate" / "b.log").is_file()


def test_summary_holds_the_headline_numbers(workspace):
    _params(workspace, {"max_abs_err": 0.1})
    proc = _run(workspace, "--summary", "metrics/summary/b.json")
    assert proc.returncode == 0, proc.stderr  # the gate fails: a verdict, not a crash; both files are written
    metrics = json.loads((workspace / "metrics" / "builds" / "b.json").read_text())
    summary = json.loads((workspace / "metrics" / "summary" / "b.json").read_text())
    assert summary["p50_ms"] == metrics["latency_ms"]["p50"]
    assert summary["speedup"] == metrics["speedup"]
    assert summary["cosine_min"] == metrics["fidelity"]["cosine_min"]
    assert summary["accuracy_drop"] == metrics["accuracy"]["drop"]
    assert summary["gates_passed"] is False
    assert all(not isinstance(v, (dict, list)) for v in summary.values())


def test_failed_gate_writes_metrics_and_verdict_with_one_line(workspace):
    _params(workspace, {"max_abs_err": 0.1, "min_cosine": -1.0})
    proc = _run(workspace)
    assert proc.returncode == 0, proc.stderr  # DVC locks the stage; `onnxbuild verdicts` fails instead
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: evaluate stage")]
    assert len(warnings) == 1
    line = warnings[0]
    assert line.startswith("warning: evaluate stage, gates failed for build b: fidelity.max_abs_err 0.5")
    assert "> max_abs_err 0.1" in line
    assert "min_cosine" not in line  # that gate passed
    metrics = json.loads((workspace / "metrics" / "builds" / "b.json").read_text())
    assert metrics["gates"]["passed"] is False
    assert metrics["verdict"] == "fails_gates" and "max_abs_err" in metrics["verdict_reason"]
    assert metrics["gates"]["checked"]["min_cosine"]["passed"] is True


def test_unknown_build_names_choices(workspace):
    _params(workspace, {})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.evaluate", "--build", "nope", "--artifact", "a", "--export", "e",
         "--out", "o.json"],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "unknown build 'nope'" in proc.stderr and "valid choices: b" in proc.stderr
    assert not (workspace / "o.json").exists()


def test_missing_artifact_is_one_line_and_writes_nothing(workspace):
    _params(workspace, {})
    proc = _run(workspace, "--artifact", "artifacts/builds/missing/model")
    assert proc.returncode == 1
    assert "error: evaluate stage, load failed: build artifact" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workspace / "metrics" / "builds" / "b.json").exists()


@pytest.mark.parametrize("module", ["pipeline.stages.evaluate", "pipeline.evaluate", "pipeline.targets"])
def test_imports_no_framework(module):
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'tf2onnx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
