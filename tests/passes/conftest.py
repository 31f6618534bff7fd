"""Small ONNX models built with onnx.helper for the pass tests, and helpers to run them in ORT."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.onnx_utils import save_model
from pipeline.passes import PassContext


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def build_cnn(opset: int = 17, seed: int = 0) -> onnx.ModelProto:
    """Conv -> BatchNorm -> Relu -> Identity -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm.

    BatchNorm and Identity give onnxoptimizer and ONNX Runtime something to fuse / remove."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", rng.normal(0, 0.3, (8, 3, 3, 3))),
        _init("b1", rng.normal(0, 0.1, (8,))),
        _init("bn_scale", rng.uniform(0.5, 1.5, (8,))),
        _init("bn_bias", rng.normal(0, 0.1, (8,))),
        _init("bn_mean", rng.normal(0, 0.1, (8,))),
        _init("bn_var", rng.uniform(0.5, 1.5, (8,))),
        _init("w2", rng.normal(0, 0.2, (16, 8, 3, 3))),
        _init("b2", rng.normal(0, 0.1, (16,))),
        _init("fc_w", rng.normal(0, 0.3, (10, 16))),
        _init("fc_b", rng.normal(0, 0.1, (10,))),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"], name="bn1"
        ),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Identity", ["r1"], ["id1"], name="identity1"),
        helper.make_node("Conv", ["id1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture
def ctx(tmp_path: Path) -> PassContext:
    work = tmp_path / "work"
    work.mkdir()
    return PassContext(log=logging.getLogger("test.passes"), work_dir=work, dims={"batch": 1})


@pytest.fixture
def cnn(tmp_path: Path) -> Path:
    return save_model(build_cnn(), tmp_path / "src" / "model.onnx")


@pytest.fixture
def cnn_external(tmp_path: Path) -> Path:
    path = save_model(build_cnn(), tmp_path / "ext" / "model.onnx", external_data=True)
    assert (path.parent / "model.onnx.data").exists()
    return path


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1, (4, 3, 12, 12)).astype(np.float32)


@pytest.fixture
def run_pass(tmp_path: Path, ctx: PassContext):
    """Run one pass through the pass manager: returns (output path, its passes.json record)."""
    from pipeline.schema import validate_pass

    counter = iter(range(1000))

    def _run(name: str, src: Path, **params):
        _, typed = validate_pass({"name": name, "params": params}, "passes[0]")
        dst = tmp_path / f"out{next(counter)}" / "model.onnx"
        from pipeline.passes import run_pass_list

        result = run_pass_list(src, dst, [(name, typed)], ctx)
        return dst, result["passes"][0]

    return _run


@pytest.fixture
def ort_out():
    """``ort_out(path, x)``: the first output of the model at ``path`` on ``x`` (ONNX Runtime, CPU)."""
    return run_ort


@pytest.fixture
def make_cnn():
    """``make_cnn(opset=17)``: the helper-built CNN as a ModelProto."""
    return build_cnn
