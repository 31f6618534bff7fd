"""A small synthetic, learnable token-classification data set for transformer-style models.

Each sample is a pair of segments (``token_type_ids`` 0 then 1) of random tokens, right-padded
(``attention_mask`` 0, token id 0) to ``seq_len``. Tokens ``1 .. num_classes`` are "marker" tokens;
the label is the marker that occurs most often in the real (unpadded) tokens, ties broken by the
smallest id. Everything is drawn from ``numpy.random.default_rng`` seeded by ``seed`` and the split,
so the data are identical on every run and machine.

Inputs (all int64, ``[n, seq_len]``): ``input_ids``, ``attention_mask``, ``token_type_ids``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.data import Samples

SPLITS = {"train": 0, "val": 1, "calib": 2, "test": 3}
PAD = 0


def load(
    split: Literal["train", "val", "calib", "test"] = "train",
    num_samples: int | None = None,
    seq_len: int = 16,
    vocab_size: int = 32,
    num_classes: int = 4,
    seed: int = 0,
) -> Samples:
    """``num_samples`` (default: 1024 train, 256 otherwise) labelled token sequences for ``split``."""
    import numpy as np

    from pipeline.data import Samples

    if split not in SPLITS:
        raise ConfigError(f"unknown text split '{split}'", key="split", choices=SPLITS)
    if not 2 <= num_classes < vocab_size - 1:
        raise ConfigError(f"num_classes {num_classes} must be in 2..{vocab_size - 2}", key="num_classes")
    if seq_len < 4:
        raise ConfigError(f"seq_len {seq_len} must be at least 4", key="seq_len")
    n = num_samples if num_samples is not None else (1024 if split == "train" else 256)
    rng = np.random.default_rng([seed, SPLITS[split]])

    lengths = rng.integers(seq_len // 2, seq_len + 1, size=n)
    ids = rng.integers(num_classes + 1, vocab_size, size=(n, seq_len))  # filler tokens
    markers = rng.integers(1, num_classes + 1, size=(n, seq_len))
    is_marker = rng.random(size=(n, seq_len)) < 0.35
    ids = np.where(is_marker, markers, ids)
    positions = np.arange(seq_len)[None, :]
    mask = (positions < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, PAD).astype(np.int64)
    split_at = rng.integers(1, lengths)  # every sample has two non-empty segments
    token_type = ((positions >= split_at[:, None]) & (mask == 1)).astype(np.int64)

    counts = np.stack([((ids == c) & (mask == 1)).sum(axis=1) for c in range(1, num_classes + 1)], axis=1)
    labels = counts.argmax(axis=1).astype(np.int64)  # argmax picks the smallest id on ties
    return Samples({"input_ids": ids, "attention_mask": mask, "token_type_ids": token_type}, labels)
