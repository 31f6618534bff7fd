import numpy as np


def test_copies_unchanged(cnn, quantize, x, ort_out):
    out, info = quantize(cnn, {"name": "none"})
    assert out.read_bytes() == cnn.read_bytes() and info["calibration_samples"] == 0
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn, x))


def test_external_data_is_copied(cnn_external, quantize, x, ort_out):
    out, _ = quantize(cnn_external, {"name": "none"})
    assert (out.parent / "model.onnx.data").exists()
    np.testing.assert_array_equal(ort_out(out, x), ort_out(cnn_external, x))
