"""Forward passes of Convolution, Deconvolution, Im2col, Pooling, SPP, InnerProduct and Embed.

Every case is a one-layer net run through its spec's ``forward`` and compared with an
independent oracle: OpenCV's dnn module (``oracle.cv2_forward``, a separate implementation of
Caffe nets) where it supports the layer and variant, otherwise a direct transcription of
Caffe's formula written below with explicit loops over output (or input) positions, in float64
(STOCHASTIC pooling in TRAIN replays Caffe's sampling on the same random numbers, in the
input's dtype, since it compares running sums against a float threshold).

Tolerance: the maximum absolute error must stay within 1e-5 of the largest expected magnitude
(float32 work); float64 runs within 1e-12.

Where OpenCV departs from Caffe, the case uses the naive oracle: OpenCV ignores InnerProduct's
``transpose`` (it reads the (K, N) weights as (N, K)) and Deconvolution's ``dilation``, and it
does not return Pooling's second (mask) top.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf import text_format

from oracle import assert_close, cv2_forward
from prototxt_tools.layers import TEST, TRAIN, ForwardContext, ShapeContext, get_spec
from prototxt_tools.schema import caffe_pb2
from torch_check import compare_with_torch

FLT_MAX = float(np.finfo(np.float32).max)
RTOL = 1e-5
RTOL_DOUBLE = 1e-12


# -- running one layer ----------------------------------------------------------------------------

def layer_text(body: str, tops: tuple = ("out",)) -> str:
    top_fields = " ".join(f'top: "{top}"' for top in tops)
    return f'name: "out" bottom: "data" {top_fields} {body}'


def parse(text: str):
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def net_text(body: str, shape: tuple, tops: tuple = ("out",)) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'layer {{ name: "data" type: "Input" top: "data" '
            f'input_param {{ shape {{ {dims} }} }} }}\n'
            f"layer {{ {layer_text(body, tops)} }}\n")


def blob_shapes(body: str, shape: tuple) -> list:
    layer = parse(layer_text(body))
    shapes = get_spec(layer.type).blob_shapes(layer, [shape])
    assert shapes is not None and all(s is not None for s in shapes), shapes
    return shapes


def random_blobs(body: str, shape: tuple, rng, dtype=np.float32) -> list:
    return [rng.standard_normal(s).astype(dtype) for s in blob_shapes(body, shape)]


def run(body: str, x, blobs: list, *, tops: tuple = ("out",), phase: int = TEST, rng=None,
        torch_too: bool = True):
    """The layer's tops; checks they have the spec's shapes and the input's dtype, and that the
    input and blobs are left untouched; with ``torch_too`` the exported layer must agree."""
    layer = parse(layer_text(body, tops))
    spec = get_spec(layer.type)
    saved = [x.copy()] + [b.copy() for b in blobs]
    context = ForwardContext(phase=phase, rng=rng, dtype=x.dtype)
    result = spec.forward(layer, [x], blobs, context)
    expected_shapes = spec.shape(layer, [x.shape], ShapeContext(phase=phase))
    assert [r.shape for r in result] == [tuple(s) for s in expected_shapes]
    assert all(r.dtype == x.dtype for r in result), [r.dtype for r in result]
    for before, after in zip(saved, [x] + blobs):
        np.testing.assert_array_equal(before, after)
    if torch_too:
        compare_with_torch(layer, [x], blobs, result, phase=phase)
    return result


def cv2_reference(body: str, x, blobs: list, cv2_body: str = None):
    net = net_text(cv2_body or body, x.shape)
    return cv2_forward(net, {"out": blobs} if blobs else None, {"data": x}, ["out"])["out"]


# -- naive oracles: Caffe's formulas, position by position ----------------------------------------

def c_div(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def conv_out(size, k, s, p, d):
    return c_div(size + 2 * p - (d * (k - 1) + 1), s) + 1


def naive_conv(x, w, b, kernel, stride, pad, dilation, group, axis=1):
    """Convolution: y[o] = sum over channels of the group and kernel offsets of
    x[o * s - p + k * d] w[k] (zero outside the image) + b."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    lead, channels, spatial = x.shape[:axis], x.shape[axis], x.shape[axis + 1:]
    xb = x.reshape((-1, channels) + spatial)
    cout = w.shape[0]
    cg, mg = channels // group, cout // group
    out = tuple(conv_out(n, k, s, p, d)
                for n, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    y = np.zeros((xb.shape[0], cout) + out)
    for o in np.ndindex(*out):
        for g in range(group):
            acc = np.zeros((xb.shape[0], mg))
            for kk in np.ndindex(*kernel):
                pos = tuple(oi * s - p + ki * d
                            for oi, ki, s, p, d in zip(o, kk, stride, pad, dilation))
                if all(0 <= q < n for q, n in zip(pos, spatial)):
                    patch = xb[(slice(None), slice(g * cg, (g + 1) * cg)) + pos]
                    acc += patch @ w[(slice(g * mg, (g + 1) * mg), slice(None)) + kk].T
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + o] = acc
    if b is not None:
        y += b.astype(np.float64).reshape((cout,) + (1,) * len(out))
    return y.reshape(tuple(lead) + (cout,) + out)


