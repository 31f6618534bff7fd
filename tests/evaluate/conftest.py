"""Small ONNX models with known behaviour, and reference.npz fixtures, for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_graphs import save_graph
from pipeline.schema import BuildSpec, EvaluateSpec, Gates, ModelSpec, Selected
from pipeline.targets.cpu import CpuParams

N_IN, N_CLASSES = 8, 4
RNG_SEED = 0


def linear_model(
    path: Path,
    offset: float | np.ndarray = 0.0,
    batch: int | str = "batch",
    dtype: int = TensorProto.FLOAT,
    second_output: bool = False,
) -> Path:
    """y = x @ W + b (+ offset): a 4-class 'classifier' with fixed weights; optional z = y * 2."""
    rng = np.random.default_rng(RNG_SEED)
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    w = rng.normal(size=(N_IN, N_CLASSES)).astype(np_dtype)
    b = rng.normal(size=(N_CLASSES,)).astype(np_dtype)
    off = np.broadcast_to(np.asarray(offset, dtype=np_dtype), (N_CLASSES,)).copy()
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Add", ["h", "B"], ["h2"]),
        helper.make_node("Add", ["h2", "OFF"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", dtype, [batch, N_CLASSES])]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), numpy_helper.from_array(off, "OFF")]
    if second_output:
        nodes.append(helper.make_node("Mul", ["y", "TWO"], ["z"]))
        inits.append(numpy_helper.from_array(np.asarray([2.0], dtype=np_dtype), "TWO"))
        outputs.append(helper.make_tensor_value_info("z", dtype, [batch, N_CLASSES]))
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", dtype, [batch, N_IN])], outputs, inits)
    return save_graph(graph, path)


def reference_outputs(model: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x})))


def write_export(export_dir: Path, n: int = 64, labels: str | None = "flip", second_output: bool = False) -> dict:
    """export_dir/model.onnx (fp32, no offset) and reference.npz with its outputs.

    labels: None (no labels), "exact" (= the model's argmax), "flip" (every 4th label changed).
    """
    model = linear_model(export_dir / "model.onnx", second_output=second_output)
    x = np.random.default_rng(1).normal(size=(n, N_IN)).astype(np.float32)
    outs = reference_outputs(model, x)
    arrays = {"input/x": x, **{f"output/{k}": v for k, v in outs.items()}}
    if labels is not None:
        lab = outs["y"].argmax(axis=1)
        if labels == "flip":
            lab = lab.copy()
            lab[::4] = (lab[::4] + 1) % N_CLASSES
        arrays["labels"] = lab.astype(np.int64)
    np.savez(export_dir / "reference.npz", **arrays)
    return arrays


def make_build(threads: int = 1, runs: int = 20, warmup: int = 2, batch_size: int = 1, samples: int = 32, **gates) -> BuildSpec:
    return BuildSpec(
        model="m",
        quantization=Selected(name="none", params=None),
        target=Selected(name="cpu", params=CpuParams(threads=threads)),
        evaluate=EvaluateSpec(
            warmup=warmup, runs=runs, batch_size=batch_size, fidelity_samples=samples, gates=Gates(**gates)
        ),
    )


def make_model_spec(task: str = "classification") -> ModelSpec:
    return ModelSpec(framework="onnx", path="m.onnx", watch="m.onnx", task=task)


@pytest.fixture
def kit():
    """The builders above, for test modules (conftest is not importable under importlib mode)."""
    import types

    return types.SimpleNamespace(
        linear_model=linear_model,
        reference_outputs=reference_outputs,
        write_export=write_export,
        make_build=make_build,
        make_model_spec=make_model_spec,
        N_IN=N_IN,
        N_CLASSES=N_CLASSES,
    )
