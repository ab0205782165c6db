"""Cover images and the two resize geometries of the Hugging Face processors.

Both geometries use PIL's bilinear filter exactly as the processors' PIL backend does, so the
encoder stage only rescales and normalises the stored uint8 pixels:

* ViT (covers): direct resize to ``size x size``, no crop, aspect ratio not kept.
* VideoMAE (frames): resize the shorter side to ``size`` (longer side
  ``int(size * long / short)``), then a center crop of ``size x size`` with the offset
  ``(extent - size) // 2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Failures that mean "this file cannot be read as an image" (UnidentifiedImageError and
# "image file is truncated" are OSErrors); anything else is a bug and propagates.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,  # raised by some PIL plugins on malformed headers
    Image.DecompressionBombError,
)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """ViT geometry: uint8 ``[H, W, 3]`` -> uint8 ``[size, size, 3]`` (bilinear, no crop)."""
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_height, new_width)`` with the shorter side equal to ``size``, rounded down on the
    longer side as ``transformers.image_transforms.get_resize_output_image_size`` does."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize_shorter_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """VideoMAE geometry: uint8 ``[H, W, 3]`` -> uint8 ``[size, size, 3]``."""
    new_h, new_w = shorter_side_size(image.shape[0], image.shape[1], size)
    resized = np.asarray(
        Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.uint8
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def load_cover(path: str | Path, size: int) -> np.ndarray:
    """Read a cover image, convert it to RGB (CMYK, grayscale, palette, alpha) and resize it
    directly to uint8 ``[size, size, 3]``.

    Raises ``FileNotFoundError`` for a missing file and one of :data:`DECODE_ERRORS` for a
    file PIL cannot decode completely (a truncated JPEG raises instead of being grey-filled).
    EXIF orientation is not applied, like the processor given ``Image.open(path)``.
    """
    with Image.open(path) as image:
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return resize_square(np.asarray(rgb, dtype=np.uint8), size)
