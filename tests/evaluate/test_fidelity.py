import numpy as np
import pytest
from onnx import TensorProto

from pipeline.errors import StageError
from pipeline.evaluate.fidelity import (
    accuracy,
    compare,
    per_sample_cosine,
    run_batched,
    top1_agreement,
)
from pipeline.targets.cpu import CpuParams, CpuTarget


def _session(path):
    return CpuTarget().session(path, CpuParams(threads=1))


def test_constant_offset_is_the_max_abs_err(kit, tmp_path):
    ref = kit.write_export(tmp_path / "export", n=40, labels=None)
    path = kit.linear_model(tmp_path / "build.onnx", offset=0.25)
    outputs = run_batched(_session(path), {"x": ref["input/x"]}, chunk=16)
    fid = compare(outputs, {"y": ref["output/y"]})
    assert fid["max_abs_err"] == pytest.approx(0.25, abs=1e-5)
    assert fid["mean_abs_err"] == pytest.approx(0.25, abs=1e-5)
    assert fid["samples"] == 40
    y = ref["output/y"].astype(np.float64)
    expected = ((y + 0.25) * y).sum(1) / (np.linalg.norm(y + 0.25, axis=1) * np.linalg.norm(y, axis=1))
    assert fid["cosine_min"] == pytest.approx(expected.min(), abs=1e-6)


def test_identical_model_is_exact(kit, tmp_path):
    ref = kit.write_export(tmp_path / "export", n=33, labels=None)
    outputs = run_batched(_session(tmp_path / "export" / "model.onnx"), {"x": ref["input/x"]}, chunk=8)
    fid = compare(outputs, {"y": ref["output/y"]})
    assert fid["max_abs_err"] == 0.0 and fid["cosine_min"] == pytest.approx(1.0)
    assert fid["nonfinite"] == 0


def test_fixed_batch_model_runs_in_padded_batches(kit, tmp_path):
    ref = kit.write_export(tmp_path / "export", n=35, labels=None)
    path = kit.linear_model(tmp_path / "fixed.onnx", batch=4)
    outputs = run_batched(_session(path), {"x": ref["input/x"]})
    assert outputs["y"].shape == (35, kit.N_CLASSES)
    np.testing.assert_allclose(outputs["y"], ref["output/y"], rtol=1e-6)


def test_float16_model_is_cast(kit, tmp_path):
    ref = kit.write_export(tmp_path / "export", n=32, labels=None)
    path = kit.linear_model(tmp_path / "fp16.onnx", dtype=TensorProto.FLOAT16)
    outputs = run_batched(_session(path), {"x": ref["input/x"]})  # float32 inputs cast to float16
    assert outputs["y"].dtype == np.float16
    fid = compare(outputs, {"y": ref["output/y"]})
    assert 0 < fid["max_abs_err"] < 0.05
    assert fid["cosine_min"] > 0.999


def test_multi_output_reports_totals_and_per_output(kit, tmp_path):
    ref = kit.write_export(tmp_path / "export", n=32, labels=None, second_output=True)
    path = kit.linear_model(tmp_path / "b.onnx", offset=0.1, second_output=True)
    outputs = run_batched(_session(path), {"x": ref["input/x"]})
    fid = compare(outputs, {"y": ref["output/y"], "z": ref["output/z"]})
    assert fid["per_output"]["y"]["max_abs_err"] == pytest.approx(0.1, abs=1e-5)
    assert fid["per_output"]["z"]["max_abs_err"] == pytest.approx(0.2, abs=1e-5)
    assert fid["max_abs_err"] == pytest.approx(0.2, abs=1e-5)
    assert fid["mean_abs_err"] == pytest.approx(0.15, abs=1e-5)  # equal element counts


def test_cosine_math():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(per_sample_cosine(a, b), [0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(per_sample_cosine(-a[:2], a[:2]), [-1.0, -1.0])


def test_nonfinite_outputs_are_counted():
    out = np.array([[1.0, np.nan], [1.0, 2.0]], dtype=np.float32)
    fid = compare({"y": out}, {"y": np.ones((2, 2), dtype=np.float32)})
    assert fid["nonfinite"] == 1
    assert np.isnan(fid["max_abs_err"])


def test_outputs_matched_by_position_when_renamed_and_shape_checked():
    ref = {"logits": np.ones((3, 2))}
    assert compare({"renamed": np.ones((3, 2))}, ref)["max_abs_err"] == 0.0
    with pytest.raises(StageError, match="shape"):
        compare({"y": np.ones((3, 5))}, ref)
    with pytest.raises(StageError, match="do not match"):
        compare({"a": np.ones((3, 2)), "b": np.ones((3, 2))}, ref)


def test_top1_agreement_and_accuracy_on_labelled_set():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    other = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    assert top1_agreement(other, scores) == 0.75
    assert accuracy(scores, labels) == 0.75
    assert accuracy(other, labels) == 0.5
    with pytest.raises(StageError, match="labels have shape"):
        accuracy(scores, np.array([0, 1]))
    with pytest.raises(StageError, match="class axis"):
        accuracy(np.array([0.1, 0.2]), np.array([0, 1]))


def test_missing_input_is_named(kit, tmp_path):
    path = kit.linear_model(tmp_path / "m.onnx")
    with pytest.raises(StageError, match="wants input 'x'"):
        run_batched(_session(path), {"pixels": np.ones((2, kit.N_IN), dtype=np.float32)})
