"""Keras/TensorFlow sources through tf2onnx: a factory, a .keras file and a SavedModel, checked
numerically against TensorFlow in ONNX Runtime; and the bad inputs (unconvertible op, mismatched
input spec, corrupt file)."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pipeline.errors import ConfigError, StageError
from pipeline.schema import validate_model
from pipeline.sources import keras_source
from pipeline.sources.common import read_reference

pytestmark = pytest.mark.tf

LOG = logging.getLogger("test.keras_source")
FACTORY = {"_target_": "pipeline.models.digits_keras.build", "width": 4}
DIGITS_INPUT = [{"name": "input", "shape": ["batch", 8, 8, 1]}]


def _spec(**fields):
    data = {"framework": "keras", "watch": "pipeline/models/digits_keras.py", "inputs": DIGITS_INPUT,
            "reference": {"num_samples": 32}, "export": {"opset": 17}}
    data.update(fields)
    return validate_model(data, "models.k")


def _ort(path, feed):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


@pytest.fixture(scope="module")
def tiny_keras():
    """A tiny digits CNN (random weights), shared by the tests that save it to a file."""
    from pipeline.models import digits_keras

    return digits_keras.build(width=4)


def test_factory_export_matches_tensorflow(tmp_path):
    spec = _spec(factory=FACTORY, outputs=["logits"])
    metrics = keras_source.prepare(spec, tmp_path / "source", LOG)
    assert metrics == {"trained": False}
    assert (tmp_path / "source" / "model.keras").is_file()
    info = keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["framework"] == "keras" and info["opset"] == 17
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 8, 8, 1]}]
    assert [o["name"] for o in info["outputs"]] == ["logits"]
    assert info["outputs"][0]["shape"] == ["batch", 10]

    # reference outputs are TensorFlow's: recompute them with the saved Keras model
    import keras

    model = keras.models.load_model(tmp_path / "source" / "model.keras", compile=False)
    inputs, outputs, _ = read_reference(tmp_path / "export")
    tf_out = np.asarray(model(inputs["input"], training=False))
    np.testing.assert_allclose(outputs["logits"], tf_out, rtol=1e-6, atol=1e-6)
    (got,) = _ort(tmp_path / "export" / "model.onnx", {"input": inputs["input"][:5]})
    np.testing.assert_allclose(got, tf_out[:5], rtol=1e-3, atol=1e-4)


def test_prepared_keras_file_is_byte_stable(tmp_path):
    """Same recipe, same bytes: Keras' save time, Python object ids and zip times are normalised."""
    import zipfile

    spec = _spec(factory=FACTORY)
    keras_source.prepare(spec, tmp_path / "a", LOG)
    keras_source.prepare(spec, tmp_path / "b", LOG)
    first = (tmp_path / "a" / "model.keras").read_bytes()
    assert first == (tmp_path / "b" / "model.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a" / "model.keras") as zf:
        assert "date_saved" not in zf.read("metadata.json").decode()
        assert zf.getinfo("config.json").date_time == (1980, 1, 1, 0, 0, 0)


def test_inputs_as_nchw(tmp_path):
    spec = _spec(factory=FACTORY, export={"opset": 17, "inputs_as_nchw": ["input"]})
    keras_source.prepare(spec, tmp_path / "source", LOG)
    info = keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert [o["name"] for o in info["outputs"]] == ["output_0"]
    inputs, outputs, _ = read_reference(tmp_path / "export")
    assert inputs["input"].shape == (32, 1, 8, 8)  # stored as the ONNX model takes it
    (got,) = _ort(tmp_path / "export" / "model.onnx", {"input": inputs["input"]})
    np.testing.assert_allclose(got, outputs["output_0"], rtol=1e-3, atol=1e-4)


def test_static_shapes_when_not_dynamic(tmp_path):
    spec = _spec(factory=FACTORY, export={"opset": 13, "dynamic": False, "dims": {"batch": 4}})
    keras_source.prepare(spec, tmp_path / "source", LOG)
    info = keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["inputs"][0]["shape"] == [4, 8, 8, 1] and info["opset"] == 13


