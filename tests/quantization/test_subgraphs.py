"""Models with If subgraphs: dynamic int8 quantizes inside them (weights kept as Constant nodes are
lifted to initializers first); quantization nodes are counted in every graph; a build where nothing
was quantized says so plainly; static calibration of a model with a constant input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipeline.quantization.base import count_quantized_nodes
from pipeline.quantization.subgraphs import has_subgraphs, lift_constants
from pipeline.schema import validate_build, validate_model
from pipeline.stages.quantize import quantize_build
from tests.onnx_graphs import save_graph

LOG = logging.getLogger("test.subgraphs")
RNG = np.random.default_rng(0)
W_THEN = RNG.normal(size=(16, 8)).astype(np.float32)
W_ELSE = RNG.normal(size=(16, 8)).astype(np.float32)


def _branch(name: str, weight: np.ndarray) -> onnx.GraphProto:
    """y = x @ W, W a Constant node inside the branch (x comes from the outer graph)."""
    return helper.make_graph(
        [
            helper.make_node("Constant", [], [f"{name}_w"], value=numpy_helper.from_array(weight)),
            helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_y"], name=f"{name}_matmul"),
        ],
        name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["batch", 8])],
    )


def if_model(path: Path) -> Path:
    """y = x @ (W_THEN if sr == 16000 else W_ELSE): x [batch, 16], sr an int64 scalar."""
    nodes = [
        helper.make_node("Constant", [], ["k16"], value=numpy_helper.from_array(np.array(16000, np.int64))),
        helper.make_node("Equal", ["sr", "k16"], ["is16"]),
        helper.make_node("If", ["is16"], ["y"], then_branch=_branch("then", W_THEN), else_branch=_branch("else", W_ELSE)),
    ]
    graph = helper.make_graph(
        nodes, "if_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
    )
    return save_graph(graph, path)


def add_relu_model(path: Path) -> Path:
    """y = relu(x + 1): nothing a quantizer would touch."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "add_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [numpy_helper.from_array(np.ones(16, np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def _specs(quantization: dict, inputs: list[dict]):
    model = validate_model(
        {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "export": {"opset": None}, "inputs": inputs},
        "models.m",
    )
    build = validate_build({"model": "m", "quantization": quantization, "target": {"name": "cpu"}}, "builds.b")
    return build, model


IF_INPUTS = [
    {"name": "x", "shape": ["batch", 16], "range": [-1, 1]},
    {"name": "sr", "dtype": "int64", "shape": [], "batch_axis": None, "value": 16000},
]


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x} if len(sess.get_inputs()) == 1 else {"x": x, "sr": np.array(16000, np.int64)}
    return sess.run(None, feeds)[0]


def test_count_quantized_nodes_in_main_graph_and_subgraphs():
    sub = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"]), helper.make_node("QLinearConv", ["a"], ["d"]),
         helper.make_node("Relu", ["d"], ["e"])],
        "sub", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("Add", ["x", "x"], ["z"]),
         helper.make_node("If", ["cond"], ["e"], then_branch=sub, else_branch=sub)],
        "main", [], [],
    )
    count = count_quantized_nodes(helper.make_model(graph))
    # by hand: 1 in the main graph, 2 in each of the two branches
    assert (count.total, count.in_subgraphs) == (5, 4)


def test_lift_constants_keeps_values_and_main_graph(tmp_path):
    path = if_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    assert has_subgraphs(model) and lift_constants(model) == 2  # one weight per branch; k16 stays
    assert [n.op_type for n in model.graph.node] == ["Constant", "Equal", "If"]
    lifted = tmp_path / "lifted.onnx"
    onnx.save_model(model, str(lifted))
    x = RNG.normal(size=(3, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(lifted, x), x @ W_THEN, rtol=1e-5)


def test_dynamic_int8_quantizes_inside_if_subgraphs(tmp_path):
    src = if_model(tmp_path / "passes" / "model.onnx")
    build, model = _specs({"name": "dynamic_int8"}, IF_INPUTS)
    result = quantize_build(build, model, src.parent, tmp_path / "out", LOG, build_name="b")
    # x comes from the main graph, so its DynamicQuantizeLinear lands there; one MatMulInteger per branch
    assert (result["quantized_nodes"], result["quantized_in_subgraphs"]) == (3, 2)
    assert result["info"]["subgraphs"] == {"enable_subgraph": True, "constants_lifted": 2}
    written = json.loads((tmp_path / "out" / "quantization.json").read_text())
    assert written["quantized_in_subgraphs"] == result["quantized_in_subgraphs"]
    x = RNG.normal(size=(4, 16)).astype(np.float32)
    ref = x @ W_THEN
    assert np.abs(_run(tmp_path / "out" / "model.onnx", x) - ref).max() < 0.05 * np.abs(ref).max()


def test_nothing_quantized_is_counted_and_said(tmp_path, caplog):
    src = add_relu_model(tmp_path / "passes" / "model.onnx")
    build, model = _specs({"name": "dynamic_int8"}, [{"name": "x", "shape": ["batch", 16]}])
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = quantize_build(build, model, src.parent, tmp_path / "out", LOG, build_name="b")
    assert result["quantized_nodes"] == 0 and result["quantized_in_subgraphs"] == 0
    assert any("nothing was quantized" in r.getMessage() for r in caplog.records)


def test_static_int8_leaves_subgraphs_alone_and_says_so(tmp_path, caplog):
    """quantize_static has no subgraph support; its calibration feeds the constant 'sr' every run."""
    src = if_model(tmp_path / "passes" / "model.onnx")
    build, model = _specs({"name": "static_int8", "calibration": {"num_samples": 8}}, IF_INPUTS)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        result = quantize_build(build, model, src.parent, tmp_path / "out", LOG, build_name="b")
    assert result["calibration_samples"] == 8
    assert result["quantized_in_subgraphs"] == 0 and result["quantized_nodes"] == 0
    assert any("nothing was quantized" in r.getMessage() and "subgraphs" in r.getMessage() for r in caplog.records)


def test_exclusions_may_name_subgraph_nodes(tmp_path):
    src = if_model(tmp_path / "passes" / "model.onnx")
    build, model = _specs({"name": "dynamic_int8", "nodes_to_exclude": ["else_matmul"]}, IF_INPUTS)
    result = quantize_build(build, model, src.parent, tmp_path / "out", LOG, build_name="b")
    assert (result["quantized_nodes"], result["quantized_in_subgraphs"]) == (2, 1)  # the then branch only
