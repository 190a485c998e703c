"""Image decoding and resizing as Caffe's OpenCV calls do them, with Pillow and NumPy.

Caffe decodes with OpenCV: ``cv::imdecode``/``cv::imread`` with ``IMREAD_UNCHANGED`` (-1, an
encoded Datum without force_color/force_gray), ``IMREAD_COLOR`` (3 channels, BGR) or
``IMREAD_GRAYSCALE`` (1 channel), and resizes with ``cv::resize(..., INTER_LINEAR)``. Here:

* decoding uses Pillow and reproduces OpenCV's results: BGR channel order; 16-bit samples
  reduced to their high byte; EXIF orientation applied for colour and grayscale reads but not
  for unchanged ones (OpenCV >= 3.1); colour to gray as each OpenCV decoder does it -- the
  JPEG decoder's own luma channel (libjpeg, via Pillow's ``draft``), libpng's truncating
  ``png_set_rgb_to_gray(0.299, 0.587)`` for PNG, and ``cvtColor``'s rounded fixed-point
  BT.601 weights for every other format;
* :func:`resize_linear` is OpenCV's fixed-point ``INTER_LINEAR`` for 8-bit images, written
  out in NumPy (11-bit coefficients, the >>4 / mul-hi / +2>>2 vertical pass of its SIMD code,
  the exact-2x ``INTER_AREA`` shortcut, and a plain copy when the size is unchanged).

Images are returned as (H, W, C) uint8 arrays, C in {1, 3, 4}; callers transpose to (C, H, W).
"""

from __future__ import annotations

import io
import os
from typing import Any, Optional

import numpy as np

from ..errors import PrototxtError

UNCHANGED = "unchanged"
COLOR = "color"
GRAY = "gray"
MODES = (UNCHANGED, COLOR, GRAY)

INSTALL_HINT = "pip install 'prototxt-tools[data]'"

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS  # OpenCV's INTER_RESIZE_COEF_SCALE


class DecodeError(Exception):
    """An image that cannot be decoded, or one Caffe would refuse (the message says why)."""


def pillow() -> Any:
    """The ``PIL.Image`` module, or a one-line PrototxtError naming the extra to install."""
    try:
        from PIL import Image, ImageOps  # noqa: F401
    except ImportError:
        raise PrototxtError(f"decoding images needs Pillow: {INSTALL_HINT}") from None
    return Image


def decode_image(data: bytes, mode: str = UNCHANGED) -> np.ndarray:
    """Decode an encoded image (``cv::imdecode``) into an (H, W, C) uint8 array, BGR(A).

    Raises :class:`DecodeError` for bytes no decoder accepts, and for a 16-bit image decoded
    unchanged (Caffe's DataTransformer accepts 8-bit images only)."""
    image_module = pillow()
    try:
        image = image_module.open(io.BytesIO(data))
        return _to_array(image, mode)
    except DecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise DecodeError(_pil_reason(exc)) from None


def read_image(path: str, mode: str = COLOR) -> np.ndarray:
    """Read an image file (``cv::imread``) into an (H, W, C) uint8 array, BGR(A).

    OS errors propagate as OSError; undecodable contents raise :class:`DecodeError`."""
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_image(data, mode)


def _pil_reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "cannot identify image file" in text:
        return "not an image format Pillow can decode"
    return text.splitlines()[0]


