"""Small models for the search tests: one with a single deliberately sensitive node, one that int8
cannot speed up; export folders (model.onnx + reference.npz) and build specs around them."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_graphs import save_graph
from pipeline.schema import BuildSpec, EvaluateSpec, Gates, InputSpec, ModelSpec, Selected
from pipeline.targets.cpu import CpuParams

WIDE = 17  # input features; feature 0 is scaled by 1000 before the sensitive MatMul
SENSITIVE = "mm_wide"


def sensitive_model(path: Path) -> Path:
    """x -> Mul by [1000, 1, ..., 1] -> MatMul 'mm_wide' -> Relu -> MatMul 'mm_out' -> y.

    Feature 0 (scaled by 1000) meets a zero weight row, so the output does not depend on it, but it
    stretches the per-tensor activation range of mm_wide's input: quantized with that range, the
    other features (|x| < 1, step about 8) round to zero. mm_out's input has an ordinary range.
    """
    rng = np.random.default_rng(0)
    scale = np.ones(WIDE, np.float32)
    scale[0] = 1000.0
    w_wide = rng.normal(0, 0.5, (WIDE, 16)).astype(np.float32)
    w_wide[0] = 0.0
    w_out = rng.normal(0, 0.5, (16, 32)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["t"], name="stretch"),
        helper.make_node("MatMul", ["t", "w_wide"], ["h"], name=SENSITIVE),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w_out"], ["y"], name="mm_out"),
    ]
    graph = helper.make_graph(
        nodes, "sensitive",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(w_wide, "w_wide"),
         numpy_helper.from_array(w_out, "w_out")],
    )
    return save_graph(graph, path)


def elementwise_model(path: Path) -> Path:
    """y = (x + 1) * 2 on a [batch, 64] input: nothing int8 can make faster."""
    nodes = [
        helper.make_node("Add", ["x", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["a", "two"], ["y"], name="mul"),
    ]
    graph = helper.make_graph(
        nodes, "elementwise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(np.ones(64, np.float32), "one"),
         numpy_helper.from_array(np.full(64, 2.0, np.float32), "two")],
    )
    return save_graph(graph, path)


def write_export(export_dir: Path, build_model, n: int = 40) -> Path:
    """export_dir/model.onnx and reference.npz (its own outputs on inputs uniform in [-1, 1))."""
    model = build_model(export_dir / "model.onnx")
    width = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1]
    x = np.random.default_rng(1).uniform(-1, 1, (n, width)).astype(np.float32)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    np.savez(export_dir / "reference.npz", **{"input/x": x, "output/y": sess.run(None, {"x": x})[0]})
    return export_dir


def model_spec(width: int, task: str = "regression") -> ModelSpec:
    return ModelSpec(
        framework="onnx", path="m.onnx", watch="m.onnx", task=task,
        inputs=[InputSpec(name="x", shape=["batch", width], range=(-1.0, 1.0))],
    )


def auto_build(space: dict, samples: int = 32, mixed: dict | None = None, **gates) -> BuildSpec:
    from pipeline.quantization.auto import AutoQuantization

    params = AutoQuantization.Params(
        space=space,
        calibration={"num_samples": 16},
        mixed_precision=mixed or {"enabled": False},
        screen={"fidelity_samples": 32, "warmup": 2, "runs": 20, "blocks": 4},
        final={"finalists": 2, "warmup": 2, "runs": 40, "blocks": 4},
    )
    return BuildSpec(
        model="m",
        quantization=Selected(name="auto", params=params),
        target=Selected(name="cpu", params=CpuParams(threads=1)),
        evaluate=EvaluateSpec(warmup=2, runs=20, fidelity_samples=samples, gates=Gates(**gates)),
    )


@pytest.fixture
def skit():
    return types.SimpleNamespace(
        sensitive_model=sensitive_model,
        elementwise_model=elementwise_model,
        write_export=write_export,
        model_spec=model_spec,
        auto_build=auto_build,
        WIDE=WIDE,
        SENSITIVE=SENSITIVE,
    )
