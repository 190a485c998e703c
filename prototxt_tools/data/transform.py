"""Caffe's DataTransformer (src/caffe/data_transformer.cpp) for one image and for a batch.

For an image ``x`` of shape (C, H, W) -- uint8 pixels, or float values as a Datum's
``float_data`` holds them (float32) -- Caffe computes, in float32::

    crop:    TRAIN: h_off = Rand(H - crop_size + 1), w_off = Rand(W - crop_size + 1)
             TEST:  h_off = (H - crop_size) / 2,      w_off = (W - crop_size) / 2
    mean:    mean_file: the full-size (C, H, W) mean, indexed at the cropped positions
             mean_value: one value for every channel, or one per channel
    y[c, h, w'] = (x[c, h_off + h, w_off + w] - mean) * scale      (x * scale without a mean)
    mirror:  w' = crop_w - 1 - w when mirrored, else w

Random draws, in Caffe's order, come from a NumPy Generator: first the mirror coin (only when
``mirror`` is set), then h_off and w_off (only when cropping in TRAIN). Caffe draws the mirror
coin in every phase: ``mirror: true`` in a TEST-phase layer mirrors at random too (it is
``param_.mirror() && Rand(2)``, with no phase test), and so does this transformer.

``mean_file`` together with ``mean_value`` is an error, as are a mean image whose
(C, H, W) differs from the image's full size, a mean_value count other than 1 or C, and a crop
larger than the image. ``force_color``/``force_gray`` choose how encoded images are decoded
(:attr:`Transformer.decode_mode`); both at once is an error when an encoded image is met.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import PrototxtError
from . import _image

__all__ = ["Transformer", "load_mean", "parse_phase", "resolve_path", "TRAIN", "TEST"]

TRAIN = 0
TEST = 1

PhaseLike = Union[int, str]


def parse_phase(phase: PhaseLike) -> int:
    """TRAIN (0) or TEST (1) from an int, a caffe_pb2 Phase value, or "TRAIN"/"TEST"."""
    if isinstance(phase, str):
        name = phase.strip().upper()
        if name in ("TRAIN", "TEST"):
            return TRAIN if name == "TRAIN" else TEST
        raise PrototxtError(f"unknown phase {phase!r}; expected TRAIN or TEST")
    if phase in (TRAIN, TEST) and not isinstance(phase, bool):
        return int(phase)
    raise PrototxtError(f"unknown phase {phase!r}; expected TRAIN (0) or TEST (1)")


def resolve_path(path: str, root: Optional[str] = None,
                 extra: Sequence[str] = ()) -> Tuple[str, list]:
    """(the first existing candidate for ``path``, all candidates tried).

    An absolute path is itself; a relative one is tried against ``root`` (the prototxt's
    folder), then the working directory, then each folder in ``extra``. When none exists the
    first candidate is returned, so the caller's error names the likeliest place."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path, [path]
    bases = []
    if root:
        bases.append(os.fspath(root))
    bases.append(os.getcwd())
    bases.extend(os.fspath(b) for b in extra if b)
    candidates: list = []
    for base in bases:
        candidate = os.path.normpath(os.path.join(base, path))
        if candidate not in candidates:
            candidates.append(candidate)
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate, candidates
    return candidates[0], candidates


def _missing(path: str, candidates: list, what: str) -> PrototxtError:
    where = path if len(candidates) <= 1 else f"{path} (also looked in " + ", ".join(
        c for c in candidates if c != path) + ")"
    return PrototxtError(f"{what}: no such file or directory: {where}", path)


