"""Forward passes of the activation, normalization, structure, loss and recurrent layers.

Every case runs one layer through its spec's ``forward`` and compares the tops with an
independent oracle: OpenCV's dnn module reading the same one-layer net (``oracle.cv2_forward``)
where it supports the layer and agrees with Caffe, and otherwise Caffe's formula written out
here in float64 (naive loops where the indexing is the point). Tolerance: max abs error
<= 1e-5 x max |expected| (``oracle.assert_close``) unless a case says otherwise.

Set FORWARD_LAYERS_REPORT=path to write a table of every comparison's errors.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from google.protobuf import text_format
from oracle import assert_close, cv2_forward

from prototxt_tools.layers import TEST, TRAIN, ForwardContext, get_spec
from torch_check import compare_with_torch, write_report
from prototxt_tools.layers.recurrent import STATE_ATTRIBUTE
from prototxt_tools.schema import caffe_pb2

RTOL = 1e-5
RESULTS: list = []
#: Looser tolerances for the PyTorch comparison of a type (float32 kernels that sum in a
#: different order than the executor's), each explained where it is set.
TORCH_RTOL: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    write_report()
    path = os.environ.get("FORWARD_LAYERS_REPORT")
    if path:
        with open(path, "w") as out:
            out.write("| layer | variant | oracle | max abs err | max rel err |\n")
            out.write("|---|---|---|---|---|\n")
            for layer, variant, oracle, absolute, relative in RESULTS:
                out.write(f"| {layer} | {variant} | {oracle} | {absolute:.3g} | "
                          f"{relative:.3g} |\n")


def check(layer: str, variant: str, oracle: str, actual, expected, rtol: float = RTOL):
    """assert_close, recorded for the report."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (layer, variant, actual.shape, expected.shape)
    absolute, relative = assert_close(actual, expected, rtol)
    RESULTS.append((layer, variant, oracle, absolute, relative))
    return absolute, relative


def exact(layer: str, variant: str, oracle: str, actual, expected):
    """Bit-for-bit equality (moves, copies, integer results)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (layer, variant, actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected)
    RESULTS.append((layer, variant, oracle, 0.0, 0.0))


RNG = np.random.default_rng(20240601)


def randn(*shape, scale=1.0, dtype=np.float32):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def parse_layer(body: str):
    return text_format.Parse(body, caffe_pb2.LayerParameter())


def run(body: str, bottoms, blobs=(), *, phase=TEST, writable=(), rng=None, context=None,
        torch_too=True):
    """spec.forward on a layer given as the text inside ``layer { ... }``. Checks that the
    bottoms not offered as writable are left untouched and that float tops keep the input's
    dtype; with ``torch_too`` the exported layer must agree (torch_check.py)."""
    layer = parse_layer(body)
    spec = get_spec(layer.type)
    bottoms = [np.asarray(b) for b in bottoms]
    before = [b.copy() for b in bottoms]
    dtype = bottoms[0].dtype if bottoms else np.float32
    if context is None:
        context = ForwardContext(phase=phase, rng=rng if rng is not None else
                                 np.random.default_rng(0), dtype=dtype)
    context.writable = frozenset(writable)
    from_zero_state = not context.state  # a recurrent layer's later passes carry state
    blobs_before = [np.array(b, copy=True) for b in blobs]
    tops = spec.forward(layer, bottoms, list(blobs), context)
    for index, (now, then) in enumerate(zip(bottoms, before)):
        if index not in writable:
            np.testing.assert_array_equal(now, then, err_msg=f"bottom {index} was modified")
    for top in tops:
        assert top.dtype == dtype, (layer.type, top.dtype, dtype)
    if from_zero_state and torch_too:
        compare_with_torch(layer, before, blobs_before, tops, phase=context.phase,
                           rtol=TORCH_RTOL.get(layer.type, 1e-5))
    return tops


def cv2_run(body: str, inputs: dict, weights=None, tops=None):
    """The layer (named "l") in a net of Input blobs ``inputs`` under OpenCV. One output: the
    layer's; several ``tops``: each read through an identity Power layer (OpenCV names
    outputs by layer)."""
    lines = []
    for name, array in inputs.items():
        dims = " ".join(f"dim: {d}" for d in np.shape(array))
        lines.append(f'input: "{name}"\ninput_shape {{ {dims} }}')
    lines.append(f"layer {{ {body} }}")
    if tops is None:
        wanted = ["l"]
    else:
        wanted = []
        for top in tops:
            lines.append(f'layer {{ name: "out_{top}" type: "Power" bottom: "{top}" '
                         f'top: "out_{top}" }}')
            wanted.append(f"out_{top}")
    result = cv2_forward("\n".join(lines) + "\n", {"l": weights} if weights else None,
                         inputs, wanted)
    return [result[name] for name in wanted]


def f64(x):
    return np.asarray(x, np.float64)


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-f64(x)))


# == activations ==================================================================================

X4 = randn(2, 3, 4, 5, scale=2.0)
POSITIVE4 = (np.abs(randn(2, 3, 4, 5)) + 0.1).astype(np.float32)


def _softplus(x):
    return np.logaddexp(0.0, f64(x))


# (type, variant, parameters, input, formula, OpenCV agrees with Caffe here)
ELEMENTWISE = [
    ("ReLU", "default", "", X4, lambda x: np.maximum(x, 0), True),
    ("ReLU", "negative_slope 0.1", "relu_param { negative_slope: 0.1 }", X4,
     lambda x: np.where(x > 0, x, 0.1 * x), True),
    ("ELU", "default alpha 1", "", X4, lambda x: np.where(x > 0, x, np.expm1(x)), True),
    ("ELU", "alpha 0.5", "elu_param { alpha: 0.5 }", X4,
     lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)), True),
    ("Sigmoid", "", "", X4 * 4, sigmoid64, True),
    ("TanH", "", "", X4, np.tanh, True),
    ("AbsVal", "", "", X4, np.abs, True),
    ("BNLL", "", "", X4 * 10, _softplus, True),
    ("Power", "power 2 scale 0.5 shift 3", "power_param { power: 2 scale: 0.5 shift: 3 }", X4,
     lambda x: (3 + 0.5 * x) ** 2, True),
    ("Power", "power 3 negative base", "power_param { power: 3 scale: -1.5 }", X4,
     lambda x: (-1.5 * x) ** 3, True),
    ("Power", "power 0.5 scale 2 shift 1", "power_param { power: 0.5 scale: 2 shift: 1 }",
     POSITIVE4, lambda x: np.sqrt(1 + 2 * x), True),
    ("Power", "power 0 -> ones", "power_param { power: 0 scale: 3 shift: 2 }", X4,
     lambda x: np.ones_like(x), False),
    ("Power", "scale 0 -> shift^power", "power_param { power: 3 scale: 0 shift: 2 }", X4,
     lambda x: np.full_like(x, 8.0), False),
    ("Exp", "default (e^x)", "", X4, np.exp, True),
    ("Exp", "base 2 scale 0.5 shift 0.1", "exp_param { base: 2 scale: 0.5 shift: 0.1 }", X4,
     lambda x: 2.0 ** (0.1 + 0.5 * x), True),
    ("Exp", "base -1 scale 2 shift 1", "exp_param { base: -1 scale: 2 shift: 1 }", X4,
     lambda x: np.exp(1 + 2 * x), True),
    ("Log", "default (ln x)", "", POSITIVE4, np.log, True),
    ("Log", "base 10 scale 2 shift 1", "log_param { base: 10 scale: 2 shift: 1 }", POSITIVE4,
     lambda x: np.log10(1 + 2 * x), False),
    ("Log", "base -1 scale 0.5 shift 3", "log_param { scale: 0.5 shift: 3 }", POSITIVE4,
     lambda x: np.log(3 + 0.5 * x), False),
    ("Threshold", "default 0", "", X4, lambda x: (x > 0).astype(np.float64), False),
    ("Threshold", "threshold 0.3", "threshold_param { threshold: 0.3 }", X4,
     lambda x: (x > np.float32(0.3)).astype(np.float64), False),
    ("Clip", "min -0.5 max 0.7", "clip_param { min: -0.5 max: 0.7 }", X4,
     lambda x: np.minimum(np.maximum(x, -0.5), 0.7), False),
    ("Swish", "default beta 1", "", X4, lambda x: x * sigmoid64(x), True),
    ("Swish", "beta 2.5", "swish_param { beta: 2.5 }", X4, lambda x: x * sigmoid64(2.5 * x),
     False),
    ("Dropout", "TEST (identity)", "dropout_param { dropout_ratio: 0.3 }", X4, lambda x: x, True),
]


def _ids(cases):
    return [f"{c[0]}-{c[1]}" for c in cases]


@pytest.mark.parametrize("kind,variant,params,x,formula,use_cv2", ELEMENTWISE,
                         ids=_ids(ELEMENTWISE))
def test_elementwise(kind, variant, params, x, formula, use_cv2):
    body = f'name: "l" type: "{kind}" bottom: "x" top: "y" {params}'
    (y,) = run(body, [x])
    expected = formula(f64(x))
    check(kind, variant, "formula", y, expected)
    if use_cv2:
        (theirs,) = cv2_run(body, {"x": x})
        check(kind, variant, "OpenCV", y, theirs)


@pytest.mark.parametrize("kind,variant,params,x,formula,use_cv2", ELEMENTWISE,
                         ids=_ids(ELEMENTWISE))
def test_elementwise_in_place(kind, variant, params, x, formula, use_cv2):
    """With the bottom offered as writable the top is computed into it, bit-identical."""
    body = f'name: "l" type: "{kind}" bottom: "x" top: "x" {params}'
    (fresh,) = run(body, [x])
    buffer = x.copy()
    (y,) = run(body, [buffer], writable=[0])
    assert np.shares_memory(y, buffer)
    np.testing.assert_array_equal(y, fresh)


def test_cv2_ignores_swish_beta_and_log_parameters():
    """Where OpenCV and Caffe disagree (Caffe is followed): OpenCV's Swish ignores beta and its
    Log ignores base/scale/shift. This documents the disagreement found while choosing
    oracles; the formulas above are Caffe's (swish_layer.cpp, log_layer.cpp)."""
    body = 'name: "l" type: "Swish" bottom: "x" top: "y" swish_param { beta: 2.5 }'
    (theirs,) = cv2_run(body, {"x": X4})
    np.testing.assert_allclose(theirs, X4 * sigmoid64(X4), rtol=1e-5, atol=1e-6)
    body = 'name: "l" type: "Log" bottom: "x" top: "y" log_param { base: 10 scale: 2 shift: 1 }'
    (theirs,) = cv2_run(body, {"x": POSITIVE4})
    np.testing.assert_allclose(theirs, np.log(f64(POSITIVE4)), rtol=1e-5, atol=1e-6)