def test_keras_file(tmp_path, tiny_keras):
    path = tmp_path / "given.keras"
    tiny_keras.save(path)
    spec = _spec(path=str(path), outputs=["logits"])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    assert (tmp_path / "source" / "model.keras").read_bytes() == path.read_bytes()
    keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    inputs, outputs, _ = read_reference(tmp_path / "export")
    np.testing.assert_allclose(outputs["logits"], np.asarray(tiny_keras(inputs["input"])), rtol=1e-6, atol=1e-6)


def test_saved_model(tmp_path, tiny_keras):
    folder = tmp_path / "saved"
    tiny_keras.export(str(folder), format="tf_saved_model", verbose=False)
    spec = _spec(path=str(folder), outputs=["logits"])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    assert (tmp_path / "source" / "saved_model" / "saved_model.pb").is_file()
    info = keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["source_kind"] == "saved_model"
    assert [o["name"] for o in info["outputs"]] == ["logits"]
    inputs, outputs, _ = read_reference(tmp_path / "export")
    np.testing.assert_allclose(outputs["logits"], np.asarray(tiny_keras(inputs["input"])), rtol=1e-5, atol=1e-6)
    (got,) = _ort(tmp_path / "export" / "model.onnx", {"input": inputs["input"]})
    np.testing.assert_allclose(got, outputs["logits"], rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_unconvertible_op_is_named(tmp_path):
    from pipeline.sources.tf_convert import import_tf

    tf = import_tf()

    class Gamma(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.lgamma(x) + 1.0}

    module = Gamma()
    folder = tmp_path / "gamma"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    spec = _spec(path=str(folder), inputs=[{"name": "x", "shape": ["batch", 4], "range": [0.5, 3.0]}])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(StageError, match=r"TensorFlow op Lgamma cannot be converted") as err:
        keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "export").exists()


def test_input_spec_that_does_not_match(tmp_path):
    spec = _spec(factory=FACTORY, inputs=[{"name": "input", "shape": ["batch", 28, 28, 1]}])
    with pytest.raises(ConfigError, match=r"input 'input' is declared with shape .* takes \(None, 8, 8, 1\)") as err:
        keras_source.prepare(spec, tmp_path / "source", LOG)
    assert err.value.key == "inputs[0].shape"


def test_saved_model_input_names_must_match(tmp_path, tiny_keras):
    folder = tmp_path / "saved"
    tiny_keras.export(str(folder), format="tf_saved_model", verbose=False)
    spec = _spec(path=str(folder), inputs=[{"name": "a", "shape": ["batch", 8, 8, 1]},
                                           {"name": "b", "shape": ["batch", 8, 8, 1]}])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(ConfigError, match="serving signature takes") as err:
        keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert err.value.key == "inputs"


def test_wrong_number_of_output_names(tmp_path):
    spec = _spec(factory=FACTORY, outputs=["a", "b"])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(ConfigError, match="2 output name") as err:
        keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert err.value.key == "outputs"


def test_corrupt_keras_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 this is not a keras archive")
    with pytest.raises(StageError, match="not a loadable Keras model") as err:
        keras_source.prepare(_spec(path=str(path)), tmp_path / "source", LOG)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [("missing.keras", "not found"), ("model.onnx", "neither a .keras"), ("folder", "without saved_model.pb")],
)
def test_bad_paths(tmp_path, path, message):
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=message) as err:
        keras_source.prepare(_spec(path=str(tmp_path / path)), tmp_path / "source", LOG)
    assert err.value.key == "path"


def test_nchw_needs_a_declared_rank4_input(tmp_path):
    spec = _spec(factory=FACTORY, export={"inputs_as_nchw": ["image"]})
    keras_source.prepare(spec, tmp_path / "source", LOG)
    with pytest.raises(ConfigError, match="'image' is not a declared input") as err:
        keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert err.value.key == "export.inputs_as_nchw"


def test_graph_names_are_the_recipe_names(tmp_path):
    spec = _spec(factory=FACTORY, outputs=["logits"])
    keras_source.prepare(spec, tmp_path / "source", LOG)
    keras_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    model = onnx.load(str(tmp_path / "export" / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
