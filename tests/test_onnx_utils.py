import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipeline.onnx_utils import (
    external_files, file_stats, graph_stats, kept_names, model_size_mb, names_read, save_model,
)


def _matmul_model(n=64):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", n])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_save_external_data_roundtrip_and_size(tmp_path):
    model = _matmul_model()
    w = numpy_helper.to_array(model.graph.initializer[0])
    path = save_model(model, tmp_path / "model.onnx", external_data=True)
    files = external_files(path)
    assert files == [tmp_path / "model.onnx.data"]
    # size counts the external data too
    assert model_size_mb(path) * 1e6 >= 64 * 64 * 4
    x = np.ones((2, 64), np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def test_save_inline_by_default_for_small_models(tmp_path):
    path = save_model(_matmul_model(), tmp_path / "model.onnx")
    assert external_files(path) == []
    onnx.checker.check_model(str(path))


def test_graph_stats_counts_nodes_and_ops(tmp_path):
    stats = graph_stats(_matmul_model())
    assert stats["num_nodes"] == 2
    assert stats["ops"] == {"MatMul": 1, "Relu": 1}
    assert stats["opsets"] == {"ai.onnx": 17}
    path = save_model(_matmul_model(), tmp_path / "m.onnx", external_data=True)
    assert file_stats(path)["num_nodes"] == 2


def test_kept_names_are_the_outputs_and_what_subgraphs_read_from_outside():
    inner = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b_out"])], "branch", [],
        [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [1])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Relu", ["a"], ["c"]),
            helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    assert names_read(graph) == {"x", "a", "cond"}
    assert kept_names(graph) == {"y", "a"}  # "c" is read by nobody outside this graph's own nodes
