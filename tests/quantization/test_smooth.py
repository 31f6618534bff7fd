"""SmoothQuant (pipeline/quantization/smooth.py) on small graphs built here: the float model is
unchanged, residual readers keep the original tensor, an Attention node's V projection takes the
scale, and int8 of the smoothed model is more faithful when one channel is an outlier."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from pipeline.quantization.smooth import Smoothing, find_sites, scales, smooth

HIDDEN, FFN, SEQ = 16, 32, 12
OUTLIER = 3  # the channel of the LayerNorm output that is 40x larger than the rest


def _run(path: Path, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, f)[0] for f in feeds])


def _feeds(n: int = 16, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, SEQ, HIDDEN)).astype(np.float32)} for _ in range(n)]


def block(path: Path, shared_weight: bool = False) -> Path:
    """x -> LayerNorm (gamma 40 on one channel) -> MatMul -> Gelu -> MatMul -> + LayerNorm output
    (the residual reads the LayerNorm output too)."""
    rng = np.random.default_rng(0)
    gamma = np.ones(HIDDEN, np.float32)
    gamma[OUTLIER] = 40.0
    w2 = rng.normal(0, 0.2, (FFN, HIDDEN)).astype(np.float32)
    inits = [
        numpy_helper.from_array(gamma, "gamma"),
        numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "beta"),
        numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, FFN)).astype(np.float32), "w1"),
        numpy_helper.from_array(w2, "w2"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], name="ln", axis=-1),
        helper.make_node("MatMul", ["ln", "w1"], ["h"], name="ffn1"),
        helper.make_node("Gelu", ["h"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("MatMul", ["g", "w2"], ["o"], name="ffn2"),
        helper.make_node("Add", ["o", "ln"], ["y"], name="residual"),
    ]
    if shared_weight:  # a second reader of w1: smoothing ffn1 would scale it for both
        nodes.append(helper.make_node("MatMul", ["ln", "w1"], ["h2"], name="ffn1b"))
        nodes[-2] = helper.make_node("Add", ["o", "ln"], ["y0"], name="residual")
        nodes.append(helper.make_node("ReduceSum", ["h2"], ["s2"], name="sum", keepdims=1))
        nodes.append(helper.make_node("Add", ["y0", "s2"], ["y"], name="join"))
    graph = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, HIDDEN])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def attention(path: Path, ctx_is_output: bool = False) -> Path:
    """x -> com.microsoft Attention (2 heads) -> MatMul: the MatMul's input comes out of Attention
    (``ctx_is_output``: the Attention output is a graph output too)."""
    rng = np.random.default_rng(2)
    ctx_scale = np.ones(HIDDEN, np.float32)
    ctx_scale[5] = 30.0  # V channel 5 large: the Attention output's channel 5 is an outlier
    qkv = rng.normal(0, 0.3, (HIDDEN, 3 * HIDDEN)).astype(np.float32)
    qkv[:, 2 * HIDDEN :] *= ctx_scale
    inits = [
        numpy_helper.from_array(qkv, "qkv"),
        numpy_helper.from_array(rng.normal(0, 0.1, 3 * HIDDEN).astype(np.float32), "qkv_bias"),
        numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, HIDDEN)).astype(np.float32), "wo"),
    ]
    nodes = [
        helper.make_node("Attention", ["x", "qkv", "qkv_bias"], ["ctx"], name="attn", domain="com.microsoft", num_heads=2),
        helper.make_node("MatMul", ["ctx", "wo"], ["y"], name="out_proj"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, HIDDEN])]
    if ctx_is_output:
        outputs.append(helper.make_tensor_value_info("ctx", TensorProto.FLOAT, [1, SEQ, HIDDEN]))
    graph = helper.make_graph(
        nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, HIDDEN])], outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))
    return path


def test_smoothing_keeps_the_float_model_and_the_residual_reads_the_original(tmp_path):
    src = block(tmp_path / "block.onnx")
    dst = tmp_path / "smoothed.onnx"
    info = smooth(src, dst, _feeds(), alpha=0.7)
    assert info["activations"] == 2 and info["nodes"] == 2 and info["folded"] == 0
    assert info["outlier_spread_after"] < info["outlier_spread_before"]
    feeds = _feeds(4, seed=7)
    np.testing.assert_allclose(_run(dst, feeds), _run(src, feeds), rtol=1e-4, atol=1e-4)
    model = onnx.load(str(dst))
    by_name = {n.name: n for n in model.graph.node}
    muls = [n for n in model.graph.node if n.op_type == "Mul"]
    assert {m.input[0] for m in muls} == {"ln", "g"}
    assert by_name["residual"].input[1] == "ln"  # the residual branch is not scaled
    assert by_name["ffn1"].input[0] != "ln" and by_name["ffn2"].input[0] != "g"
    onnx.checker.check_model(model)


def test_int8_of_the_smoothed_model_is_more_faithful_with_an_outlier_channel(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = block(tmp_path / "block.onnx")
    smoothed = tmp_path / "smoothed.onnx"
    smooth(src, smoothed, _feeds(), alpha=0.7)
    errors = {}
    feeds = _feeds(8, seed=9)
    ref = _run(src, feeds)
    for name, path in (("plain", src), ("smoothed", smoothed)):
        out = tmp_path / f"{name}-int8.onnx"
        quantize_dynamic(
            str(path), str(out), per_channel=True, weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},  # the com.microsoft Gelu
        )
        errors[name] = float(np.sqrt(np.mean((_run(out, feeds) - ref) ** 2)))
    assert errors["smoothed"] < 0.5 * errors["plain"], errors


def test_attention_output_takes_the_scale_in_its_v_projection(tmp_path):
    src = attention(tmp_path / "attn.onnx")
    dst = tmp_path / "smoothed.onnx"
    info = smooth(src, dst, _feeds(), alpha=0.7)
    assert info["folded"] == 1
    model = onnx.load(str(dst))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Mul") == 1  # the Attention input's Mul; the output needs none
    feeds = _feeds(4, seed=3)
    np.testing.assert_allclose(_run(dst, feeds), _run(src, feeds), rtol=1e-4, atol=1e-4)


def test_an_attention_output_that_is_a_graph_output_is_not_folded(tmp_path):
    src = attention(tmp_path / "attn.onnx", ctx_is_output=True)
    dst = tmp_path / "smoothed.onnx"
    info = smooth(src, dst, _feeds(), alpha=0.7)
    assert info["activations"] == 2 and info["folded"] == 0  # ctx keeps its value, the MatMul reads a Mul
    feeds = _feeds(4, seed=3)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dst)]
    for f in feeds:
        for got, want in zip(sessions[1].run(None, f), sessions[0].run(None, f)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_weight_read_by_a_subgraph_or_fed_as_an_input_is_not_smoothed(tmp_path):
    model = onnx.load(str(block(tmp_path / "block.onnx")))
    cond = numpy_helper.from_array(np.array(True), "cond")
    then = helper.make_graph(  # reads w1 from the outer scope
        [helper.make_node("ReduceSum", ["w1"], ["t"], keepdims=0)], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
    )
    model.graph.initializer.append(cond)
    model.graph.node.append(helper.make_node("If", ["cond"], ["z"], name="if", then_branch=then, else_branch=then))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, []))
    assert [s.activation for s in find_sites(model)] == ["g"]
    model = onnx.load(str(block(tmp_path / "block.onnx")))
    model.graph.input.append(helper.make_tensor_value_info("w2", TensorProto.FLOAT, [FFN, HIDDEN]))  # overridable
    assert [s.activation for s in find_sites(model)] == ["ln"]


def test_new_names_do_not_collide_with_a_graph_input(tmp_path):
    model = onnx.load(str(block(tmp_path / "block.onnx")))
    # a graph input named like the Mul smoothing 'ln' would write; the residual adds it
    model.graph.input.append(helper.make_tensor_value_info("ln_smoothed", TensorProto.FLOAT, [1, SEQ, HIDDEN]))
    model.graph.node[-1].output[0] = "y0"
    model.graph.node.append(helper.make_node("Add", ["y0", "ln_smoothed"], ["y"], name="extra"))
    onnx.save(model, str(tmp_path / "input.onnx"))
    feeds = [{**f, "ln_smoothed": f["x"] * 2} for f in _feeds(4)]
    smooth(tmp_path / "input.onnx", tmp_path / "smoothed.onnx", feeds, alpha=0.7)
    onnx.checker.check_model(onnx.load(str(tmp_path / "smoothed.onnx")))
    np.testing.assert_allclose(_run(tmp_path / "smoothed.onnx", feeds), _run(tmp_path / "input.onnx", feeds), rtol=1e-4, atol=1e-4)


def test_a_shared_weight_is_not_smoothed_and_op_types_and_exclusions_limit_the_sites(tmp_path):
    model = onnx.load(str(block(tmp_path / "shared.onnx", shared_weight=True)))
    assert [s.activation for s in find_sites(model)] == ["g"]  # w1 has two readers
    model = onnx.load(str(block(tmp_path / "block.onnx")))
    assert [s.activation for s in find_sites(model, exclude={"ffn2"})] == ["ln"]
    assert find_sites(model, op_types={"Gemm"}) == []


def test_scales_leave_dead_channels_alone_and_are_clipped():
    s = scales([0.0, 4.0, 1e9], [1.0, 1.0, 1.0], alpha=0.5)
    assert s[0] == 1.0 and s[1] == pytest.approx(2.0) and s[2] == pytest.approx(100.0)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ValidationError):
        Smoothing(alpha=alpha)


def test_dynamic_quantizer_smooths_on_calibration_data(tmp_path):
    from pipeline.quantization import QUANTIZERS, QuantContext
    from pipeline.schema import validate_model

    src = block(tmp_path / "block.onnx")
    spec = validate_model(
        {"framework": "onnx", "path": str(src), "watch": str(src), "inputs": [{"name": "x", "shape": [1, SEQ, HIDDEN], "range": [-2.0, 2.0]}]},
        "models.block",
    )
    impl = QUANTIZERS["dynamic_int8"]()
    params = impl.Params(smoothing={"alpha": 0.7, "num_samples": 8})
    ctx = QuantContext(model_spec=spec, log=logging.getLogger("test"), work_dir=tmp_path / "work")
    info = impl.run(src, tmp_path / "q.onnx", params, ctx)
    assert info["smoothing"]["activations"] == 2 and info["smoothing"]["samples"] == 8
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "Mul" in ops and ("MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops)


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_static_quantizer_keeps_the_smoothing_muls_in_float(tmp_path, fmt):
    """Quantized, a smoothing Mul reads the activation rounded per tensor (outliers and all) and 1/s in
    8 bits: the smoothing is undone. Both the quantizer's own smoothing and a graph smoothed before
    (the search) keep them float."""
    from pipeline.quantization import QUANTIZERS, QuantContext
    from pipeline.schema import validate_model

    src = block(tmp_path / "block.onnx")
    spec = validate_model(
        {"framework": "onnx", "path": str(src), "watch": str(src), "inputs": [{"name": "x", "shape": [1, SEQ, HIDDEN], "range": [-2.0, 2.0]}]},
        "models.block",
    )
    impl = QUANTIZERS["static_int8"]()
    smoothed = tmp_path / "smoothed.onnx"
    smooth(src, smoothed, _feeds(4), alpha=0.7)
    for name, model_in, smoothing in (("own", src, {"alpha": 0.7, "num_samples": 4}), ("given", smoothed, None)):
        params = impl.Params(format=fmt, per_channel=False, smoothing=smoothing, calibration={"num_samples": 4})
        ctx = QuantContext(model_spec=spec, log=logging.getLogger("test"), work_dir=tmp_path / name)
        info = impl.run(model_in, tmp_path / f"{name}.onnx", params, ctx)
        assert info["nodes_to_exclude"] == []
        model = onnx.load(str(tmp_path / f"{name}.onnx"))
        muls = [n for n in model.graph.node if n.op_type in ("Mul", "QLinearMul")]
        assert sorted(m.op_type + ":" + m.input[0] for m in muls) == ["Mul:g", "Mul:ln"], name
        inits = {i.name: i.data_type for i in model.graph.initializer}
        assert all(inits.get(m.input[1]) == TensorProto.FLOAT for m in muls), name


def test_smoothing_writes_nothing_beside_its_input(tmp_path):
    src = block((tmp_path / "in").mkdir() or tmp_path / "in" / "block.onnx")
    smooth(src, tmp_path / "out" / "model.onnx", _feeds(4), alpha=0.7)
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["block.onnx"]  # the probe model lives in out/
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.onnx"]
