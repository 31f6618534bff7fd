"""fuse_hardswish on a small Conv net built here: x * clip(x + 3, 0, 6) / 6 becomes one activation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_graphs import save_graph


def hardswish_net(path: Path, opset: int, add_const: float = 3.0, reuse_clip: bool = False,
                  three: np.ndarray | None = None, subgraph_reads_clip: bool = False,
                  three_is_input: bool = False) -> Path:
    """Conv -> written-out hard-swish -> Conv; constants as initializers (3, 0, 6) and a Constant node (6).
    ``three``: the array the Add adds (default float32 ``add_const``); ``subgraph_reads_clip``: an If
    whose branches read the clipped tensor from the outer scope; ``three_is_input``: the 3 is an
    initializer that is also a graph input (a caller may override it)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 1, (2, 4, 1, 1)).astype(np.float32), "w2")
    three = np.array(add_const, np.float32) if three is None else three
    consts = [numpy_helper.from_array(three, "three"),
              *(numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("zero", 0.0), ("six", 6.0)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "three"], ["a"], name="add"),
        helper.make_node("Clip", ["a", "zero", "six"], ["clipped"], name="clip"),
        helper.make_node("Mul", ["c1", "clipped"], ["m"], name="mul"),
        helper.make_node("Constant", [], ["six_node"], name="six_const",
                         value=numpy_helper.from_array(np.array([6.0], np.float32))),
        helper.make_node("Div", ["m", "six_node"], ["h"], name="div"),
        helper.make_node("Conv", ["h", "w2"], ["y"], name="conv2"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])]
    if reuse_clip:  # the clipped tensor is also a graph output: the pattern must stay
        outputs.append(helper.make_tensor_value_info("clipped", TensorProto.FLOAT, [1, 4, 8, 8]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if three_is_input:
        inputs.append(helper.make_tensor_value_info("three", TensorProto.FLOAT, list(three.shape)))
    if subgraph_reads_clip:
        consts.append(numpy_helper.from_array(np.array(True), "cond"))
        branch = helper.make_graph(
            [helper.make_node("Identity", ["clipped"], ["branch_out"])], "branch", [],
            [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [1, 4, 8, 8])])
        nodes.append(helper.make_node("If", ["cond"], ["side"], name="if", then_branch=branch, else_branch=branch))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 4, 8, 8]))
    graph = helper.make_graph(nodes, "hs", inputs, outputs, initializer=[w1, w2, *consts])
    return save_graph(graph, path, opset=opset)


def outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("opset, written", [(13, ["HardSigmoid", "Mul"]), (14, ["HardSwish"])])
def test_written_out_hardswish_becomes_one_activation(tmp_path, run_pass, opset, written):
    src = hardswish_net(tmp_path / "src.onnx", opset)
    out, rec = run_pass("fuse_hardswish", src)
    assert rec["info"]["fused"] == 1 and rec["changed"]
    assert [op for op in ops(out) if op not in ("Conv", "Constant")] == written
    assert not {"Clip", "Div", "Add"} & set(ops(out))
    assert {i.name for i in onnx.load(str(out)).graph.initializer} == {"w1", "w2"}  # dead constants gone
    x = np.random.default_rng(1).normal(0, 2, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(outputs(out, x)[0], outputs(src, x)[0], rtol=1e-5, atol=1e-5)


NEAR_MISSES = {
    "other constant": dict(add_const=4.0),
    "intermediate is a graph output": dict(reuse_clip=True),
    "intermediate read by a subgraph": dict(subgraph_reads_clip=True),
    "rank-5 constant (would broadcast)": dict(three=np.full((1, 1, 1, 1, 1), 3.0, np.float32)),
    "integer constant": dict(three=np.array(3, np.int64)),
    "constant a caller can override": dict(three_is_input=True),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_stay_unchanged(tmp_path, run_pass, case):
    src = hardswish_net(tmp_path / "src.onnx", 14, **NEAR_MISSES[case])
    out, rec = run_pass("fuse_hardswish", src)
    assert rec["info"]["fused"] == 0
    assert ops(out) == ops(src)


def test_quantizes_statically_with_the_activation_in_float(tmp_path, run_pass):
    """The fused graph goes through static QDQ (Conv only) and runs."""
    import logging

    from pipeline.quantization.base import QuantContext
    from pipeline.quantization.static import Calibration, StaticInt8

    fused, _ = run_pass("fuse_hardswish", hardswish_net(tmp_path / "src.onnx", 13))
    dst = tmp_path / "q" / "model.onnx"
    dst.parent.mkdir()
    params = StaticInt8.Params(op_types_to_quantize=["Conv"], calibration=Calibration(num_samples=8))
    StaticInt8().run(fused, dst, params, QuantContext(model_spec=None, log=logging.getLogger("t"), work_dir=tmp_path))
    quantized = ops(dst)
    assert "QuantizeLinear" in quantized and "HardSigmoid" in quantized
    x = np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32)  # the calibration's range
    a, b = outputs(dst, x)[0], outputs(fused, x)[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def chained_unnamed_net(path: Path, opset: int, x_shape: list[int]) -> Path:
    """Two hard-swishes in a row on ``x`` (shape ``x_shape``), nodes unnamed (as some exporters and
    hand-built graphs leave them), constants of shape [1] (as Paddle2ONNX writes them)."""
    consts = [numpy_helper.from_array(np.full([1], v, np.float32), n) for n, v in (("three", 3), ("zero", 0), ("six", 6))]
    nodes, src = [], "x"
    for k in range(2):
        nodes += [helper.make_node("Add", [src, "three"], [f"a{k}"]),
                  helper.make_node("Clip", [f"a{k}", "zero", "six"], [f"c{k}"]),
                  helper.make_node("Mul", [src, f"c{k}"], [f"m{k}"]),
                  helper.make_node("Div", [f"m{k}", "six"], [f"h{k}"])]
        src = f"h{k}"
    graph = helper.make_graph(nodes, "hs2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(src, TensorProto.FLOAT, x_shape or [1])], initializer=consts)
    return save_graph(graph, path, opset=opset)


@pytest.mark.parametrize("opset", [13, 14])
def test_unnamed_patterns_get_unique_node_and_tensor_names(tmp_path, run_pass, opset):
    """Two fused patterns whose Div nodes have no name: the new nodes (and, below opset 14, the
    HardSigmoid's output tensor) were all named '/HardSwish' or '/HardSigmoid', a model onnxruntime refuses."""
    src = chained_unnamed_net(tmp_path / "src.onnx", opset, [2, 4])
    out, rec = run_pass("fuse_hardswish", src)
    assert rec["info"]["fused"] == 2
    names = [n.name for n in onnx.load(str(out)).graph.node]
    assert len(set(names)) == len(names)
    x = np.linspace(-5, 5, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(outputs(out, x)[0], outputs(src, x)[0], rtol=1e-5, atol=1e-5)


def test_a_rank_1_constant_against_a_scalar_keeps_the_pattern(tmp_path, run_pass):
    """x + [3] for a scalar x is a rank-1 tensor; HardSwish(x) would be a scalar: the first pattern
    stays, the second (whose input is already rank 1) is fused, and the output keeps its shape."""
    src = chained_unnamed_net(tmp_path / "src.onnx", 14, [])
    out, rec = run_pass("fuse_hardswish", src)
    assert rec["info"]["fused"] == 1
    x = np.array(1.5, np.float32)
    got, want = outputs(out, x)[0], outputs(src, x)[0]
    assert got.shape == want.shape == (1,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
