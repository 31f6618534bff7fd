from pathlib import Path

import numpy as np
import onnx
import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.onnx_utils import save_model
from pipeline.passes import PASSES, Pass, run_pass_list
from pipeline.passes.opset import Opset
from pipeline.schema import Strict, validate_pass


def _typed(name, **params):
    return name, validate_pass({"name": name, "params": params}, "passes[0]")[1]


def test_registry_names():
    assert list(PASSES) == [
        "shape_inference", "onnxoptimizer", "ort_optimize", "transformer_optimize", "fuse_hardswish", "fold_affine", "opset",
        "fp16",
        "prune",
    ]
    for name, cls in PASSES.items():
        assert cls.name == name and issubclass(cls.Params, Strict)


def test_unknown_pass_names_the_key_and_lists_passes():
    with pytest.raises(ConfigError) as err:
        validate_pass({"name": "constant_folding", "params": {}}, "builds.b.passes[2]")
    text = str(err.value)
    assert "builds.b.passes[2].name" in text and "constant_folding" in text
    assert "onnxoptimizer, opset, ort_optimize, prune, shape_inference" in text


def test_chain_records_each_pass_and_totals(cnn, tmp_path, ctx, x, ort_out):
    entries = [
        _typed("shape_inference"),
        _typed("onnxoptimizer", passes=["eliminate_identity"]),
        _typed("ort_optimize", level="basic"),
        _typed("opset", version=17),
    ]
    dst = tmp_path / "out" / "model.onnx"
    result = run_pass_list(cnn, dst, entries, ctx)
    recs = result["passes"]
    assert [r["name"] for r in recs] == ["shape_inference", "onnxoptimizer", "ort_optimize", "opset"]
    assert [r["changed"] for r in recs] == [True, True, True, False]
    for a, b in zip(recs, recs[1:]):
        assert a["nodes_after"] == b["nodes_before"]
    assert recs[1]["params"] == {"passes": ["eliminate_identity"], "fixed_point": False}
    totals = result["totals"]
    assert totals["num_changed"] == 3 and totals["nodes_before"] == 9
    assert totals["nodes_after"] == recs[-1]["nodes_after"] < 9
    np.testing.assert_allclose(ort_out(dst, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)


def test_empty_list_copies_the_model(cnn, tmp_path, ctx):
    dst = tmp_path / "out" / "model.onnx"
    result = run_pass_list(cnn, dst, [], ctx)
    assert result["passes"] == [] and dst.read_bytes() == cnn.read_bytes()


def test_external_data_survives_the_whole_chain(cnn_external, tmp_path, ctx, x, ort_out):
    entries = [
        _typed("shape_inference"),
        _typed("onnxoptimizer"),
        _typed("ort_optimize", level="extended"),
        _typed("prune", sparsity=0.0),
        _typed("opset", version=18),
    ]
    dst = tmp_path / "out" / "model.onnx"
    run_pass_list(cnn_external, dst, entries, ctx)
    assert (dst.parent / "model.onnx.data").exists()
    onnx.checker.check_model(str(dst))
    np.testing.assert_allclose(ort_out(dst, x), ort_out(cnn_external, x), rtol=1e-4, atol=1e-5)


def test_failing_pass_names_itself_and_the_passes_that_ran(cnn, tmp_path, ctx):
    entries = [_typed("shape_inference"), _typed("prune", sparsity=0.1), ("opset", Opset.Params.model_construct(version=2))]
    dst = tmp_path / "out" / "model.onnx"
    with pytest.raises(StageError) as err:
        run_pass_list(cnn, dst, entries, ctx)
    text = str(err.value)
    assert text.startswith("passes stage, opset (pass 3 of 3) failed:")
    assert "passes already run: shape_inference, prune" in text
    assert "\n" not in text and not dst.exists()


class _Breaks(Pass):
    """Writes a model that onnx.checker rejects (a node reads a tensor nobody produces)."""

    name = "breaks"

    class Params(Strict):
        pass

    def run(self, src: Path, dst: Path, params, ctx):
        model = onnx.load(str(src))
        model.graph.node[0].input[0] = "nowhere"
        save_model(model, dst)
        return {}


def test_invalid_result_is_caught_by_the_checker(cnn, tmp_path, ctx):
    registry = {**PASSES, "breaks": _Breaks}
    with pytest.raises(StageError, match=r"breaks \(pass 1 of 1\) failed: ValidationError.*passes already run: none"):
        run_pass_list(cnn, tmp_path / "out" / "model.onnx", [("breaks", _Breaks.Params())], ctx, registry=registry)
