"""Speech streams for the VAD: shapes, context windows, labels, determinism, splits."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import speech
from pipeline.errors import ConfigError


def test_stream_windows_carry_the_previous_chunks_context():
    s = speech.load("test", n=3, steps=6, chunk=512, context=64)
    x = s.inputs["input"]
    assert x.shape == (3, 6, 576) and x.dtype == np.float32
    assert np.all(x[:, 0, :64] == 0)  # nothing before the first chunk
    np.testing.assert_array_equal(x[:, 1:, :64], x[:, :-1, -64:])  # context = end of the previous chunk
    assert np.abs(x).max() <= 1.0
    assert s.labels.shape == (3, 6) and s.labels.dtype == np.int64
    assert np.all(s.labels[:, 0] == 0)  # every stream starts with at least 0.1 s of silence (> half a chunk)


def test_streams_hold_speech_louder_than_the_noise():
    s = speech.load("test", n=4, steps=40)
    x = s.inputs["input"][..., 64:]  # the chunks themselves
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=-1))
    for i in range(4):
        assert s.labels[i].any() and not s.labels[i].all()
        assert rms[i][s.labels[i] == 1].mean() > 2 * rms[i][s.labels[i] == 0].mean()


def test_deterministic_and_splits_differ():
    a, b = speech.load("test", n=2, steps=4), speech.load("test", n=2, steps=4)
    np.testing.assert_array_equal(a.inputs["input"], b.inputs["input"])
    c = speech.load("calib", n=2, steps=4)
    assert not np.array_equal(a.inputs["input"], c.inputs["input"])


def test_bad_split_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown split 'train'.*calib, test"):
        speech.load("train")
