"""scikit-learn's handwritten digits (1797 8x8 images, shipped with sklearn: no download), with a
fixed split shared by every framework and recipe.

Split (stratified by label, ``random_state=0``, fixed forever so results stay comparable):

- ``train``: 60 % (1078 images)
- ``val``:   20 % (359 images)  - for training-time validation
- ``test``:  20 % (360 images)  - held out: the reference / accuracy set
- ``calib``: the first 256 images of ``train`` - calibration data for static quantization
  (a subset of the training distribution, never the test set)

Pixels are scaled from 0..16 to [0, 1] float32; labels are int64.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples

SPLITS = ("train", "val", "calib", "test")
LAYOUTS = ("nchw", "nhwc")
CALIB_SIZE = 256
SEED = 0


@functools.lru_cache(maxsize=1)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)  # [n, 8, 8] in [0, 1]
    labels = data.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, rest_idx = train_test_split(idx, test_size=0.4, random_state=SEED, stratify=labels)
    val_idx, test_idx = train_test_split(rest_idx, test_size=0.5, random_state=SEED, stratify=labels[rest_idx])
    parts = {"train": train_idx, "val": val_idx, "test": test_idx, "calib": train_idx[:CALIB_SIZE]}
    out = {}
    for name, ix in parts.items():
        x, y = images[ix], labels[ix]
        x.setflags(write=False)
        y.setflags(write=False)
        out[name] = (x, y)
    return out


def load(
    split: Literal["train", "val", "calib", "test"] = "train",
    layout: Literal["nchw", "nhwc"] = "nchw",
    input_name: str = "input",
) -> Samples:
    """One split of the digits as :class:`pipeline.data.Samples`: ``{input_name: [n,1,8,8]}`` (nchw)
    or ``[n,8,8,1]`` (nhwc) float32 in [0, 1], labels int64 0..9."""
    from pipeline.data import Samples

    if split not in SPLITS:
        raise ConfigError(f"unknown digits split '{split}'", key="split", choices=SPLITS)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'", key="layout", choices=LAYOUTS)
    images, labels = _split()[split]
    x = images[:, None, :, :] if layout == "nchw" else images[:, :, :, None]
    return Samples({input_name: x.copy()}, labels.copy())