def test_relu_minus_infinity_gives_nan_like_caffe():
    """Caffe computes max(x, 0) + slope * min(x, 0): with slope 0, -inf gives 0 * -inf."""
    x = np.array([[-np.inf, -1.0, 2.0, np.inf]], np.float32)
    # (the PyTorch export uses torch.relu, which gives 0 there: a documented difference)
    (y,) = run('name: "l" type: "ReLU" bottom: "x" top: "y"', [x], torch_too=False)
    assert np.isnan(y[0, 0]) and y[0, 1] == 0 and y[0, 2] == 2 and y[0, 3] == np.inf


def test_clip_nan_becomes_min_like_caffe():
    """std::max(min, std::min(NaN, max)) is min."""
    x = np.array([np.nan, 5.0, -5.0, 0.25], np.float32)
    (y,) = run('name: "l" type: "Clip" bottom: "x" top: "y" clip_param { min: -1 max: 1 }',
               [x])
    exact("Clip", "NaN -> min", "std::max/min semantics", y, np.array([-1, 1, -1, 0.25],
                                                                         np.float32))


def test_bnll_extremes_do_not_overflow():
    x = np.array([-200.0, -50.0, 0.0, 50.0, 200.0], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        (y,) = run('name: "l" type: "BNLL" bottom: "x" top: "y"', [x])
    check("BNLL", "extremes +-200", "formula", y, _softplus(x))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 3)], ids=["4-D", "2-D"])
def test_prelu_per_channel(shape):
    x = randn(*shape, scale=2)
    slopes = np.array([0.25, -0.5, 1.5], np.float32)
    body = 'name: "l" type: "PReLU" bottom: "x" top: "y"'
    (y,) = run(body, [x], [slopes])
    broadcast = f64(slopes).reshape((3,) + (1,) * (len(shape) - 2))
    expected = np.where(x > 0, x, broadcast * x)
    variant = f"per channel {len(shape)}-D"
    check("PReLU", variant, "formula", y, expected)
    (theirs,) = cv2_run(body, {"x": x}, [slopes])
    check("PReLU", variant, "OpenCV", y, theirs)


def test_prelu_channel_shared():
    body = 'name: "l" type: "PReLU" bottom: "x" top: "y" prelu_param { channel_shared: true }'
    (y,) = run(body, [X4], [np.array(0.3, np.float32)])  # Caffe's 0-D blob
    check("PReLU", "channel_shared", "formula", y, np.where(X4 > 0, X4, 0.3 * f64(X4)))
    (theirs,) = cv2_run(body, {"x": X4}, [np.array([0.3], np.float32)])  # OpenCV wants (1,)
    check("PReLU", "channel_shared", "OpenCV", y, theirs)


def test_prelu_in_place():
    buffer = X4.copy()
    (y,) = run('name: "l" type: "PReLU" bottom: "x" top: "x"', [buffer],
               [np.array([0.1, 0.2, 0.3], np.float32)], writable=[0])
    assert np.shares_memory(y, buffer)


def _softmax64(x, axis):
    x = f64(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape,axis,use_cv2", [
    ((2, 3, 4, 5), 1, True), ((2, 3, 4, 5), 2, True), ((2, 3, 4, 5), -1, True),
    ((6, 10), 1, True), ((6, 10), 0, False),
], ids=["4-D axis 1", "4-D axis 2", "4-D axis -1", "2-D axis 1", "2-D axis 0"])
def test_softmax(shape, axis, use_cv2):
    x = randn(*shape, scale=30.0)  # large logits: the max subtraction matters
    body = f'name: "l" type: "Softmax" bottom: "x" top: "y" softmax_param {{ axis: {axis} }}'
    (y,) = run(body, [x])
    variant = f"{len(shape)}-D axis {axis}"
    check("Softmax", variant, "formula", y, _softmax64(x, axis))
    if use_cv2:
        (theirs,) = cv2_run(body, {"x": x})
        check("Softmax", variant, "OpenCV", y, theirs)


def test_softmax_in_place():
    buffer = X4.copy()
    (y,) = run('name: "l" type: "Softmax" bottom: "x" top: "x"', [buffer], writable=[0])
    assert np.shares_memory(y, buffer)
    check("Softmax", "in place", "formula", y, _softmax64(X4, 1))


# -- Dropout in training -------------------------------------------------------------------------

DROPOUT = 'name: "l" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: 0.3 }'


def test_dropout_train_same_seed_same_mask():
    x = np.abs(randn(50, 40)) + 1  # no zeros, so the kept ones are visible
    (a,) = run(DROPOUT, [x], phase=TRAIN, rng=np.random.default_rng(7))
    (b,) = run(DROPOUT, [x], phase=TRAIN, rng=np.random.default_rng(7))
    (c,) = run(DROPOUT, [x], phase=TRAIN, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a != 0, c != 0)


def test_dropout_train_fraction_and_scale():
    x = np.abs(randn(400, 500)) + 1
    (y,) = run(DROPOUT, [x], phase=TRAIN, rng=np.random.default_rng(3))
    kept = y != 0
    fraction = kept.mean()
    assert abs(fraction - 0.7) < 0.005, fraction  # 200000 draws: sd 0.001
    check("Dropout", "TRAIN kept values x / (1 - 0.3)", "formula", y[kept],
          f64(x[kept]) / (1 - np.float32(0.3)))
    assert np.all(y[~kept] == 0)


def test_dropout_train_default_ratio_and_in_place():
    x = np.abs(randn(300, 300)) + 1
    buffer = x.copy()
    (y,) = run('name: "l" type: "Dropout" bottom: "x" top: "x"', [buffer], phase=TRAIN,
               rng=np.random.default_rng(1), writable=[0])
    assert np.shares_memory(y, buffer)
    kept = y != 0
    assert abs(kept.mean() - 0.5) < 0.01
    check("Dropout", "TRAIN default ratio 0.5 (scale 2)", "formula", y[kept], 2 * f64(x[kept]))


def test_dropout_test_phase_is_identity():
    (y,) = run(DROPOUT, [X4], phase=TEST)
    exact("Dropout", "TEST", "identity", y, X4)


# == normalization ================================================================================

def _bn_reference(x, mean, var, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (f64(x) - f64(mean).reshape(shape)) / np.sqrt(f64(var).reshape(shape) + eps)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (5, 3)], ids=["4-D", "2-D"])
def test_batchnorm_global_stats(shape):
    x = randn(*shape, scale=3) + 1
    mean = np.array([0.5, -1.0, 2.0], np.float32)
    var = np.array([0.25, 4.0, 1.5], np.float32)
    s = np.float32(0.8)
    blobs = [mean * s, var * s, np.array([s], np.float32)]
    body = 'name: "l" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { eps: 0.001 }'
    (y,) = run(body, [x], [b.copy() for b in blobs])
    variant = f"TEST global stats s=0.8 eps 1e-3 {len(shape)}-D"
    expected = _bn_reference(x, f64(mean * s) / f64(s), f64(var * s) / f64(s),
                             np.float32(0.001))
    check("BatchNorm", variant, "formula", y, expected)
    (theirs,) = cv2_run(body, {"x": x}, blobs)
    check("BatchNorm", variant, "OpenCV", y, theirs)


def test_batchnorm_zero_scale_factor():
    """s == 0: Caffe's factor is 0, so mean = var = 0 and y = x / sqrt(eps)."""
    blobs = [np.ones(3, np.float32), np.full(3, 4, np.float32), np.zeros(1, np.float32)]
    body = 'name: "l" type: "BatchNorm" bottom: "x" top: "y"'
    (y,) = run(body, [X4], [b.copy() for b in blobs])
    check("BatchNorm", "s = 0", "formula", y, f64(X4) / np.sqrt(np.float32(1e-5)))
    (theirs,) = cv2_run(body, {"x": X4}, blobs)
    check("BatchNorm", "s = 0", "OpenCV", y, theirs)


def _bn_train_reference(x, state, fraction, eps):
    """One training step of Caffe's BatchNorm written from the formulas, in float64:
    returns (y, new_state) with state = (mean_acc, var_acc, s)."""
    x = f64(x)
    axes = (0,) + tuple(range(2, x.ndim))
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes)
    var = ((x - mu.reshape((1, -1) + (1,) * (x.ndim - 2))) ** 2).mean(axis=axes)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    mean_acc, var_acc, s = state
    s = fraction * s + 1
    mean_acc = mu + fraction * mean_acc
    correction = m / (m - 1) if m > 1 else 1.0
    var_acc = var * correction + fraction * var_acc
    return y, (mean_acc, var_acc, s)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 3), (2, 3, 7)],
                         ids=["4-D", "2-D", "3-D"])
