"""Synthetic text-line crops for a text-direction classifier (PaddleOCR's ``cls`` model).

Each sample is a line of random latin words and digits, rendered with Pillow's built-in scalable
font (``ImageFont.load_default(size=...)``, Pillow >= 10.1 with FreeType) in a dark colour on a light
background, tightly cropped like a detected text box, with mild Gaussian noise. Exactly half of the
samples (at random positions) are turned by 180 degrees: label 0 is upright (PaddleOCR's ``'0'``),
label 1 is upside down (``'180'``).

Every crop is preprocessed exactly as PaddleOCR's ``TextClassifier.resize_norm_img`` does (the copy
in ``rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py``): resize to height 48 keeping the aspect ratio
(width ``ceil(48 * w / h)``, at most 192) with OpenCV's bilinear ``cv2.resize``, scale to [0, 1],
then ``(x - 0.5) / 0.5``, zero-pad on the right to width 192, channels first. Inputs are float32
``[n, 3, 48, 192]`` in [-1, 1] (0 in the padding); labels int64.

Splits draw from ``numpy.random.default_rng([seed, split id])``, so they are identical on every run
and different splits never share a random stream (calibration and test images differ). Rendering
uses the installed Pillow/FreeType: pixels are stable for a pinned environment.
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples

SPLITS = {"train": 0, "val": 1, "calib": 2, "test": 3}
DEFAULT_SIZES = {"train": 1024, "val": 256, "calib": 256, "test": 512}
LABELS = ("0", "180")  # PaddleOCR's label_list: index 1 means the line is upside down
IMAGE_SHAPE = (3, 48, 192)  # PaddleOCR's cls_image_shape
FONT_SIZES = (20, 40)  # points, inclusive range
WORDS_PER_LINE = (2, 5)
NOISE_SIGMA = (1.0, 6.0)

_LOWER = string.ascii_lowercase
_UPPER = string.ascii_uppercase
_DIGITS = string.digits


def load(
    split: Literal["train", "val", "calib", "test"] = "test",
    n: int | None = None,
    seed: int = 0,
    input_name: str = "x",
) -> Samples:
    """``n`` labelled text lines of ``split`` (default sizes: :data:`DEFAULT_SIZES`), preprocessed
    for PaddleOCR's direction classifier: ``{input_name: float32 [n, 3, 48, 192]}``, labels int64
    (0 upright, 1 rotated by 180 degrees, balanced)."""
    import numpy as np

    from pipeline.data import Samples

    if split not in SPLITS:
        raise ConfigError(f"unknown text_lines split '{split}'", key="split", choices=SPLITS)
    count = DEFAULT_SIZES[split] if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}", key="n")
    rng = np.random.default_rng([seed, SPLITS[split]])
    labels = np.zeros(count, dtype=np.int64)
    labels[: count // 2] = 1
    labels = rng.permutation(labels)
    batch = np.empty((count, *IMAGE_SHAPE), dtype=np.float32)
    for i in range(count):
        crop = render_line(rng)
        if labels[i] == 1:
            crop = np.ascontiguousarray(crop[::-1, ::-1])
        batch[i] = resize_norm_img(crop)
    return Samples({input_name: batch}, labels)


def render_line(rng: np.random.Generator, words: tuple[int, int] = WORDS_PER_LINE) -> np.ndarray:
    """One upright text-line crop of ``words`` (inclusive range) random words: uint8 ``[h, w, 3]``,
    dark text on a light background, noisy."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1))
    font = ImageFont.load_default(size=size)
    text = random_text(rng, words)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    # margins around the ink, as a text detector's box leaves them
    pad_x = [int(rng.integers(1, max(2, size // 2))) for _ in range(2)]
    pad_y = [int(rng.integers(1, max(2, size // 4))) for _ in range(2)]
    width = right - left + pad_x[0] + pad_x[1]
    height = bottom - top + pad_y[0] + pad_y[1]
    background = tuple(int(v) for v in rng.integers(190, 256, size=3))
    ink = tuple(int(v) for v in rng.integers(0, 80, size=3))
    image = Image.new("RGB", (width, height), background)
    ImageDraw.Draw(image).text((pad_x[0] - left, pad_y[0] - top), text, font=font, fill=ink)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def resize_norm_img(img: np.ndarray, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> np.ndarray:
    """PaddleOCR's ``TextClassifier.resize_norm_img``: ``[h, w, c]`` uint8 -> float32 ``[c, H, W]``."""
    import cv2
    import numpy as np

    img_c, img_h, img_w = image_shape
    h, w = img.shape[:2]
    ratio = w / float(h)
    resized_w = img_w if math.ceil(img_h * ratio) > img_w else int(math.ceil(img_h * ratio))
    resized = cv2.resize(img, (resized_w, img_h)).astype("float32")
    if img_c == 1:
        resized = resized[np.newaxis, :] / 255
    else:
        resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def random_text(rng: np.random.Generator, count: tuple[int, int] = WORDS_PER_LINE) -> str:
    """``count`` (inclusive range) random words: lower-case, capitalised, upper-case or digits."""
    words = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        kind = rng.random()
        length = int(rng.integers(2, 9))
        if kind < 0.2:
            alphabet = _DIGITS
        elif kind < 0.35:
            alphabet = _UPPER
        else:
            alphabet = _LOWER
        word = "".join(rng.choice(list(alphabet), size=length))
        if alphabet is _LOWER and rng.random() < 0.3:
            word = word.capitalize()
        words.append(word)
    return " ".join(words)
