"""Synthetic OCR data for PaddleOCR's PP-OCRv4 text detector and text recognizer (as shipped by
rapidocr-onnxruntime), preprocessed exactly as rapidocr does before calling the ONNX models.

**Detection pages** (:func:`pages`): ``PAGE_SIZE`` x ``PAGE_SIZE`` (480 x 480) pages holding
``LINES_PER_PAGE`` text lines of random words (Pillow's built-in scalable font, ``FONT_SIZES``
pixels) at random non-overlapping positions, on a plain or a smooth textured background (half each),
in an ink that contrasts with it, with mild Gaussian noise. Pages are rendered in RGB and turned to
BGR, the channel order rapidocr's ``LoadImage`` hands to the detector. Preprocessing is rapidocr's
``DetPreProcess`` (``ch_ppocr_det/utils.py``): resize to a multiple of 32, ``(pixel / 255 - mean) /
std`` with its configured mean = std = 0.5 per channel, channels first. 480 is already a multiple of
32, so pages are fed at their own size: a fixed evaluation size chosen for the project's run time
(rapidocr's own ``limit_side_len: 736, limit_type: min`` would upscale the short side to 736, which
costs the same model about 2.4x more per run).
Inputs are float32 ``[n, 3, 480, 480]`` in [-1, 1]; no labels (the detector's fidelity is the IoU of
its binarised probability map against the source model's, not a ground truth).

**Recognition crops** (:func:`crops`): tightly cropped text lines of ``REC_WORDS`` words
(``pipeline.data.text_lines.render_line``), turned to BGR, preprocessed as rapidocr's
``TextRecognizer.resize_norm_img`` (``ch_ppocr_rec/text_recognize.py``) with its
``rec_img_shape [3, 48, 320]``: resize to height 48 keeping the aspect ratio (width
``ceil(48 * w / h)``, squeezed to 320 when wider, as PaddleOCR does at a fixed width), scale to
``(x / 255 - 0.5) / 0.5``, zero-pad on the right to 320. Inputs are float32 ``[n, 3, 48, 320]``; no
labels: the model emits CTC scores at 40 positions that align to no fixed character per position,
so per-position labels do not exist (its fidelity is the per-position argmax agreement).

Splits draw from ``numpy.random.default_rng([seed, stream, split id])`` (``stream`` differs between
pages and crops), so they are identical on every run and calibration and test samples never share a
random stream. Nothing is downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pipeline.data.text_lines import random_text, render_line
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples

SPLITS = {"calib": 2, "test": 3}
DEFAULT_SIZES = {"calib": 256, "test": 64}
PAGE_SIZE = 480  # a multiple of 32, as DB's down/up-sampling path needs
LINES_PER_PAGE = (3, 8)  # inclusive
WORDS_PER_PAGE_LINE = (1, 4)
FONT_SIZES = (16, 40)  # pixels, inclusive
NOISE_SIGMA = (1.0, 6.0)
REC_IMAGE_SHAPE = (3, 48, 320)  # rapidocr's rec_img_shape
REC_WORDS = (1, 3)  # a line of at most 3 words mostly fits 320 / 48 = 6.7 width per height
MEAN = STD = 0.5  # rapidocr's det mean/std and the recognizer's fixed (x - 0.5) / 0.5
_PLACEMENT_TRIES = 30
_STREAMS = {"pages": 0, "crops": 1}


def pages(
    split: Literal["calib", "test"] = "test",
    n: int | None = None,
    seed: int = 0,
    input_name: str = "x",
    size: int = PAGE_SIZE,
) -> Samples:
    """``n`` detection pages of ``split``: ``{input_name: float32 [n, 3, size, size]}``, no labels."""
    import numpy as np

    from pipeline.data import Samples

    count = _count(split, n)
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
        raise ConfigError(f"size must be a positive multiple of 32 (DB's input), got {size!r}", key="size")
    rng = np.random.default_rng([seed, _STREAMS["pages"], SPLITS[split]])
    batch = np.empty((count, 3, size, size), dtype=np.float32)
    for i in range(count):
        batch[i] = normalize_page(render_page(rng, size)[:, :, ::-1])
    return Samples({input_name: batch})


def crops(
    split: Literal["calib", "test"] = "test",
    n: int | None = None,
    seed: int = 0,
    input_name: str = "x",
) -> Samples:
    """``n`` recognition crops of ``split``: ``{input_name: float32 [n, 3, 48, 320]}``, no labels."""
    import numpy as np

    from pipeline.data import Samples

    count = _count(split, n)
    rng = np.random.default_rng([seed, _STREAMS["crops"], SPLITS[split]])
    batch = np.empty((count, *REC_IMAGE_SHAPE), dtype=np.float32)
    for i in range(count):
        bgr = np.ascontiguousarray(render_line(rng, REC_WORDS)[:, :, ::-1])
        batch[i] = resize_norm_rec(bgr)
    return Samples({input_name: batch})


def render_page(rng: np.random.Generator, size: int = PAGE_SIZE) -> np.ndarray:
    """One page: uint8 RGB ``[size, size, 3]`` with text lines at random non-overlapping places."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    background = _background(rng, size)
    light = float(background.mean()) >= 128
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(LINES_PER_PAGE[0], LINES_PER_PAGE[1] + 1))):
        font_size = int(rng.integers(FONT_SIZES[0], FONT_SIZES[1] + 1))
        font = ImageFont.load_default(size=font_size)
        text = random_text(rng, WORDS_PER_PAGE_LINE)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        width, height = right - left, bottom - top
        if width >= size - 8 or height >= size - 8:
            continue
        ink = tuple(int(v) for v in (rng.integers(0, 80, size=3) if light else rng.integers(190, 256, size=3)))
        for _ in range(_PLACEMENT_TRIES):
            x = int(rng.integers(4, size - width - 4))
            y = int(rng.integers(4, size - height - 4))
            box = (x - 4, y - 4, x + width + 4, y + height + 4)
            if not any(_overlap(box, other) for other in taken):
                taken.append(box)
                draw.text((x - left, y - top), text, font=font, fill=ink)
                break
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def normalize_page(img: np.ndarray) -> np.ndarray:
    """rapidocr's ``DetPreProcess`` normalise + permute for a page already sized to a multiple of
    32: uint8 ``[h, w, 3]`` -> float32 ``[3, h, w]``, ``(x / 255 - mean) / std``."""
    import numpy as np

    if img.shape[0] % 32 or img.shape[1] % 32:
        raise ValueError(f"page {img.shape[:2]} is not a multiple of 32: resize it first")
    scaled = (img.astype("float32") * (1 / 255.0) - np.array([MEAN] * 3)) / np.array([STD] * 3)
    return scaled.transpose((2, 0, 1)).astype(np.float32)


