"""Keeping nodes in float really computes them in float (static QDQ): excluded nodes read float
tensors, removed activations come back in float, and excluding every node gives the float model."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipeline.quantization.base import QuantContext
from pipeline.quantization.static import Calibration, StaticInt8

LOG = logging.getLogger("test")
WIDTH = 24
CHAIN = ["mm0", "mm1", "mm2", "mm3"]


def chain_model(path):
    """x -> (MatMul -> Add bias -> Clip 0..6) x 4 -> y: every MatMul reads the previous Clip's output,
    a Clip that the QDQ quantizer removes (its QuantizeLinear's range clips instead)."""
    rng = np.random.default_rng(3)
    nodes, inits, prev = [], [], "x"
    for i, name in enumerate(CHAIN):
        inits += [
            numpy_helper.from_array(rng.normal(0, 0.6, (WIDTH, WIDTH)).astype(np.float32), f"w{i}"),
            numpy_helper.from_array(rng.normal(0, 0.3, WIDTH).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=name),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Clip", [f"a{i}", "lo", "hi"], [f"c{i}"], name=f"clip{i}"),
        ]
        prev = f"c{i}"
    inits += [numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _ctx(skit, work):
    work.mkdir(parents=True)
    return QuantContext(model_spec=skit.model_spec(WIDTH), log=LOG, work_dir=work)


def _params(exclude=()):
    return StaticInt8.Params(calibration=Calibration(num_samples=32), nodes_to_exclude=list(exclude), preprocess=False)


def _quantize(skit, src, tmp_path, exclude, ranges=None):
    tag = "-".join(exclude) or "none"
    dst = tmp_path / tag / "model.onnx"
    dst.parent.mkdir(parents=True)
    info = StaticInt8().run(src, dst, _params(exclude), _ctx(skit, tmp_path / "work" / tag), ranges=ranges)
    return dst, info


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_excluded_nodes_read_float_tensors_and_all_excluded_is_the_float_model(skit, tmp_path):
    src = chain_model(tmp_path / "float" / "model.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (64, WIDTH)).astype(np.float32)
    ref = _run(src, x)
    every = [n.name for n in onnx.load(str(src)).graph.node]
    out, _ = _quantize(skit, src, tmp_path, every)
    assert not [n for n in onnx.load(str(out)).graph.node if n.op_type.endswith("QuantizeLinear")]
    assert np.array_equal(_run(out, x), ref)

    half, _ = _quantize(skit, src, tmp_path, ["mm2"])
    model = onnx.load(str(half))
    producer = {o: n for n in model.graph.node for o in n.output}
    (mm2,) = [n for n in model.graph.node if n.name == "mm2"]
    # mm2 reads the float Clip output (a float copy of the Clip the quantizer removed) and float weights
    assert producer[mm2.input[0]].op_type == "Clip"
    assert mm2.input[1] == "w2"


def test_keeping_more_of_the_chain_in_float_is_more_faithful(skit, tmp_path):
    src = chain_model(tmp_path / "float" / "model.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (64, WIDTH)).astype(np.float32)
    ref = _run(src, x)
    # one calibration, reused by every step (the search re-quantizes without recalibrating)
    ranges, _ = StaticInt8().calibrate(src, _params(), _ctx(skit, tmp_path / "calibration"))
    errors = []
    for k in range(len(CHAIN) + 1):
        # the last k blocks (MatMul, Add, Clip) in float
        excluded = [f"{op}{i}" for i in range(len(CHAIN) - k, len(CHAIN)) for op in ("mm", "add", "clip")]
        out, info = _quantize(skit, src, tmp_path, excluded, ranges)
        assert info["calibration_reused"]
        errors.append(float(np.abs(_run(out, x) - ref).max()))
    assert errors[0] > 0 and errors[-1] == 0.0
    assert all(later <= earlier for earlier, later in zip(errors, errors[1:])), errors
