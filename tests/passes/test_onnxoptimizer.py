import onnx
import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.schema import validate_pass


def test_default_list_fuses_bn_and_drops_identity(cnn, run_pass, x, ort_out):
    out, rec = run_pass("onnxoptimizer", cnn)
    assert rec["changed"]
    ops = onnx.load(str(out)).graph.node
    assert not {"BatchNormalization", "Identity"} & {n.op_type for n in ops}  # fused into conv1 / removed
    assert "fuse_bn_into_conv" in rec["info"]["optimizer_passes"]
    np.testing.assert_allclose(ort_out(out, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)


def test_chosen_pass_that_does_not_apply_leaves_model_unchanged(cnn, run_pass, x, ort_out):
    out, rec = run_pass("onnxoptimizer", cnn, passes=["eliminate_nop_transpose"], fixed_point=True)
    assert not rec["changed"]
    assert rec["nodes_after"] == rec["nodes_before"]
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn, x))


def test_chosen_pass_only(cnn, run_pass):
    _, rec = run_pass("onnxoptimizer", cnn, passes=["eliminate_identity"])
    assert rec["changed"] and rec["nodes_after"] == 8


def test_unknown_optimizer_pass_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        validate_pass({"name": "onnxoptimizer", "params": {"passes": ["fuse_bn_into_conv", "fuse_everything"]}}, "b.passes[1]")
    text = str(err.value)
    assert "b.passes[1].params.passes" in text and "fuse_everything" in text
    assert "eliminate_identity" in text  # the valid choices are listed


def test_unknown_param_key():
    with pytest.raises(ConfigError, match="unknown key") as err:
        validate_pass({"name": "onnxoptimizer", "params": {"pases": []}}, "passes[0]")
    assert "fixed_point" in str(err.value) and "passes[0].params.pases" in str(err.value)
