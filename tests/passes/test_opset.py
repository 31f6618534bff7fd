import numpy as np
import onnx
import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.onnx_utils import save_model
from pipeline.passes import run_pass_list
from pipeline.passes.opset import Opset
from pipeline.schema import validate_pass


def _opset(path):
    return {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""]


def test_upgrade_old_model(tmp_path, run_pass, x, ort_out, make_cnn):
    old = save_model(make_cnn(opset=11), tmp_path / "old" / "model.onnx")
    out, rec = run_pass("opset", old, version=13)
    assert rec["changed"] and "opsets" in rec["changes"]
    assert _opset(out) == 13 and rec["info"] == {"from": 11, "to": 13}
    np.testing.assert_allclose(ort_out(out, x), ort_out(old, x), rtol=1e-5, atol=1e-6)


def test_same_opset_is_unchanged(cnn, run_pass):
    out, rec = run_pass("opset", cnn, version=17)
    assert not rec["changed"] and _opset(out) == 17


def test_impossible_conversion_is_a_stage_error(tmp_path, ctx, make_cnn):
    # a com.microsoft-free model using an op the converter has no adapter for when going below opset 7
    model = make_cnn(opset=17)
    src = save_model(model, tmp_path / "m" / "model.onnx")
    params = Opset.Params.model_construct(version=3)  # bypass validation: the converter itself must fail
    with pytest.raises(StageError, match=r"opset \(pass 1 of 1\).*opset 17 -> 3"):
        run_pass_list(src, tmp_path / "out" / "model.onnx", [("opset", params)], ctx)


def test_version_range_is_checked_at_compose_time():
    with pytest.raises(ConfigError, match=r"passes\[0\]\.params\.version"):
        validate_pass({"name": "opset", "params": {"version": 99}}, "passes[0]")
    with pytest.raises(ConfigError, match="version"):
        validate_pass({"name": "opset", "params": {}}, "passes[0]")
