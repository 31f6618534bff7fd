"""Static quantization of a stateful stream model: one calibration feed per step of every stream,
each with the state an fp32 run of the stream reached (state_out = state + x, so known by hand)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.onnx_graphs import save_graph
from pipeline.quantization.calibration import batches, first_sample
from pipeline.schema import validate_build, validate_model
from pipeline.stages.quantize import quantize_build

LOG = logging.getLogger("test.stream_calibration")


def _model(path: Path) -> Path:
    """y = relu(state + x) * 2, state_out = state + x; x, state [batch, 4]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["state", "x"], ["state_out"]), helper.make_node("Relu", ["state_out"], ["r"]),
         helper.make_node("Mul", ["r", "two"], ["y"])],
        "stream",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("x", "state")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 4]) for n in ("y", "state_out")],
        [onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    return save_graph(graph, path, check=False)


def _spec():
    return validate_model(
        {
            "framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "task": "regression", "export": {"opset": None},
            "inputs": [{"name": "x", "shape": ["batch", 4], "range": [-1, 1]}, {"name": "state", "shape": ["batch", 4]}],
            "stream": {"steps": 3, "state": [{"output": "state_out", "input": "state"}]},
        },
        "models.m",
    )


def test_calibration_feeds_carry_the_fp32_state(tmp_path):
    path = _model(tmp_path / "m.onnx")
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    feeds = batches(path, {"x": x}, model_spec=_spec())
    assert len(feeds) == 6 and all(f["x"].shape == (1, 4) and f["state"].shape == (1, 4) for f in feeds)
    # stream 1: states 0, x0, x0 + x1
    np.testing.assert_allclose([f["state"][0] for f in feeds[3:]], [np.zeros(4), x[1, 0], x[1, 0] + x[1, 1]])
    sample = first_sample(path, {"x": x}, _spec())
    np.testing.assert_allclose(sample["x"], x[0, :1])
    np.testing.assert_allclose(sample["state"], np.zeros((1, 4)))


def test_static_int8_calibrates_a_stream(tmp_path):
    src = _model(tmp_path / "passes" / "model.onnx")
    build = validate_build(
        {"model": "m", "quantization": {"name": "static_int8", "calibration": {"num_samples": 8}}, "target": {"name": "cpu"}},
        "builds.b",
    )
    result = quantize_build(build, _spec(), src.parent, tmp_path / "out", LOG, build_name="b")
    assert result["calibration_samples"] == 8 * 3  # one feed per step of each of the 8 streams
    assert result["quantized_nodes"] > 0 and result["quantized_in_subgraphs"] == 0
