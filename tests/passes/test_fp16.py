import numpy as np
import onnx
from onnx import TensorProto



def test_converts_weights_keeps_float32_io(cnn, run_pass, x, ort_out):
    out, rec = run_pass("fp16", cnn)
    assert rec["changed"] and "weights" in rec["changes"]
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in model.graph.initializer if i.name.startswith("w")} == {TensorProto.FLOAT16}
    ref = ort_out(cnn, x)
    got = ort_out(out, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())


def test_float16_io_and_block_list(cnn, run_pass, x, ort_out):
    out, rec = run_pass("fp16", cnn, keep_io_types=False, op_block_list=["Gemm"])
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert rec["info"]["nodes_kept_float32"] == 1
    ref = ort_out(cnn, x)
    got = ort_out(out, x.astype(np.float16))
    np.testing.assert_allclose(got.astype(np.float32), ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())


def test_already_float16_is_unchanged(cnn, run_pass):
    once, _ = run_pass("fp16", cnn)
    _, rec = run_pass("fp16", once)
    assert not rec["changed"] and "already float16" in rec["info"]["reason"]
