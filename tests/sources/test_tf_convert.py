"""tf2onnx output made canonical: generated constant names do not depend on which duplicate survived."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from pipeline.sources.tf_convert import canonical_constant_names


def _slice_model(const_name: str, order: list[str]):
    zero = numpy_helper.from_array(np.array([0], np.int64), const_name)
    ends = numpy_helper.from_array(np.array([2], np.int64), "const_ends__32")
    weight = numpy_helper.from_array(np.ones((2,), np.float32), "dense/kernel")
    inits = {const_name: zero, "const_ends__32": ends, "dense/kernel": weight}
    nodes = [
        helper.make_node("Slice", ["x", const_name, "const_ends__32", const_name], ["s"], name="slice"),
        helper.make_node("Mul", ["s", "dense/kernel"], ["y"], name="mul"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [inits[n] for n in order],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_the_surviving_duplicate_does_not_change_the_bytes():
    a = _slice_model("const_starts__31", ["dense/kernel", "const_starts__31", "const_ends__32"])
    b = _slice_model("const_axes__33", ["const_ends__32", "const_axes__33", "dense/kernel"])
    assert a.SerializeToString() != b.SerializeToString()
    assert canonical_constant_names(a) == 2 and canonical_constant_names(b) == 2
    assert a.SerializeToString() == b.SerializeToString()
    assert [t.name for t in a.graph.initializer] == ["const__0", "const__1", "dense/kernel"]  # kept: not generated
    x = np.arange(4, dtype=np.float32)
    (y,) = ort.InferenceSession(a.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, x[:2])
