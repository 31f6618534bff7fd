"""The default model: a small CNN for sklearn's 8x8 digits.

``input`` [batch, 1, 8, 8] float32 in [0, 1] -> ``logits`` [batch, 10].

It is deliberately wide (64-128 channels) for its input size, so convolution compute rather than
per-operator overhead dominates latency at batch 1-32: that is what lets static int8 quantization
show a real speed-up over fp32 on a CPU, while training still takes seconds.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(1, w),  # 8x8
            _block(w, 2 * w),
            nn.MaxPool2d(2),  # 4x4
            _block(2 * w, 2 * w),
            _block(2 * w, 2 * w),
            nn.MaxPool2d(2),  # 2x2
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * w * 4, num_classes))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        return self.head(self.features(input))


def build(width: int = 64, num_classes: int = 10, dropout: float = 0.1) -> DigitsCNN:
    """Factory for recipes: ``_target_: pipeline.models.digits_cnn.build``."""
    return DigitsCNN(width=width, num_classes=num_classes, dropout=dropout)
