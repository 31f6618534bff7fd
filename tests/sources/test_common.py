"""pipeline.sources.common: verification against ONNX Runtime, reference.npz, export.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.data import Samples
from pipeline.errors import ConfigError, StageError
from pipeline.schema import ModelSpec
from pipeline.sources import common


def _affine_model(batch: int | str = "batch") -> onnx.ModelProto:
    """y = 2 * x + 1 on [batch, 3] float32."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])]
    graph = helper.make_graph(nodes, "affine", [x], [y], initializer=[two, one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _spec(**export) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "framework": "onnx",
            "path": "m.onnx",
            "watch": "m.onnx",
            "inputs": [{"name": "x", "shape": "[batch, 3]", "range": [-1, 1]}],
            "export": export,
            "reference": {"num_samples": 40, "seed": 3},
        }
    )


def test_finish_export_writes_reference_and_info(tmp_path: Path) -> None:
    common.save_onnx(_affine_model(), tmp_path)
    spec = _spec()
    samples = common.reference_samples(spec)
    assert samples.inputs["x"].shape == (40, 3) and samples.inputs["x"].dtype == np.float32
    expected = [2 * samples.inputs["x"] + 1]  # by position: keyed as the ONNX output "y"
    info = common.finish_export(spec, tmp_path, samples, expected, framework="numpy", exporter="test")

    inputs, outputs, labels = common.read_reference(tmp_path)
    np.testing.assert_array_equal(inputs["x"], samples.inputs["x"])
    np.testing.assert_array_equal(outputs["y"], expected[0])
    assert labels is None
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 3]}]
    assert saved["dynamic_dims"] == ["batch"]
    assert saved["opset"] == 17
    assert saved["verification"]["samples"] == 40
    assert saved["verification"]["max_abs_err"] <= 1e-6


def test_mismatch_is_one_line_with_measured_error(tmp_path: Path) -> None:
    common.save_onnx(_affine_model(), tmp_path)
    spec = _spec(atol=1e-5, rtol=0.0)
    samples = common.reference_samples(spec)
    wrong = {"y": 2 * samples.inputs["x"] + 1.01}
    with pytest.raises(StageError) as err:
        common.finish_export(spec, tmp_path, samples, wrong, framework="numpy", exporter="test")
    text = str(err.value)
    assert "\n" not in text
    assert err.value.stage == "export" and err.value.step == "verify"
    assert "max abs err 0.01 > atol 1e-05" in text
    assert not (tmp_path / "reference.npz").exists()


def test_compare_outputs_reports_rel_error_and_shape_mismatch() -> None:
    ref = {"y": np.array([[1.0, 2.0], [4.0, 0.0]], dtype=np.float32)}
    got = {"y": np.array([[1.1, 2.0], [4.0, 0.0]], dtype=np.float32)}
    errs = common.compare_outputs(ref, got, atol=0.2, rtol=0.0, framework="x")
    assert errs["y"]["max_abs_err"] == pytest.approx(0.1, rel=1e-5)
    assert errs["y"]["max_rel_err"] == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(StageError, match=r"shape \[2\]"):
        common.compare_outputs(ref, {"y": np.zeros(2, np.float32)}, 1, 1, framework="x")
    with pytest.raises(StageError, match="NaN"):
        common.compare_outputs(ref, {"y": np.full((2, 2), np.nan, np.float32)}, 1, 1, framework="x")


def test_run_onnx_fixed_batch_pads_last_chunk(tmp_path: Path) -> None:
    common.save_onnx(_affine_model(batch=4), tmp_path)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = common.run_onnx(tmp_path / "model.onnx", {"x": x})
    np.testing.assert_allclose(out["y"], 2 * x + 1)


def test_reference_from_dataset_checks_input_names(tmp_path: Path) -> None:
    spec = _spec().model_copy(
        update={"reference": _spec().reference.model_copy(update={"dataset": _factory("small_dataset")})}
    )
    samples = common.reference_samples(spec)
    assert len(samples) == 40 and samples.labels is not None
    assert samples.inputs["x"].dtype == np.float32  # cast from float64

    bad = spec.model_copy(update={"inputs": [spec.inputs[0].model_copy(update={"name": "pixels"})]})
    with pytest.raises(ConfigError, match="needs \\['pixels'\\]") as err:
        common.reference_samples(bad)
    assert err.value.key == "reference.dataset"


def test_qualify_config_error() -> None:
    err = common.qualify_config_error(ConfigError("file not found", key="checkpoint"), "cnn", "params.yaml")
    assert str(err) == "params.yaml, key 'models.cnn.checkpoint': file not found"
    same = common.qualify_config_error(ConfigError("x", key="models.a.b"), "cnn")
    assert same.key == "models.a.b"


def test_output_names() -> None:
    spec = _spec()
    assert common.output_names(spec, 2) == ["output_0", "output_1"]
    named = spec.model_copy(update={"outputs": ["logits"]})
    assert common.output_names(named, 1) == ["logits"]
    with pytest.raises(ConfigError, match="2 output"):
        common.output_names(named, 2)


# A dataset factory for the test above (found through its dotted path).
def small_dataset(n: int = 50) -> Samples:
    rng = np.random.default_rng(0)
    return Samples({"x": rng.normal(size=(n, 3))}, rng.integers(0, 2, size=n))


def _factory(name: str):
    from pipeline.schema import Factory

    return Factory.model_validate({"_target_": f"{__name__}.{name}"})