def test_batchnorm_train_several_iterations(shape):
    """Headline: TRAIN without global stats, step by step over four different batches --
    outputs use the batch mean and biased variance; the three blobs are updated in place with
    Caffe's moving average; afterwards TEST uses them (checked against OpenCV too)."""
    fraction, eps = 0.9, 1e-4
    body = (f'name: "l" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param '
            f'{{ moving_average_fraction: {fraction} eps: {eps} }}')
    blobs = [np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(1, np.float32)]
    ids = [id(b) for b in blobs]
    state = (np.zeros(3), np.zeros(3), 0.0)
    f32 = np.float32
    for step in range(4):
        x = randn(*shape, scale=1 + step) + np.array([1.0, -2.0, 0.5]).reshape(
            (1, 3) + (1,) * (len(shape) - 2)).astype(np.float32) * (step + 1)
        (y,) = run(body, [x], blobs, phase=TRAIN)
        expected, state = _bn_train_reference(x, state, float(f32(fraction)), float(f32(eps)))
        variant = f"TRAIN {len(shape)}-D step {step + 1}"
        check("BatchNorm", variant + " output", "hand computation", y, expected)
        check("BatchNorm", variant + " blob0 mean", "hand computation", blobs[0], state[0])
        check("BatchNorm", variant + " blob1 var", "hand computation", blobs[1], state[1])
        check("BatchNorm", variant + " blob2 s", "hand computation", blobs[2],
              np.array([state[2]]))
    assert [id(b) for b in blobs] == ids  # updated in place
    # TEST with the accumulated statistics
    x = randn(*shape)
    (y,) = run(body, [x], blobs, phase=TEST)
    mean, var = state[0] / state[2], state[1] / state[2]
    check("BatchNorm", f"TEST after training {len(shape)}-D", "formula", y,
          _bn_reference(x, mean, var, float(f32(eps))))
    if len(shape) != 3:
        (theirs,) = cv2_run(body, {"x": x}, [b.copy() for b in blobs])
        check("BatchNorm", f"TEST after training {len(shape)}-D", "OpenCV", y, theirs)


def test_batchnorm_train_one_value_per_channel():
    """m = 1 (N = 1, no spatial axes): the batch variance is 0, the correction factor 1 and
    the output 0."""
    body = 'name: "l" type: "BatchNorm" bottom: "x" top: "y"'
    blobs = [np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(1, np.float32)]
    x = np.array([[1.0, -2.0, 3.0]], np.float32)
    (y,) = run(body, [x], blobs, phase=TRAIN)
    exact("BatchNorm", "TRAIN m = 1 output", "formula", y, np.zeros_like(x))
    check("BatchNorm", "TRAIN m = 1 blobs", "formula", np.concatenate(blobs),
          [1.0, -2.0, 3.0, 0.0, 0.0, 0.0, 1.0])


def test_batchnorm_use_global_stats_overrides_phase():
    x = randn(4, 3, 2, 2) + 2
    stored = [np.array([1.0, 2.0, 3.0], np.float32), np.array([2.0, 2.0, 2.0], np.float32),
              np.array([2.0], np.float32)]
    # use_global_stats: true in TRAIN freezes the statistics
    body = ('name: "l" type: "BatchNorm" bottom: "x" top: "y" '
            'batch_norm_param { use_global_stats: true }')
    blobs = [b.copy() for b in stored]
    (y,) = run(body, [x], blobs, phase=TRAIN)
    for now, then in zip(blobs, stored):
        np.testing.assert_array_equal(now, then)
    check("BatchNorm", "TRAIN use_global_stats true", "formula", y,
          _bn_reference(x, f64(stored[0]) / 2, f64(stored[1]) / 2, np.float32(1e-5)))
    # use_global_stats: false in TEST uses (and updates) the batch statistics
    body = ('name: "l" type: "BatchNorm" bottom: "x" top: "y" '
            'batch_norm_param { use_global_stats: false }')
    blobs = [b.copy() for b in stored]
    (y,) = run(body, [x], blobs, phase=TEST)
    expected, state = _bn_train_reference(
        x, (f64(stored[0]), f64(stored[1]), 2.0), float(np.float32(0.999)),
        float(np.float32(1e-5)))
    check("BatchNorm", "TEST use_global_stats false output", "hand computation", y, expected)
    check("BatchNorm", "TEST use_global_stats false blob0", "hand computation", blobs[0],
          state[0])


def test_batchnorm_in_place():
    buffer = X4.copy()
    blobs = [np.ones(3, np.float32), np.ones(3, np.float32), np.ones(1, np.float32)]
    (y,) = run('name: "l" type: "BatchNorm" bottom: "x" top: "x"', [buffer], blobs,
               writable=[0])
    assert np.shares_memory(y, buffer)
    check("BatchNorm", "in place", "formula", y, _bn_reference(X4, np.ones(3), np.ones(3),
                                                               np.float32(1e-5)))


def _lrn_across(x, size, alpha, beta, k):
    x = f64(x)
    n, c, h, w = x.shape
    y = np.empty_like(x)
    pad = (size - 1) // 2
    for ni in range(n):
        for ci in range(c):
            lo, hi = max(0, ci - pad), min(c, ci + pad + 1)
            total = (x[ni, lo:hi] ** 2).sum(axis=0)
            y[ni, ci] = x[ni, ci] * (k + alpha / size * total) ** -beta
    return y


def _lrn_within(x, size, alpha, beta):
    x = f64(x)
    n, c, h, w = x.shape
    pad = (size - 1) // 2
    y = np.empty_like(x)
    for ni in range(n):
        for ci in range(c):
            for hi in range(h):
                for wi in range(w):
                    total = 0.0
                    for dh in range(-pad, pad + 1):
                        for dw in range(-pad, pad + 1):
                            if 0 <= hi + dh < h and 0 <= wi + dw < w:
                                total += x[ni, ci, hi + dh, wi + dw] ** 2
                    average = total / (size * size)  # padding counts in the divisor
                    y[ni, ci, hi, wi] = x[ni, ci, hi, wi] * (1 + alpha * average) ** -beta
    return y


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 0.5, 0.75, 2.0), (3, 1.0, 0.75, 1.0),
                                               (1, 0.3, 0.5, 1.5), (9, 2.0, 1.2, 0.5)])
def test_lrn_across_channels(size, alpha, beta, k):
    x = randn(2, 7, 3, 4, scale=2)
    body = (f'name: "l" type: "LRN" bottom: "x" top: "y" lrn_param {{ local_size: {size} '
            f'alpha: {alpha} beta: {beta} k: {k} }}')
    (y,) = run(body, [x])
    variant = f"ACROSS n={size} alpha={alpha} beta={beta} k={k}"
    f = lambda v: float(np.float32(v))  # noqa: E731 (the parameters as Caffe reads them)
    check("LRN", variant, "naive loops", y, _lrn_across(x, size, f(alpha), f(beta), f(k)))
    (theirs,) = cv2_run(body, {"x": x})
    if k == 1.0:
        check("LRN", variant, "OpenCV", y, theirs)
    else:  # OpenCV's Caffe importer drops k (uses 1); Caffe uses it
        np.testing.assert_allclose(theirs, _lrn_across(x, size, f(alpha), f(beta), 1.0),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,alpha,beta,k,shape", [
    (3, 0.3, 0.6, 1.0, (2, 3, 4, 5)), (5, 1.5, 0.75, 1.0, (1, 2, 6, 3)),
    (3, 0.3, 0.6, 5.0, (2, 3, 4, 5)),
], ids=["n3", "n5 image smaller than window", "k ignored"])
def test_lrn_within_channel(size, alpha, beta, k, shape):
    x = randn(*shape, scale=2)
    body = (f'name: "l" type: "LRN" bottom: "x" top: "y" lrn_param {{ local_size: {size} '
            f'alpha: {alpha} beta: {beta} k: {k} norm_region: WITHIN_CHANNEL }}')
    (y,) = run(body, [x])
    variant = f"WITHIN n={size} alpha={alpha} beta={beta} k={k}"
    f = lambda v: float(np.float32(v))  # noqa: E731
    check("LRN", variant, "naive loops", y, _lrn_within(x, size, f(alpha), f(beta)))
    if k == 1.0:
        (theirs,) = cv2_run(body, {"x": x})
        check("LRN", variant, "OpenCV", y, theirs)


def _mvn(x, across, variance, eps):
    x = f64(x)
    shape4 = x.shape + (1,) * (4 - x.ndim)
    x = x.reshape(shape4)
    rows = x.reshape(shape4[0], -1) if across else x.reshape(shape4[0] * shape4[1], -1)
    mean = rows.mean(axis=1, keepdims=True)
    y = rows - mean
    if variance:
        y = y / (np.sqrt((y ** 2).mean(axis=1, keepdims=True)) + eps)
    return y.reshape(shape4)


@pytest.mark.parametrize("params,across,variance,eps", [
    ("", False, True, 1e-9),
    ("mvn_param { across_channels: true }", True, True, 1e-9),
    ("mvn_param { normalize_variance: false }", False, False, 1e-9),
    ("mvn_param { normalize_variance: false across_channels: true }", True, False, 1e-9),
    ("mvn_param { eps: 0.01 }", False, True, 0.01),
], ids=["default", "across_channels", "mean only", "mean only across", "eps 0.01"])
def test_mvn(params, across, variance, eps):
    x = randn(2, 3, 4, 5, scale=2) + 1
    body = f'name: "l" type: "MVN" bottom: "x" top: "y" {params}'
    (y,) = run(body, [x])
    variant = params or "default"
    check("MVN", variant, "formula (eps after sqrt)", y,
          _mvn(x, across, variance, float(np.float32(eps))))
    if eps < 1e-3:  # OpenCV adds eps inside the square root (see the test below)
        (theirs,) = cv2_run(body, {"x": x})
        check("MVN", variant, "OpenCV", y, theirs)


def test_mvn_eps_placement_differs_from_opencv():
    """Final Caffe adds eps to the standard deviation (after the sqrt); OpenCV adds it to the
    variance. With eps 0.01 and unit variance the two differ by ~0.5%: Caffe is followed."""
    x = randn(2, 3, 4, 5)
    body = 'name: "l" type: "MVN" bottom: "x" top: "y" mvn_param { eps: 0.01 }'
    (y,) = run(body, [x])
    (theirs,) = cv2_run(body, {"x": x})
    inside = f64(x) - f64(x).mean(axis=(2, 3), keepdims=True)
    inside /= np.sqrt((inside ** 2).mean(axis=(2, 3), keepdims=True) + np.float32(0.01))
    np.testing.assert_allclose(theirs, inside, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(y - theirs)) > 1e-3


def test_mvn_2d_input_gives_4d_top():
    x = randn(4, 6)
    (y,) = run('name: "l" type: "MVN" bottom: "x" top: "y" mvn_param { across_channels: true }',
               [x])
    check("MVN", "2-D across_channels -> (N, C, 1, 1)", "formula", y,
          _mvn(x, True, True, float(np.float32(1e-9))))
    (y,) = run('name: "l" type: "MVN" bottom: "x" top: "y"', [x])
    exact("MVN", "2-D per channel (one value each) -> 0", "formula", y, np.zeros((4, 6, 1, 1),
                                                                                np.float32))


