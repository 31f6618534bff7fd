"""A 2-step stateful model built in the test (state_out = state + x) through the ONNX source's export
and the evaluation as a stream; declared scalar / constant / batch-axis-1 inputs checked against the graph."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.errors import ConfigError
from pipeline.evaluate.metrics import evaluate_build
from tests.onnx_graphs import mixed_model, save_graph
from pipeline.schema import BuildSpec, EvaluateSpec, Selected, validate_model
from pipeline.sources import onnx_source
from pipeline.sources.common import read_reference
from pipeline.targets.cpu import CpuParams

LOG = logging.getLogger("test.onnx_stream")


def _model(path: Path) -> Path:
    """y = (state + x) * gain, state_out = state + x; state [2, batch, 3] (batch on axis 1), x
    [batch, 3], gain a float scalar."""
    nodes = [
        helper.make_node("Unsqueeze", ["x", "zero"], ["x1"]),
        helper.make_node("Add", ["state", "x1"], ["state_out"]),
        helper.make_node("ReduceSum", ["state_out", "zero"], ["summed"], keepdims=0),
        helper.make_node("Mul", ["summed", "gain"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "stream",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, 3]),
            helper.make_tensor_value_info("gain", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, None, 3]),
        ],
        [onnx.numpy_helper.from_array(np.array([0], dtype=np.int64), "zero")],
    )
    return save_graph(graph, path, check=False)


def _spec(path: Path, **over):
    data = {
        "framework": "onnx", "path": str(path), "watch": str(path), "task": "regression",
        "export": {"opset": None},
        "inputs": [
            {"name": "x", "shape": ["batch", 3], "range": [0, 1]},
            {"name": "state", "shape": [2, "batch", 3], "batch_axis": 1, "value": [[[1, 1, 1]], [[0, 0, 0]]]},
            {"name": "gain", "shape": [], "batch_axis": None, "value": 0.5},
        ],
        "stream": {"steps": 2, "state": [{"output": "state_out", "input": "state"}]},
        "reference": {"num_samples": 32},
    }
    data.update(over)
    return validate_model(data, "models.m")


def _export(tmp_path: Path, spec) -> Path:
    onnx_source.prepare(spec, tmp_path / "source", LOG)
    onnx_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    return tmp_path / "export"


def test_stream_reference_is_the_source_run_as_streams(tmp_path):
    spec = _spec(_model(tmp_path / "m.onnx"))
    export = _export(tmp_path, spec)
    inputs, outputs, _ = read_reference(export)
    assert sorted(inputs) == ["x"]  # the state and the constant are not stored
    x = inputs["x"]
    assert x.shape == (32, 2, 3) and outputs["y"].shape == (32, 2, 1, 3)
    assert outputs["state_out"].shape == (32, 2, 2, 1, 3)
    # by hand: state rows start at 1 and 0; each step adds x to both rows; y = (row sums) * 0.5
    step0 = (np.array([1.0, 1.0, 1.0]) + x[:, 0] + x[:, 0]) * 0.5
    step1 = (np.array([1.0, 1.0, 1.0]) + 2 * (x[:, 0] + x[:, 1])) * 0.5
    np.testing.assert_allclose(outputs["y"][:, 0, 0], step0, rtol=1e-6)
    np.testing.assert_allclose(outputs["y"][:, 1, 0], step1, rtol=1e-6)


def test_stream_is_evaluated_as_a_stream_with_per_step_latency(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXBUILD_BENCH_LOCK", str(tmp_path / "bench.lock"))
    spec = _spec(_model(tmp_path / "m.onnx"))
    export = _export(tmp_path, spec)
    artifact = tmp_path / "build"
    artifact.mkdir()
    shutil.copyfile(export / "model.onnx", artifact / "model.onnx")
    build = BuildSpec(
        model="m",
        quantization=Selected(name="none", params=None),
        target=Selected(name="cpu", params=CpuParams(threads=1)),
        evaluate=EvaluateSpec(warmup=2, runs=10, fidelity_samples=32, gates={"max": {"rel_err_max": 1e-6}}),
    )
    metrics = evaluate_build(build, spec, artifact, export, LOG, name="b")
    assert metrics["benchmark"]["per"] == "step" and metrics["benchmark"]["steps"] == 2
    assert metrics["benchmark"]["batch_size"] == 1
    assert metrics["fidelity"]["rel_err_max"] == 0.0 and metrics["gates"]["passed"]


def test_batch_size_above_one_for_a_stream_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXBUILD_BENCH_LOCK", str(tmp_path / "bench.lock"))
    spec = _spec(_model(tmp_path / "m.onnx"))
    export = _export(tmp_path, spec)
    build = BuildSpec(
        model="m", quantization=Selected(name="none", params=None),
        target=Selected(name="cpu", params=CpuParams(threads=1)),
        evaluate=EvaluateSpec(warmup=2, runs=10, batch_size=4, fidelity_samples=32),
    )
    with pytest.raises(ConfigError, match=r"builds\.b\.evaluate\.batch_size.*a stream model is measured at batch 1, got 4"):
        evaluate_build(build, spec, export, export, LOG, name="b")


def test_state_link_to_an_output_the_graph_lacks_names_both(tmp_path):
    spec = _spec(_model(tmp_path / "m.onnx"), stream={"steps": 2, "state": [{"output": "hidden", "input": "state"}]})
    with pytest.raises(ConfigError, match=r"stream\.state\[0\]\.output.*'hidden' \(feeding input 'state'\) is not an output"):
        onnx_source.prepare(spec, tmp_path / "source", LOG)


def test_state_link_with_mismatched_shapes_names_both(tmp_path):
    spec = _spec(_model(tmp_path / "m.onnx"), stream={"steps": 2, "state": [{"output": "y", "input": "state"}]})
    with pytest.raises(ConfigError, match=r"output 'y' has shape \[\?, 3\] but the input it feeds, 'state', is declared \[2, batch, 3\]"):
        onnx_source.prepare(spec, tmp_path / "source", LOG)


def test_initial_state_of_the_wrong_shape_is_one_line(tmp_path):
    path = _model(tmp_path / "m.onnx")
    inputs = [i.model_dump() for i in _spec(path).inputs]
    inputs[1]["value"] = [1, 2, 3]
    with pytest.raises(ConfigError, match=r"inputs\[1\]\.value.*'state': the initial state has shape \[3\].*\[2, 1, 3\]"):
        onnx_source.prepare(_spec(path, inputs=inputs), tmp_path / "source", LOG)


def test_scalar_constant_no_batch_and_axis1_inputs_export(tmp_path):
    path = mixed_model(tmp_path / "m.onnx", batch="n", check=False)
    spec = validate_model(
        {
            "framework": "onnx", "path": str(path), "watch": str(path), "task": "regression",
            "export": {"opset": None},
            "inputs": [
                {"name": "x", "shape": ["batch", 3]},
                {"name": "w", "shape": [3, "batch"], "batch_axis": 1},
                {"name": "s", "shape": [], "batch_axis": None, "value": 2.0},
                {"name": "c", "shape": [3], "batch_axis": None, "range": [10, 20]},
            ],
            "reference": {"num_samples": 32},
        },
        "models.m",
    )
    inputs, outputs, _ = read_reference(_export(tmp_path, spec))
    assert sorted(inputs) == ["c", "w", "x"] and all(v.shape == (32, 3) for v in inputs.values())
    assert outputs["y"].shape == (32, 1, 3)  # one run per sample, stacked
    np.testing.assert_allclose(outputs["y"][:, 0], (inputs["x"] + inputs["w"]) * 2 + inputs["c"], rtol=1e-6)
