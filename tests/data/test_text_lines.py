"""pipeline.data.text_lines: deterministic, balanced synthetic text lines, preprocessed exactly as
PaddleOCR's direction classifier (rapidocr-onnxruntime's TextClassifier.resize_norm_img) does."""

from __future__ import annotations

import types

import numpy as np
import pytest

from pipeline.data import Samples, text_lines
from pipeline.errors import ConfigError


def _paddle_resize_norm_img(img: np.ndarray) -> np.ndarray:
    """The installed PaddleOCR preprocessing itself (rapidocr_onnxruntime ships it; needs cv2)."""
    from rapidocr_onnxruntime.ch_ppocr_cls.text_cls import TextClassifier

    owner = types.SimpleNamespace(cls_image_shape=[3, 48, 192])  # PaddleOCR's cls_image_shape
    return TextClassifier.resize_norm_img(owner, img)


def test_shapes_dtypes_range_and_default_sizes() -> None:
    s = text_lines.load("calib")
    assert isinstance(s, Samples) and list(s.inputs) == ["x"]
    x = s.inputs["x"]
    assert x.shape == (text_lines.DEFAULT_SIZES["calib"], 3, 48, 192) and x.dtype == np.float32
    assert s.labels.dtype == np.int64 and set(np.unique(s.labels)) == {0, 1}
    assert x.min() >= -1.0 and x.max() <= 1.0
    # light backgrounds and dark ink both occur in every image (normalized: near +1 and below 0)
    assert (x.reshape(len(x), -1).max(axis=1) > 0.4).all()
    assert (x.reshape(len(x), -1).min(axis=1) < -0.3).all()


def test_deterministic_and_balanced() -> None:
    a, b = text_lines.load("test", n=20), text_lines.load("test", n=20)
    np.testing.assert_array_equal(a.inputs["x"], b.inputs["x"])
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels.sum() == 10
    odd = text_lines.load("val", n=7)
    assert odd.labels.sum() == 3 and len(odd) == 7
    # labels are shuffled, not one class then the other
    assert not (np.array_equal(a.labels, np.sort(a.labels)) or np.array_equal(a.labels, np.sort(a.labels)[::-1]))


def test_splits_and_seeds_differ() -> None:
    calib = text_lines.load("calib", n=64).inputs["x"]
    test = text_lines.load("test", n=64).inputs["x"]
    other_seed = text_lines.load("test", n=64, seed=1).inputs["x"]
    rows = {r.tobytes() for r in calib}
    assert not rows & {r.tobytes() for r in test}
    assert not {r.tobytes() for r in test} & {r.tobytes() for r in other_seed}


def test_input_name() -> None:
    s = text_lines.load("test", n=2, input_name="image")
    assert list(s.inputs) == ["image"]


@pytest.mark.parametrize("hw", [(30, 400), (40, 90), (20, 23), (60, 300)])
def test_resize_norm_img_matches_paddleocr(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(hw)
    img = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    ours = text_lines.resize_norm_img(img)
    np.testing.assert_array_equal(ours, _paddle_resize_norm_img(img))
    h, w = hw
    width = min(192, int(np.ceil(48 * w / h)))
    assert ours.shape == (3, 48, 192) and ours.dtype == np.float32
    assert (ours[:, :, width:] == 0).all()  # padded on the right with zeros (after normalization)
    assert ours[:, :, :width].min() >= -1.0 and ours[:, :, :width].max() <= 1.0


def test_samples_are_rendered_lines_preprocessed_and_turned_by_label() -> None:
    """Replaying the generator's random stream reproduces every sample through PaddleOCR's own
    preprocessing: upright crops for label 0, the same crops turned by 180 degrees for label 1."""
    n = 8
    s = text_lines.load("calib", n=n, seed=3)
    rng = np.random.default_rng([3, text_lines.SPLITS["calib"]])
    labels = rng.permutation(np.array([1] * (n // 2) + [0] * (n - n // 2), dtype=np.int64))
    np.testing.assert_array_equal(labels, s.labels)
    for i in range(n):
        crop = text_lines.render_line(rng)
        assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[2] == 3
        assert crop.shape[1] > crop.shape[0]  # a line: wider than tall
        if labels[i]:
            crop = crop[::-1, ::-1]
        np.testing.assert_array_equal(s.inputs["x"][i], _paddle_resize_norm_img(np.ascontiguousarray(crop)))


def test_rendered_text_is_dark_on_light() -> None:
    crop = text_lines.render_line(np.random.default_rng(0)).astype(np.float32).mean(axis=2)
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    assert border.mean() > 170  # background
    assert crop.min() < 100  # ink


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"split": "holdout"}, "split"), ({"n": 0}, "n"), ({"n": -3}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n")],
)
def test_bad_arguments(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        text_lines.load(**kwargs)
    assert err.value.key == key