def _affine(x, values, axis, shape):
    values = f64(values).reshape(tuple(shape) + (1,) * (x.ndim - axis - len(shape)))
    return values


@pytest.mark.parametrize("params,blob_shape,axis,use_cv2", [
    ("", (3,), 1, True),
    ("scale_param { num_axes: 2 }", (3, 4), 1, True),
    ("scale_param { num_axes: -1 }", (3, 4, 5), 1, True),
    ("scale_param { axis: 2 }", (4,), 2, False),
    ("scale_param { axis: -1 }", (5,), 3, False),
    ("scale_param { axis: 0 num_axes: 2 }", (2, 3), 0, False),
    ("scale_param { num_axes: 0 }", (), 0, False),
], ids=["axis 1", "num_axes 2", "num_axes -1", "axis 2", "axis -1", "axis 0 num_axes 2",
        "num_axes 0 scalar"])
@pytest.mark.parametrize("bias", [False, True], ids=["no bias", "bias_term"])
def test_scale_with_blob(params, blob_shape, axis, use_cv2, bias):
    x = randn(2, 3, 4, 5)
    gamma = randn(*blob_shape) if blob_shape else np.array(1.7, np.float32)
    beta = randn(*blob_shape) if blob_shape else np.array(-0.4, np.float32)
    extra = " bias_term: true" if bias else ""
    inner = params[len("scale_param { "):-2] if params else ""
    body = f'name: "l" type: "Scale" bottom: "x" top: "y" scale_param {{ {inner}{extra} }}'
    blobs = [gamma, beta] if bias else [gamma]
    (y,) = run(body, [x], blobs)
    expected = f64(x) * _affine(x, gamma, axis, blob_shape)
    if bias:
        expected = expected + _affine(x, beta, axis, blob_shape)
    variant = f"{params or 'default'}{' + bias' if bias else ''}"
    check("Scale", variant, "formula", y, expected)
    if use_cv2:
        (theirs,) = cv2_run(body, {"x": x}, blobs)
        check("Scale", variant, "OpenCV", y, theirs)


@pytest.mark.parametrize("params,gamma_shape,axis,use_cv2", [
    ("", (3,), 1, True),
    ("scale_param { axis: 0 }", (2, 3), 0, False),
    ("scale_param { axis: 2 }", (4, 5), 2, False),
    ("", (), 0, False),
], ids=["(C,) axis 1", "(N, C) axis 0", "(H, W) axis 2", "scalar"])
@pytest.mark.parametrize("bias", [False, True], ids=["no bias", "bias_term"])
def test_scale_with_second_bottom(params, gamma_shape, axis, use_cv2, bias):
    x = randn(2, 3, 4, 5)
    gamma = randn(*gamma_shape) if gamma_shape else np.array(-2.5, np.float32)
    beta = randn(*gamma_shape) if gamma_shape else np.array(0.75, np.float32)
    inner = params[len("scale_param { "):-2] if params else ""
    extra = " bias_term: true" if bias else ""
    body = (f'name: "l" type: "Scale" bottom: "x" bottom: "g" top: "y" '
            f'scale_param {{ {inner}{extra} }}')
    blobs = [beta] if bias else []
    (y,) = run(body, [x, gamma], blobs)
    expected = f64(x) * _affine(x, gamma, axis, gamma_shape)
    if bias:
        expected = expected + _affine(x, beta, axis, gamma_shape)
    variant = f"second bottom {gamma_shape}{' + bias blob 0' if bias else ''}"
    check("Scale", variant, "formula", y, expected)
    if use_cv2 and not bias:
        # (OpenCV's Scale with a second bottom and a bias blob matches neither x g + b nor
        # any other arrangement tried: not usable as an oracle there.)
        (theirs,) = cv2_run(body, {"x": x, "g": gamma})
        check("Scale", variant, "OpenCV", y, theirs)


def test_scale_2d_input_and_in_place():
    x = randn(6, 3)
    gamma = randn(3)
    body = 'name: "l" type: "Scale" bottom: "x" top: "y"'
    (y,) = run(body, [x], [gamma])
    check("Scale", "2-D input", "formula", y, f64(x) * f64(gamma))
    (theirs,) = cv2_run(body, {"x": x}, [gamma])
    check("Scale", "2-D input", "OpenCV", y, theirs)
    buffer = x.copy()
    (y2,) = run(body, [buffer], [gamma], writable=[0])
    assert np.shares_memory(y2, buffer)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("params,shape,axis", [
    ("", (3,), 1), ("bias_param { num_axes: 2 }", (3, 4), 1),
    ("bias_param { axis: -2 num_axes: -1 }", (4, 5), 2), ("bias_param { num_axes: 0 }", (), 0),
], ids=["axis 1", "num_axes 2", "axis -2 num_axes -1", "scalar"])
def test_bias_with_blob(params, shape, axis):
    x = randn(2, 3, 4, 5)
    beta = randn(*shape) if shape else np.array(0.3, np.float32)
    body = f'name: "l" type: "Bias" bottom: "x" top: "y" {params}'
    (y,) = run(body, [x], [beta])
    check("Bias", params or "default", "formula", y, f64(x) + _affine(x, beta, axis, shape))


@pytest.mark.parametrize("params,shape,axis", [
    ("", (3, 4), 1), ("bias_param { axis: 0 }", (2,), 0), ("", (), 0)],
    ids=["(C, H) axis 1", "(N,) axis 0", "scalar"])
def test_bias_with_second_bottom(params, shape, axis):
    x = randn(2, 3, 4, 5)
    beta = randn(*shape) if shape else np.array(-1.25, np.float32)
    body = f'name: "l" type: "Bias" bottom: "x" bottom: "b" top: "y" {params}'
    (y,) = run(body, [x, beta])
    check("Bias", f"second bottom {shape}", "formula", y,
          f64(x) + _affine(x, beta, axis, shape))
    buffer = x.copy()
    (y2,) = run(body, [buffer, beta], writable=[0])
    assert np.shares_memory(y2, buffer)
    np.testing.assert_array_equal(y2, y)


# == structure ====================================================================================

def _blocks(shape, axis, sizes):
    """Index tuples cutting ``shape`` along ``axis`` into consecutive ``sizes``."""
    start = 0
    for size in sizes:
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, start + size)
        yield tuple(index)
        start += size


@pytest.mark.parametrize("params,shapes,axis,use_cv2", [
    ("", [(2, 3, 4, 5), (2, 1, 4, 5), (2, 2, 4, 5)], 1, True),
    ("concat_param { axis: 0 }", [(1, 3, 4, 5), (3, 3, 4, 5)], 0, True),
    ("concat_param { axis: -1 }", [(2, 3, 4, 2), (2, 3, 4, 3)], 3, True),
    # (OpenCV ignores concat_dim and concatenates on axis 1: not an oracle there)
    ("concat_param { concat_dim: 2 }", [(2, 3, 1, 5), (2, 3, 4, 5)], 2, False),
    ("", [(4, 2), (4, 5)], 1, True),
    ("", [(2, 3, 4, 5)], 1, False),
], ids=["axis 1, 3 bottoms", "axis 0", "axis -1", "concat_dim 2 (legacy)", "2-D",
        "one bottom"])
def test_concat(params, shapes, axis, use_cv2):
    bottoms = [randn(*shape) for shape in shapes]
    names = [f"b{i}" for i in range(len(bottoms))]
    body = ('name: "l" type: "Concat" ' + " ".join(f'bottom: "{n}"' for n in names)
            + f' top: "y" {params}')
    (y,) = run(body, bottoms)
    total = list(shapes[0])
    total[axis] = sum(shape[axis] for shape in shapes)
    expected = np.empty(total)
    for index, b in zip(_blocks(total, axis, [s[axis] for s in shapes]), bottoms):
        expected[index] = b
    variant = params or f"axis 1 {len(bottoms)} bottoms {len(total)}-D"
    exact("Concat", variant, "block copies", y, expected.astype(np.float32))
    if use_cv2:
        (theirs,) = cv2_run(body, dict(zip(names, bottoms)))
        exact("Concat", variant, "OpenCV", y, theirs)


@pytest.mark.parametrize("params,tops,axis,sizes,use_cv2", [
    ("slice_param { axis: 1 slice_point: 1 slice_point: 3 }", 3, 1, [1, 2, 2], True),
    ("slice_param { axis: 2 }", 2, 2, [2, 2], True),
    # (OpenCV ignores slice_dim and slices axis 1: not an oracle there)
    ("slice_param { slice_dim: 0 }", 2, 0, [1, 1], False),
    ("slice_param { axis: -1 slice_point: 4 }", 2, 3, [4, 1], True),
    ("", 5, 1, [1, 1, 1, 1, 1], False),
], ids=["slice_point 1,3", "equal halves axis 2", "slice_dim 0 (legacy)", "axis -1",
        "default axis 1 five tops"])
def test_slice(params, tops, axis, sizes, use_cv2):
    x = randn(2, 5, 4, 5)
    names = [f"t{i}" for i in range(tops)]
    body = ('name: "l" type: "Slice" bottom: "x" ' + " ".join(f'top: "{n}"' for n in names)
            + f" {params}")
    outputs = run(body, [x])
    assert len(outputs) == tops
    pieces = [x[index] for index in _blocks(x.shape, axis, sizes)]
    theirs = cv2_run(body, {"x": x}, tops=names) if use_cv2 else None
    for i, (mine, piece) in enumerate(zip(outputs, pieces)):
        exact("Slice", f"{params or 'default'} top {i}", "block copies", mine, piece)
        assert not np.shares_memory(mine, x)
        if theirs is not None:
            exact("Slice", f"{params or 'default'} top {i}", "OpenCV", mine, theirs[i])


def test_split_returns_the_input_for_every_top():
    body = 'name: "l" type: "Split" bottom: "x" top: "a" top: "b" top: "c"'
    outputs = run(body, [X4])
    assert len(outputs) == 3 and all(top is outputs[0] for top in outputs)
    theirs = cv2_run(body, {"x": X4}, tops=["a", "b", "c"])
    for i, top in enumerate(outputs):
        exact("Split", f"top {i}", "OpenCV", top, theirs[i])