def naive_deconv(x, w, b, kernel, stride, pad, dilation, group, axis=1):
    """Deconvolution: every input value scatters x[i] w[c, m, k] to output i * s + k * d - p;
    weights (C, num_output / group, *kernel)."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    lead, channels, spatial = x.shape[:axis], x.shape[axis], x.shape[axis + 1:]
    xb = x.reshape((-1, channels) + spatial)
    mg = w.shape[1]
    cg = channels // group
    cout = mg * group
    full = tuple(s * (n - 1) + d * (k - 1) + 1
                 for n, k, s, d in zip(spatial, kernel, stride, dilation))
    y = np.zeros((xb.shape[0], cout) + full)
    for i in np.ndindex(*spatial):
        for g in range(group):
            value = xb[(slice(None), slice(g * cg, (g + 1) * cg)) + i]
            for kk in np.ndindex(*kernel):
                pos = tuple(ii * s + ki * d for ii, ki, s, d in zip(i, kk, stride, dilation))
                y[(slice(None), slice(g * mg, (g + 1) * mg)) + pos] += \
                    value @ w[(slice(g * cg, (g + 1) * cg), slice(None)) + kk]
    crop = tuple(slice(p, f - p) for p, f in zip(pad, full))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.astype(np.float64).reshape((cout,) + (1,) * len(spatial))
    return y.reshape(tuple(lead) + (cout,) + y.shape[2:])


def naive_im2col(x, kernel, stride, pad, dilation, axis=1):
    """Im2col: channel (c * prod(kernel) + flat kernel offset) at output o holds
    x[c, o * s - p + k * d], zero outside the image."""
    x = x.astype(np.float64)
    lead, channels, spatial = x.shape[:axis], x.shape[axis], x.shape[axis + 1:]
    xb = x.reshape((-1, channels) + spatial)
    out = tuple(conv_out(n, k, s, p, d)
                for n, k, s, p, d in zip(spatial, kernel, stride, pad, dilation))
    size = math.prod(kernel)
    y = np.zeros((xb.shape[0], channels * size) + out)
    for o in np.ndindex(*out):
        for flat, kk in enumerate(np.ndindex(*kernel)):
            pos = tuple(oi * s - p + ki * d
                        for oi, ki, s, p, d in zip(o, kk, stride, pad, dilation))
            if all(0 <= q < n for q, n in zip(pos, spatial)):
                for c in range(channels):
                    y[(slice(None), c * size + flat) + o] = xb[(slice(None), c) + pos]
    return y.reshape(tuple(lead) + (channels * size,) + out)


def pooled(size, kernel, stride, pad, ceil_mode, any_pad):
    """PoolingLayer::Reshape for one axis: float division rounded up (CEIL) or down, then,
    when either axis is padded, a last window starting beyond the image and its padding is
    dropped."""
    ratio = (size + 2 * pad - kernel) / stride
    out = int(math.ceil(ratio) if ceil_mode else math.floor(ratio)) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def naive_pool(x, method, kernel, stride, pad, ceil_mode=True, uniform=None):
    """Caffe's pooling loops (CPU for MAX and AVE, the GPU kernels for STOCHASTIC), one output
    position at a time, vectorised only over (N, C). Returns (top, mask). ``uniform``
    (N, C, out_h, out_w) in (0, 1] selects STOCHASTIC's TRAIN sampling, done in the input's
    dtype."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    any_pad = bool(ph or pw)
    oh = pooled(h, kh, sh, ph, ceil_mode, any_pad)
    ow = pooled(w, kw, sw, pw, ceil_mode, any_pad)
    dtype = x.dtype if uniform is not None else np.dtype(np.float64)
    xs = x.astype(dtype)
    top = np.zeros((n, c, oh, ow), dtype)
    mask = np.full((n, c, oh, ow), -1.0)
    for i in range(oh):
        for j in range(ow):
            if method == "MAX":
                hs, ws = i * sh - ph, j * sw - pw
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                best = np.full((n, c), -FLT_MAX)
                index = np.full((n, c), -1.0)
                for y in range(hs, he):
                    for z in range(ws, we):
                        value = xs[:, :, y, z]
                        better = value > best
                        best = np.where(better, value, best)
                        index = np.where(better, y * w + z, index)
                top[:, :, i, j] = best
                mask[:, :, i, j] = index
            elif method == "AVE":
                hs, ws = i * sh - ph, j * sw - pw
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                total = np.zeros((n, c))
                for y in range(hs, he):
                    for z in range(ws, we):
                        total += xs[:, :, y, z]
                top[:, :, i, j] = total / size
            elif uniform is None:  # STOCHASTIC, TEST
                hs, ws = i * sh, j * sw
                he, we = min(hs + kh, h), min(ws + kw, w)
                total = np.zeros((n, c))
                squares = np.zeros((n, c))
                for y in range(hs, he):
                    for z in range(ws, we):
                        total += xs[:, :, y, z]
                        squares += xs[:, :, y, z] ** 2
                top[:, :, i, j] = np.where(total > 0, squares / np.where(total > 0, total, 1),
                                           0)
            else:  # STOCHASTIC, TRAIN
                hs, ws = i * sh, j * sw
                he, we = min(hs + kh, h), min(ws + kw, w)
                for a in range(n):
                    for b in range(c):
                        cells = [xs[a, b, y, z] for y in range(hs, he) for z in range(ws, we)]
                        total = dtype.type(0)
                        for v in cells:
                            total = total + v
                        threshold = np.float32(uniform[a, b, i, j] * total)
                        running = dtype.type(0)
                        for v in cells:
                            running = running + v
                            if running >= threshold:
                                top[a, b, i, j] = v
                                break
    return top, mask


