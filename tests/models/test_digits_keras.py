"""The default Keras digits CNN mirrors the PyTorch one and converts cleanly."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_importing_the_module_loads_no_framework():
    code = "import sys, pipeline.models.digits_keras; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.tf
def test_shapes_and_names():
    from pipeline.models import digits_keras

    model = digits_keras.build(width=8)
    assert [t.name for t in model.inputs] == ["input"]
    assert tuple(model.inputs[0].shape) == (None, 8, 8, 1)
    assert tuple(model.outputs[0].shape) == (None, 10)
    assert digits_keras.build(width=8, num_classes=3).outputs[0].shape[-1] == 3


@pytest.mark.tf
@pytest.mark.parametrize("width", [4, 64])
def test_same_parameter_count_as_the_torch_model(width):
    """Layer for layer the same network: trainable weights match DigitsCNN's parameters."""
    from pipeline.models import digits_keras

    torch_model = importlib.import_module("pipeline.models.digits_cnn").build(width=width)
    keras_model = digits_keras.build(width=width)
    torch_params = sum(p.numel() for p in torch_model.parameters())
    keras_params = sum(int(w.numpy().size) for w in keras_model.trainable_weights)
    assert keras_params == torch_params
