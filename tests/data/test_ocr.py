"""pipeline.data.ocr: detection pages and recognition crops preprocessed exactly as rapidocr does,
deterministic, with disjoint calib/test draws."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Samples, ocr
from pipeline.errors import ConfigError


def test_pages_shape_range_and_rapidocr_normalisation():
    s = ocr.pages("test", n=3)
    assert isinstance(s, Samples) and s.labels is None
    x = s.inputs["x"]
    assert x.shape == (3, 3, ocr.PAGE_SIZE, ocr.PAGE_SIZE) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    # (pixel / 255 - 0.5) / 0.5 of integer pixels: x * 127.5 + 127.5 is an integer
    pixels = x * 127.5 + 127.5
    assert np.allclose(pixels, np.rint(pixels), atol=1e-3)


def test_normalize_page_known_values_channels_first():
    img = np.zeros((32, 64, 3), dtype=np.uint8)
    img[..., 0] = 255  # channel 0 white, 1 black, 2 mid grey
    img[..., 2] = 51
    out = ocr.normalize_page(img)
    assert out.shape == (3, 32, 64) and out.dtype == np.float32
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], -1.0)
    assert np.allclose(out[2], (51 / 255 - 0.5) / 0.5)
    with pytest.raises(ValueError, match="multiple of 32"):
        ocr.normalize_page(np.zeros((30, 64, 3), dtype=np.uint8))


def test_pages_are_rendered_pages_in_bgr():
    """The detector gets BGR (rapidocr's LoadImage): page 0 is render_page's RGB reversed."""
    rng = np.random.default_rng([0, 0, ocr.SPLITS["test"]])
    rgb = ocr.render_page(rng, 96)
    page = ocr.pages("test", n=1, size=96).inputs["x"][0]
    assert np.array_equal(page, ocr.normalize_page(np.ascontiguousarray(rgb[:, :, ::-1])))


def test_pages_hold_text():
    x = ocr.pages("calib", n=2, size=160).inputs["x"]
    for page in x:  # ink contrasts with the background: a wide spread of values on every page
        assert float(page.max() - page.min()) > 0.8


def test_crops_shape_padding_and_rapidocr_resize():
    x = ocr.crops("test", n=4).inputs["x"]
    assert x.shape == (4, *ocr.REC_IMAGE_SHAPE) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    # a 20 x 10 crop: width ceil(48 * 10 / 20) = 24, zero padding on the right up to 320
    img = np.full((20, 10, 3), 255, dtype=np.uint8)
    out = ocr.resize_norm_rec(img)
    assert out.shape == (3, 48, 320)
    assert np.allclose(out[:, :, :24], 1.0) and np.all(out[:, :, 24:] == 0.0)
    # wider than 320 / 48: squeezed to the full width, no padding
    wide = ocr.resize_norm_rec(np.zeros((10, 100, 3), dtype=np.uint8))
    assert np.allclose(wide, -1.0)


def test_deterministic_and_splits_disjoint():
    a, b = ocr.crops("test", n=5).inputs["x"], ocr.crops("test", n=5).inputs["x"]
    assert np.array_equal(a, b)
    calib = ocr.crops("calib", n=5).inputs["x"]
    assert not any(np.array_equal(c, t) for c in calib for t in a)
    p1, p2 = ocr.pages("test", n=2, size=64).inputs["x"], ocr.pages("test", n=2, size=64).inputs["x"]
    assert np.array_equal(p1, p2)
    assert not np.array_equal(p1, ocr.pages("calib", n=2, size=64).inputs["x"])
    assert not np.array_equal(ocr.pages("test", n=1, size=64, seed=1).inputs["x"], p1[:1])


def test_bad_arguments_name_the_key():
    with pytest.raises(ConfigError, match="split"):
        ocr.pages("train", n=1)
    with pytest.raises(ConfigError, match="'n'"):
        ocr.crops("test", n=0)
    with pytest.raises(ConfigError, match="multiple of 32"):
        ocr.pages("test", n=1, size=100)
