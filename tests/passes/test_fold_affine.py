"""fold_affine on small conv nets built here: constant scale/shift pairs next to a conv are folded
into it exactly, and left alone wherever folding would change a result."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.passes import PASSES, PassContext
from pipeline.passes.fold_affine import fold


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def net(path: Path, *, shift_shape=(1,), pad_second: bool = False, extra_reader: bool = False,
        const_first: bool = True, scale_is_input: bool = False) -> Path:
    """Conv1 -> Mul(a) -> Add(b) -> Relu -> Mul(c) -> Add(d) -> Conv2 (1x1; padded when asked).
    ``const_first``: the constants as the Mul/Add's first input (Paddle2ONNX's order);
    ``extra_reader``: Conv1's scaled output is also a graph output; ``scale_is_input``: ``a`` is an
    initializer that is also a graph input (overridable at run time)."""
    rng = np.random.default_rng(0)
    inits = [
        _const("w1", rng.normal(0, 1, (4, 3, 3, 3))), _const("b1", rng.normal(0, 1, 4)),
        _const("w2", rng.normal(0, 1, (2, 4, 1, 1))),
        _const("a", [1.7]), _const("b", rng.normal(0, 1, shift_shape)),
        _const("c", [0.6]), _const("d", [-0.4]),
    ]

    def op(kind, x, k, out, name):
        return helper.make_node(kind, [k, x] if const_first else [x, k], [out], name=name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        op("Mul", "c1", "a", "m1", "mul1"), op("Add", "m1", "b", "s1", "add1"),
        helper.make_node("Relu", ["s1"], ["r"], name="relu"),
        op("Mul", "r", "c", "m2", "mul2"), op("Add", "m2", "d", "s2", "add2"),
        helper.make_node("Conv", ["s2", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1] if pad_second else [0, 0, 0, 0]),
    ]
    side = 8 + (2 if pad_second else 0)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, side, side])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("m1", TensorProto.FLOAT, [1, 4, 8, 8]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if scale_is_input:
        inputs.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "net", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _fold(src: Path, dst: Path) -> dict:
    cls = PASSES["fold_affine"]
    return cls().run(src, dst, cls.Params(), PassContext(log=logging.getLogger("test"), work_dir=dst.parent))


X = np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("const_first", [True, False])
@pytest.mark.parametrize("shift_shape", [(1,), (1, 4, 1, 1), (4, 1, 1)])
def test_both_pairs_fold_and_the_outputs_stay(tmp_path, const_first, shift_shape):
    src = net(tmp_path / "net.onnx", shift_shape=shift_shape, const_first=const_first)
    info = _fold(src, tmp_path / "out.onnx")
    assert info["folded"] == {"after_conv": 1, "before_conv": 1}
    model = onnx.load(str(tmp_path / "out.onnx"))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Conv"]
    assert not {"a", "b", "c", "d"} & {i.name for i in model.graph.initializer}  # dead constants removed
    np.testing.assert_allclose(_outputs(tmp_path / "out.onnx", X)[0], _outputs(src, X)[0], rtol=1e-5, atol=1e-5)


def test_a_padded_conv_after_keeps_its_shift(tmp_path):
    src = net(tmp_path / "net.onnx", pad_second=True)
    info = _fold(src, tmp_path / "out.onnx")
    assert info["folded"] == {"after_conv": 1, "before_conv": 0}  # the border would read 0, not d
    ops = [n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node]
    assert ops == ["Conv", "Relu", "Mul", "Add", "Conv"]
    np.testing.assert_allclose(_outputs(tmp_path / "out.onnx", X)[0], _outputs(src, X)[0], rtol=1e-5, atol=1e-5)


def test_a_result_read_elsewhere_or_an_overridable_constant_stops_the_fold(tmp_path):
    src = net(tmp_path / "net.onnx", extra_reader=True)
    _fold(src, tmp_path / "out.onnx")
    names = [n.name for n in onnx.load(str(tmp_path / "out.onnx")).graph.node]
    # m1 is a graph output: conv1 may take the scale and write m1 itself, but the shift must stay
    assert "add1" in names
    for got, want in zip(_outputs(tmp_path / "out.onnx", X), _outputs(src, X)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    src = net(tmp_path / "net2.onnx", scale_is_input=True)
    model = onnx.load(str(src))
    # the Mul by the overridable 'a' stays, and so does the Add behind it; the later pair still folds
    assert fold(model) == {"after_conv": 0, "before_conv": 1}
    assert {"mul1", "add1"} <= {n.name for n in model.graph.node}


def test_a_shift_that_does_not_broadcast_per_channel_is_left(tmp_path):
    src = net(tmp_path / "net.onnx", shift_shape=(1, 1, 8, 1))  # varies along H: not a per-channel bias
    info = _fold(src, tmp_path / "out.onnx")
    assert info["folded"]["after_conv"] == 1  # Conv+Mul only; the Add stays
    assert "add1" in [n.name for n in onnx.load(str(tmp_path / "out.onnx")).graph.node]
    np.testing.assert_allclose(_outputs(tmp_path / "out.onnx", X)[0], _outputs(src, X)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("spatial", "shape", "folds"),
    [
        ((10,), (4, 1, 1), False),  # on N,C,L: broadcasts to [4, 4, L], not per channel
        ((10,), (1, 4, 1, 1), False),
        ((10,), (4, 1), True),
        ((10,), (1, 4, 1), True),
        ((6, 5, 5), (4, 1, 1), False),  # on N,C,D,H,W: varies along D
        ((6, 5, 5), (1, 4, 1, 1), False),
        ((6, 5, 5), (1, 4, 1, 1, 1), True),
    ],
)
def test_a_per_channel_constant_must_match_the_conv_rank(tmp_path, spatial, shape, folds):
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Mul", ["c", "k"], ["y"], name="mul")]
    inits = [_const("w", rng.normal(0, 1, (4, 3, *[3] * len(spatial)))), _const("k", rng.normal(0, 1, shape))]
    graph = helper.make_graph(
        nodes, "convnd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.normal(0, 1, (1, 3, *spatial)).astype(np.float32)
    onnx.save(model, str(tmp_path / "src.onnx"))
    want = _outputs(tmp_path / "src.onnx", x)[0]
    assert fold(model) == {"after_conv": int(folds), "before_conv": 0}
    onnx.save(model, str(tmp_path / "dst.onnx"))
    got = _outputs(tmp_path / "dst.onnx", x)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("where", ["after", "before"])
def test_a_float16_conv_keeps_float16_weights(tmp_path, where):
    rng = np.random.default_rng(4)
    if where == "after":
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Mul", ["k", "c"], ["y"])]
    else:
        nodes = [helper.make_node("Mul", ["k", "x"], ["m"]), helper.make_node("Conv", ["m", "w"], ["y"])]
    inits = [numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float16), "w"),
             numpy_helper.from_array(np.array([1.5], np.float16), "k")]
    graph = helper.make_graph(
        nodes, "fp16", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(tmp_path / "src.onnx"))
    assert sum(fold(model).values()) == 1
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    onnx.save(model, str(tmp_path / "dst.onnx"))
    x = rng.normal(0, 1, (1, 3, 6, 6)).astype(np.float16)
    np.testing.assert_allclose(_outputs(tmp_path / "dst.onnx", x)[0], _outputs(tmp_path / "src.onnx", x)[0], rtol=1e-2, atol=1e-2)
