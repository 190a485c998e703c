"""Data layers (they read their tops from a database, files, memory or the caller), and
HDF5Output, which writes its bottoms to a file.

Top shapes come from the parameters where Caffe takes them from there, and stay unknown where
Caffe reads them from the data (image sizes in a database, HDF5 datasets). ``--input-shape``
overrides (``context.input_shapes``, by top name) replace what the parameters give.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import blob_dims, bottom, differ, fmt, has, has_errors, legacy_4d, with_overrides
from .base import LayerSpec, Problem, ShapeContext, TorchCode, TorchContext, fail, register


class BaseDataSpec(LayerSpec):
    """A layer with no bottoms that produces data."""

    family = "data"
    is_data = True
    min_bottoms = max_bottoms = 0
    min_tops = 1

    def data_shapes(self, layer: Any, count: int) -> list:
        """The shapes of the first ``count`` tops from the parameters (None where unknown)."""
        return [None] * count

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        count = max(len(layer.top), self.top_range(layer)[0])
        shapes = [None] * count if has_errors(self, layer) else self.data_shapes(layer, count)
        return with_overrides(layer, shapes[:count], context)


def _transform_problems(layer: Any) -> Iterator[Problem]:
    """Caffe's DataTransformer, built by every prefetching data layer."""
    t = layer.transform_param
    if has(t, "mean_file") and len(t.mean_value):
        yield Problem("L110", "mean_file and mean_value are both given; Caffe takes one or the "
                              "other", ("transform_param", "mean_value"))


def _source_problem(layer: Any, field: str) -> Iterator[Problem]:
    if not getattr(layer, field).source:
        yield Problem("L110", f"{field}.source is missing; Caffe cannot open the data",
                      (field, "source"))


def _zero_batch(layer: Any, field: str) -> Iterator[Problem]:
    if getattr(layer, field).batch_size == 0:
        yield Problem("L110", f"{field}.batch_size is 0 or missing; the layer outputs empty "
                              f"batches", (field, "batch_size"), "warning")


def _shape_count_problems(layer: Any, field: str, name: str, allow_none: bool) -> Iterator[Problem]:
    """A repeated shape given once for all tops, or once per top (or, if allowed, not at all)."""
    given = len(getattr(getattr(layer, field), name))
    tops = len(layer.top)
    allowed = given in (1, tops) or (allow_none and given == 0)
    if not allowed:
        also = ", or not at all" if allow_none else ""
        yield Problem("L110", f"{name} is given {given} times for {tops} tops; give it once for "
                              f"all tops, or once per top{also}", (field, name))


def _negative_dims(layer: Any, field: str) -> Iterator[Problem]:
    for i, shape in enumerate(getattr(layer, field).shape):
        for j, dim in enumerate(shape.dim):
            if dim < 0:
                yield Problem("L110", f"shape {i} has a negative dimension ({dim})",
                              (field, "shape", i, "dim", j))


def _per_top(values: Any, index: int) -> Any:
    return values[0] if len(values) == 1 else values[index]


@register
class DataSpec(BaseDataSpec):
    """Reads Datum records from LevelDB/LMDB: (batch_size, C, H, W) and labels (batch_size,).
    H and W are crop_size when cropping; C is known only when several mean_value entries give
    one per channel."""

    type = "Data"
    param_field = "data_param"
    max_tops = 2

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _source_problem(layer, "data_param")
        yield from _transform_problems(layer)
        t = layer.transform_param
        if t.force_color and t.force_gray:
            yield Problem("L110", "force_color and force_gray are both set; Caffe rejects that "
                                  "for encoded images", ("transform_param", "force_gray"))
        yield from _zero_batch(layer, "data_param")

    def data_shapes(self, layer: Any, count: int) -> list:
        n = layer.data_param.batch_size
        t = layer.transform_param
        channels = len(t.mean_value) if len(t.mean_value) > 1 else None
        size = t.crop_size or None
        return [(n, channels, size, size), (n,)][:count]


@register
class ImageDataSpec(BaseDataSpec):
    """Reads images listed in a text file: (batch_size, 3 or 1 (is_color), H, W) and labels.
    H and W are crop_size, else new_height/new_width, else the first image's size."""

    type = "ImageData"
    param_field = "image_data_param"
    min_tops = max_tops = 2

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.image_data_param
        t = layer.transform_param
        yield from _source_problem(layer, "image_data_param")
        yield from _transform_problems(layer)
        if (p.new_height == 0) != (p.new_width == 0):
            given = "new_height" if p.new_height else "new_width"
            yield Problem("L110", "new_height and new_width must be set together (or neither)",
                          ("image_data_param", given))
        if p.batch_size == 0:
            yield Problem("L110", "batch_size is 0; ImageData needs a positive batch size",
                          ("image_data_param", "batch_size"))
        channels = 3 if p.is_color else 1
        if len(t.mean_value) > 1 and len(t.mean_value) != channels:
            yield Problem("L110", f"{len(t.mean_value)} mean_value entries for {channels}-channel "
                                  f"images; give one, or one per channel",
                          ("transform_param", "mean_value"))
        if t.crop_size and p.new_height and p.new_width and \
                t.crop_size > min(p.new_height, p.new_width):
            yield Problem("L110", f"crop_size {t.crop_size} is larger than the resized images "
                                  f"({p.new_height}x{p.new_width})",
                          ("transform_param", "crop_size"))

    def data_shapes(self, layer: Any, count: int) -> list:
        p = layer.image_data_param
        crop = layer.transform_param.crop_size
        if crop:
            height, width = crop, crop
        elif p.new_height and p.new_width:
            height, width = p.new_height, p.new_width
        else:
            height = width = None
        n = p.batch_size
        return [(n, 3 if p.is_color else 1, height, width), (n,)][:count]


