import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.hardware import cpu_info
from pipeline.schema import validate_pass


def test_basic_fuses_and_is_not_target_specific(cnn, run_pass, x, ort_out):
    out, rec = run_pass("ort_optimize", cnn, level="basic")
    assert rec["changed"] and rec["nodes_after"] < rec["nodes_before"]
    assert rec["info"]["target_specific"] is False and "optimized_for" not in rec["info"]
    np.testing.assert_allclose(ort_out(out, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)
    _, again = run_pass("ort_optimize", out, level="basic")
    assert not again["changed"]


@pytest.mark.parametrize("level", ["extended", "all"])
def test_above_basic_is_marked_target_specific(cnn, run_pass, x, level, ort_out):
    out, rec = run_pass("ort_optimize", cnn, level=level)
    assert rec["info"]["target_specific"] is True
    assert rec["info"]["optimized_for"]["cpu"] == cpu_info()["model"]
    np.testing.assert_allclose(ort_out(out, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)


def test_external_data_survives(cnn_external, run_pass, x, ort_out):
    out, rec = run_pass("ort_optimize", cnn_external, level="basic")
    assert (out.parent / "model.onnx.data").exists()
    np.testing.assert_allclose(ort_out(out, x), ort_out(cnn_external, x), rtol=1e-4, atol=1e-5)


def test_unknown_level_lists_choices():
    with pytest.raises(ConfigError, match="level") as err:
        validate_pass({"name": "ort_optimize", "params": {"level": "max"}}, "passes[0]")
    assert "max" in str(err.value)
