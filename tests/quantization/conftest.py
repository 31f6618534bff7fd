"""Models for the quantizer tests: a small torch CNN exported with torch.onnx (dynamo, the project's
default path) and onnx.helper graphs (an opset-11 CNN for the opset-upgrade trap)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.onnx_utils import save_model
from pipeline.quantization import QUANTIZERS, QuantContext
from pipeline.schema import validate_model

INPUT = {"name": "input", "shape": ["batch", 1, 16, 16], "range": [-2.0, 2.0]}


def _export_torch_cnn(path: Path) -> Path:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1)
            self.b1 = nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16 * 4 * 4, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
            x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    model = Net().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (torch.randn(1, 1, 16, 16),), str(path), dynamo=True, input_names=["input"],
        output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )
    # one self-contained file (the exporter may write a .data file beside it)
    model_proto = onnx.load(str(path))
    for stale in path.parent.glob("*.data"):
        stale.unlink()
    return save_model(model_proto, path, external_data=False)


def build_old_cnn(opset: int = 11) -> onnx.ModelProto:
    """Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm at an old opset."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "old_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [init("w1", (8, 1, 3, 3), 0.4), init("b1", (8,), 0.1), init("w2", (16, 8, 3, 3), 0.2),
         init("b2", (16,), 0.1), init("fc_w", (10, 16), 0.3), init("fc_b", (10,), 0.1)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def torch_cnn(tmp_path_factory) -> Path:
    return _export_torch_cnn(tmp_path_factory.mktemp("torch_cnn") / "model.onnx")


@pytest.fixture
def cnn(torch_cnn: Path, tmp_path: Path) -> Path:
    """A private copy of the exported CNN (quantizers must not touch their input)."""
    dst = tmp_path / "src" / "model.onnx"
    dst.parent.mkdir()
    dst.write_bytes(torch_cnn.read_bytes())
    return dst


@pytest.fixture
def cnn_external(torch_cnn: Path, tmp_path: Path) -> Path:
    return save_model(onnx.load(str(torch_cnn)), tmp_path / "ext" / "model.onnx", external_data=True)


@pytest.fixture
def old_cnn(tmp_path: Path) -> Path:
    return save_model(build_old_cnn(11), tmp_path / "old" / "model.onnx")


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(5).uniform(-2, 2, (16, 1, 16, 16)).astype(np.float32)


@pytest.fixture
def spec():
    return validate_model(
        {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx", "inputs": [INPUT]}, "models.m"
    )


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.fixture
def ort_out():
    return _run


@pytest.fixture
def quantize(tmp_path: Path, spec):
    """``quantize(src, {name: ..., ...}, model_spec=spec)`` -> (output path, info)."""
    counter = iter(range(1000))

    def _quantize(src: Path, config: dict, model_spec=spec):
        cls = QUANTIZERS[config["name"]]
        params = cls.Params.model_validate(config)
        i = next(counter)
        work = tmp_path / f"work{i}"
        work.mkdir()
        ctx = QuantContext(model_spec, logging.getLogger("test.quantize"), work, key="builds.b.quantization",
                           model_key="models.m", source="params.yaml")
        dst = tmp_path / f"q{i}" / "model.onnx"
        dst.parent.mkdir()
        info = cls().run(src, dst, params, ctx)
        return dst, info

    return _quantize


@pytest.fixture
def close_to():
    """``close_to(got, ref)``: int8 outputs stay close to fp32 (relative to the output range)."""

    def check(got: np.ndarray, ref: np.ndarray, rel: float = 0.1) -> None:
        scale = np.abs(ref).max()
        assert np.abs(got - ref).max() <= rel * scale, (np.abs(got - ref).max(), scale)
        cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() > 0.98

    return check


def ops(path: Path) -> dict[str, int]:
    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, int] = {}
    for node in model.graph.node:
        out[node.op_type] = out.get(node.op_type, 0) + 1
    return out


@pytest.fixture
def op_hist():
    return ops
