"""pipeline.data.digits: a fixed, disjoint, stratified split of sklearn's digits."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import Samples, digits
from pipeline.errors import ConfigError


def _rows(samples: Samples) -> set[bytes]:
    return {row.tobytes() for row in samples.inputs["input"]}


def test_splits_shapes_dtypes_and_ranges() -> None:
    sizes = {}
    for split in digits.SPLITS:
        s = digits.load(split)
        x = s.inputs["input"]
        assert x.shape[1:] == (1, 8, 8) and x.dtype == np.float32
        assert s.labels.dtype == np.int64 and len(s.labels) == len(x)
        assert 0.0 <= x.min() and x.max() <= 1.0
        sizes[split] = len(s)
    assert sizes["train"] + sizes["val"] + sizes["test"] == 1797
    assert sizes["calib"] == digits.CALIB_SIZE
    assert abs(sizes["train"] / 1797 - 0.6) < 0.01


def test_split_is_fixed_disjoint_and_calib_is_from_train() -> None:
    train, val, test = (digits.load(s) for s in ("train", "val", "test"))
    # identical on a second call (and across processes: the split uses a fixed random_state)
    np.testing.assert_array_equal(digits.load("test").inputs["input"], test.inputs["input"])
    calib = digits.load("calib")
    np.testing.assert_array_equal(calib.inputs["input"], train.inputs["input"][: digits.CALIB_SIZE])
    # train / val / test partition the data set: together they cover every image, and their
    # sizes add up to the total, so no image is in two splits
    from sklearn.datasets import load_digits

    all_images = (load_digits().images / 16.0).astype(np.float32)[:, None]
    assert len(train) + len(val) + len(test) == len(all_images)
    assert _rows(train) | _rows(val) | _rows(test) == {row.tobytes() for row in all_images}
    # every class is present in every split (stratified)
    for s in (train, val, test):
        assert set(np.unique(s.labels)) == set(range(10))


def test_nhwc_layout_and_input_name() -> None:
    nchw = digits.load("val")
    nhwc = digits.load("val", layout="nhwc", input_name="image")
    assert list(nhwc.inputs) == ["image"]
    np.testing.assert_array_equal(nhwc.inputs["image"][:, :, :, 0], nchw.inputs["input"][:, 0])


def test_returned_arrays_are_copies() -> None:
    s = digits.load("test")
    s.inputs["input"][:] = 0
    assert digits.load("test").inputs["input"].max() == 1.0


@pytest.mark.parametrize(("kwargs", "key"), [({"split": "holdout"}, "split"), ({"layout": "chw"}, "layout")])
def test_bad_arguments_list_choices(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match="valid choices") as err:
        digits.load(**kwargs)
    assert err.value.key == key