@pytest.mark.parametrize("params,count,formula", [
    ("", 2, lambda b: b[0] + b[1]),
    ("eltwise_param { operation: SUM coeff: 2 coeff: -1 coeff: 0.5 }", 3,
     lambda b: 2 * b[0] - b[1] + 0.5 * b[2]),
    ("eltwise_param { operation: PROD }", 3, lambda b: b[0] * b[1] * b[2]),
    ("eltwise_param { operation: MAX }", 3, lambda b: np.maximum(np.maximum(b[0], b[1]), b[2])),
    ("eltwise_param { operation: SUM coeff: -1 coeff: 1 }", 2, lambda b: b[1] - b[0]),
], ids=["SUM", "SUM coeff 2,-1,0.5", "PROD", "MAX", "SUM coeff -1,1"])
def test_eltwise(params, count, formula):
    bottoms = [randn(2, 3, 4, 5) for _ in range(count)]
    names = [f"b{i}" for i in range(count)]
    body = ('name: "l" type: "Eltwise" ' + " ".join(f'bottom: "{n}"' for n in names)
            + f' top: "y" {params}')
    (y,) = run(body, bottoms)
    variant = params or "SUM"
    check("Eltwise", variant, "formula", y, formula([f64(b) for b in bottoms]))
    (theirs,) = cv2_run(body, dict(zip(names, bottoms)))
    check("Eltwise", variant, "OpenCV", y, theirs)
    buffer = bottoms[0].copy()
    (y2,) = run(body, [buffer] + bottoms[1:], writable=[0])
    assert np.shares_memory(y2, buffer)
    np.testing.assert_array_equal(y2, y)


def test_eltwise_max_nan_like_caffe():
    """Caffe's MAX keeps a only when a > b, so a NaN loses to the next input."""
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    b = np.array([0.5, np.nan, 3.0], np.float32)
    c = np.array([-1.0, -1.0, np.nan], np.float32)
    body = ('name: "l" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "y" '
            'eltwise_param { operation: MAX }')
    (y,) = run(body, [a, b, c])
    # (NaN, 0.5) -> 0.5; (1, NaN) -> NaN, then -1 > NaN is false -> NaN; (2, 3) -> 3
    exact("Eltwise", "MAX with NaN", "Caffe's comparisons", y,
          np.array([0.5, np.nan, 3.0], np.float32))


@pytest.mark.parametrize("params,shape,use_cv2", [
    ("", (2, 60), True),
    ("flatten_param { axis: 2 }", (2, 3, 20), True),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5), True),
    ("flatten_param { axis: 0 end_axis: -2 }", (24, 5), False),
    ("flatten_param { axis: 3 end_axis: 3 }", (2, 3, 4, 5), False),
], ids=["default", "axis 2", "axis 1 end_axis 2", "axis 0 end_axis -2", "one axis"])
def test_flatten(params, shape, use_cv2):
    body = f'name: "l" type: "Flatten" bottom: "x" top: "y" {params}'
    (y,) = run(body, [X4])
    exact("Flatten", params or "default", "C-order values", y,
          np.array(X4.ravel().tolist(), np.float32).reshape(shape))
    if use_cv2:
        (theirs,) = cv2_run(body, {"x": X4})
        exact("Flatten", params or "default", "OpenCV", y, theirs)


@pytest.mark.parametrize("params,shape,use_cv2", [
    ("reshape_param { shape { dim: 0 dim: -1 } }", (2, 60), True),
    ("reshape_param { shape { dim: 0 dim: 0 dim: 20 } }", (2, 3, 20), True),
    ("reshape_param { shape { dim: 6 dim: -1 dim: 5 } }", (6, 4, 5), True),
    ("reshape_param { axis: 1 num_axes: 2 shape { dim: -1 } }", (2, 12, 5), False),
    ("reshape_param { axis: -1 shape { dim: 1 dim: 1 } }", (2, 3, 4, 5, 1, 1), False),
    ("reshape_param { axis: 2 num_axes: 0 shape { dim: 1 } }", (2, 3, 1, 4, 5), False),
], ids=["0,-1", "0,0,20", "6,-1,5", "axis 1 num_axes 2", "axis -1 append", "insert axis"])
def test_reshape(params, shape, use_cv2):
    body = f'name: "l" type: "Reshape" bottom: "x" top: "y" {params}'
    (y,) = run(body, [X4])
    exact("Reshape", params, "C-order values", y,
          np.array(X4.ravel().tolist(), np.float32).reshape(shape))
    if use_cv2:
        (theirs,) = cv2_run(body, {"x": X4})
        exact("Reshape", params, "OpenCV", y, theirs)


def test_reshape_rejects_a_changed_count():
    with pytest.raises(ValueError):
        run('name: "l" type: "Reshape" bottom: "x" top: "y" reshape_param { shape { dim: 7 '
            'dim: -1 } }', [X4])


@pytest.mark.parametrize("params,reference,start,offsets", [
    ("crop_param { axis: 2 offset: 1 offset: 2 }", (2, 3, 2, 3), 2, (0, 0, 1, 2)),
    ("crop_param { axis: 1 offset: 1 }", (1, 2, 3, 3), 1, (0, 1, 1, 1)),
    ("", (9, 9, 3, 2), 2, (0, 0, 0, 0)),
    ("crop_param { axis: -2 offset: 1 }", (9, 9, 3, 4), 2, (0, 0, 1, 1)),
], ids=["axis 2 offsets 1,2", "axis 1 offset 1", "default", "axis -2"])
def test_crop(params, reference, start, offsets):
    ref = np.zeros(reference, np.float32)
    body = f'name: "l" type: "Crop" bottom: "x" bottom: "r" top: "y" {params}'
    (y,) = run(body, [X4, ref])
    shape = tuple(X4.shape[i] if i < start else reference[i] for i in range(4))
    expected = np.empty(shape, np.float32)
    for n in range(shape[0]):
        for c in range(shape[1]):
            for h in range(shape[2]):
                for w in range(shape[3]):
                    expected[n, c, h, w] = X4[n + offsets[0], c + offsets[1], h + offsets[2],
                                              w + offsets[3]]
    exact("Crop", params or "default", "naive loops", y, expected)
    (theirs,) = cv2_run(body, {"x": X4, "r": ref})
    exact("Crop", params or "default", "OpenCV", y, theirs)


@pytest.mark.parametrize("axis,tiles", [(1, 3), (0, 2), (-1, 2), (2, 1)])
def test_tile(axis, tiles):
    x = randn(2, 3, 4)
    body = (f'name: "l" type: "Tile" bottom: "x" top: "y" tile_param {{ axis: {axis} '
            f'tiles: {tiles} }}')
    (y,) = run(body, [x])
    a = axis % 3
    outer = int(np.prod(x.shape[:a]))
    inner = int(np.prod(x.shape[a:]))
    flat = x.reshape(outer, inner)
    expected = []
    for i in range(outer):  # TileLayer::Forward_cpu's loops
        for _ in range(tiles):
            expected.extend(flat[i].tolist())
    shape = list(x.shape)
    shape[a] *= tiles
    exact("Tile", f"axis {axis} tiles {tiles}", "naive loops", y,
          np.array(expected, np.float32).reshape(shape))


@pytest.mark.parametrize("operation", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, 1.0), (2, -0.5), (-1, 2.0)])
def test_reduction(operation, axis, coeff):
    x = randn(2, 3, 4, 5)
    body = (f'name: "l" type: "Reduction" bottom: "x" top: "y" reduction_param {{ '
            f'operation: {operation} axis: {axis} coeff: {coeff} }}')
    (y,) = run(body, [x])
    a = axis % 4
    outer = x.shape[:a]
    rows = f64(x).reshape(int(np.prod(outer)), -1)
    expected = []
    for row in rows:
        if operation == "SUM":
            value = sum(row)
        elif operation == "ASUM":
            value = sum(abs(v) for v in row)
        elif operation == "SUMSQ":
            value = sum(v * v for v in row)
        else:
            value = sum(row) / len(row)
        expected.append(coeff * value)
    check("Reduction", f"{operation} axis {axis} coeff {coeff}", "naive loops", y,
          np.array(expected).reshape(outer))


def _argmax_reference(rows, k):
    """std::partial_sort of (value, index) pairs with std::greater."""
    result = []
    for row in rows:
        pairs = sorted(((float(v), i) for i, v in enumerate(row)), reverse=True)[:k]
        result.append(pairs)
    return result


@pytest.mark.parametrize("params", [
    "", "argmax_param { top_k: 3 }", "argmax_param { top_k: 3 out_max_val: true }",
    "argmax_param { axis: 1 top_k: 2 }", "argmax_param { axis: 1 out_max_val: true }",
    "argmax_param { axis: -1 top_k: 2 }", "argmax_param { axis: 0 }",
])
def test_argmax(params):
    x = np.round(randn(2, 3, 4, 5), 1)  # one decimal: plenty of ties
    body = f'name: "l" type: "ArgMax" bottom: "x" top: "y" {params}'
    (y,) = run(body, [x])
    layer = parse_layer(body).argmax_param
    k = layer.top_k
    if layer.HasField("axis"):
        axis = layer.axis % 4
        moved = np.moveaxis(x, axis, -1)
        rows = moved.reshape(-1, x.shape[axis])
        pairs = _argmax_reference(rows, k)
        pick = 0 if layer.out_max_val else 1
        values = np.array([[p[pick] for p in row] for row in pairs], np.float32)
        expected = np.moveaxis(values.reshape(moved.shape[:-1] + (k,)), -1, axis)
    else:
        rows = x.reshape(x.shape[0], -1)
        pairs = _argmax_reference(rows, k)
        channels = 2 if layer.out_max_val else 1
        expected = np.zeros((x.shape[0], channels, k, 1), np.float32)
        for n, row in enumerate(pairs):
            for j, (value, index) in enumerate(row):
                expected[n, 0, j, 0] = index
                if layer.out_max_val:
                    expected[n, 1, j, 0] = value
    exact("ArgMax", params or "default", "sorted (value, index) pairs", y, expected)


