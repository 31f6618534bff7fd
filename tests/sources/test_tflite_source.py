"""TFLite source: a .tflite built from a Keras model in the test, converted with tf2onnx's TFLite path
and checked against the TFLite interpreter; and its bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.schema import validate_model
from pipeline.sources import tflite_source
from pipeline.sources.common import read_reference

pytestmark = pytest.mark.tf

LOG = logging.getLogger("test.tflite_source")


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    """A TFLite flatbuffer of the tiny digits CNN, plus the Keras model it came from."""
    from pipeline.models import digits_keras
    from pipeline.sources.tf_convert import import_tf

    tf = import_tf()
    model = digits_keras.build(width=4)
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = tmp_path_factory.mktemp("tflite") / "digits.tflite"
    path.write_bytes(data)
    return path, model


def _spec(path, **fields):
    data = {"framework": "tflite", "path": str(path), "watch": str(path),
            "inputs": [{"name": "input", "shape": ["batch", 8, 8, 1]}], "outputs": ["logits"],
            "reference": {"num_samples": 40}, "export": {"opset": 17}}
    data.update(fields)
    return validate_model(data, "models.t")


def _ort(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


def test_tflite_export_matches_interpreter(tmp_path, tflite_file):
    path, keras_model = tflite_file
    spec = _spec(path)
    assert tflite_source.prepare(spec, tmp_path / "source", LOG) == {"trained": False}
    info = tflite_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["framework"] == "tflite" and info["opset"] == 17
    model = onnx.load(str(tmp_path / "export" / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input"]  # not serving_default_input:0
    assert [o.name for o in model.graph.output] == ["logits"]
    assert info["inputs"][0]["shape"] == ["batch", 8, 8, 1]

    inputs, outputs, _ = read_reference(tmp_path / "export")
    assert outputs["logits"].shape == (40, 10)  # 40 = one chunk of 64 cut short: all rows kept
    # the reference is the interpreter's: close to (not bit-equal with) Keras itself
    np.testing.assert_allclose(outputs["logits"], np.asarray(keras_model(inputs["input"])), rtol=1e-3, atol=1e-4)
    (got,) = _ort(tmp_path / "export" / "model.onnx", {"input": inputs["input"]})
    np.testing.assert_allclose(got, outputs["logits"], rtol=1e-3, atol=1e-4)


def test_tflite_inputs_as_nchw(tmp_path, tflite_file):
    spec = _spec(tflite_file[0], export={"opset": 17, "inputs_as_nchw": ["input"]})
    tflite_source.prepare(spec, tmp_path / "source", LOG)
    info = tflite_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    inputs, outputs, _ = read_reference(tmp_path / "export")
    (got,) = _ort(tmp_path / "export" / "model.onnx", {"input": inputs["input"]})
    np.testing.assert_allclose(got, outputs["logits"], rtol=1e-3, atol=1e-4)


def test_corrupt_tflite(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(StageError, match="not a TFLite model"):
        tflite_source.prepare(_spec(bad), tmp_path / "source", LOG)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.99])
def test_truncated_tflite_is_refused_before_the_interpreter(tmp_path, tflite_file, fraction):
    """The TFLite interpreter does not verify its input: a truncated file would crash the process."""
    data = tflite_file[0].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(StageError, match="corrupt or truncated TFLite file") as err:
        tflite_source.prepare(_spec(cut), tmp_path / "source", LOG)
    assert "\n" not in str(err.value)


def test_missing_tflite(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        tflite_source.prepare(_spec(tmp_path / "nope.tflite"), tmp_path / "source", LOG)
    assert err.value.key == "path"


@pytest.mark.parametrize(
    ("inputs", "key", "message"),
    [
        ([{"name": "input", "shape": ["batch", 8, 8, 3]}], "inputs[0].shape", r"takes \[\?, 8, 8, 1\]"),
        ([{"name": "input", "dtype": "int32", "shape": ["batch", 8, 8, 1]}], "inputs[0].dtype", "takes float32"),
        ([{"name": "a", "shape": ["batch", 8, 8, 1]}, {"name": "b", "shape": ["batch", 8, 8, 1]}], "inputs",
         "takes 1 input"),
    ],
)
def test_input_spec_must_match(tmp_path, tflite_file, inputs, key, message):
    with pytest.raises(ConfigError, match=message) as err:
        tflite_source.prepare(_spec(tflite_file[0], inputs=inputs), tmp_path / "source", LOG)
    assert err.value.key == key
