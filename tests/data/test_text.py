"""pipeline.data.text: deterministic synthetic token sequences whose label follows from the tokens."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import text
from pipeline.errors import ConfigError


def test_shapes_dtypes_and_padding() -> None:
    s = text.load("train", num_samples=200, seq_len=12)
    ids, mask, types = (s.inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids"))
    for arr in (ids, mask, types):
        assert arr.shape == (200, 12) and arr.dtype == np.int64
    assert set(np.unique(mask)) <= {0, 1} and set(np.unique(types)) <= {0, 1}
    assert np.all(ids[mask == 0] == text.PAD) and np.all(ids[mask == 1] != text.PAD)
    assert np.all(types[mask == 0] == 0)
    # masks are right-padded, and each sample has both segments
    assert np.all(np.diff(mask, axis=1) <= 0)
    assert np.all((types == 0).sum(axis=1) > 0) and np.all(types.sum(axis=1) > 0)


def test_label_is_most_frequent_marker() -> None:
    s = text.load("val", num_samples=50, num_classes=3)
    ids, mask = s.inputs["input_ids"], s.inputs["attention_mask"]
    for row, m, label in zip(ids, mask, s.labels):
        counts = [int(((row == c) & (m == 1)).sum()) for c in (1, 2, 3)]
        assert label == int(np.argmax(counts))


def test_deterministic_and_splits_differ() -> None:
    a, b = text.load("test", seed=5), text.load("test", seed=5)
    for k in a.inputs:
        np.testing.assert_array_equal(a.inputs[k], b.inputs[k])
    other = text.load("train", num_samples=256, seed=5)
    assert not np.array_equal(other.inputs["input_ids"], a.inputs["input_ids"])
    assert len(np.unique(a.labels)) > 1


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"split": "dev"}, "split"), ({"num_classes": 40}, "num_classes"), ({"seq_len": 2}, "seq_len")]
)
def test_bad_arguments(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        text.load(**kwargs)
    assert err.value.key == key
