import numpy as np
import pytest

from pipeline.data import Samples, concrete_shape, load_samples, sample_inputs
from pipeline.errors import ConfigError
from pipeline.schema import Factory, InputSpec


def test_sample_inputs_respects_dtype_shape_and_range():
    specs = [
        InputSpec(name="x", dtype="float32", shape=["batch", 3], range=(2.0, 3.0)),
        InputSpec(name="ids", dtype="int64", shape=["batch", "seq"], range=(0, 5)),
        InputSpec(name="mask", dtype="bool", shape=["batch", "seq"]),
    ]
    out = sample_inputs(specs, {"batch": 1, "seq": 7}, n=40, seed=1)
    assert out["x"].shape == (40, 3) and out["x"].dtype == np.float32
    assert out["x"].min() >= 2.0 and out["x"].max() < 3.0
    assert out["ids"].shape == (40, 7) and out["ids"].dtype == np.int64
    assert out["ids"].min() >= 0 and out["ids"].max() <= 4
    assert out["mask"].dtype == np.bool_
    again = sample_inputs(specs, {"batch": 1, "seq": 7}, n=40, seed=1)
    np.testing.assert_array_equal(out["x"], again["x"])


def test_concrete_shape():
    spec = InputSpec(name="x", shape="[batch, 3, 8, 8]")
    assert concrete_shape(spec, {"batch": 4}) == (4, 3, 8, 8)
    assert concrete_shape(spec, {"batch": 4}, batch=1) == (1, 3, 8, 8)


def test_samples_checks_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        Samples({"a": np.zeros(3), "b": np.zeros(4)})
    s = Samples({"a": np.arange(10)}, np.arange(10))
    assert len(s.take(4)) == 4 and len(s.take(4).labels) == 4


def test_load_samples_rejects_wrong_return_type():
    with pytest.raises(ConfigError, match="expected pipeline.data.Samples"):
        load_samples(Factory.model_validate({"_target_": "os.getcwd"}), key="models.m.calibration")


def test_load_samples_bad_attribute_names_key():
    with pytest.raises(ConfigError, match="models.m.calibration._target_"):
        load_samples(Factory.model_validate({"_target_": "os.no_such_fn"}), key="models.m.calibration")
