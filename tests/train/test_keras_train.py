"""Keras training stage: learns the digits, reports the metrics contract, and is deterministic."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.schema import validate_model
from pipeline.sources import keras_source

pytestmark = pytest.mark.tf

LOG = logging.getLogger("test.keras_train")


def _spec(epochs: int = 2, **train):
    digits = {"_target_": "pipeline.data.digits.load", "layout": "nhwc"}
    return validate_model(
        {
            "framework": "keras",
            "factory": {"_target_": "pipeline.models.digits_keras.build", "width": 4},
            "watch": "pipeline/models/digits_keras.py",
            "inputs": [{"name": "input", "shape": ["batch", 8, 8, 1]}],
            "train": {
                "dataset": {**digits, "split": "train"},
                "val_dataset": {**digits, "split": "val"},
                "epochs": epochs,
                "batch_size": 32,
                "lr": 0.01,
                **train,
            },
        },
        "models.k",
    )


def _weights(path):
    import keras

    return [np.asarray(w) for w in keras.models.load_model(path, compile=False).get_weights()]


def test_training_learns_and_is_deterministic(tmp_path):
    spec = _spec()
    first = keras_source.prepare(spec, tmp_path / "a", LOG)
    assert set(first) == {"train_loss", "train_top1", "val_loss", "val_top1", "epochs", "seconds", "trained"}
    assert first["trained"] is True and first["epochs"] == 2
    assert first["val_top1"] > 0.3  # 10 classes: chance is 0.1
    second = keras_source.prepare(spec, tmp_path / "b", LOG)
    for a, b in zip(_weights(tmp_path / "a" / "model.keras"), _weights(tmp_path / "b" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}


def test_different_seed_gives_different_weights(tmp_path):
    keras_source.prepare(_spec(epochs=1), tmp_path / "a", LOG)
    keras_source.prepare(_spec(epochs=1, seed=1), tmp_path / "b", LOG)
    a, b = _weights(tmp_path / "a" / "model.keras"), _weights(tmp_path / "b" / "model.keras")
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_sgd_and_mse_train(tmp_path):
    metrics = keras_source.prepare(_spec(epochs=1, optimizer="sgd", loss="mse"), tmp_path / "s", LOG)
    assert np.isfinite(metrics["train_loss"]) and metrics["val_top1"] is not None


def test_dataset_without_the_declared_input(tmp_path):
    spec = _spec(dataset={"_target_": "pipeline.data.digits.load", "layout": "nhwc", "input_name": "pixels"})
    with pytest.raises(ConfigError, match=r"provides inputs \['pixels'\]") as err:
        keras_source.prepare(spec, tmp_path / "x", LOG)
    assert err.value.key == "train.dataset"
    assert not (tmp_path / "x").exists()


def test_saved_model_cannot_be_trained(tmp_path):
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    data = _spec().model_dump(by_alias=True)
    data.update(factory=None, path=str(folder))
    with pytest.raises(ConfigError, match="SavedModel cannot be trained") as err:
        keras_source.prepare(validate_model(data, "models.k"), tmp_path / "x", LOG)
    assert err.value.key == "train"