def test_argmax_ties_prefer_the_larger_index():
    x = np.array([[3.0, 7.0, 7.0, 1.0, 7.0]], np.float32)
    (y,) = run('name: "l" type: "ArgMax" bottom: "x" top: "y" argmax_param { top_k: 4 }', [x])
    exact("ArgMax", "ties", "std::greater on pairs", y.ravel(), [4.0, 2.0, 1.0, 0.0])


def test_filter():
    a, b = randn(5, 3, 2), randn(5, 4)
    selector = np.array([[1.0], [0.0], [0.5], [0.0], [-2.0]], np.float32)
    body = 'name: "l" type: "Filter" bottom: "a" bottom: "b" bottom: "s" top: "fa" top: "fb"'
    fa, fb = run(body, [a, b, selector])
    exact("Filter", "selector 1,0,0.5,0,-2 bottom 0", "item list", fa, a[[0, 2, 4]])
    exact("Filter", "selector 1,0,0.5,0,-2 bottom 1", "item list", fb, b[[0, 2, 4]])
    (none,) = run('name: "l" type: "Filter" bottom: "a" bottom: "s" top: "fa"',
                  [a, np.zeros((5, 1), np.float32)])
    assert none.shape == (0, 3, 2)


def test_silence():
    assert run('name: "l" type: "Silence" bottom: "a" bottom: "b"', [X4, X4]) == []


def test_batch_reindex():
    x = randn(3, 2, 2)
    body = 'name: "l" type: "BatchReindex" bottom: "x" bottom: "i" top: "y"'
    (y,) = run(body, [x, np.array([2, 0, 2, 1.7], np.float32)])
    exact("BatchReindex", "2,0,2,1.7", "item list", y, x[[2, 0, 2, 1]])
    with pytest.raises(ValueError):
        run(body, [x, np.array([0, 3], np.float32)])
    with pytest.raises(ValueError):
        run(body, [x, np.array([-0.5], np.float32)])


def test_parameter():
    blob = randn(2, 3)
    body = 'name: "l" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 3 } }'
    (y,) = run(body, [], [blob])
    exact("Parameter", "shape 2x3", "the blob", y, blob)
    assert not np.shares_memory(y, blob)


# == losses =======================================================================================

def _normalize(mode, outer, inner, valid):
    value = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(1.0, value)


def _softmax_loss_reference(x, labels, axis, ignore, mode):
    prob = _softmax64(x, axis)
    outer = int(np.prod(x.shape[:axis]))
    classes = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:]))
    p = prob.reshape(outer, classes, inner)
    lab = labels.reshape(outer, inner)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            label = int(lab[i, j])
            if ignore is not None and label == ignore:
                continue
            loss -= math.log(max(p[i, label, j], 1.17549435e-38))
            count += 1
    return loss / _normalize(mode, outer, inner, count), prob


@pytest.mark.parametrize("loss_param,ignore,mode", [
    ("", None, "VALID"),
    ("loss_param { ignore_label: 2 }", 2, "VALID"),
    ("loss_param { ignore_label: 2 normalization: FULL }", 2, "FULL"),
    ("loss_param { ignore_label: 2 normalization: BATCH_SIZE }", 2, "BATCH_SIZE"),
    ("loss_param { ignore_label: 2 normalization: NONE }", 2, "NONE"),
    ("loss_param { ignore_label: 2 normalize: false }", 2, "BATCH_SIZE"),
    ("loss_param { ignore_label: 2 normalize: true }", 2, "VALID"),
    ("loss_param { ignore_label: 2 normalize: false normalization: FULL }", 2, "FULL"),
])
@pytest.mark.parametrize("shape,axis", [((6, 5), 1), ((2, 4, 3, 3), 1), ((2, 3, 4), 2)],
                         ids=["(6, 5)", "(2, 4, 3, 3) spatial", "(2, 3, 4) axis 2"])
def test_softmax_with_loss(loss_param, ignore, mode, shape, axis):
    x = randn(*shape)
    label_shape = shape[:axis] + shape[axis + 1:]
    labels = RNG.integers(0, shape[axis], size=label_shape).astype(np.float32)
    labels.reshape(-1)[::3] = 2  # plenty of ignored positions
    body = (f'name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "t" top: "loss" '
            f'top: "prob" softmax_param {{ axis: {axis} }} {loss_param}')
    loss, prob = run(body, [x, labels])
    assert loss.shape == ()
    expected, expected_prob = _softmax_loss_reference(x, labels, axis, ignore, mode)
    variant = f"{shape} {loss_param or 'default'}"
    check("SoftmaxWithLoss", variant, "naive loops", loss, expected)
    check("SoftmaxWithLoss", variant + " prob top", "formula", prob, expected_prob)


def test_softmax_with_loss_edge_cases():
    x = randn(4, 3)
    body = ('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "t" top: "loss" '
            'loss_param { ignore_label: 1 }')
    (loss,) = run(body, [x, np.ones(4, np.float32)])  # every label ignored
    exact("SoftmaxWithLoss", "all ignored -> 0", "normalizer max(1, 0)", loss, np.float32(0))
    with pytest.raises(ValueError):
        run(body, [x, np.array([0, 3, 0, 0], np.float32)])
    (loss,) = run('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "t"',
                  [x, np.array([0, 2, 1.9, 0], np.float32)])  # 1.9 truncates to 1
    expected, _ = _softmax_loss_reference(x, np.array([0, 2, 1, 0]), 1, None, "VALID")
    check("SoftmaxWithLoss", "fractional label truncates", "naive loops", loss, expected)


def test_euclidean_loss():
    a, b = randn(4, 3, 2), randn(4, 6)
    (loss,) = run('name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
                  [a, b])
    expected = sum((float(p) - float(q)) ** 2 for p, q in zip(a.ravel(), b.ravel())) / 4 / 2
    check("EuclideanLoss", "(4,3,2) vs (4,6)", "naive loop", loss, expected)


def _sigmoid_ce_reference(x, t, ignore, mode):
    loss, count = 0.0, 0
    for xi, ti in zip(f64(x).ravel(), f64(t).ravel()):
        if ignore is not None and int(ti) == ignore:
            continue
        # -(t log p + (1 - t) log(1 - p)), p = sigmoid(x), computed exactly in float64
        loss -= xi * (ti - (xi >= 0)) - math.log1p(math.exp(-abs(xi)))
        count += 1
    outer, inner = x.shape[0], x.size // x.shape[0]
    return loss / _normalize(mode, outer, inner, count)


@pytest.mark.parametrize("loss_param,ignore,mode", [
    ("", None, "BATCH_SIZE"),
    ("loss_param { ignore_label: -1 }", -1, "BATCH_SIZE"),
    ("loss_param { ignore_label: -1 normalization: VALID }", -1, "VALID"),
    ("loss_param { normalization: FULL }", None, "FULL"),
    ("loss_param { normalization: NONE }", None, "NONE"),
    ("loss_param { ignore_label: -1 normalize: true }", -1, "VALID"),
    ("loss_param { normalize: false }", None, "BATCH_SIZE"),
])
def test_sigmoid_cross_entropy_loss(loss_param, ignore, mode):
    x = randn(4, 3, 5, scale=8)  # includes |x| > 20: the stable formula matters
    x.reshape(-1)[:2] = [60.0, -60.0]
    t = RNG.random((4, 15)).astype(np.float32)  # soft targets
    t.reshape(-1)[::4] = -1
    t.reshape(-1)[1] = 0.0
    body = ('name: "l" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" '
            + loss_param)
    (loss,) = run(body, [x, t])
    check("SigmoidCrossEntropyLoss", loss_param or "default", "naive loop", loss,
          _sigmoid_ce_reference(x, t, ignore, mode))


def test_sigmoid_cross_entropy_matches_the_textbook_formula():
    x = randn(3, 4)
    t = (RNG.random((3, 4)) > 0.5).astype(np.float32)
    (loss,) = run('name: "l" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t"', [x, t])
    p = sigmoid64(x)
    expected = -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p)) / 3
    check("SigmoidCrossEntropyLoss", "vs -sum(t log p + (1-t) log(1-p)) / N", "formula", loss,
          expected)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 1, 1)])
def test_hinge_loss(norm, shape):
    x = randn(*shape)
    labels = np.array([0, 3, 1, 1, 2], np.float32)
    body = (f'name: "l" type: "HingeLoss" bottom: "x" bottom: "t" top: "loss" '
            f'hinge_loss_param {{ norm: {norm} }}')
    (loss,) = run(body, [x, labels])
    rows = f64(x).reshape(5, -1)
    total = 0.0
    for n in range(5):
        for k in range(rows.shape[1]):
            sign = -1.0 if k == int(labels[n]) else 1.0
            margin = max(0.0, 1 + sign * rows[n, k])
            total += margin if norm == "L1" else margin * margin
    check("HingeLoss", f"{norm} {shape}", "naive loops", loss, total / 5)


def _infogain_reference(x, labels, matrix, axis, ignore, mode):
    prob = _softmax64(x, axis)
    outer = int(np.prod(x.shape[:axis]))
    classes = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:]))
    p = prob.reshape(outer, classes, inner)
    lab = labels.reshape(outer, inner)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            label = int(lab[i, j])
            if ignore is not None and label == ignore:
                continue
            for c in range(classes):
                loss -= matrix[label, c] * math.log(max(p[i, c, j], 1e-20))
            count += 1
    return loss / _normalize(mode, outer, inner, count), prob