def uniforms(seed: int, shapes: list, dtype) -> list:
    """The (0, 1] numbers STOCHASTIC pooling draws from Generator(seed), in order."""
    rng = np.random.default_rng(seed)
    return [dtype(1) - rng.random(shape, dtype=dtype) for shape in shapes]


def naive_spp(x, method, height, uniform_seed=None):
    """SPP: level l pools with kernel ceil(H / 2^l), pad (kernel * 2^l - H + 1) / 2 and stride
    kernel, CEIL rounding; flattened and concatenated (level 0 alone keeps (N, C, 1, 1))."""
    n, c, h, w = x.shape
    plans = []
    for level in range(height):
        bins = 2 ** level
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        plans.append(((kh, kw), (ph, pw)))
    draws = None
    if uniform_seed is not None:
        shapes = []
        for (kh, kw), (ph, pw) in plans:
            any_pad = bool(ph or pw)
            shapes.append((n, c, pooled(h, kh, kh, ph, True, any_pad),
                           pooled(w, kw, kw, pw, True, any_pad)))
        draws = uniforms(uniform_seed, shapes, x.dtype.type)
    tops = []
    for index, ((kh, kw), (ph, pw)) in enumerate(plans):
        top, _ = naive_pool(x, method, (kh, kw), (kh, kw), (ph, pw),
                            uniform=None if draws is None else draws[index])
        tops.append(top)
    if height == 1:
        return tops[0]
    return np.concatenate([t.reshape(n, -1) for t in tops], axis=1)


# -- Convolution ----------------------------------------------------------------------------------

CONV_CV2 = [
    ("k1", "num_output: 6 kernel_size: 1", (2, 8, 7, 7)),
    ("k1-stride2", "num_output: 6 kernel_size: 1 stride: 2", (2, 8, 7, 7)),
    ("k1-pad1", "num_output: 6 kernel_size: 1 pad: 1", (1, 8, 5, 5)),
    ("k3-pad1", "num_output: 8 kernel_size: 3 pad: 1", (1, 6, 9, 9)),
    ("k3-stride2-pad1", "num_output: 8 kernel_size: 3 stride: 2 pad: 1", (1, 6, 10, 10)),
    ("k3-stride2-unused-edge", "num_output: 4 kernel_size: 3 stride: 2", (1, 3, 8, 8)),
    ("k5-pad2", "num_output: 5 kernel_size: 5 pad: 2", (1, 3, 11, 11)),
    ("k5-stride2-pad1", "num_output: 5 kernel_size: 5 stride: 2 pad: 1", (1, 3, 12, 11)),
    ("dilation2-pad2", "num_output: 4 kernel_size: 3 pad: 2 dilation: 2", (1, 5, 10, 10)),
    ("dilation2-stride2", "num_output: 4 kernel_size: 3 stride: 2 dilation: 2", (1, 4, 13, 13)),
    ("group2", "num_output: 6 kernel_size: 3 pad: 1 group: 2", (1, 4, 8, 8)),
    ("group2-dilation2-stride2", "num_output: 6 kernel_size: 3 pad: 2 stride: 2 dilation: 2 "
                                 "group: 2", (2, 4, 9, 9)),
    ("depthwise", "num_output: 8 kernel_size: 3 pad: 1 group: 8", (2, 8, 9, 9)),
    ("depthwise-stride2", "num_output: 8 kernel_size: 3 pad: 1 stride: 2 group: 8", (1, 8, 9, 9)),
    ("depthwise-multiplier2", "num_output: 12 kernel_size: 3 pad: 1 group: 6", (1, 6, 7, 7)),
    ("kernel_h3-kernel_w5", "num_output: 4 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 "
                            "stride_h: 2 stride_w: 1", (1, 3, 9, 10)),
    ("kernel_h1-kernel_w3", "num_output: 4 kernel_h: 1 kernel_w: 3", (1, 3, 6, 7)),
    ("no-bias", "num_output: 4 kernel_size: 3 pad: 1 bias_term: false", (1, 3, 6, 6)),
    ("batch3", "num_output: 5 kernel_size: 3 pad: 1 stride: 2", (3, 4, 9, 9)),
    ("per-axis-lists", "num_output: 4 kernel_size: 3 kernel_size: 2 stride: 1 stride: 2 "
                       "pad: 1 pad: 0", (1, 3, 7, 8)),
    # OpenCV runs N-D convolutions when every geometry field is given once per axis
    ("3d-per-axis-stride-pad-dilation",
     "num_output: 3 kernel_size: 3 kernel_size: 2 kernel_size: 3 stride: 1 stride: 2 stride: 2 "
     "pad: 1 pad: 0 pad: 2 dilation: 1 dilation: 1 dilation: 2", (2, 2, 5, 7, 8)),
    ("1d-k3-stride2", "num_output: 4 kernel_size: 3 stride: 2 pad: 1", (2, 3, 11)),
]


@pytest.mark.parametrize("variant,params,shape", CONV_CV2, ids=[c[0] for c in CONV_CV2])
def test_convolution_vs_opencv(variant, params, shape):
    rng = np.random.default_rng(1)
    body = f'type: "Convolution" convolution_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    (top,) = run(body, x, blobs)
    assert_close(top, cv2_reference(body, x, blobs), RTOL)


