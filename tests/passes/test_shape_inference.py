import numpy as np
import onnx
import pytest

from pipeline.errors import ConfigError
from pipeline.schema import validate_pass


def test_annotates_tensors_then_is_a_no_op(cnn, run_pass, x, ort_out):
    out, rec = run_pass("shape_inference", cnn)
    assert rec["changed"] and rec["changes"] == ["value_info"]
    assert rec["nodes_before"] == rec["nodes_after"] == 9
    assert rec["info"]["unannotated_tensors"] == 0
    shapes = {vi.name: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]
              for vi in onnx.load(str(out)).graph.value_info}
    assert shapes["c2"] == ["batch", 16, 12, 12]
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn, x))
    again, rec2 = run_pass("shape_inference", out)
    assert not rec2["changed"] and rec2["changes"] == []


def test_external_data_survives(cnn_external, run_pass, x, ort_out):
    out, rec = run_pass("shape_inference", cnn_external)
    assert rec["info"]["external_data"]
    assert (out.parent / "model.onnx.data").exists()
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn_external, x))


def test_bad_param_type():
    with pytest.raises(ConfigError, match=r"passes\[0\]\.params\.strict_mode"):
        validate_pass({"name": "shape_inference", "params": {"strict_mode": "maybe"}}, "passes[0]")
