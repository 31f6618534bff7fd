"""pipeline.execution: how samples are stored and fed (scalar, constant, no-batch, batch-axis-1
inputs; a stateful stream), on small onnx.helper graphs with answers worked out by hand; and a
2-step stateful model through export and evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from pipeline.data import sample_inputs
from pipeline.errors import ConfigError
from pipeline.execution import (
    calibration_feeds,
    one_at_a_time,
    run_samples,
    step_feeds,
    stored_specs,
)
from pipeline.schema import validate_model
from tests.onnx_graphs import mixed_model, save_graph

LOG = logging.getLogger("test.execution")


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def stream_model(path: Path, state_out_shape: list | None = None) -> Path:
    """y = state + x and state_out = state + x (x, state [batch, 2]): after steps x0, x1 from
    initial state h, y is h + x0 then h + x0 + x1."""
    nodes = [helper.make_node("Add", ["state", "x"], ["y"]), helper.make_node("Identity", ["y"], ["state_out"])]
    graph = helper.make_graph(
        nodes, "accumulate",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, state_out_shape or ["batch", 2]),
        ],
    )
    return save_graph(graph, path)


def _mixed_spec(path: Path, **extra):
    data = {
        "framework": "onnx", "path": str(path), "watch": str(path), "task": "regression",
        "inputs": [
            {"name": "x", "shape": ["batch", 3], "range": [-1, 1]},
            {"name": "w", "shape": [3, "batch"], "batch_axis": 1},
            {"name": "s", "shape": [], "batch_axis": None, "value": 2.0},
            {"name": "c", "shape": [3], "batch_axis": None, "range": [10, 20]},
        ],
        "reference": {"num_samples": 32},
    }
    data.update(extra)
    return validate_model(data, "models.m")


def _stream_spec(path: Path, steps: int = 2, initial=None, link=None):
    state = {"name": "state", "shape": ["batch", 2]}
    if initial is not None:
        state["value"] = initial
    return validate_model(
        {
            "framework": "onnx", "path": str(path), "watch": str(path), "task": "regression",
            "inputs": [{"name": "x", "shape": ["batch", 2], "range": [0, 1]}, state],
            "stream": {"steps": steps, "state": [link or {"output": "state_out", "input": "state"}]},
            "reference": {"num_samples": 32},
        },
        "models.m",
    )


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------


def test_sample_inputs_store_sample_axis_first_and_skip_constants(tmp_path):
    spec = _mixed_spec(tmp_path / "m.onnx")
    arrays = sample_inputs(spec.inputs, spec.export.dims, 5, seed=0)
    assert sorted(arrays) == ["c", "w", "x"]  # the constant 's' is not stored
    assert arrays["x"].shape == (5, 3) and arrays["w"].shape == (5, 3) and arrays["c"].shape == (5, 3)
    assert arrays["c"].min() >= 10 and arrays["c"].max() < 20


def test_stream_inputs_are_stored_per_step_and_state_is_not(tmp_path):
    spec = _stream_spec(tmp_path / "m.onnx", steps=4)
    assert [s.name for s in stored_specs(spec.inputs, spec.stream)] == ["x"]
    arrays = sample_inputs(spec.inputs, spec.export.dims, 3, stream=spec.stream)
    assert list(arrays) == ["x"] and arrays["x"].shape == (3, 4, 2)


def test_axis0_models_keep_batching(tmp_path):
    spec = validate_model(
        {"framework": "onnx", "path": "m", "watch": "m", "inputs": [{"name": "x", "shape": ["batch", 3]}]}, "m"
    )
    assert not one_at_a_time(spec) and not one_at_a_time(None)
    assert one_at_a_time(_mixed_spec(tmp_path / "m.onnx"))


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def test_scalar_constant_no_batch_and_axis1_inputs(tmp_path):
    path = mixed_model(tmp_path / "m.onnx")
    spec = _mixed_spec(path)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    w = np.full((4, 3), 0.5, dtype=np.float32)
    c = np.stack([np.full(3, 100.0 * i, dtype=np.float32) for i in range(4)])
    out = run_samples(_session(path), {"x": x, "w": w, "c": c}, spec)
    # one run per sample: y [1, 3] each, stacked -> [4, 1, 3]; by hand (x + w) * 2 + c
    assert out["y"].shape == (4, 1, 3)
    np.testing.assert_allclose(out["y"][:, 0], (x + 0.5) * 2 + c)
    feed = step_feeds(_session(path), {"x": x, "w": w, "c": c}, spec)
    assert feed["w"].shape == (3, 1) and feed["s"].shape == () and feed["s"] == 2.0 and feed["c"].shape == (3,)
    feeds = calibration_feeds(_session(path), {"x": x, "w": w, "c": c}, spec)
    assert len(feeds) == 4 and feeds[3]["x"].tolist() == [[9.0, 10.0, 11.0]]


def test_one_at_a_time_latency_is_batch_1(tmp_path):
    path = mixed_model(tmp_path / "m.onnx")
    arrays = sample_inputs(_mixed_spec(path).inputs, {"batch": 1}, 2)
    with pytest.raises(ConfigError, match="measured at batch 1, got 4"):
        step_feeds(_session(path), arrays, _mixed_spec(path), batch_size=4)


def test_constant_with_the_wrong_shape_is_one_line(tmp_path):
    path = mixed_model(tmp_path / "m.onnx")
    spec = _mixed_spec(path)
    inputs = [i.model_dump() for i in spec.inputs]
    inputs[2]["value"] = [2.0, 3.0]
    bad = _mixed_spec(path, inputs=inputs)
    with pytest.raises(ConfigError, match=r"inputs\[2\]\.value.*'s': the value has shape \[2\]"):
        run_samples(_session(path), sample_inputs(bad.inputs, {"batch": 1}, 2), bad)


def test_stream_feeds_state_back(tmp_path):
    path = stream_model(tmp_path / "m.onnx")
    spec = _stream_spec(path, steps=2, initial=[[1.0, -1.0]])
    x = np.array([[[[1, 2]], [[10, 20]]], [[[3, 4]], [[30, 40]]]], dtype=np.float32).reshape(2, 2, 2)
    out = run_samples(_session(path), {"x": x}, spec)
    assert out["y"].shape == (2, 2, 1, 2)  # [streams, steps, *one step's output]
    # by hand: h = [1, -1]; step 0: h + x0; step 1: h + x0 + x1
    np.testing.assert_allclose(out["y"][0, :, 0], [[2, 1], [12, 21]])
    np.testing.assert_allclose(out["y"][1, :, 0], [[4, 3], [34, 43]])
    np.testing.assert_allclose(out["state_out"], out["y"])
    # latency feed: the middle step (step 1) of stream 0, with the state after step 0
    feed = step_feeds(_session(path), {"x": x}, spec)
    np.testing.assert_allclose(feed["x"], [[10, 20]])
    np.testing.assert_allclose(feed["state"], [[2, 1]])
    # calibration: one feed per step of every stream, state included
    feeds = calibration_feeds(_session(path), {"x": x}, spec)
    assert len(feeds) == 4
    np.testing.assert_allclose([f["state"][0] for f in feeds], [[1, -1], [2, 1], [1, -1], [4, 3]])


def test_stream_initial_state_defaults_to_zeros(tmp_path):
    path = stream_model(tmp_path / "m.onnx")
    x = np.ones((1, 3, 2), dtype=np.float32)
    out = run_samples(_session(path), {"x": x}, _stream_spec(path, steps=3))
    np.testing.assert_allclose(out["y"][0, :, 0, 0], [1, 2, 3])


def test_stream_inputs_stored_with_wrong_steps(tmp_path):
    path = stream_model(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"expected \[streams, 3 steps"):
        run_samples(_session(path), {"x": np.ones((1, 2, 2), np.float32)}, _stream_spec(path, steps=3))


def test_state_link_to_missing_output_names_both(tmp_path):
    path = stream_model(tmp_path / "m.onnx")
    spec = _stream_spec(path, link={"output": "hidden", "input": "state"})
    with pytest.raises(ConfigError, match="output 'hidden' \\(feeding input 'state'\\) is not an output"):
        run_samples(_session(path), {"x": np.ones((1, 2, 2), np.float32)}, spec)


def test_state_link_with_mismatched_shapes_names_both(tmp_path):
    path = stream_model(tmp_path / "m.onnx")
    spec = _stream_spec(path, link={"output": "y", "input": "state"})
    wrong = save_graph(
        helper.make_graph(
            [helper.make_node("Add", ["state", "x"], ["s2"]), helper.make_node("Concat", ["s2", "s2"], ["y"], axis=1)],
            "wrong",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 2]) for n in ("x", "state")],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        ),
        tmp_path / "wrong.onnx",
    )
    with pytest.raises(ConfigError, match=r"output 'y' has shape \[1, 4\] but the input it feeds, 'state', takes \[1, 2\]"):
        run_samples(_session(wrong), {"x": np.ones((1, 2, 2), np.float32)}, spec)
