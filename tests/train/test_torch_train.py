"""pipeline.train.torch_train: deterministic CPU training, metrics, fine-tuning, dataset errors."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.models.digits_cnn import build
from pipeline.schema import InputSpec, TrainSpec
from pipeline.sources.torch_source import state_bytes
from pipeline.train.torch_train import TRAIN_THREADS, deterministic, evaluate, train

LOG = logging.getLogger("test.train")
INPUTS = [InputSpec(name="input", shape=["batch", 1, 8, 8])]


def _spec(**kw) -> TrainSpec:
    base = {
        "dataset": {"_target_": "pipeline.data.digits.load", "split": "train"},
        "val_dataset": {"_target_": "pipeline.data.digits.load", "split": "val"},
        "epochs": 2,
        "batch_size": 32,
        "lr": 3e-3,
        "seed": 1,
    }
    return TrainSpec.model_validate({**base, **kw})


def _train(spec: TrainSpec, width: int = 8) -> tuple[torch.nn.Module, dict]:
    with deterministic(spec.seed):
        model = build(width=width)
        metrics = train(model, spec, INPUTS, LOG)
    return model, metrics


def test_same_recipe_gives_identical_checkpoint_bytes() -> None:
    a, _ = _train(_spec())
    b, _ = _train(_spec())
    assert state_bytes(a.state_dict()) == state_bytes(b.state_dict())
    c, _ = _train(_spec(seed=2))
    assert state_bytes(c.state_dict()) != state_bytes(a.state_dict())


def test_metrics_and_learning() -> None:
    model, metrics = _train(_spec(epochs=3))
    assert metrics["trained"] is True and metrics["epochs"] == 3
    assert set(metrics) >= {"train_loss", "train_top1", "val_loss", "val_top1", "seconds"}
    assert metrics["val_top1"] > 0.8  # ten classes: chance is 0.1
    assert not model.training
    from pipeline.data import digits

    recomputed = evaluate(model, digits.load("val"), ["input"], "cross_entropy")
    assert recomputed["top1"] == pytest.approx(metrics["val_top1"])


def test_sgd_and_mse_without_validation_set() -> None:
    _, metrics = _train(_spec(optimizer="sgd", loss="mse", val_dataset=None, lr=0.05, momentum=0.5, epochs=1))
    assert metrics["val_loss"] is None and metrics["val_top1"] is None
    assert np.isfinite(metrics["train_loss"]) and metrics["train_top1"] is not None


def test_fine_tuning_starts_from_given_weights() -> None:
    trained, before = _train(_spec(epochs=3))
    tuned = build(width=8)
    tuned.load_state_dict(trained.state_dict())
    with deterministic(0):
        after = train(tuned, _spec(epochs=1, lr=1e-4), INPUTS, LOG)
    fresh = _train(_spec(epochs=1, lr=1e-4))[1]
    # one gentle epoch from the trained weights keeps their accuracy; from scratch it does not reach it
    assert after["val_top1"] >= before["val_top1"] - 0.02
    assert fresh["val_top1"] < after["val_top1"]


def test_deterministic_restores_global_state() -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    random.seed(7)
    py_expected = random.random()
    random.seed(7)
    with deterministic(0, threads=1):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        torch.rand(10)
        random.random()
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    torch.testing.assert_close(torch.rand(1), expected)
    assert random.random() == py_expected
    with deterministic(0):  # the fixed training thread count, whatever the machine has
        assert torch.get_num_threads() == TRAIN_THREADS


def test_dataset_without_labels_or_inputs_is_a_config_error() -> None:
    spec = _spec(dataset={"_target_": "pipeline.data.digits.load", "input_name": "image"})
    with pytest.raises(ConfigError, match=r"needs \['input'\]") as err:
        _train(spec)
    assert err.value.key == "train.dataset"
    spec = _spec(dataset={"_target_": "pipeline.data.sample_inputs", "inputs": [], "dims": {}, "n": 3})
    with pytest.raises(ConfigError, match="expected pipeline.data.Samples"):
        _train(spec)
