import logging

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.quantization import QuantContext
from pipeline.quantization.calibration import batches, calibration_samples, data_reader
from pipeline.schema import Factory, validate_model

FACTORY_MODULE = '''
import numpy as np
from pipeline.data import Samples

def load(n=20, value=0.5, name="input"):
    return Samples({name: np.full((n, 1, 16, 16), value, dtype=np.float64)})

def not_samples():
    return [1, 2, 3]
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "calib_data_b.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "calib_data_b"


def _ctx(tmp_path, spec):
    return QuantContext(spec, logging.getLogger("test"), tmp_path, key="builds.b.quantization", model_key="models.m")


def _spec(calibration=None):
    data = {"framework": "onnx", "path": "m.onnx", "watch": "m.onnx",
            "inputs": [{"name": "input", "shape": ["batch", 1, 16, 16], "range": [3.0, 4.0]}]}
    if calibration:
        data["calibration"] = calibration
    return validate_model(data, "models.m")


def test_random_samples_from_input_ranges(cnn, tmp_path):
    arrays, origin = calibration_samples(cnn, None, 12, 0, _ctx(tmp_path, _spec()))
    assert origin.startswith("random") and arrays["input"].shape == (12, 1, 16, 16)
    assert arrays["input"].dtype == np.float32 and 3.0 <= arrays["input"].min() and arrays["input"].max() < 4.0


def test_model_factory_then_quantizer_dataset(cnn, tmp_path, factories):
    spec = _spec({"_target_": f"{factories}.load", "value": 0.25})
    arrays, origin = calibration_samples(cnn, None, 8, 0, _ctx(tmp_path, spec))
    assert origin == f"model calibration {factories}.load"
    assert arrays["input"].shape[0] == 8 and arrays["input"].dtype == np.float32 and (arrays["input"] == 0.25).all()
    ds = Factory.model_validate({"_target_": f"{factories}.load", "n": 5, "value": 0.75})
    arrays, origin = calibration_samples(cnn, ds, 8, 0, _ctx(tmp_path, spec))
    assert origin == f"dataset {factories}.load" and arrays["input"].shape[0] == 5 and (arrays["input"] == 0.75).all()


def test_dataset_without_the_model_input_names_it(cnn, tmp_path, factories):
    ds = Factory.model_validate({"_target_": f"{factories}.load", "name": "pixels"})
    with pytest.raises(ConfigError, match=r"builds.b.quantization.calibration.dataset.*\['input'\].*pixels"):
        calibration_samples(cnn, ds, 8, 0, _ctx(tmp_path, _spec()))


def test_factory_returning_the_wrong_type(cnn, tmp_path, factories):
    ds = Factory.model_validate({"_target_": f"{factories}.not_samples"})
    with pytest.raises(ConfigError, match="expected pipeline.data.Samples"):
        calibration_samples(cnn, ds, 8, 0, _ctx(tmp_path, _spec()))


def test_onnx_source_without_input_specs(cnn, tmp_path):
    spec = validate_model({"framework": "onnx", "path": "m.onnx", "watch": "m.onnx"}, "models.m")
    arrays, _ = calibration_samples(cnn, None, 4, 0, _ctx(tmp_path, spec))
    assert arrays["input"].shape == (4, 1, 16, 16)


def test_fixed_batch_is_fed_one_by_one(old_cnn, cnn, tmp_path):
    import onnx

    from pipeline.onnx_utils import save_model

    model = onnx.load(str(old_cnn))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = save_model(model, tmp_path / "fixed" / "model.onnx")
    arrays = {"input": np.zeros((5, 1, 16, 16), np.float32)}
    assert [f["input"].shape[0] for f in batches(fixed, arrays)] == [1] * 5
    assert [f["input"].shape[0] for f in batches(cnn, {"input": np.zeros((40, 1, 16, 16))})] == [16, 16, 8]
    reader = data_reader(batches(fixed, arrays))
    assert len(reader) == 5 and sum(1 for _ in iter(reader.get_next, None)) == 5
    reader.rewind()
    assert reader.get_next() is not None


def test_calibration_on_a_dataset_end_to_end(cnn, quantize, factories, x, ort_out):
    spec = _spec({"_target_": f"{factories}.load", "value": 0.5})
    _, info = quantize(cnn, {"name": "static_int8", "calibration": {"num_samples": 10}}, model_spec=spec)
    assert info["calibration_samples"] == 10 and info["calibration_source"].startswith("model calibration")