# (variant, convolution_param, input shape, kernel, stride, pad, dilation, group, axis)
CONV_NAIVE = [
    ("3d-k3-group2", "num_output: 4 kernel_size: 3 pad: 1 group: 2", (2, 4, 5, 6, 7),
     (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), 2, 1),
    ("3d-per-axis-stride-pad-dilation",
     "num_output: 3 kernel_size: 3 kernel_size: 2 kernel_size: 3 stride: 1 stride: 2 stride: 2 "
     "pad: 1 pad: 0 pad: 2 dilation: 1 dilation: 1 dilation: 2", (1, 2, 5, 7, 8),
     (3, 2, 3), (1, 2, 2), (1, 0, 2), (1, 1, 2), 1, 1),
    ("3d-k1", "num_output: 5 kernel_size: 1", (2, 3, 3, 4, 5),
     (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, 1),
    ("1d-k3-stride2", "num_output: 4 kernel_size: 3 stride: 2 pad: 1", (2, 3, 11),
     (3,), (2,), (1,), (1,), 1, 1),
    ("axis2-5d-input", "num_output: 4 kernel_size: 3 pad: 1 axis: 2", (2, 3, 5, 6, 6),
     (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),
    ("axis-negative", "num_output: 4 kernel_size: 2 axis: -3", (2, 3, 5, 6, 6),
     (2, 2), (1, 1), (0, 0), (1, 1), 1, 2),
    ("window-overhangs-padding", "num_output: 3 kernel_size: 5 pad: 1 stride: 4", (1, 2, 2, 3),
     (5, 5), (4, 4), (1, 1), (1, 1), 1, 1),
    ("pad-larger-than-kernel", "num_output: 3 kernel_size: 2 pad: 3 stride: 3", (1, 2, 4, 4),
     (2, 2), (3, 3), (3, 3), (1, 1), 1, 1),
]


@pytest.mark.parametrize("variant,params,shape,kernel,stride,pad,dilation,group,axis",
                         CONV_NAIVE, ids=[c[0] for c in CONV_NAIVE])
def test_convolution_vs_formula(variant, params, shape, kernel, stride, pad, dilation, group,
                                axis):
    rng = np.random.default_rng(2)
    body = f'type: "Convolution" convolution_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    (top,) = run(body, x, blobs)
    expected = naive_conv(x, blobs[0], blobs[1], kernel, stride, pad, dilation, group, axis)
    assert_close(top, expected, RTOL)


def test_convolution_float64():
    rng = np.random.default_rng(3)
    body = 'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 ' \
           'stride: 2 dilation: 2 group: 2 }'
    x = rng.standard_normal((2, 4, 9, 8))
    blobs = random_blobs(body, x.shape, rng, np.float64)
    (top,) = run(body, x, blobs)
    expected = naive_conv(x, blobs[0], blobs[1], (3, 3), (2, 2), (1, 1), (2, 2), 2)
    assert_close(top, expected, RTOL_DOUBLE)


def test_convolution_two_bottoms_share_weights():
    rng = np.random.default_rng(4)
    body = 'type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 }'
    layer = parse('name: "c" bottom: "a" bottom: "b" top: "a1" top: "b1" ' + body)
    a = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    b = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    blobs = random_blobs(body, a.shape, rng)
    tops = get_spec("Convolution").forward(layer, [a, b], blobs, ForwardContext())
    for x, top in zip((a, b), tops):
        expected = naive_conv(x, blobs[0], blobs[1], (3, 3), (1, 1), (0, 0), (1, 1), 1)
        assert_close(top, expected, RTOL)


# -- Deconvolution --------------------------------------------------------------------------------

DECONV_CV2 = [
    ("k3-stride2-pad1", "num_output: 4 kernel_size: 3 stride: 2 pad: 1", (1, 3, 5, 5)),
    ("k4-stride2-pad1-group2", "num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2",
     (2, 6, 5, 4)),
    ("k1", "num_output: 5 kernel_size: 1", (2, 3, 4, 4)),
    ("k2-stride2", "num_output: 3 kernel_size: 2 stride: 2", (1, 4, 3, 5)),
    ("k3-stride1-pad1", "num_output: 3 kernel_size: 3 pad: 1", (1, 2, 6, 6)),
    ("no-bias", "num_output: 3 kernel_size: 3 stride: 2 bias_term: false", (1, 2, 4, 4)),
    ("kernel_h3-kernel_w2", "num_output: 3 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 "
                            "pad_h: 1 pad_w: 0", (1, 2, 4, 5)),
]


@pytest.mark.parametrize("variant,params,shape", DECONV_CV2, ids=[c[0] for c in DECONV_CV2])
def test_deconvolution_vs_opencv(variant, params, shape):
    rng = np.random.default_rng(5)
    body = f'type: "Deconvolution" convolution_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    (top,) = run(body, x, blobs)
    assert_close(top, cv2_reference(body, x, blobs), RTOL)


DECONV_NAIVE = [
    ("stride2-pad1-group2-dilation2", "num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 "
                                      "dilation: 2", (2, 4, 4, 5),
     (3, 3), (2, 2), (1, 1), (2, 2), 2, 1),
    ("dilation3-no-bias", "num_output: 2 kernel_size: 2 dilation: 3 bias_term: false",
     (1, 3, 4, 4), (2, 2), (1, 1), (0, 0), (3, 3), 1, 1),
    ("3d-k3-stride2-pad1", "num_output: 3 kernel_size: 3 stride: 2 pad: 1", (1, 2, 3, 4, 3),
     (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), 1, 1),
    ("axis2", "num_output: 4 kernel_size: 2 stride: 2 group: 2 axis: 2", (2, 2, 4, 3, 3),
     (2, 2), (2, 2), (0, 0), (1, 1), 2, 2),
    ("1d", "num_output: 3 kernel_size: 4 stride: 3 pad: 1", (2, 2, 5),
     (4,), (3,), (1,), (1,), 1, 1),
    ("pad-beyond-kernel", "num_output: 2 kernel_size: 3 pad: 3", (1, 2, 8, 7),
     (3, 3), (1, 1), (3, 3), (1, 1), 1, 1),
    ("k4-stride2-pad5", "num_output: 2 kernel_size: 4 stride: 2 pad: 5 group: 2", (2, 4, 6, 7),
     (4, 4), (2, 2), (5, 5), (1, 1), 2, 1),
    ("k5-stride3-pad2-asymmetric-input", "num_output: 3 kernel_size: 5 stride: 3 pad: 2",
     (1, 2, 3, 6), (5, 5), (3, 3), (2, 2), (1, 1), 1, 1),
]


@pytest.mark.parametrize("variant,params,shape,kernel,stride,pad,dilation,group,axis",
                         DECONV_NAIVE, ids=[c[0] for c in DECONV_NAIVE])
def test_deconvolution_vs_formula(variant, params, shape, kernel, stride, pad, dilation, group,
                                  axis):
    rng = np.random.default_rng(6)
    body = f'type: "Deconvolution" convolution_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    bias = blobs[1] if len(blobs) > 1 else None
    (top,) = run(body, x, blobs)
    expected = naive_deconv(x, blobs[0], bias, kernel, stride, pad, dilation, group, axis)
    assert_close(top, expected, RTOL)


def test_deconvolution_float64():
    rng = np.random.default_rng(7)
    body = 'type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2 ' \
           'pad: 1 group: 2 }'
    x = rng.standard_normal((2, 4, 3, 4))
    blobs = random_blobs(body, x.shape, rng, np.float64)
    (top,) = run(body, x, blobs)
    expected = naive_deconv(x, blobs[0], blobs[1], (3, 3), (2, 2), (1, 1), (1, 1), 2)
    assert_close(top, expected, RTOL_DOUBLE)


# -- Im2col ---------------------------------------------------------------------------------------

IM2COL = [
    ("k3-stride2-pad1", "kernel_size: 3 stride: 2 pad: 1", (2, 3, 7, 6),
     (3, 3), (2, 2), (1, 1), (1, 1), 1),
    ("kernel_h2-kernel_w3-dilation2", "kernel_h: 2 kernel_w: 3 dilation: 2 pad_h: 1 pad_w: 0",
     (1, 2, 6, 8), (2, 3), (1, 1), (1, 0), (2, 2), 1),
    ("k1", "kernel_size: 1", (1, 4, 3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    ("3d", "kernel_size: 2 stride: 1 pad: 1", (1, 2, 3, 4, 3),
     (2, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1),
    ("axis2", "kernel_size: 2 stride: 2 axis: 2", (2, 2, 3, 5, 4),
     (2, 2), (2, 2), (0, 0), (1, 1), 2),
]


@pytest.mark.parametrize("variant,params,shape,kernel,stride,pad,dilation,axis", IM2COL,
                         ids=[c[0] for c in IM2COL])
def test_im2col_vs_formula(variant, params, shape, kernel, stride, pad, dilation, axis):
    rng = np.random.default_rng(8)
    body = f'type: "Im2col" convolution_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    (top,) = run(body, x, [])
    assert_close(top, naive_im2col(x, kernel, stride, pad, dilation, axis), RTOL)


# -- Pooling --------------------------------------------------------------------------------------

# (variant, Caffe pooling_param, OpenCV's spelling where its schema differs, input shape)
POOL_CV2 = [
    ("max-k3-stride2-ceil", "pool: MAX kernel_size: 3 stride: 2", None, (1, 3, 8, 8)),
    ("max-k3-stride2-pad1", "pool: MAX kernel_size: 3 stride: 2 pad: 1", None, (2, 3, 9, 8)),
    ("max-k2-stride2-pad1-clip", "pool: MAX kernel_size: 2 stride: 2 pad: 1", None,
     (1, 2, 5, 5)),
    ("max-floor", "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR",
     "pool: MAX kernel_size: 3 stride: 2 ceil_mode: false", (1, 2, 8, 8)),
    ("max-asymmetric", "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 "
                       "pad_w: 0", None, (1, 2, 7, 6)),
    ("max-global", "pool: MAX global_pooling: true", None, (2, 3, 5, 6)),
    ("max-k9-stride3-window-path", "pool: MAX kernel_size: 9 stride: 3", None, (1, 2, 20, 17)),
    ("ave-k3-stride2-pad1-far-edge", "pool: AVE kernel_size: 3 stride: 2 pad: 1", None,
     (1, 3, 6, 6)),
    ("ave-k2-stride2-pad1-clip", "pool: AVE kernel_size: 2 stride: 2 pad: 1", None,
     (2, 2, 5, 5)),
    ("ave-k3-stride1-pad1", "pool: AVE kernel_size: 3 stride: 1 pad: 1", None, (1, 2, 5, 5)),
    ("ave-ceil-no-pad", "pool: AVE kernel_size: 3 stride: 2", None, (1, 2, 8, 8)),
    ("ave-floor", "pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR",
     "pool: AVE kernel_size: 3 stride: 2 ceil_mode: false", (1, 2, 8, 8)),
    ("ave-floor-pad1", "pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR",
     "pool: AVE kernel_size: 3 stride: 2 pad: 1 ceil_mode: false", (1, 2, 8, 8)),
    ("ave-asymmetric", "pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 "
                       "pad_w: 1", None, (1, 2, 6, 7)),
    ("ave-global-7x7", "pool: AVE global_pooling: true", None, (2, 4, 7, 7)),
    ("ave-global-12x12-window-path", "pool: AVE global_pooling: true", None, (1, 3, 12, 12)),
]


@pytest.mark.parametrize("variant,params,cv2_params,shape", POOL_CV2,
                         ids=[c[0] for c in POOL_CV2])
def test_pooling_vs_opencv(variant, params, cv2_params, shape):
    rng = np.random.default_rng(9)
    body = f'type: "Pooling" pooling_param {{ {params} }}'
    cv2_body = f'type: "Pooling" pooling_param {{ {cv2_params or params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    (top,) = run(body, x, [])
    assert_close(top, cv2_reference(body, x, [], cv2_body), RTOL)


def test_pooling_max_two_tops_vs_opencv():
    """The value top of a MAX layer with a mask top (OpenCV does not return the mask)."""
    rng = np.random.default_rng(10)
    body = 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }'
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    top, _ = run(body, x, [], tops=("out", "mask"))
    net = net_text(body, x.shape, ("out", "mask"))
    assert_close(top, cv2_forward(net, None, {"data": x}, ["out"])["out"], RTOL)


# (variant, pooling_param, input shape, method, kernel, stride, pad, ceil)
POOL_MASK = [
    ("k3-stride2-pad1", "kernel_size: 3 stride: 2 pad: 1", (2, 3, 7, 8),
     (3, 3), (2, 2), (1, 1), True),
    ("k2-stride2-pad1-clip", "kernel_size: 2 stride: 2 pad: 1", (1, 2, 5, 5),
     (2, 2), (2, 2), (1, 1), True),
    ("asymmetric-floor", "kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 round_mode: FLOOR",
     (1, 2, 6, 7), (3, 2), (1, 2), (0, 0), False),
    ("global", "global_pooling: true", (2, 2, 9, 10), (9, 10), (1, 1), (0, 0), True),
    ("ceil-empty-window", "kernel_size: 1 stride: 3", (1, 2, 5, 5),
     (1, 1), (3, 3), (0, 0), True),
]


@pytest.mark.parametrize("variant,params,shape,kernel,stride,pad,ceil", POOL_MASK,
                         ids=[c[0] for c in POOL_MASK])
def test_pooling_max_mask_vs_formula(variant, params, shape, kernel, stride, pad, ceil):
    rng = np.random.default_rng(11)
    body = f'type: "Pooling" pooling_param {{ pool: MAX {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :2] = 0.5  # a tie: the first maximum in row-major order wins
    top, mask = run(body, x, [], tops=("out", "mask"))
    expected_top, expected_mask = naive_pool(x, "MAX", kernel, stride, pad, ceil)
    assert_close(top, expected_top, RTOL)
    np.testing.assert_array_equal(mask, expected_mask)
    (single,) = run(body, x, [])  # the one-top path gives the same values
    np.testing.assert_array_equal(single, top)


def test_pooling_max_skips_nan_and_minus_infinity():
    """Caffe's MAX starts at -FLT_MAX and takes strictly larger values: NaN never wins, a
    window of only NaN, -inf or -FLT_MAX gives -FLT_MAX with index -1."""
    x = np.array([[[[np.nan, 1.0, -FLT_MAX, -np.inf],
                    [2.0, np.nan, -np.inf, np.nan]]]], np.float32)
    body = 'type: "Pooling" pooling_param { pool: MAX kernel_size: 2 stride: 2 }'
    # the PyTorch export propagates NaN here (F.max_pool2d does; its docs say so)
    top, mask = run(body, x, [], tops=("out", "mask"), torch_too=False)
    expected_top, expected_mask = naive_pool(x, "MAX", (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(top, expected_top.astype(np.float32))
    np.testing.assert_array_equal(mask, expected_mask)
    assert top[0, 0, 0].tolist() == [2.0, -FLT_MAX] and mask[0, 0, 0].tolist() == [4.0, -1.0]
    (single,) = run(body, x, [], torch_too=False)
    np.testing.assert_array_equal(single, top)
    big = np.full((1, 1, 9, 9), np.nan, np.float32)  # the window path (81 cells)
    (single,) = run('type: "Pooling" pooling_param { pool: MAX global_pooling: true }', big, [],
                    torch_too=False)
    assert single.tolist() == [[[[-FLT_MAX]]]]


POOL_NAIVE = [
    ("ave-ceil-empty-window", "pool: AVE kernel_size: 1 stride: 3", "AVE", (1, 2, 5, 5),
     (1, 1), (3, 3), (0, 0)),
    ("max-ceil-empty-window", "pool: MAX kernel_size: 1 stride: 3", "MAX", (1, 2, 5, 5),
     (1, 1), (3, 3), (0, 0)),
    ("ave-k3-stride2-pad2", "pool: AVE kernel_size: 3 stride: 2 pad: 2", "AVE", (2, 2, 7, 6),
     (3, 3), (2, 2), (2, 2)),
    # ceil((2 - 3) / 2) + 1 = 1 window, clipped to the image (OpenCV makes no window)
    ("ave-kernel-larger-than-input", "pool: AVE kernel_size: 3 stride: 2", "AVE", (1, 2, 2, 2),
     (3, 3), (2, 2), (0, 0)),
    ("max-kernel-larger-than-input", "pool: MAX kernel_size: 3 stride: 2", "MAX", (1, 2, 2, 2),
     (3, 3), (2, 2), (0, 0)),
    ("stochastic-test-k3-stride2", "pool: STOCHASTIC kernel_size: 3 stride: 2", "STOCHASTIC",
     (2, 3, 8, 7), (3, 3), (2, 2), (0, 0)),
    ("stochastic-test-asymmetric", "pool: STOCHASTIC kernel_h: 2 kernel_w: 3 stride_h: 2 "
                                   "stride_w: 1", "STOCHASTIC", (1, 2, 5, 6),
     (2, 3), (2, 1), (0, 0)),
]


@pytest.mark.parametrize("variant,params,method,shape,kernel,stride,pad", POOL_NAIVE,
                         ids=[c[0] for c in POOL_NAIVE])
def test_pooling_vs_formula(variant, params, method, shape, kernel, stride, pad):
    rng = np.random.default_rng(12)
    body = f'type: "Pooling" pooling_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    if method == "STOCHASTIC":
        x = np.abs(x)
        x[0, 0, :3, :3] = 0  # a window summing to 0 gives 0
        x[0, 1, 0, 0] = -5  # a window with a negative sum too
    (top,) = run(body, x, [])
    expected, _ = naive_pool(x, method, kernel, stride, pad)
    assert_close(top, expected, RTOL)


def test_pooling_stochastic_train_replays_sampling():
    """TRAIN samples a cell with probability x / sum(x): the first cell whose running sum
    reaches u * sum, u uniform in (0, 1] drawn from the context's Generator."""
    rng = np.random.default_rng(13)
    x = np.abs(rng.standard_normal((2, 3, 9, 8))).astype(np.float32)
    x[0, 0, :3, :3] = 0
    x[1, 2, 2:5, 2:5] = [[0, 0, 0], [0, 7, 0], [0, 0, 0]]
    body = 'type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 3 stride: 2 }'
    (top,) = run(body, x, [], phase=TRAIN, rng=np.random.default_rng(99))
    (draw,) = uniforms(99, [top.shape], np.float32)
    expected, _ = naive_pool(x, "STOCHASTIC", (3, 3), (2, 2), (0, 0), uniform=draw)
    np.testing.assert_array_equal(top, expected)
    assert top[1, 2, 1, 1] == 7  # the only non-zero cell of its window
    (again,) = run(body, x, [], phase=TRAIN, rng=np.random.default_rng(5))
    assert not np.array_equal(again, top)  # another draw picks other cells


def test_pooling_float64():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 2, 7, 7))
    body = 'type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }'
    (top,) = run(body, x, [])
    assert_close(top, naive_pool(x, "AVE", (3, 3), (2, 2), (1, 1))[0], RTOL_DOUBLE)
    body = 'type: "Pooling" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }'
    top, mask = run(body, x, [], tops=("out", "mask"))
    expected_top, expected_mask = naive_pool(x, "MAX", (3, 3), (2, 2), (1, 1))
    assert_close(top, expected_top, RTOL_DOUBLE)
    np.testing.assert_array_equal(mask, expected_mask)


# -- SPP ------------------------------------------------------------------------------------------

SPP = [
    ("max-height3", "pool: MAX pyramid_height: 3", "MAX", 3, (2, 3, 13, 11)),
    ("ave-height3", "pool: AVE pyramid_height: 3", "AVE", 3, (2, 3, 13, 11)),
    ("max-height2-odd", "pool: MAX pyramid_height: 2", "MAX", 2, (1, 2, 5, 7)),
    ("ave-height1", "pool: AVE pyramid_height: 1", "AVE", 1, (2, 4, 6, 5)),
    ("max-height4", "pool: MAX pyramid_height: 4", "MAX", 4, (1, 2, 16, 20)),
]


@pytest.mark.parametrize("variant,params,method,height,shape", SPP, ids=[c[0] for c in SPP])
def test_spp_vs_formula(variant, params, method, height, shape):
    rng = np.random.default_rng(15)
    body = f'type: "SPP" spp_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    (top,) = run(body, x, [])
    assert_close(top, naive_spp(x, method, height), RTOL)


def test_spp_stochastic_samples_even_at_test():
    """SPP's pooling layers come from a fresh LayerParameter whose phase is TRAIN, so
    STOCHASTIC SPP samples in a TEST net as well."""
    rng = np.random.default_rng(16)
    x = np.abs(rng.standard_normal((2, 2, 8, 8))).astype(np.float32)
    body = 'type: "SPP" spp_param { pool: STOCHASTIC pyramid_height: 3 }'
    # (torch draws other numbers: test_export.py checks what its samples are)
    (top,) = run(body, x, [], phase=TEST, rng=np.random.default_rng(21), torch_too=False)
    np.testing.assert_array_equal(top, naive_spp(x, "STOCHASTIC", 3, uniform_seed=21))


# -- InnerProduct ---------------------------------------------------------------------------------

IP_CV2 = [
    ("axis1", "num_output: 5", (2, 3, 4, 4)),
    ("axis1-2d-input", "num_output: 7", (4, 10)),
    ("axis2", "num_output: 5 axis: 2", (2, 3, 4, 4)),
    ("axis1-no-bias", "num_output: 6 bias_term: false", (3, 8, 2, 2)),
    ("axis1-batch1", "num_output: 3", (1, 12)),
]


@pytest.mark.parametrize("variant,params,shape", IP_CV2, ids=[c[0] for c in IP_CV2])
def test_inner_product_vs_opencv(variant, params, shape):
    rng = np.random.default_rng(17)
    body = f'type: "InnerProduct" inner_product_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    (top,) = run(body, x, blobs)
    assert_close(top, cv2_reference(body, x, blobs), RTOL)


# (variant, inner_product_param, input shape, axis, transpose)
IP_NAIVE = [
    ("transpose", "num_output: 5 transpose: true", (2, 3, 4, 4), 1, True),
    ("transpose-axis2", "num_output: 4 transpose: true axis: 2", (2, 3, 4, 5), 2, True),
    ("transpose-no-bias", "num_output: 4 transpose: true bias_term: false", (3, 6), 1, True),
    ("axis-negative", "num_output: 3 axis: -1", (2, 3, 4), 2, False),
    ("axis0", "num_output: 3 axis: 0", (2, 3, 4), 0, False),
]


def naive_inner_product(x, w, b, axis, transpose):
    lead = x.shape[:axis]
    x2 = x.astype(np.float64).reshape(math.prod(lead), -1)
    w = w.astype(np.float64)
    n = w.shape[1] if transpose else w.shape[0]
    y = np.zeros((x2.shape[0], n))
    for i in range(x2.shape[0]):
        for j in range(n):
            weights = w[:, j] if transpose else w[j, :]
            y[i, j] = np.dot(x2[i], weights) + (0 if b is None else b[j])
    return y.reshape(tuple(lead) + (n,))


@pytest.mark.parametrize("variant,params,shape,axis,transpose", IP_NAIVE,
                         ids=[c[0] for c in IP_NAIVE])
def test_inner_product_vs_formula(variant, params, shape, axis, transpose):
    rng = np.random.default_rng(18)
    body = f'type: "InnerProduct" inner_product_param {{ {params} }}'
    x = rng.standard_normal(shape).astype(np.float32)
    blobs = random_blobs(body, shape, rng)
    bias = blobs[1] if len(blobs) > 1 else None
    (top,) = run(body, x, blobs)
    assert_close(top, naive_inner_product(x, blobs[0], bias, axis, transpose), RTOL)


def test_inner_product_float64_and_legacy_weight_shape():
    rng = np.random.default_rng(19)
    body = 'type: "InnerProduct" inner_product_param { num_output: 4 }'
    x = rng.standard_normal((2, 3, 2, 2))
    weight = rng.standard_normal((1, 1, 4, 12))  # old files: 1x1xNxK
    bias = rng.standard_normal(4)
    (top,) = run(body, x, [weight, bias])
    assert_close(top, naive_inner_product(x, weight.reshape(4, 12), bias, 1, False),
                 RTOL_DOUBLE)


def test_inner_product_rejects_wrong_weight_count():
    body = 'type: "InnerProduct" inner_product_param { num_output: 4 }'
    layer = parse(layer_text(body))
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="weights hold 24 values"):
        get_spec("InnerProduct").forward(layer, [x], [np.zeros((4, 6), np.float32),
                                                      np.zeros(4, np.float32)], ForwardContext())


# -- Embed ----------------------------------------------------------------------------------------

def naive_embed(x, w, b):
    flat = x.reshape(-1)
    y = np.zeros((flat.size, w.shape[1]))
    for i, value in enumerate(flat):
        y[i] = w[int(value)] + (0 if b is None else b)
    return y.reshape(x.shape + (w.shape[1],))


EMBED = [
    ("bias", "num_output: 4 input_dim: 10", (6,)),
    ("no-bias", "num_output: 3 input_dim: 5 bias_term: false", (2, 4)),
    ("3d-input", "num_output: 2 input_dim: 7", (2, 3, 2)),
]


@pytest.mark.parametrize("variant,params,shape", EMBED, ids=[c[0] for c in EMBED])
def test_embed_vs_formula(variant, params, shape):
    rng = np.random.default_rng(20)
    body = f'type: "Embed" embed_param {{ {params} }}'
    layer = parse(layer_text(body))
    x = rng.integers(0, layer.embed_param.input_dim, shape).astype(np.float32)
    x.reshape(-1)[0] = layer.embed_param.input_dim - 1
    blobs = random_blobs(body, shape, rng)
    bias = blobs[1] if len(blobs) > 1 else None
    (top,) = run(body, x, blobs)
    assert_close(top, naive_embed(x, blobs[0], bias), RTOL)


@pytest.mark.parametrize("value,message", [(2.5, "not an integer"), (np.nan, "not an integer"),
                                           (10.0, "out of range"), (-1.0, "out of range")])
def test_embed_rejects_bad_indices(value, message):
    body = 'type: "Embed" embed_param { num_output: 2 input_dim: 10 }'
    layer = parse(layer_text(body))
    x = np.array([1, value, 3], np.float32)
    blobs = [np.zeros((10, 2), np.float32), np.zeros(2, np.float32)]
    with pytest.raises(ValueError, match=message):
        get_spec("Embed").forward(layer, [x], blobs, ForwardContext())