@pytest.mark.parametrize("params,ignore,mode,shape,axis", [
    ("", None, "VALID", (6, 4), 1),
    ("loss_param { ignore_label: 0 }", 0, "VALID", (6, 4), 1),
    ("loss_param { ignore_label: 0 normalization: FULL }", 0, "FULL", (2, 4, 3, 2), 1),
    ("loss_param { normalization: BATCH_SIZE } infogain_loss_param { axis: 2 }", None,
     "BATCH_SIZE", (2, 3, 4), 2),
    ("loss_param { normalization: NONE }", None, "NONE", (6, 4), 1),
])
def test_infogain_loss(params, ignore, mode, shape, axis):
    x = randn(*shape, scale=2)
    classes = shape[axis]
    labels = RNG.integers(0, classes, size=shape[:axis] + shape[axis + 1:]).astype(np.float32)
    matrix = RNG.random((classes, classes)).astype(np.float32) + np.eye(classes,
                                                                       dtype=np.float32)
    body = ('name: "l" type: "InfogainLoss" bottom: "x" bottom: "t" bottom: "H" top: "loss" '
            'top: "prob" ' + params)
    loss, prob = run(body, [x, labels, matrix])
    expected, expected_prob = _infogain_reference(x, labels, f64(matrix), axis, ignore, mode)
    check("InfogainLoss", f"{shape} {params or 'default'}", "naive loops", loss, expected)
    check("InfogainLoss", f"{shape} {params or 'default'} prob top", "formula", prob,
          expected_prob)


def test_infogain_loss_errors():
    x, labels = randn(3, 4), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="third bottom"):
        run('name: "l" type: "InfogainLoss" bottom: "x" bottom: "t" infogain_loss_param '
            '{ source: "H.binaryproto" }', [x, labels])
    with pytest.raises(ValueError, match="normalize"):
        run('name: "l" type: "InfogainLoss" bottom: "x" bottom: "t" bottom: "H" loss_param '
            '{ normalize: true }', [x, labels, np.eye(4, dtype=np.float32)])


def test_multinomial_logistic_loss():
    probs = _softmax64(randn(5, 4), 1).astype(np.float32)
    probs[2, 1] = 0.0  # clamped to 1e-20
    labels = np.array([0, 3, 1, 2, 2], np.float32).reshape(5, 1, 1, 1)
    (loss,) = run('name: "l" type: "MultinomialLogisticLoss" bottom: "p" bottom: "t"',
                  [probs, labels])
    flat = labels.reshape(-1)
    expected = -sum(math.log(max(float(probs[n, int(flat[n])]), 1e-20)) for n in range(5)) / 5
    check("MultinomialLogisticLoss", "with a zero probability", "naive loop", loss, expected)


@pytest.mark.parametrize("legacy", [False, True])
def test_contrastive_loss(legacy):
    a, b = randn(8, 4), randn(8, 4)
    b[0] = a[0] + 0.01  # a close dissimilar pair and far ones
    similar = np.array([0, 1, 0, 1, 1, 0, 0, 2], np.float32)  # 2 is "similar" (int != 0)
    body = (f'name: "l" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "s" '
            f'contrastive_loss_param {{ margin: 2.5 legacy_version: {str(legacy).lower()} }}')
    (loss,) = run(body, [a, b, similar])
    total = 0.0
    for n in range(8):
        d2 = sum((float(p) - float(q)) ** 2 for p, q in zip(a[n], b[n]))
        if int(similar[n]):
            total += d2
        elif legacy:
            total += max(2.5 - d2, 0.0)
        else:
            total += max(2.5 - math.sqrt(d2), 0.0) ** 2
    check("ContrastiveLoss", f"margin 2.5 legacy_version {legacy}", "naive loop", loss,
          total / 8 / 2)


def _accuracy_reference(x, labels, axis, k, ignore):
    outer = int(np.prod(x.shape[:axis]))
    classes = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:]))
    v = f64(x).reshape(outer, classes, inner)
    lab = labels.reshape(outer, inner)
    right = count = 0
    hits, totals = [0] * classes, [0] * classes
    for i in range(outer):
        for j in range(inner):
            label = int(lab[i, j])
            if ignore is not None and label == ignore:
                continue
            totals[label] += 1
            better = sum(1 for c in range(classes) if v[i, c, j] >= v[i, label, j]) - 1
            if better < k:
                right += 1
                hits[label] += 1
            count += 1
    per_class = [h / t if t else 0.0 for h, t in zip(hits, totals)]
    return (right / count if count else 0.0), per_class


@pytest.mark.parametrize("params,axis,k,ignore,shape", [
    ("", 1, 1, None, (12, 5)),
    ("accuracy_param { top_k: 2 }", 1, 2, None, (12, 5)),
    ("accuracy_param { ignore_label: 3 }", 1, 1, 3, (12, 5)),
    ("accuracy_param { top_k: 3 ignore_label: 0 }", 1, 3, 0, (2, 5, 3, 3)),
    ("accuracy_param { axis: 2 }", 2, 1, None, (2, 3, 4)),
])
def test_accuracy(params, axis, k, ignore, shape):
    x = np.round(randn(*shape), 1)  # ties happen: they count against the true class
    classes = shape[axis]
    labels = RNG.integers(0, classes, size=shape[:axis] + shape[axis + 1:]).astype(np.float32)
    body = (f'name: "l" type: "Accuracy" bottom: "x" bottom: "t" top: "acc" top: "per_class" '
            f'{params}')
    accuracy, per_class = run(body, [x, labels])
    expected, expected_per_class = _accuracy_reference(x, labels, axis, k, ignore)
    check("Accuracy", f"{shape} {params or 'default'}", "naive loops", accuracy, expected)
    check("Accuracy", f"{shape} {params or 'default'} per class", "naive loops", per_class,
          expected_per_class)


def test_accuracy_ties_count_against():
    x = np.array([[1.0, 3.0, 3.0], [5.0, 1.0, 1.0]], np.float32)
    labels = np.array([1, 0], np.float32)
    (acc,) = run('name: "l" type: "Accuracy" bottom: "x" bottom: "t"', [x, labels])
    exact("Accuracy", "tie with another class -> wrong at top_k 1", "Caffe's >= count", acc,
          np.float32(0.5))
    (acc,) = run('name: "l" type: "Accuracy" bottom: "x" bottom: "t" accuracy_param '
                 '{ ignore_label: 0 }', [x, np.zeros(2, np.float32)])
    exact("Accuracy", "nothing counted -> 0", "formula", acc, np.float32(0))


# == recurrent ====================================================================================

def _lstm_unit_reference(c_prev, gates, cont):
    """LSTMUnitLayer::Forward_cpu's loops, with its own sigmoid and tanh = 2 sigmoid(2x) - 1."""
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    tanh = lambda v: 2.0 * sig(2.0 * v) - 1.0  # noqa: E731
    n, d = c_prev.shape
    c = np.empty((n, d))
    h = np.empty((n, d))
    for i in range(n):
        for j in range(d):
            ig = sig(gates[i, j])
            fg = 0.0 if cont[i] == 0 else cont[i] * sig(gates[i, d + j])
            og = sig(gates[i, 2 * d + j])
            gg = tanh(gates[i, 3 * d + j])
            c[i, j] = fg * c_prev[i, j] + ig * gg
            h[i, j] = og * tanh(c[i, j])
    return c, h


def test_lstm_unit():
    c_prev = randn(1, 4, 3)
    gates = randn(1, 4, 12, scale=2)
    cont = np.array([[1.0, 0.0, 0.5, 1.0]], np.float32)
    c, h = run('name: "l" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "k" top: "c2" '
               'top: "h"', [c_prev, gates, cont])
    expected_c, expected_h = _lstm_unit_reference(f64(c_prev[0]), f64(gates[0]), f64(cont[0]))
    check("LSTMUnit", "cont 1,0,0.5,1 c_t", "naive loops", c, expected_c[None])
    check("LSTMUnit", "cont 1,0,0.5,1 h_t", "naive loops", h, expected_h[None])


def _lstm_reference(x, cont, w_x, b, w_h, static=None, w_s=None, h0=None, c0=None):
    steps, streams = x.shape[:2]
    hidden = w_h.shape[1]
    inputs = f64(x).reshape(steps, streams, -1)
    h = np.zeros((streams, hidden)) if h0 is None else f64(h0).reshape(streams, hidden)
    c = np.zeros((streams, hidden)) if c0 is None else f64(c0).reshape(streams, hidden)
    outputs = []
    for t in range(steps):
        gate = inputs[t] @ f64(w_x).T + f64(b) + (f64(cont[t])[:, None] * h) @ f64(w_h).T
        if static is not None:
            gate = gate + f64(static).reshape(streams, -1) @ f64(w_s).T
        c, h = _lstm_unit_reference(c, gate, f64(cont[t]))
        outputs.append(h)
    return np.stack(outputs), h, c


def _lstm_weights(hidden, inputs, static=None):
    blobs = [randn(4 * hidden, inputs, scale=0.5), randn(4 * hidden, scale=0.5)]
    if static:
        blobs.append(randn(4 * hidden, static, scale=0.5))
    blobs.append(randn(4 * hidden, hidden, scale=0.5))
    return blobs


@pytest.mark.parametrize("variant", ["basic", "reset mid-sequence", "non-binary cont",
                                     "static input", "expose_hidden", "x with extra axes"])
def test_lstm(variant):
    steps, streams, hidden = 5, 3, 4
    x = randn(steps, streams, 2, 3) if variant == "x with extra axes" else randn(steps, streams,
                                                                                6)
    cont = np.ones((steps, streams), np.float32)
    cont[0] = 0
    if variant == "reset mid-sequence":
        cont[2, 1] = 0
        cont[3, 0] = 0
    if variant == "non-binary cont":
        cont[2] = [0.5, 2.0, 0.0]
    static = randn(streams, 2, 2) if variant == "static input" else None
    blobs = _lstm_weights(hidden, 6, 4 if static is not None else None)
    bottoms = [x, cont]
    body = 'name: "l" type: "LSTM" bottom: "x" bottom: "cont" '
    if static is not None:
        bottoms.append(static)
        body += 'bottom: "xs" '
    h0 = c0 = None
    if variant == "expose_hidden":
        h0, c0 = randn(1, streams, hidden), randn(1, streams, hidden)
        cont[0] = [1, 0, 1]
        bottoms += [h0, c0]
        body += 'bottom: "h0" bottom: "c0" top: "h" top: "hT" top: "cT" '
        body += "recurrent_param { num_output: 4 expose_hidden: true }"
    else:
        body += 'top: "h" recurrent_param { num_output: 4 }'
    tops = run(body, bottoms, blobs)
    expected, h_last, c_last = _lstm_reference(
        x, cont, blobs[0], blobs[1], blobs[-1], static, blobs[2] if static is not None else None,
        h0, c0)
    check("LSTM", variant, "reference loop (Caffe's unrolled net)", tops[0], expected)
    if variant == "expose_hidden":
        check("LSTM", variant + " h_T", "reference loop", tops[1], h_last[None])
        check("LSTM", variant + " c_T", "reference loop", tops[2], c_last[None])


