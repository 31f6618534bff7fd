import logging

import numpy as np
import onnx

from pipeline.quantization.preprocess import preprocess, upgrade_opset

LOG = logging.getLogger("test")


def test_preprocess_adds_metadata_and_keeps_outputs(cnn, tmp_path, x, ort_out):
    dst = tmp_path / "pre" / "model.onnx"
    dst.parent.mkdir()
    info = preprocess(cnn, dst, LOG)
    assert info == {"symbolic_shape_inference": True}
    assert any(p.key == "onnx.quant.pre_process" for p in onnx.load(str(dst)).metadata_props)
    np.testing.assert_allclose(ort_out(dst, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)


def test_incomplete_symbolic_shape_inference_is_retried(cnn, tmp_path, monkeypatch, x, ort_out):
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    def fail(*args, **kwargs):
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(SymbolicShapeInference, "infer_shapes", staticmethod(fail))
    dst = tmp_path / "pre" / "model.onnx"
    dst.parent.mkdir()
    info = preprocess(cnn, dst, LOG)
    assert info == {"symbolic_shape_inference": False, "retried_because": "Incomplete symbolic shape inference"}
    np.testing.assert_allclose(ort_out(dst, x), ort_out(cnn, x), rtol=1e-4, atol=1e-5)


def test_retry_through_the_quantizer(cnn, quantize, monkeypatch):
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    def fail(*args, **kwargs):
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(SymbolicShapeInference, "infer_shapes", staticmethod(fail))
    _, info = quantize(cnn, {"name": "static_int8", "calibration": {"num_samples": 8}})
    assert info["preprocess"]["symbolic_shape_inference"] is False


def test_external_data_preprocess(cnn_external, tmp_path, x, ort_out):
    dst = tmp_path / "pre" / "model.onnx"
    dst.parent.mkdir()
    preprocess(cnn_external, dst, LOG)
    onnx.checker.check_model(str(dst))
    np.testing.assert_allclose(ort_out(dst, x), ort_out(cnn_external, x), rtol=1e-4, atol=1e-5)


def test_upgrade_only_when_older(old_cnn, cnn, tmp_path, x, ort_out):
    dst = tmp_path / "up" / "model.onnx"
    assert upgrade_opset(old_cnn, dst, 13, LOG) == {"from": 11, "to": 13}
    np.testing.assert_allclose(ort_out(dst, x), ort_out(old_cnn, x), rtol=1e-5, atol=1e-6)
    assert upgrade_opset(cnn, tmp_path / "none" / "model.onnx", 13, LOG) is None
    assert not (tmp_path / "none").exists()