def load_mean(path: str, root: Optional[str] = None) -> np.ndarray:
    """A ``.binaryproto`` mean as float32 (C, H, W), as Caffe's Blob::FromProto reads it.

    Caffe reads the legacy 4-D shape (num, channels, height, width) and indexes the first
    C*H*W values; a 3-D blob is taken as (C, H, W)."""
    from ..schema.caffemodel import read_binaryproto

    resolved, candidates = resolve_path(path, root)
    if not os.path.exists(resolved):
        raise _missing(resolved, candidates, "mean_file")
    array = read_binaryproto(resolved)
    if array.ndim == 4:
        _, c, h, w = array.shape
    elif array.ndim == 3:
        c, h, w = array.shape
    else:
        raise PrototxtError(f"mean_file: expected a (1, C, H, W) mean image, found shape "
                            f"{tuple(array.shape)}", resolved)
    if c * h * w == 0 or array.size < c * h * w:
        raise PrototxtError(f"mean_file: the mean image is empty (shape {tuple(array.shape)})",
                            resolved)
    return np.ascontiguousarray(array.reshape(-1)[: c * h * w].reshape(c, h, w),
                                dtype=np.float32)


class Transformer:
    """Caffe's DataTransformer for one ``TransformationParameter`` and phase.

    ``param``: a caffe_pb2.TransformationParameter (None: all defaults). ``rng``: the Generator
    for random crops and mirroring (default ``numpy.random.default_rng(seed)``). ``root``: the
    folder a relative ``mean_file`` is resolved against before the working directory.
    ``mean``: an already-loaded (C, H, W) mean image to use instead of reading ``mean_file``.
    """

    def __init__(self, param: Any = None, phase: PhaseLike = TEST, *, seed: int = 0,
                 rng: Optional[np.random.Generator] = None, root: Optional[str] = None,
                 mean: Optional[np.ndarray] = None, where: Optional[str] = None):
        self.phase = parse_phase(phase)
        self.where = where  # for messages: the prototxt (or layer) the parameters came from
        if param is None:
            from ..schema import caffe_pb2

            param = caffe_pb2.TransformationParameter()
        self.param = param
        self.scale = np.float32(param.scale)
        self.crop_size = int(param.crop_size)
        self.mirror = bool(param.mirror)
        self.force_color = bool(param.force_color)
        self.force_gray = bool(param.force_gray)
        self.mean_values = np.asarray(list(param.mean_value), dtype=np.float32)
        has_mean_file = param.HasField("mean_file")
        if has_mean_file and self.mean_values.size:
            raise PrototxtError("transform_param: cannot specify mean_file and mean_value at "
                                "the same time", where)
        self.mean_file: Optional[str] = param.mean_file if has_mean_file else None
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float32)
            if mean.ndim == 4 and mean.shape[0] >= 1:
                mean = mean[0]
            if mean.ndim != 3:
                raise PrototxtError(f"mean image must be (C, H, W), not {tuple(mean.shape)}",
                                    where)
            self.mean: Optional[np.ndarray] = mean
        elif has_mean_file:
            self.mean = load_mean(param.mean_file, root)
        else:
            self.mean = None
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    @classmethod
    def from_layer(cls, layer: Any, phase: PhaseLike, **kwargs: Any) -> "Transformer":
        """The transformer of a data layer (a net Layer or a caffe_pb2.LayerParameter)."""
        param = layer if hasattr(layer, "DESCRIPTOR") else layer.param
        return cls(param.transform_param, phase, **kwargs)

    # -- what encoded images become ----------------------------------------------------------
    @property
    def decode_mode(self) -> str:
        """How encoded Datum images are decoded: force_color -> "color" (3 channels, BGR),
        force_gray -> "gray", neither -> "unchanged" (the file's own channels)."""
        if self.force_color and self.force_gray:
            raise PrototxtError("transform_param: cannot set both force_color and force_gray",
                                self.where)
        if self.force_color:
            return _image.COLOR
        if self.force_gray:
            return _image.GRAY
        return _image.UNCHANGED

    # -- shapes ------------------------------------------------------------------------------
    def output_shape(self, shape: Sequence[int]) -> Tuple[int, int, int]:
        """The (C, h, w) an image of ``shape`` (C, H, W) becomes (InferBlobShape)."""
        c, h, w = (int(d) for d in shape)
        if c <= 0:
            raise PrototxtError(f"image has {c} channels", self.where)
        crop = self.crop_size
        if crop and (h < crop or w < crop):
            raise PrototxtError(f"crop_size {crop} is larger than the image ({c}x{h}x{w})",
                                self.where)
        return (c, crop, crop) if crop else (c, h, w)

    # -- one image ---------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Transform one (C, H, W) image into a new float32 (C, h, w) array (or into ``out``)."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise PrototxtError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}",
                                self.where)
        c, height, width = image.shape
        c, out_h, out_w = self.output_shape(image.shape)
        do_mirror = bool(self.mirror and self.rng.integers(0, 2))
        h_off = w_off = 0
        if self.crop_size:
            if self.phase == TRAIN:
                h_off = int(self.rng.integers(0, height - self.crop_size + 1))
                w_off = int(self.rng.integers(0, width - self.crop_size + 1))
            else:
                h_off = (height - self.crop_size) // 2
                w_off = (width - self.crop_size) // 2
        window = (slice(None), slice(h_off, h_off + out_h), slice(w_off, w_off + out_w))
        values = image[window]
        if values.dtype != np.float32:
            values = values.astype(np.float32)
        if self.mean is not None:
            if self.mean.shape != (c, height, width):
                mc, mh, mw = self.mean.shape
                raise PrototxtError(
                    f"mean_file is {mc}x{mh}x{mw} but the image is {c}x{height}x{width} "
                    "(Caffe subtracts the full-size mean at the cropped positions)", self.where)
            result = values - self.mean[window]
            result *= self.scale
        elif self.mean_values.size:
            if self.mean_values.size not in (1, c):
                raise PrototxtError(
                    f"{self.mean_values.size} mean_value entries for a {c}-channel image; "
                    f"specify either 1 mean_value or as many as channels: {c}", self.where)
            means = self.mean_values if self.mean_values.size == c else np.repeat(
                self.mean_values, c)
            result = values - means[:, None, None]
            result *= self.scale
        else:
            result = values * self.scale
        if do_mirror:
            result = result[:, :, ::-1]
        if out is None:
            return np.ascontiguousarray(result, dtype=np.float32)
        if out.shape != result.shape:
            raise PrototxtError(f"image transforms to {result.shape}, not {out.shape}",
                                self.where)
        out[...] = result
        return out

    transform = __call__

    # -- a batch -----------------------------------------------------------------------------
    def transform_batch(self, images: Iterable[np.ndarray]) -> np.ndarray:
        """Transform images into one float32 (N, C, h, w) batch; every image must transform to
        the first one's shape (Caffe shapes a batch from its first datum)."""
        out: Optional[np.ndarray] = None
        items = images if isinstance(images, np.ndarray) else list(images)
        for index, image in enumerate(items):
            image = np.asarray(image)
            if image.ndim != 3:
                raise PrototxtError(f"image {index}: expected (C, H, W), got shape "
                                    f"{tuple(image.shape)}", self.where)
            shape = self.output_shape(image.shape)
            if out is None:
                out = np.empty((len(items),) + shape, dtype=np.float32)
            elif shape != out.shape[1:]:
                raise PrototxtError(f"image {index} transforms to {shape} but the batch's "
                                    f"first image gave {out.shape[1:]}", self.where)
            self(image, out=out[index])
        if out is None:
            raise PrototxtError("no images to transform", self.where)
        return out

    def __repr__(self) -> str:
        parts = [f"phase={'TRAIN' if self.phase == TRAIN else 'TEST'}"]
        if self.scale != 1:
            parts.append(f"scale={float(self.scale)!r}")
        if self.crop_size:
            parts.append(f"crop_size={self.crop_size}")
        if self.mirror:
            parts.append("mirror")
        if self.mean_file:
            parts.append(f"mean_file={self.mean_file!r}")
        if self.mean_values.size:
            parts.append(f"mean_value={self.mean_values.tolist()}")
        return f"Transformer({', '.join(parts)})"