def resize_norm_rec(img: np.ndarray, image_shape: tuple[int, int, int] = REC_IMAGE_SHAPE) -> np.ndarray:
    """rapidocr's ``TextRecognizer.resize_norm_img`` at a fixed width (``max_wh_ratio`` =
    width / height of ``image_shape``): uint8 ``[h, w, 3]`` -> float32 ``[3, H, W]``."""
    from pipeline.data.text_lines import resize_norm_img

    return resize_norm_img(img, image_shape)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A plain colour, or a smooth texture (upsampled coarse noise) around one; light or dark."""
    import cv2
    import numpy as np

    light = rng.random() < 0.7
    base = rng.integers(170, 256, size=3) if light else rng.integers(0, 90, size=3)
    page = np.broadcast_to(base.astype(np.float32), (size, size, 3)).copy()
    if rng.random() < 0.5:
        cells = int(rng.integers(4, 16))
        coarse = rng.normal(0.0, rng.uniform(8.0, 30.0), size=(cells, cells, 3)).astype(np.float32)
        page += cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(page), 0, 255).astype(np.uint8)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _count(split: str, n: int | None) -> int:
    if split not in SPLITS:
        raise ConfigError(f"unknown ocr split '{split}'", key="split", choices=SPLITS)
    count = DEFAULT_SIZES[split] if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}", key="n")
    return count