def test_lstm_against_opencv():
    """OpenCV's LSTM (gates i, f, o, g) with Caffe's blobs reordered to its layout [W_hc, W_xc,
    b_c (1, 4H), h_0, c_0]; cont all 1 (OpenCV has no cont input). Caffe's h_0 enters through
    cont_1 * h_0 = h_0, so exposed initial states can be compared too."""
    steps, streams, hidden = 4, 2, 5
    x = randn(steps, streams, 3)
    cont = np.ones((steps, streams), np.float32)
    w_x, b, w_h = _lstm_weights(hidden, 3)
    h0, c0 = randn(1, streams, hidden), randn(1, streams, hidden)
    h, h_last, c_last = run(
        'name: "l" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" bottom: "c0" top: "h" '
        'top: "hT" top: "cT" recurrent_param { num_output: 5 expose_hidden: true }',
        [x, cont, h0, c0], [w_x, b, w_h])
    lines = (f'input: "x"\ninput_shape {{ dim: {steps} dim: {streams} dim: 3 }}\n'
             'layer { name: "l" type: "LSTM" bottom: "x" top: "y" '
             'recurrent_param { num_output: 5 } }\n'
             'layer { name: "o" type: "Power" bottom: "y" top: "o" }\n')
    theirs = cv2_forward(lines, {"l": [w_h, w_x, b.reshape(1, -1), h0[0], c0[0]]}, {"x": x},
                         ["o"])["o"]
    check("LSTM", "expose_hidden, cont 1", "OpenCV", h, theirs.reshape(h.shape))


def test_lstm_state_carries_over_between_passes():
    """Without expose_hidden Caffe starts each pass from the previous pass's h_T, c_T: two
    passes of 3 steps (cont 1 at the second pass's start) equal one pass of 6 steps."""
    streams, hidden = 2, 3
    x = randn(6, streams, 4)
    cont = np.ones((6, streams), np.float32)
    cont[0] = 0
    blobs = _lstm_weights(hidden, 4)
    body = 'name: "l" type: "LSTM" bottom: "x" bottom: "c" top: "h" recurrent_param ' \
           '{ num_output: 3 }'
    context = ForwardContext(phase=TEST)
    setattr(context, STATE_ATTRIBUTE, {})
    (first,) = run(body, [x[:3], cont[:3]], blobs, context=context)
    (second,) = run(body, [x[3:], cont[3:]], blobs, context=context)
    expected, _, _ = _lstm_reference(x, cont, blobs[0], blobs[1], blobs[2])
    check("LSTM", "state carried over 2 passes", "reference loop",
          np.concatenate([first, second]), expected)
    (fresh,) = run(body, [x[3:], cont[3:]], blobs)  # no state store: zeros
    expected_fresh, _, _ = _lstm_reference(x[3:], cont[3:], blobs[0], blobs[1], blobs[2])
    check("LSTM", "no state store: zero initial state", "reference loop", fresh,
          expected_fresh)


def _rnn_reference(x, cont, w_xh, b_h, w_hh, w_ho, b_o, static=None, w_s=None, h0=None):
    steps, streams = x.shape[:2]
    hidden = w_hh.shape[0]
    inputs = f64(x).reshape(steps, streams, -1)
    h = np.zeros((streams, hidden)) if h0 is None else f64(h0).reshape(streams, hidden)
    outputs = []
    for t in range(steps):
        pre = (f64(cont[t])[:, None] * h) @ f64(w_hh).T + inputs[t] @ f64(w_xh).T + f64(b_h)
        if static is not None:
            pre = pre + f64(static).reshape(streams, -1) @ f64(w_s).T
        h = np.tanh(pre)
        outputs.append(np.tanh(h @ f64(w_ho).T + f64(b_o)))
    return np.stack(outputs), h


@pytest.mark.parametrize("variant", ["basic", "reset mid-sequence", "static input",
                                     "expose_hidden", "state carried over"])
def test_rnn(variant):
    steps, streams, hidden, size = 4, 3, 5, 6
    x = randn(steps, streams, size)
    cont = np.ones((steps, streams), np.float32)
    cont[0] = 0
    if variant == "reset mid-sequence":
        cont[2, 0] = 0
    static = randn(streams, 3) if variant == "static input" else None
    blobs = [randn(hidden, size, scale=0.5), randn(hidden, scale=0.5)]
    if static is not None:
        blobs.append(randn(hidden, 3, scale=0.5))
    blobs += [randn(hidden, hidden, scale=0.5), randn(hidden, hidden, scale=0.5),
              randn(hidden, scale=0.5)]
    w_xh, b_h = blobs[0], blobs[1]
    w_hh, w_ho, b_o = blobs[-3], blobs[-2], blobs[-1]
    bottoms = [x, cont] + ([static] if static is not None else [])
    body = 'name: "l" type: "RNN" bottom: "x" bottom: "cont" '
    body += 'bottom: "xs" ' if static is not None else ""
    h0 = None
    if variant == "expose_hidden":
        h0 = randn(1, streams, hidden)
        cont[0] = 1
        bottoms.append(h0)
        body += ('bottom: "h0" top: "o" top: "hT" '
                 'recurrent_param { num_output: 5 expose_hidden: true }')
    else:
        body += 'top: "o" recurrent_param { num_output: 5 }'
    if variant == "state carried over":
        context = ForwardContext(phase=TEST)
        setattr(context, STATE_ATTRIBUTE, {})
        (first,) = run(body, [x[:2], cont[:2]], blobs, context=context)
        (second,) = run(body, [x[2:], cont[2:]], blobs, context=context)
        tops = [np.concatenate([first, second])]
    else:
        tops = run(body, bottoms, blobs)
    expected, h_last = _rnn_reference(x, cont, w_xh, b_h, w_hh, w_ho, b_o, static,
                                      blobs[2] if static is not None else None, h0)
    check("RNN", variant, "reference loop (Caffe's unrolled net)", tops[0], expected)
    if variant == "expose_hidden":
        check("RNN", variant + " h_T", "reference loop", tops[1], h_last[None])


# == float64 ======================================================================================

@pytest.mark.parametrize("body,bottoms,blobs,expected", [
    ('name: "l" type: "ReLU" bottom: "x" top: "y" relu_param { negative_slope: 0.25 }',
     [X4], [], lambda: np.where(X4 > 0, f64(X4), 0.25 * f64(X4))),
    ('name: "l" type: "Sigmoid" bottom: "x" top: "y"', [X4], [], lambda: sigmoid64(X4)),
    ('name: "l" type: "BNLL" bottom: "x" top: "y"', [X4], [], lambda: _softplus(X4)),
    ('name: "l" type: "Softmax" bottom: "x" top: "y"', [X4], [], lambda: _softmax64(X4, 1)),
    ('name: "l" type: "LRN" bottom: "x" top: "y" lrn_param { alpha: 0.5 k: 2 }', [X4], [],
     lambda: _lrn_across(X4, 5, 0.5, 0.75, 2.0)),
    ('name: "l" type: "LRN" bottom: "x" top: "y" lrn_param { alpha: 0.5 norm_region: '
     'WITHIN_CHANNEL local_size: 3 }', [X4], [], lambda: _lrn_within(X4, 3, 0.5, 0.75)),
    ('name: "l" type: "MVN" bottom: "x" top: "y" mvn_param { eps: 0.5 }', [X4], [],
     lambda: _mvn(X4, False, True, 0.5)),
    ('name: "l" type: "Scale" bottom: "x" top: "y" scale_param { bias_term: true }', [X4],
     [np.array([1.5, -2.0, 0.25]), np.array([0.5, 0.0, -1.0])],
     lambda: f64(X4) * np.array([1.5, -2.0, 0.25]).reshape(3, 1, 1)
     + np.array([0.5, 0.0, -1.0]).reshape(3, 1, 1)),
], ids=["ReLU", "Sigmoid", "BNLL", "Softmax", "LRN across", "LRN within", "MVN", "Scale"])
def test_float64_is_kept_and_exact(body, bottoms, blobs, expected):
    (y,) = run(body, [f64(b) for b in bottoms], [f64(b) for b in blobs])
    assert y.dtype == np.float64
    kind = parse_layer(body).type
    check(kind, "float64", "formula (float64)", y, expected(), rtol=1e-12)


def test_float64_batchnorm_train_and_losses():
    x = f64(randn(4, 3, 2, 2))
    blobs = [np.zeros(3), np.zeros(3), np.zeros(1)]
    (y,) = run('name: "l" type: "BatchNorm" bottom: "x" top: "y"', [x], blobs, phase=TRAIN)
    expected, state = _bn_train_reference(x, (np.zeros(3), np.zeros(3), 0.0),
                                          float(np.float32(0.999)), float(np.float32(1e-5)))
    assert y.dtype == np.float64 and all(b.dtype == np.float64 for b in blobs)
    check("BatchNorm", "float64 TRAIN", "hand computation", y, expected, rtol=1e-12)
    check("BatchNorm", "float64 TRAIN blob1", "hand computation", blobs[1], state[1],
          rtol=1e-12)
    logits, labels = f64(randn(6, 5)), np.array([0, 1, 2, 3, 4, 0], np.float64)
    (loss,) = run('name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "t"', [logits, labels])
    assert loss.dtype == np.float64
    check("SoftmaxWithLoss", "float64", "naive loops", loss,
          _softmax_loss_reference(logits, labels, 1, None, "VALID")[0], rtol=1e-12)
    blobs = [f64(b) for b in _lstm_weights(3, 4)]
    x, cont = f64(randn(3, 2, 4)), np.ones((3, 2))
    (h,) = run('name: "l" type: "LSTM" bottom: "x" bottom: "c" top: "h" recurrent_param '
               '{ num_output: 3 }', [x, cont], blobs)
    assert h.dtype == np.float64
    check("LSTM", "float64", "reference loop", h,
          _lstm_reference(x, cont, blobs[0], blobs[1], blobs[2])[0], rtol=1e-12)