@register
class MemoryDataSpec(BaseDataSpec):
    """Takes arrays from the caller: (batch_size, channels, height, width) and labels."""

    type = "MemoryData"
    param_field = "memory_data_param"
    min_tops = max_tops = 2

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _transform_problems(layer)
        p = layer.memory_data_param
        for name in ("batch_size", "channels", "height", "width"):
            if getattr(p, name) == 0:
                yield Problem("L110", f"{name} is 0 or missing; MemoryData needs batch_size, "
                                      f"channels, height and width all positive",
                              ("memory_data_param", name))
                break

    def data_shapes(self, layer: Any, count: int) -> list:
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)][:count]


@register
class WindowDataSpec(BaseDataSpec):
    """R-CNN windows: (batch_size, C, crop_size, crop_size) and labels; C comes from the window
    file."""

    type = "WindowData"
    param_field = "window_data_param"
    min_tops = max_tops = 2

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _source_problem(layer, "window_data_param")
        yield from _transform_problems(layer)
        if layer.transform_param.crop_size == 0:
            yield Problem("L110", "WindowData needs transform_param.crop_size > 0",
                          ("transform_param", "crop_size"))
        yield from _zero_batch(layer, "window_data_param")

    def data_shapes(self, layer: Any, count: int) -> list:
        n = layer.window_data_param.batch_size
        crop = layer.transform_param.crop_size
        return [(n, None, crop, crop), (n,)][:count]


@register
class HDF5DataSpec(BaseDataSpec):
    """One top per dataset named like the top, read from the HDF5 files listed in ``source``.
    The first dimension is batch_size; the rank and the other dimensions come from the files,
    so the tops are unknown here (give them with --input-shape)."""

    type = "HDF5Data"
    param_field = "hdf5_data_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        if layer.HasField("transform_param"):
            yield Problem("L110", "HDF5Data does not transform its data; Caffe rejects a "
                                  "transform_param", ("transform_param",))
        yield from _source_problem(layer, "hdf5_data_param")
        yield from _zero_batch(layer, "hdf5_data_param")


@register
class DummyDataSpec(BaseDataSpec):
    """Constant or random tops of the given shapes (``shape``, or the legacy num, channels,
    height and width lists): one entry for all tops or one per top."""

    type = "DummyData"
    param_field = "dummy_data_param"

    LEGACY = ("num", "channels", "height", "width")

    def check(self, layer: Any) -> Iterator[Problem]:
        p = layer.dummy_data_param
        tops = len(layer.top)
        if len(p.data_filler) not in (0, 1, tops):
            yield Problem("L110", f"{len(p.data_filler)} data_filler entries for {tops} tops; "
                                  f"give none, one, or one per top",
                          ("dummy_data_param", "data_filler"))
        if any(len(getattr(p, name)) for name in self.LEGACY):
            if len(p.shape):
                yield Problem("L110", "both shape and the legacy num/channels/height/width are "
                                      "given; use shape", ("dummy_data_param", "shape"))
            for name in self.LEGACY:
                yield from _shape_count_problems(layer, "dummy_data_param", name, False)
        else:
            yield from _shape_count_problems(layer, "dummy_data_param", "shape", False)
        yield from _negative_dims(layer, "dummy_data_param")

    def data_shapes(self, layer: Any, count: int) -> list:
        p = layer.dummy_data_param
        if any(len(getattr(p, name)) for name in self.LEGACY):
            return [tuple(int(_per_top(getattr(p, name), i)) for name in self.LEGACY)
                    for i in range(count)]
        return [blob_dims(_per_top(p.shape, i)) for i in range(count)]


@register
class InputSpec(BaseDataSpec):
    """The net's inputs, filled by the caller: input_param.shape once for all tops, once per
    top, or not at all (then the caller reshapes them and they are unknown here)."""

    type = "Input"
    param_field = "input_param"

    def check(self, layer: Any) -> Iterator[Problem]:
        yield from _shape_count_problems(layer, "input_param", "shape", True)
        yield from _negative_dims(layer, "input_param")

    def data_shapes(self, layer: Any, count: int) -> list:
        shapes = layer.input_param.shape
        if not len(shapes):
            return [None] * count
        return [blob_dims(_per_top(shapes, i)) for i in range(count)]


@register
class HDF5OutputSpec(LayerSpec):
    """Writes its two bottoms (data and labels, same first dimension) to an HDF5 file."""

    type = "HDF5Output"
    family = "data"
    param_field = "hdf5_output_param"
    min_bottoms = max_bottoms = 2
    min_tops = max_tops = 0

    def check(self, layer: Any) -> Iterator[Problem]:
        if not layer.hdf5_output_param.file_name:
            yield Problem("L110", "hdf5_output_param.file_name is missing; Caffe cannot create "
                                  "the output file", ("hdf5_output_param", "file_name"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        data, labels = bottom(bottoms, 0), bottom(bottoms, 1)
        if data is not None and labels is not None:
            a = legacy_4d(data, "L110", "HDF5Output", ("bottom", 0))
            b = legacy_4d(labels, "L110", "HDF5Output", ("bottom", 1))
            if differ(a[0], b[0]):
                fail("L110", f"the data {fmt(data)} and the labels {fmt(labels)} differ in their "
                             f"first dimension", ("bottom", 1))
        return []

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        return []

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """Nothing: the layer only writes its bottoms to a file and has no tops (the executor
        skips it too)."""
        return TorchCode([])
