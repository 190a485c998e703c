"""Caffe's im2col / col2im for N spatial axes, built from strided NumPy views.

Arrays here are laid out (batch, channels, *spatial): the layer code folds the axes before the
channel axis into the batch. ``kernel``, ``stride``, ``pad`` and ``dilation`` are tuples with
one entry per spatial axis, as :class:`vision.ConvGeometry` holds them.

Caffe's column buffer for one image is ((C * prod(kernel)), prod(out)): row
``(c * kh + i) * kw + j`` holds input[c, i*d - p + oh*s, j*d - p + ow*s] over the output
positions, zero where that falls outside the image. :func:`windows` is exactly that buffer as a
view (batch, C, *kernel, *out) over a zero-padded copy of the input; reshaping it makes the one
copy im2col needs.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

from ._np import np

#: The most bytes of column buffer built at once; larger batches are processed in chunks
#: (at least one image each, or bands of output rows of one image), which keeps the columns
#: in cache between im2col and matmul and bounds the workspace.
COLUMN_BUDGET = 4 * 1024 * 1024


def padded(x: Any, before: Sequence[int], after: Sequence[int], fill: float = 0.0) -> Any:
    """A copy of ``x`` (batch, channels, *spatial) with ``before[i]`` / ``after[i]`` cells of
    ``fill`` around spatial axis ``i``; ``x`` itself when there is nothing to add. A negative
    ``after`` drops cells at the far end (windows never reach them)."""
    lead = (slice(None), slice(None))
    if any(a < 0 for a in after):
        x = x[lead + tuple(slice(0, max(0, n + a)) for n, a in zip(x.shape[2:], after))]
    grow = [max(a, 0) for a in after]
    if not any(before) and not any(grow):
        return x
    shape = x.shape[:2] + tuple(n + b + a for n, b, a in zip(x.shape[2:], before, grow))
    if fill == 0:
        out = np.zeros(shape, x.dtype)
    else:
        out = np.empty(shape, x.dtype)
        out.fill(fill)
    inner = tuple(slice(b, b + n) for b, n in zip(before, x.shape[2:]))
    out[(slice(None), slice(None)) + inner] = x
    return out


def conv_padded(x: Any, kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int],
                dilation: Sequence[int], out: Sequence[int], fill: float = 0.0) -> Any:
    """``x`` padded by ``pad`` before each spatial axis and as much after as the last window
    reaches (Caffe's integer division can make a window overhang the padded input)."""
    after = [(o - 1) * s + d * (k - 1) + 1 - n - p
             for n, k, s, p, d, o in zip(x.shape[2:], kernel, stride, pad, dilation, out)]
    return padded(x, pad, after, fill)


def windows(xp: Any, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
            out: Sequence[int]) -> Any:
    """The read-only view (batch, C, *kernel, *out) of a padded input: element
    [b, c, *k, *o] is xp[b, c, *(o * stride + k * dilation)]."""
    strides = xp.strides
    spatial = strides[2:]
    shape = xp.shape[:2] + tuple(kernel) + tuple(out)
    view_strides = strides[:2] + tuple(d * st for d, st in zip(dilation, spatial)) + \
        tuple(s * st for s, st in zip(stride, spatial))
    return np.lib.stride_tricks.as_strided(xp, shape, view_strides, writeable=False)


def chunk_size(per_image_bytes: int) -> int:
    """How many images fit in :data:`COLUMN_BUDGET` at once (at least one)."""
    return max(1, COLUMN_BUDGET // max(1, per_image_bytes))


def im2col(x: Any, kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int],
           dilation: Sequence[int], out: Sequence[int]) -> Any:
    """Caffe's column buffers of a batch: (batch, C * prod(kernel), prod(out)), contiguous."""
    xp = conv_padded(x, kernel, stride, pad, dilation, out)
    view = windows(xp, kernel, stride, dilation, out)
    return view.reshape(x.shape[0], x.shape[1] * math.prod(kernel), math.prod(out))


def col2im(cols: Any, kernel: Sequence[int], stride: Sequence[int], pad: Sequence[int],
           dilation: Sequence[int], image: Sequence[int]) -> Any:
    """Caffe's col2im: ``cols`` (batch, C, *kernel, *grid) accumulated into images (batch, C,
    *image), each column value added where im2col would have read it, the padding dropped.
    Runs one strided addition per kernel offset, so every image cell receives its values in
    Caffe's order (kernel offsets row-major)."""
    grid = cols.shape[2 + len(kernel):]
    full = tuple(n + 2 * p for n, p in zip(image, pad))
    reach = tuple((g - 1) * s + d * (k - 1) + 1
                  for g, k, s, d in zip(grid, kernel, stride, dilation))
    acc = np.zeros(cols.shape[:2] + tuple(max(f, r) for f, r in zip(full, reach)), cols.dtype)
    lead = (slice(None), slice(None))
    for offset in itertools.product(*(range(k) for k in kernel)):
        target = tuple(slice(o * d, o * d + (g - 1) * s + 1, s)
                       for o, d, g, s in zip(offset, dilation, grid, stride))
        acc[lead + target] += cols[lead + offset]
    crop = tuple(slice(p, p + n) for p, n in zip(pad, image))
    return acc[lead + crop]


def offset_views(xp: Any, kernel: Sequence[int], stride: Sequence[int],
                 out: Sequence[int]) -> Any:
    """Yield (flat kernel offset, view (batch, C, *out)) for every kernel offset in row-major
    order: the input cells each output position reads at that offset (dilation 1)."""
    lead = (slice(None), slice(None))
    for flat, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        yield flat, xp[lead + tuple(slice(o, o + (n - 1) * s + 1, s)
                                    for o, n, s in zip(offset, out, stride))]
