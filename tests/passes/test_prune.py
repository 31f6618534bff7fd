import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pipeline.errors import ConfigError
from pipeline.passes.prune import prune_array
from pipeline.schema import validate_pass


def test_prunes_weights_to_the_target_sparsity(cnn, run_pass, x, ort_out):
    out, rec = run_pass("prune", cnn, sparsity=0.5)
    assert rec["changed"] and rec["changes"] == ["weights"]
    assert set(rec["info"]["sparsity"]) == {"w1", "w2", "fc_w"}  # biases and BN params untouched
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    for name, achieved in rec["info"]["sparsity"].items():
        assert achieved == pytest.approx(0.5, abs=1 / weights[name].size)
        assert np.mean(weights[name] == 0) == pytest.approx(achieved)
    assert np.count_nonzero(weights["b1"] == 0) == 0
    # the model still runs; outputs move but stay finite and correlated with the original's
    ref, got = ort_out(cnn, x), ort_out(out, x)
    assert np.isfinite(got).all() and not np.allclose(got, ref)


def test_only_chosen_op_types(cnn, run_pass):
    _, rec = run_pass("prune", cnn, sparsity=0.25, op_types=["Gemm"])
    assert set(rec["info"]["sparsity"]) == {"fc_w"}


def test_zero_sparsity_and_repruning_are_unchanged(cnn, run_pass, x, ort_out):
    out, rec = run_pass("prune", cnn, sparsity=0.0)
    assert not rec["changed"]
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn, x))
    pruned, _ = run_pass("prune", cnn, sparsity=0.5)
    _, again = run_pass("prune", pruned, sparsity=0.5)
    assert not again["changed"]


def test_prune_array_keeps_the_largest():
    w = np.array([[0.1, -3.0], [2.0, -0.05]], dtype=np.float32)
    np.testing.assert_array_equal(prune_array(w, 0.5), [[0, -3.0], [2.0, 0]])


@pytest.mark.parametrize("sparsity", [1.0, -0.1])
def test_sparsity_range(sparsity):
    with pytest.raises(ConfigError, match="sparsity"):
        validate_pass({"name": "prune", "params": {"sparsity": sparsity}}, "passes[0]")
