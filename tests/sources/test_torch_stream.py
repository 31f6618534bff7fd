"""A tiny stateful torch module exported and verified as a stream (state fed back, a constant
scalar input): the reference is the module run step by step, known by hand."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from pipeline.schema import validate_model
from pipeline.sources import common, torch_source

LOG = logging.getLogger("test.torch_stream")


class Accumulate(nn.Module):
    """state_out = state + x; y = state_out * gain (gain a scalar input)."""

    def forward(self, x: torch.Tensor, state: torch.Tensor, gain: torch.Tensor):
        new = state + x
        return new * gain, new


def _spec():
    return validate_model(
        {
            "framework": "torch", "factory": {"_target_": "tests.sources.test_torch_stream.Accumulate"},
            "watch": "tests/sources/test_torch_stream.py", "task": "regression",
            "inputs": [
                {"name": "x", "shape": ["batch", 3]},
                {"name": "state", "shape": ["batch", 3], "value": [[1.0, 2.0, 3.0]]},
                {"name": "gain", "shape": [], "batch_axis": None, "value": 2.0},
            ],
            "outputs": ["y", "state_out"],
            "stream": {"steps": 2, "state": [{"output": "state_out", "input": "state"}]},
            "export": {"exporter": "torchscript", "opset": 17},
            "reference": {"num_samples": 32},
        },
        "models.m",
    )


def test_torch_stream_exports_and_verifies_as_a_stream(tmp_path):
    spec = _spec()
    torch_source.prepare(spec, tmp_path / "source", LOG)
    info = torch_source.export(spec, tmp_path / "source", tmp_path / "export", LOG)
    assert info["verification"]["max_abs_err"] < 1e-5
    inputs, outputs, _ = common.read_reference(tmp_path / "export")
    x = inputs["x"]
    assert list(inputs) == ["x"] and x.shape == (32, 2, 3) and outputs["y"].shape == (32, 2, 1, 3)
    h = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(outputs["y"][:, 0, 0], (h + x[:, 0]) * 2, rtol=1e-6)
    np.testing.assert_allclose(outputs["y"][:, 1, 0], (h + x[:, 0] + x[:, 1]) * 2, rtol=1e-6)
