"""Small ONNX graphs the tests share (import as ``tests.onnx_graphs``; conftest files are not importable
under ``--import-mode=importlib``)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def save_graph(graph: onnx.GraphProto, path: Path, opset: int = 17, check: bool = True) -> Path:
    """``graph`` as a model (default-domain ``opset``, IR 9, which onnxruntime 1.32 loads), checked
    by onnx.checker unless ``check`` is false, saved at ``path`` (parent folders created)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    if check:
        onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def mixed_model(path: Path, batch: str = "batch", check: bool = True) -> Path:
    """y[b, j] = (x[b, j] + w[j, b]) * s + c[j]: x [batch, 3] (axis 0), w [3, batch] (axis 1),
    s a float scalar, c [3] with no batch axis."""
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("Add", ["x", "wt"], ["xw"]),
        helper.make_node("Mul", ["xw", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, batch]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
    )
    return save_graph(graph, path, check=check)