def _to_array(image: Any, mode: str) -> np.ndarray:
    from PIL import ImageOps

    fmt = image.format
    if mode == GRAY and fmt == "JPEG" and image.mode in ("RGB", "YCbCr"):
        # libjpeg's grayscale output (the Y channel), which is what OpenCV asks libjpeg for.
        image.draft("L", image.size)
    image.load()
    if mode != UNCHANGED:
        image = ImageOps.exif_transpose(image)
    pil_mode = image.mode
    wide = pil_mode.startswith("I")  # I;16, I;16B, I (16-bit PNG/TIFF samples)
    if mode == UNCHANGED:
        if wide:
            raise DecodeError("16-bit image: Caffe's DataTransformer accepts 8-bit images only "
                              "(set transform_param force_color or force_gray to convert it)")
        if pil_mode in ("L", "1"):
            return _gray(image)[:, :, None]
        if pil_mode == "LA":
            la = np.asarray(image)
            g = la[:, :, 0]
            return np.stack([g, g, g, la[:, :, 1]], axis=2)
        if pil_mode in ("RGBA", "PA") or (pil_mode == "P" and "transparency" in image.info):
            rgba = np.asarray(image.convert("RGBA"))
            return np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
        return _bgr(image)
    if mode == COLOR:
        if wide:
            g = _high_byte(image)
            return np.repeat(g[:, :, None], 3, axis=2)
        return _bgr(image)
    if mode != GRAY:
        raise ValueError(f"unknown decode mode {mode!r}")
    if wide:
        return _high_byte(image)[:, :, None]
    if pil_mode in ("L", "1", "LA"):
        return _gray(image)[:, :, None]
    rgb = np.asarray(image.convert("RGB")).astype(np.int32)
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    if fmt == "PNG":
        # libpng: coefficients truncated from 0.299 / 0.587 (x 32768), result truncated,
        # grey pixels (r == g == b) passed through.
        v = (9797 * r + 19234 * g + 3737 * b) >> 15
        v = np.where((r == g) & (g == b), r, v)
    else:
        # cv::cvtColor(BGR2GRAY) for 8-bit: 14-bit fixed point, rounded.
        v = (4899 * r + 9617 * g + 1868 * b + 8192) >> 14
    return v.astype(np.uint8)[:, :, None]


def _gray(image: Any) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _bgr(image: Any) -> np.ndarray:
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _high_byte(image: Any) -> np.ndarray:
    values = np.asarray(image).astype(np.int64)
    return np.clip(values >> 8, 0, 255).astype(np.uint8)


# -- cv::resize(INTER_LINEAR) for 8-bit images -----------------------------------------------


def _axis_taps(src: int, dst: int, clamp: bool) -> tuple:
    """Source index and fixed-point weights for each output position along one axis, as
    cv::resize computes them (float32 fractions, weights rounded half to even)."""
    inv_scale = dst / src
    scale = 1.0 / inv_scale
    positions = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    f = positions.astype(np.float32)
    index = np.floor(f).astype(np.int64)
    f = (f - index.astype(np.float32)).astype(np.float32)
    if clamp:
        low = index < 0
        f[low] = 0
        index[low] = 0
        high = index >= src - 1
        f[high] = 0
        index[high] = src - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    return index, w0, w1


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv::resize(image, Size(width, height), 0, 0, INTER_LINEAR)`` for an (H, W, C) uint8
    array; bit-exact with OpenCV 4's fixed-point path."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("resize_linear takes an (H, W, C) uint8 array")
    src_h, src_w, channels = image.shape
    if (src_h, src_w) == (height, width):
        return image.copy()
    if src_w == 2 * width and src_h == 2 * height:
        # OpenCV switches to its fast INTER_AREA path for an exact 2x reduction.
        s = image.astype(np.int32)
        total = s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2]
        return ((total + 2) >> 2).astype(np.uint8)
    xi, xa0, xa1 = _axis_taps(src_w, width, clamp=True)
    xj = np.minimum(xi + 1, src_w - 1)
    yi, yb0, yb1 = _axis_taps(src_h, height, clamp=False)
    rows_needed = np.unique(np.clip(np.concatenate([yi, yi + 1]), 0, src_h - 1))
    src = image[rows_needed].astype(np.int64)
    horizontal = src[:, xi, :] * xa0[None, :, None] + src[:, xj, :] * xa1[None, :, None]
    lookup = np.searchsorted(rows_needed, np.clip(yi, 0, src_h - 1))
    lookup1 = np.searchsorted(rows_needed, np.clip(yi + 1, 0, src_h - 1))
    r0 = horizontal[lookup]
    r1 = horizontal[lookup1]
    b0 = yb0[:, None, None]
    b1 = yb1[:, None, None]
    # OpenCV's vertical pass: (((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16), then
    # rounded by (v + 2) >> 2 and saturated.
    value = (((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16)
    value = (value + 2) >> 2
    return np.clip(value, 0, 255).astype(np.uint8)


def ensure_file(path: str) -> Optional[str]:
    """A reason ``path`` cannot be read as an image file, or None."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory, not an image file"
    return None


__all__ = ["UNCHANGED", "COLOR", "GRAY", "MODES", "DecodeError", "decode_image", "read_image",
           "resize_linear", "pillow", "INSTALL_HINT"]
