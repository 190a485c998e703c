"""Layer specs against Caffe's rules: counts, in-place behaviour, checks, shapes and blobs.

Every expected value below is computed by hand from Caffe's formulas (noted where not obvious);
the tables are the tests. A layer type missing from COUNTS or GOOD fails the coverage tests.
"""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from prototxt_tools.layers import CHECK_CODES, CaffeCheckFailed, ShapeContext, get_spec, \
    known_types
from prototxt_tools.layers.base import IN_PLACE_FORBIDDEN as FORBIDDEN
from prototxt_tools.layers.base import IN_PLACE_OK as OK
from prototxt_tools.layers.base import IN_PLACE_WRONG as WRONG
from prototxt_tools.schema import caffe_pb2

N = None  # an unknown dimension, for readability in the tables


def parse(text: str):
    return text_format.Parse(text, caffe_pb2.LayerParameter())


def spec_of(layer):
    spec = get_spec(layer.type)
    assert spec is not None, layer.type
    return spec


def shapes(text: str, bottoms: list, **context):
    layer = parse(text)
    ctx = ShapeContext(**context)
    return spec_of(layer).shape(layer, list(bottoms), ctx)


def problems(text: str) -> list:
    layer = parse(text)
    return list(spec_of(layer).check(layer))


def failure(text: str, bottoms: list):
    layer = parse(text)
    with pytest.raises(CaffeCheckFailed) as info:
        spec_of(layer).shape(layer, list(bottoms), ShapeContext())
    return info.value.problem


# -- every registered type: counts, in-place class, flags -----------------------------------------

INF = None
# type: (bottom range, top range, in-place class); ranges for the layer in GOOD.
COUNTS = {
    "AbsVal": ((1, 1), (1, 1), FORBIDDEN),
    "Accuracy": ((2, 2), (1, 2), WRONG),
    "ArgMax": ((1, 1), (1, 1), WRONG),
    "BatchNorm": ((1, 1), (1, 1), OK),
    "BatchReindex": ((2, 2), (1, 1), WRONG),
    "Bias": ((1, 2), (1, 1), OK),
    "BNLL": ((1, 1), (1, 1), OK),
    "Clip": ((1, 1), (1, 1), OK),
    "Concat": ((1, INF), (1, 1), WRONG),
    "ContrastiveLoss": ((3, 3), (1, 1), WRONG),
    "Convolution": ((1, INF), (1, INF), WRONG),
    "Crop": ((2, 2), (1, 1), WRONG),
    "Data": ((0, 0), (1, 2), OK),
    "Deconvolution": ((1, INF), (1, INF), WRONG),
    "Dropout": ((1, 1), (1, 1), OK),
    "DummyData": ((0, 0), (1, INF), OK),
    "Eltwise": ((2, INF), (1, 1), WRONG),
    "ELU": ((1, 1), (1, 1), OK),
    "Embed": ((1, 1), (1, 1), WRONG),
    "EuclideanLoss": ((2, 2), (1, 1), WRONG),
    "Exp": ((1, 1), (1, 1), OK),
    "Filter": ((2, INF), (1, 1), WRONG),
    "Flatten": ((1, 1), (1, 1), FORBIDDEN),
    "HDF5Data": ((0, 0), (1, INF), OK),
    "HDF5Output": ((2, 2), (0, 0), OK),
    "HingeLoss": ((2, 2), (1, 1), WRONG),
    "Im2col": ((1, 1), (1, 1), WRONG),
    "ImageData": ((0, 0), (2, 2), OK),
    "InfogainLoss": ((2, 3), (1, 2), WRONG),
    "InnerProduct": ((1, 1), (1, 1), WRONG),
    "Input": ((0, 0), (1, INF), OK),
    "Log": ((1, 1), (1, 1), OK),
    "LRN": ((1, 1), (1, 1), WRONG),
    "LSTM": ((2, 3), (1, 1), WRONG),
    "LSTMUnit": ((3, 3), (2, 2), OK),
    "MemoryData": ((0, 0), (2, 2), OK),
    "MultinomialLogisticLoss": ((2, 2), (1, 1), WRONG),
    "MVN": ((1, 1), (1, 1), OK),
    "Parameter": ((0, 0), (1, 1), OK),
    "Pooling": ((1, 1), (1, 2), WRONG),
    "Power": ((1, 1), (1, 1), OK),
    "PReLU": ((1, 1), (1, 1), OK),
    "Python": ((0, INF), (0, INF), OK),
    "Reduction": ((1, 1), (1, 1), WRONG),
    "ReLU": ((1, 1), (1, 1), OK),
    "Reshape": ((1, 1), (1, 1), FORBIDDEN),
    "RNN": ((2, 3), (1, 1), WRONG),
    "Scale": ((1, 2), (1, 1), OK),
    "Sigmoid": ((1, 1), (1, 1), OK),
    "SigmoidCrossEntropyLoss": ((2, 2), (1, 1), WRONG),
    "Silence": ((1, INF), (0, 0), OK),
    "Slice": ((1, 1), (1, INF), WRONG),
    "Softmax": ((1, 1), (1, 1), OK),
    "SoftmaxWithLoss": ((2, 2), (1, 2), WRONG),
    "Split": ((1, 1), (1, INF), FORBIDDEN),
    "SPP": ((1, 1), (1, 1), WRONG),
    "Swish": ((1, 1), (1, 1), OK),
    "TanH": ((1, 1), (1, 1), OK),
    "Threshold": ((1, 1), (1, 1), OK),
    "Tile": ((1, 1), (1, 1), WRONG),
    "WindowData": ((0, 0), (2, 2), OK),
}

LOSSES = {"ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss",
          "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "SoftmaxWithLoss"}
DATA = {"Data", "DummyData", "HDF5Data", "ImageData", "Input", "MemoryData", "WindowData"}

# A valid layer of every type: check() finds nothing.
GOOD = {
    "AbsVal": 'type: "AbsVal" bottom: "x" top: "y"',
    "Accuracy": 'type: "Accuracy" bottom: "x" bottom: "label" top: "acc"',
    "ArgMax": 'type: "ArgMax" bottom: "x" top: "y"',
    "BatchNorm": 'type: "BatchNorm" bottom: "x" top: "x"',
    "BatchReindex": 'type: "BatchReindex" bottom: "x" bottom: "idx" top: "y"',
    "Bias": 'type: "Bias" bottom: "x" top: "y"',
    "BNLL": 'type: "BNLL" bottom: "x" top: "y"',
    "Clip": 'type: "Clip" bottom: "x" top: "y" clip_param { min: -1 max: 1 }',
    "Concat": 'type: "Concat" bottom: "a" bottom: "b" top: "y"',
    "ContrastiveLoss": 'type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" '
                       'top: "loss"',
    "Convolution": 'type: "Convolution" bottom: "x" top: "y" '
                   'convolution_param { num_output: 4 kernel_size: 3 }',
    "Crop": 'type: "Crop" bottom: "x" bottom: "ref" top: "y"',
    "Data": 'type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 4 }',
    "Deconvolution": 'type: "Deconvolution" bottom: "x" top: "y" '
                     'convolution_param { num_output: 4 kernel_size: 3 }',
    "Dropout": 'type: "Dropout" bottom: "x" top: "x"',
    "DummyData": 'type: "DummyData" top: "a" dummy_data_param { shape { dim: 2 dim: 3 } }',
    "Eltwise": 'type: "Eltwise" bottom: "a" bottom: "b" top: "y"',
    "ELU": 'type: "ELU" bottom: "x" top: "y"',
    "Embed": 'type: "Embed" bottom: "x" top: "y" embed_param { num_output: 4 input_dim: 10 }',
    "EuclideanLoss": 'type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss"',
    "Exp": 'type: "Exp" bottom: "x" top: "y"',
    "Filter": 'type: "Filter" bottom: "x" bottom: "sel" top: "y"',
    "Flatten": 'type: "Flatten" bottom: "x" top: "y"',
    "HDF5Data": 'type: "HDF5Data" top: "data" top: "label" '
                'hdf5_data_param { source: "list.txt" batch_size: 4 }',
    "HDF5Output": 'type: "HDF5Output" bottom: "data" bottom: "label" '
                  'hdf5_output_param { file_name: "out.h5" }',
    "HingeLoss": 'type: "HingeLoss" bottom: "x" bottom: "label" top: "loss"',
    "Im2col": 'type: "Im2col" bottom: "x" top: "y" convolution_param { kernel_size: 3 }',
    "ImageData": 'type: "ImageData" top: "data" top: "label" '
                 'image_data_param { source: "list.txt" batch_size: 2 }',
    "InfogainLoss": 'type: "InfogainLoss" bottom: "x" bottom: "label" top: "loss" '
                    'infogain_loss_param { source: "H.binaryproto" }',
    "InnerProduct": 'type: "InnerProduct" bottom: "x" top: "y" '
                    'inner_product_param { num_output: 4 }',
    "Input": 'type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } }',
    "Log": 'type: "Log" bottom: "x" top: "y"',
    "LRN": 'type: "LRN" bottom: "x" top: "y"',
    "LSTM": 'type: "LSTM" bottom: "x" bottom: "cont" top: "h" recurrent_param { num_output: 4 }',
    "LSTMUnit": 'type: "LSTMUnit" bottom: "c" bottom: "gates" bottom: "cont" top: "c_t" '
                'top: "h_t"',
    "MemoryData": 'type: "MemoryData" top: "data" top: "label" '
                  'memory_data_param { batch_size: 2 channels: 3 height: 4 width: 4 }',
    "MultinomialLogisticLoss": 'type: "MultinomialLogisticLoss" bottom: "p" bottom: "label" '
                               'top: "loss"',
    "MVN": 'type: "MVN" bottom: "x" top: "y"',
    "Parameter": 'type: "Parameter" top: "w" parameter_param { shape { dim: 2 } }',
    "Pooling": 'type: "Pooling" bottom: "x" top: "y" pooling_param { kernel_size: 2 }',
    "Power": 'type: "Power" bottom: "x" top: "y"',
    "PReLU": 'type: "PReLU" bottom: "x" top: "x"',
    "Python": 'type: "Python" bottom: "x" top: "y" python_param { module: "m" layer: "L" }',
    "Reduction": 'type: "Reduction" bottom: "x" top: "y"',
    "ReLU": 'type: "ReLU" bottom: "x" top: "x"',
    "Reshape": 'type: "Reshape" bottom: "x" top: "y" reshape_param { shape { dim: -1 } }',
    "RNN": 'type: "RNN" bottom: "x" bottom: "cont" top: "o" recurrent_param { num_output: 4 }',
    "Scale": 'type: "Scale" bottom: "x" top: "x"',
    "Sigmoid": 'type: "Sigmoid" bottom: "x" top: "x"',
    "SigmoidCrossEntropyLoss": 'type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
                               'top: "loss"',
    "Silence": 'type: "Silence" bottom: "a"',
    "Slice": 'type: "Slice" bottom: "a" top: "b" top: "c"',
    "Softmax": 'type: "Softmax" bottom: "x" top: "y"',
    "SoftmaxWithLoss": 'type: "SoftmaxWithLoss" bottom: "x" bottom: "label" top: "loss"',
    "Split": 'type: "Split" bottom: "a" top: "b" top: "c"',
    "SPP": 'type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: 2 }',
    "Swish": 'type: "Swish" bottom: "x" top: "y"',
    "TanH": 'type: "TanH" bottom: "x" top: "x"',
    "Threshold": 'type: "Threshold" bottom: "x" top: "y"',
    "Tile": 'type: "Tile" bottom: "x" top: "y" tile_param { tiles: 2 }',
    "WindowData": 'type: "WindowData" top: "data" top: "label" '
                  'window_data_param { source: "w.txt" batch_size: 2 } '
                  'transform_param { crop_size: 8 }',
}

# Every type BVLC Caffe's final master registers (layer_factory.cpp and REGISTER_LAYER_CLASS).
BVLC_TYPES = set(COUNTS)


def test_registry_is_exactly_bvlc():
    assert set(known_types()) == BVLC_TYPES
    assert len(BVLC_TYPES) == 61


def test_every_type_has_a_good_layer():
    assert set(GOOD) == BVLC_TYPES


@pytest.mark.parametrize("type_name", sorted(COUNTS))
def test_counts_and_in_place(type_name):
    layer = parse(GOOD[type_name])
    spec = spec_of(layer)
    bottoms, tops, in_place = COUNTS[type_name]
    assert spec.type == type_name
    assert spec.bottom_range(layer) == bottoms
    assert spec.top_range(layer) == tops
    assert spec.in_place == in_place
    assert spec.is_loss == (type_name in LOSSES)
    assert spec.auto_tops == (type_name in LOSSES)
    assert spec.is_data == (type_name in DATA)
    assert spec.equal_bottom_top == (type_name in {"Convolution", "Deconvolution"})
    # the good layer itself respects its counts
    assert bottoms[0] <= len(layer.bottom) and (bottoms[1] is None or
                                                len(layer.bottom) <= bottoms[1])
    assert tops[0] <= len(layer.top) and (tops[1] is None or len(layer.top) <= tops[1])


@pytest.mark.parametrize("type_name", sorted(COUNTS))
def test_param_field_and_family(type_name):
    spec = get_spec(type_name)
    assert spec.family in {"data", "vision", "common", "activation", "normalization", "loss",
                           "structure", "recurrent", "python"}
    if spec.param_field is not None:
        layer = parse(GOOD[type_name])
        assert spec.params(layer) is getattr(layer, spec.param_field)


@pytest.mark.parametrize("type_name", sorted(GOOD))
def test_good_layer_has_no_problems(type_name):
    assert problems(GOOD[type_name]) == []


@pytest.mark.parametrize("text, bottoms, tops", [
    # Pooling: only MAX may output the argmax mask as a second top
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 2 }', (1, 1), (1, 1)),
    ('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 }', (1, 1), (1, 1)),
    ('type: "Pooling" pooling_param { pool: MAX kernel_size: 2 }', (1, 1), (1, 2)),
    # recurrent layers: expose_hidden adds the state bottoms and tops (h; h and c for LSTM)
    ('type: "RNN" recurrent_param { num_output: 4 expose_hidden: true }', (3, 4), (2, 2)),
    ('type: "LSTM" recurrent_param { num_output: 4 expose_hidden: true }', (4, 5), (3, 3)),
    # Filter: one top per filtered bottom (all but the selector)
    ('type: "Filter" bottom: "a" bottom: "b" bottom: "c" bottom: "sel"', (2, None), (3, 3)),
])
def test_parameter_dependent_counts(text, bottoms, tops):
    layer = parse(text)
    spec = spec_of(layer)
    assert spec.bottom_range(layer) == bottoms
    assert spec.top_range(layer) == tops


def test_check_codes_used_are_declared():
    used = set()
    for text in GOOD.values():
        for problem in problems(text):
            used.add(problem.code)
    for case in CHECKS:
        used.add(case[2])
    for case in FAILURES:
        used.add(case[3])
    assert used <= set(CHECK_CODES) - {"L001", "L002"}


# -- parameter checks: each bad layer gives exactly that problem ----------------------------------

CONV = "convolution_param"
POOL = "pooling_param"

# (id, layer, code, field, severity)
CHECKS = [
    # Convolution family
    ("conv-kernel-both", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                         f'kernel_h: 3 kernel_w: 3 }}', "L010", (CONV, "kernel_size"), "error"),
    ("conv-kernel-h-only", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_h: 3 }}',
     "L010", (CONV, "kernel_h"), "error"),
    ("conv-kernel-w-zero", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_h: 3 '
                           f'kernel_w: 0 }}', "L010", (CONV, "kernel_w"), "error"),
    ("conv-no-kernel", f'type: "Convolution" {CONV} {{ num_output: 1 }}', "L010", (CONV,),
     "error"),
    ("conv-kernel-zero", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                         f'kernel_size: 0 }}', "L010", (CONV, "kernel_size", 1), "error"),
    ("conv-stride-zero", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                         f'stride: 0 }}', "L010", (CONV, "stride", 0), "error"),
    ("conv-stride-h-only", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                           f'stride_h: 2 }}', "L010", (CONV, "stride_h"), "error"),
    ("conv-stride-both", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                         f'stride: 1 stride_h: 2 stride_w: 2 }}', "L010", (CONV, "stride"),
     "error"),
    ("conv-pad-both", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 pad: 1 '
                      f'pad_h: 1 }}', "L010", (CONV, "pad"), "error"),
    ("conv-counts-disagree", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_size: 3 '
                             f'kernel_size: 3 kernel_size: 3 stride: 1 stride: 2 }}', "L010",
     (CONV, "stride"), "error"),
    ("conv-hw-vs-3d", f'type: "Convolution" {CONV} {{ num_output: 1 kernel_h: 3 kernel_w: 3 '
                      f'dilation: 1 dilation: 1 dilation: 2 }}', "L010", (CONV, "dilation"),
     "error"),
    ("conv-no-num-output", f'type: "Convolution" {CONV} {{ kernel_size: 3 }}', "L010",
     (CONV, "num_output"), "error"),
    ("conv-group-zero", f'type: "Convolution" {CONV} {{ num_output: 4 kernel_size: 3 '
                        f'group: 0 }}', "L010", (CONV, "group"), "error"),
    ("conv-group-not-dividing", f'type: "Convolution" {CONV} {{ num_output: 6 kernel_size: 3 '
                                f'group: 4 }}', "L010", (CONV, "num_output"), "error"),
    ("deconv-no-num-output", f'type: "Deconvolution" {CONV} {{ kernel_size: 2 }}', "L010",
     (CONV, "num_output"), "error"),
    ("im2col-kernel-h-only", f'type: "Im2col" {CONV} {{ kernel_w: 2 }}', "L010",
     (CONV, "kernel_w"), "error"),
    # Pooling and SPP
    ("pool-global-with-kernel", f'type: "Pooling" {POOL} {{ global_pooling: true '
                                f'kernel_size: 3 }}', "L020", (POOL, "kernel_size"), "error"),
    ("pool-kernel-both", f'type: "Pooling" {POOL} {{ kernel_size: 3 kernel_h: 3 '
                         f'kernel_w: 3 }}', "L020", (POOL, "kernel_size"), "error"),
    ("pool-kernel-h-only", f'type: "Pooling" {POOL} {{ kernel_h: 3 }}', "L020",
     (POOL, "kernel_h"), "error"),
    ("pool-no-kernel", f'type: "Pooling" {POOL} {{ pool: AVE }}', "L020", (POOL,), "error"),
    ("pool-pad-and-pad-h", f'type: "Pooling" {POOL} {{ kernel_size: 3 pad: 1 pad_h: 1 '
                           f'pad_w: 1 }}', "L020", (POOL, "pad"), "error"),
    ("pool-pad-h-only", f'type: "Pooling" {POOL} {{ kernel_size: 3 pad_h: 1 }}', "L020",
     (POOL, "pad_h"), "error"),
    ("pool-stride-and-stride-w", f'type: "Pooling" {POOL} {{ kernel_size: 3 stride: 2 '
                                 f'stride_w: 2 }}', "L020", (POOL, "stride"), "error"),
    ("pool-stride-w-only", f'type: "Pooling" {POOL} {{ kernel_size: 3 stride_w: 2 }}', "L020",
     (POOL, "stride_w"), "error"),
    ("pool-kernel-zero", f'type: "Pooling" {POOL} {{ kernel_size: 0 }}', "L020",
     (POOL, "kernel_size"), "error"),
    ("pool-kernel-w-zero", f'type: "Pooling" {POOL} {{ kernel_h: 2 kernel_w: 0 }}', "L020",
     (POOL, "kernel_w"), "error"),
    ("pool-stride-zero", f'type: "Pooling" {POOL} {{ kernel_size: 2 stride: 0 }}', "L020",
     (POOL, "stride"), "error"),
    ("pool-global-pad", f'type: "Pooling" {POOL} {{ global_pooling: true pad: 1 }}', "L020",
     (POOL, "pad"), "error"),
    ("pool-global-stride", f'type: "Pooling" {POOL} {{ global_pooling: true stride: 2 }}',
     "L020", (POOL, "stride"), "error"),
    ("pool-stochastic-pad", f'type: "Pooling" {POOL} {{ pool: STOCHASTIC kernel_size: 3 '
                            f'pad: 1 }}', "L020", (POOL, "pool"), "error"),
    ("pool-pad-not-below-kernel", f'type: "Pooling" {POOL} {{ kernel_size: 2 pad: 2 }}',
     "L020", (POOL, "pad"), "error"),
    ("pool-pad-h-not-below-kernel-h", f'type: "Pooling" {POOL} {{ kernel_h: 3 kernel_w: 2 '
                                      f'pad_h: 1 pad_w: 2 }}', "L020", (POOL, "pad_h"),
     "error"),
    ("spp-no-height", 'type: "SPP"', "L020", ("spp_param", "pyramid_height"), "error"),
    # InnerProduct and Embed
    ("ip-no-num-output", 'type: "InnerProduct"', "L030", ("inner_product_param", "num_output"),
     "error"),
    ("embed-no-num-output", 'type: "Embed" embed_param { input_dim: 4 }', "L030",
     ("embed_param", "num_output"), "error"),
    ("embed-no-input-dim", 'type: "Embed" embed_param { num_output: 4 }', "L030",
     ("embed_param", "input_dim"), "error"),
    # element-wise layers
    ("dropout-ratio-one", 'type: "Dropout" dropout_param { dropout_ratio: 1 }', "L090",
     ("dropout_param", "dropout_ratio"), "error"),
    ("dropout-ratio-negative", 'type: "Dropout" dropout_param { dropout_ratio: -0.1 }', "L090",
     ("dropout_param", "dropout_ratio"), "error"),
    ("dropout-ratio-zero", 'type: "Dropout" dropout_param { dropout_ratio: 0 }', "L090",
     ("dropout_param", "dropout_ratio"), "warning"),
    ("exp-base-zero", 'type: "Exp" exp_param { base: 0 }', "L090", ("exp_param", "base"),
     "error"),
    ("exp-base-negative", 'type: "Exp" exp_param { base: -2 }', "L090", ("exp_param", "base"),
     "error"),
    ("log-base-negative", 'type: "Log" log_param { base: -3 }', "L090", ("log_param", "base"),
     "error"),
    ("clip-no-min", 'type: "Clip" clip_param { max: 1 }', "L090", ("clip_param", "min"),
     "error"),
    ("clip-no-max", 'type: "Clip" clip_param { min: 1 }', "L090", ("clip_param", "max"),
     "error"),
    ("clip-min-above-max", 'type: "Clip" clip_param { min: 2 max: 1 }', "L090",
     ("clip_param", "min"), "warning"),
    # normalisation
    ("lrn-even-size", 'type: "LRN" lrn_param { local_size: 4 }', "L080",
     ("lrn_param", "local_size"), "error"),
    ("scale-num-axes", 'type: "Scale" bottom: "x" scale_param { num_axes: -2 }', "L080",
     ("scale_param", "num_axes"), "error"),
    ("bias-num-axes", 'type: "Bias" bottom: "x" bias_param { num_axes: -3 }', "L080",
     ("bias_param", "num_axes"), "error"),
    # structure
    ("eltwise-prod-coeff", 'type: "Eltwise" bottom: "a" bottom: "b" eltwise_param '
                           '{ operation: PROD coeff: 1 coeff: 2 }', "L040",
     ("eltwise_param", "coeff"), "error"),
    ("eltwise-coeff-count", 'type: "Eltwise" bottom: "a" bottom: "b" eltwise_param '
                            '{ coeff: 1 coeff: 2 coeff: 3 }', "L040", ("eltwise_param", "coeff"),
     "error"),
    ("concat-axis-and-dim", 'type: "Concat" concat_param { axis: 1 concat_dim: 1 }', "L050",
     ("concat_param", "concat_dim"), "error"),
    ("slice-axis-and-dim", 'type: "Slice" top: "a" top: "b" slice_param { axis: 1 '
                           'slice_dim: 1 }', "L050", ("slice_param", "slice_dim"), "error"),
    ("slice-point-count", 'type: "Slice" top: "a" top: "b" slice_param { slice_point: 1 '
                          'slice_point: 2 }', "L050", ("slice_param", "slice_point"), "error"),
    ("slice-point-order", 'type: "Slice" top: "a" top: "b" top: "c" slice_param '
                          '{ slice_point: 3 slice_point: 2 }', "L050",
     ("slice_param", "slice_point", 1), "error"),
    ("slice-point-zero", 'type: "Slice" top: "a" top: "b" slice_param { slice_point: 0 }',
     "L050", ("slice_param", "slice_point", 0), "error"),
    ("reshape-two-inferred", 'type: "Reshape" reshape_param { shape { dim: -1 dim: 2 '
                             'dim: -1 } }', "L070", ("reshape_param", "shape", "dim", 2),
     "error"),
    ("reshape-bad-dim", 'type: "Reshape" reshape_param { shape { dim: 2 dim: -4 } }', "L070",
     ("reshape_param", "shape", "dim", 1), "error"),
    ("reshape-num-axes", 'type: "Reshape" reshape_param { num_axes: -2 }', "L070",
     ("reshape_param", "num_axes"), "error"),
    ("tile-no-tiles", 'type: "Tile"', "L120", ("tile_param", "tiles"), "error"),
    ("tile-zero", 'type: "Tile" tile_param { tiles: 0 }', "L120", ("tile_param", "tiles"),
     "error"),
    ("tile-negative", 'type: "Tile" tile_param { tiles: -2 }', "L120", ("tile_param", "tiles"),
     "error"),
    ("argmax-top-k-zero", 'type: "ArgMax" argmax_param { top_k: 0 }', "L120",
     ("argmax_param", "top_k"), "error"),
    ("parameter-negative", 'type: "Parameter" parameter_param { shape { dim: 2 dim: -1 } }',
     "L120", ("parameter_param", "shape", "dim", 1), "error"),
    ("rnn-no-num-output", 'type: "RNN"', "L120", ("recurrent_param", "num_output"), "error"),
    ("lstm-no-num-output", 'type: "LSTM"', "L120", ("recurrent_param", "num_output"), "error"),
    ("python-no-module", 'type: "Python" python_param { layer: "L" }', "L120",
     ("python_param", "module"), "error"),
    ("python-no-layer", 'type: "Python" python_param { module: "m" }', "L120",
     ("python_param", "layer"), "error"),
    # losses and Accuracy
    ("infogain-no-matrix", 'type: "InfogainLoss" bottom: "x" bottom: "l"', "L100",
     ("infogain_loss_param", "source"), "error"),
    ("infogain-normalize", 'type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H" '
                           'loss_param { normalize: false }', "L100", ("loss_param", "normalize"),
     "error"),
    ("accuracy-top-k-zero", 'type: "Accuracy" accuracy_param { top_k: 0 }', "L100",
     ("accuracy_param", "top_k"), "warning"),
    # data layers
    ("data-no-source", 'type: "Data" data_param { batch_size: 2 }', "L110",
     ("data_param", "source"), "error"),
    ("data-zero-batch", 'type: "Data" data_param { source: "db" }', "L110",
     ("data_param", "batch_size"), "warning"),
    ("data-mean-file-and-value", 'type: "Data" data_param { source: "db" batch_size: 2 } '
                                 'transform_param { mean_file: "m" mean_value: 1 }', "L110",
     ("transform_param", "mean_value"), "error"),
    ("data-force-both", 'type: "Data" data_param { source: "db" batch_size: 2 } '
                        'transform_param { force_color: true force_gray: true }', "L110",
     ("transform_param", "force_gray"), "error"),
    ("image-new-height-only", 'type: "ImageData" image_data_param { source: "l" '
                              'new_height: 10 }', "L110", ("image_data_param", "new_height"),
     "error"),
    ("image-zero-batch", 'type: "ImageData" image_data_param { source: "l" batch_size: 0 }',
     "L110", ("image_data_param", "batch_size"), "error"),
    ("image-mean-count", 'type: "ImageData" image_data_param { source: "l" is_color: false } '
                         'transform_param { mean_value: 1 mean_value: 2 mean_value: 3 }', "L110",
     ("transform_param", "mean_value"), "error"),
    ("image-crop-too-big", 'type: "ImageData" image_data_param { source: "l" new_height: 8 '
                           'new_width: 16 } transform_param { crop_size: 10 }', "L110",
     ("transform_param", "crop_size"), "error"),
    ("image-no-source", 'type: "ImageData"', "L110", ("image_data_param", "source"), "error"),
    ("memory-zero-channels", 'type: "MemoryData" memory_data_param { batch_size: 2 height: 4 '
                             'width: 4 }', "L110", ("memory_data_param", "channels"), "error"),
    ("window-no-crop", 'type: "WindowData" window_data_param { source: "w" batch_size: 2 }',
     "L110", ("transform_param", "crop_size"), "error"),
    ("hdf5-transform", 'type: "HDF5Data" hdf5_data_param { source: "l" batch_size: 2 } '
                       'transform_param { scale: 0.5 }', "L110", ("transform_param",), "error"),
    ("hdf5-no-source", 'type: "HDF5Data" hdf5_data_param { batch_size: 2 }', "L110",
     ("hdf5_data_param", "source"), "error"),
    ("hdf5-output-no-file", 'type: "HDF5Output"', "L110", ("hdf5_output_param", "file_name"),
     "error"),
    ("dummy-filler-count", 'type: "DummyData" top: "a" top: "b" top: "c" dummy_data_param '
                           '{ shape { dim: 1 } data_filler { } data_filler { } }', "L110",
     ("dummy_data_param", "data_filler"), "error"),
    ("dummy-legacy-and-shape", 'type: "DummyData" top: "a" dummy_data_param { shape { dim: 1 } '
                               'num: 1 channels: 1 height: 1 width: 1 }', "L110",
     ("dummy_data_param", "shape"), "error"),
    ("dummy-legacy-count", 'type: "DummyData" top: "a" top: "b" top: "c" dummy_data_param '
                           '{ num: 1 num: 2 channels: 1 height: 1 width: 1 }', "L110",
     ("dummy_data_param", "num"), "error"),
    ("dummy-no-shape", 'type: "DummyData" top: "a"', "L110", ("dummy_data_param", "shape"),
     "error"),
    ("dummy-negative", 'type: "DummyData" top: "a" dummy_data_param { shape { dim: -2 } }',
     "L110", ("dummy_data_param", "shape", 0, "dim", 0), "error"),
    ("input-shape-count", 'type: "Input" top: "a" top: "b" top: "c" input_param '
                          '{ shape { dim: 1 } shape { dim: 2 } }', "L110", ("input_param", "shape"),
     "error"),
    ("input-negative", 'type: "Input" top: "a" input_param { shape { dim: 1 dim: -3 } }',
     "L110", ("input_param", "shape", 0, "dim", 1), "error"),
]


@pytest.mark.parametrize("text, code, field, severity",
                         [pytest.param(*case[1:], id=case[0]) for case in CHECKS])
def test_check_finds_exactly_one_problem(text, code, field, severity):
    found = problems(text)
    assert [(p.code, p.field, p.severity) for p in found] == [(code, field, severity)], found
    assert found[0].message


@pytest.mark.parametrize("text", [
    # pad_h alone is fine for convolution: the missing pad_w reads as 0
    f'type: "Convolution" {CONV} {{ num_output: 2 kernel_size: 3 pad_h: 1 }}',
    f'type: "Convolution" {CONV} {{ num_output: 2 kernel_h: 1 kernel_w: 3 stride_h: 1 '
    f'stride_w: 2 pad_h: 0 pad_w: 1 }}',
    f'type: "Convolution" {CONV} {{ num_output: 2 kernel_size: 3 kernel_size: 3 '
    f'kernel_size: 3 stride: 2 dilation: 1 dilation: 2 dilation: 1 }}',
    f'type: "Convolution" {CONV} {{ num_output: 8 kernel_size: 1 group: 4 }}',
    f'type: "Pooling" {POOL} {{ kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 '
    f'pad_w: 1 }}',
    f'type: "Pooling" {POOL} {{ global_pooling: true pool: AVE }}',
    # kernel_size wins over a lone kernel_h (Caffe's checks let this through)
    f'type: "Pooling" {POOL} {{ kernel_size: 3 kernel_h: 5 }}',
    'type: "Scale" bottom: "x" bottom: "s" scale_param { num_axes: -5 }',
    'type: "Exp" exp_param { base: -1 }',
    'type: "Exp" exp_param { base: 2 }',
    'type: "Slice" top: "a" top: "b" top: "c" slice_param { slice_point: 1 slice_point: 3 }',
    'type: "Eltwise" bottom: "a" bottom: "b" eltwise_param { coeff: 1 coeff: -1 }',
    'type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H"',
    'type: "DummyData" top: "a" top: "b" dummy_data_param { num: 1 num: 2 channels: 3 '
    'height: 4 width: 5 data_filler { type: "gaussian" } }',
    'type: "Input" top: "a" top: "b"',
    'type: "Input" top: "a" top: "b" input_param { shape { dim: 1 } shape { dim: 2 } }',
    'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 0 } axis: 1 num_axes: -1 }',
])
def test_valid_variants_have_no_problems(text):
    assert problems(text) == []


# -- top shapes -----------------------------------------------------------------------------------

def conv(params: str, type_name: str = "Convolution", bottoms: int = 1) -> str:
    names = " ".join(f'bottom: "b{i}" top: "t{i}"' for i in range(bottoms))
    return f'type: "{type_name}" {names} {CONV} {{ {params} }}'


def pool(params: str, tops: int = 1) -> str:
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    return f'type: "Pooling" bottom: "x" {names} {POOL} {{ {params} }}'


# (id, layer, bottom shapes, expected top shapes)
SHAPES = [
    # Convolution: out = (H + 2p - (d (k - 1) + 1)) / s + 1, C++ integer division
    ("conv-same", conv("num_output: 16 kernel_size: 3 pad: 1"), [(1, 3, 32, 32)],
     [(1, 16, 32, 32)]),
    ("conv-stride-2", conv("num_output: 64 kernel_size: 3 pad: 1 stride: 2"),
     [(1, 3, 224, 224)], [(1, 64, 112, 112)]),  # (224 + 2 - 3) / 2 + 1 = 111 + 1
    ("conv-kernel-h-w", conv("num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 "
                             "stride_h: 2 stride_w: 1"),
     [(2, 4, 10, 20)], [(2, 8, 5, 20)]),  # h: 9 / 2 + 1 = 5; w: 19 / 1 + 1 = 20
    ("conv-dilation", conv("num_output: 2 kernel_size: 3 dilation: 2"), [(1, 3, 10, 10)],
     [(1, 2, 6, 6)]),  # extent 5: (10 - 5) / 1 + 1
    ("conv-dilation-per-axis", conv("num_output: 2 kernel_size: 3 dilation: 1 dilation: 3"),
     [(1, 3, 10, 10)], [(1, 2, 8, 4)]),  # extents 3 and 7
    ("conv-group", conv("num_output: 8 kernel_size: 1 group: 4"), [(1, 4, 5, 5)],
     [(1, 8, 5, 5)]),
    ("conv-3d-single-kernel", conv("num_output: 4 kernel_size: 3"), [(1, 2, 8, 8, 8)],
     [(1, 4, 6, 6, 6)]),
    ("conv-3d-per-axis-stride", conv("num_output: 4 kernel_size: 3 stride: 1 stride: 2 "
                                     "stride: 2"),
     [(1, 2, 8, 8, 8)], [(1, 4, 6, 3, 3)]),  # (8 - 3) / 2 + 1 = 3
    ("conv-1d", conv("num_output: 4 kernel_size: 5 pad: 2"), [(3, 2, 7)], [(3, 4, 7)]),
    ("conv-axis-2", conv("num_output: 16 kernel_size: 3 axis: 2"), [(2, 5, 3, 8, 8)],
     [(2, 5, 16, 6, 6)]),
    ("conv-axis-negative", conv("num_output: 16 kernel_size: 3 axis: -3"), [(2, 3, 8, 8)],
     [(2, 16, 6, 6)]),
    ("conv-force-nd", conv("num_output: 1 kernel_size: 2 stride: 2 force_nd_im2col: true"),
     [(1, 1, 8, 6)], [(1, 1, 4, 3)]),
    ("conv-truncates-toward-zero", conv("num_output: 1 kernel_size: 3 stride: 2"),
     [(1, 1, 2, 2)], [(1, 1, 1, 1)]),  # (2 - 3) / 2 = 0 in C++ (floor would give -1)
    ("conv-two-bottoms", conv("num_output: 3 kernel_size: 1", bottoms=2),
     [(1, 2, 4, 4), (1, 2, 4, 4)], [(1, 3, 4, 4), (1, 3, 4, 4)]),
    ("conv-unknown-dims", conv("num_output: 6 kernel_size: 3 stride: 2"), [(N, 3, N, 9)],
     [(N, 6, N, 4)]),
    ("conv-bottoms-fill-each-other", conv("num_output: 3 kernel_size: 1", bottoms=2),
     [(1, N, 4, 4), (N, 2, 4, 4)], [(1, 3, 4, 4), (1, 3, 4, 4)]),
    # Deconvolution: out = s (H - 1) + d (k - 1) + 1 - 2p
    ("deconv-upsample-2x", conv("num_output: 16 kernel_size: 4 stride: 2 pad: 1 group: 2",
                                "Deconvolution"), [(1, 8, 7, 7)], [(1, 16, 14, 14)]),
    ("deconv-plain", conv("num_output: 2 kernel_size: 3", "Deconvolution"), [(1, 1, 5, 5)],
     [(1, 2, 7, 7)]),
    ("deconv-dilated", conv("num_output: 2 kernel_size: 3 stride: 2 dilation: 2",
                            "Deconvolution"), [(1, 1, 4, 4)], [(1, 2, 11, 11)]),  # 6 + 5
    # Im2col: channels * prod(kernel), spatial as convolution
    ("im2col", f'type: "Im2col" {CONV} {{ kernel_size: 3 }}', [(1, 3, 8, 8)],
     [(1, 27, 6, 6)]),
    ("im2col-pad-stride", f'type: "Im2col" {CONV} {{ kernel_size: 3 pad: 1 stride: 2 }}',
     [(1, 3, 8, 8)], [(1, 27, 4, 4)]),  # (8 + 2 - 3) / 2 + 1 = 4
    ("im2col-1d", f'type: "Im2col" {CONV} {{ kernel_size: 3 }}', [(2, 4, 10)], [(2, 12, 8)]),
    ("im2col-kernel-h-w", f'type: "Im2col" {CONV} {{ kernel_h: 2 kernel_w: 3 }}',
     [(1, 2, 5, 5)], [(1, 12, 4, 3)]),
    # Pooling: ceil((H + 2p - k) / s) + 1, then drop a last window starting in the padding
    ("pool-max-ceil", pool("kernel_size: 3 stride: 2"), [(1, 64, 112, 112)],
     [(1, 64, 56, 56)]),  # ceil(109 / 2) + 1 = 56
    ("pool-ceil", pool("kernel_size: 2 stride: 2"), [(1, 1, 7, 7)], [(1, 1, 4, 4)]),
    ("pool-floor", pool("kernel_size: 2 stride: 2 round_mode: FLOOR"), [(1, 1, 7, 7)],
     [(1, 1, 3, 3)]),
    ("pool-clip-last-window", pool("kernel_size: 2 stride: 2 pad: 1"), [(1, 1, 3, 3)],
     [(1, 1, 2, 2)]),  # ceil(3 / 2) + 1 = 3; (3 - 1) * 2 = 4 >= 3 + 1, so 2
    ("pool-floor-no-clip", pool("kernel_size: 2 stride: 2 pad: 1 round_mode: FLOOR"),
     [(1, 1, 3, 3)], [(1, 1, 2, 2)]),
    ("pool-pad-keeps-last", pool("kernel_size: 3 stride: 2 pad: 1"), [(1, 1, 112, 112)],
     [(1, 1, 57, 57)]),  # ceil(111 / 2) + 1 = 57; 56 * 2 = 112 < 113
    # Caffe applies the clip to both axes as soon as either has padding
    ("pool-clip-unpadded-axis", pool("kernel_h: 2 kernel_w: 1 stride: 2 pad_h: 1 pad_w: 0"),
     [(1, 1, 3, 4)], [(1, 1, 2, 2)]),
    ("pool-no-pad-no-clip", pool("kernel_h: 2 kernel_w: 1 stride: 2"), [(1, 1, 3, 4)],
     [(1, 1, 2, 3)]),
    ("pool-ave-pad", pool("pool: AVE kernel_size: 3 pad: 1"), [(2, 3, 5, 5)],
     [(2, 3, 5, 5)]),
    ("pool-non-square", pool("kernel_h: 2 kernel_w: 3"), [(1, 1, 4, 6)], [(1, 1, 3, 4)]),
    ("pool-stride-h-w", pool("kernel_size: 2 stride_h: 2 stride_w: 1"), [(1, 1, 6, 6)],
     [(1, 1, 3, 5)]),
    ("pool-global", pool("pool: AVE global_pooling: true"), [(2, 16, 7, 9)],
     [(2, 16, 1, 1)]),
    ("pool-global-unknown-size", pool("global_pooling: true"), [(2, 16, N, N)],
     [(2, 16, 1, 1)]),
    ("pool-max-mask-top", pool("kernel_size: 2 stride: 2", tops=2), [(1, 2, 4, 4)],
     [(1, 2, 2, 2), (1, 2, 2, 2)]),
    ("pool-unknown-height", pool("kernel_size: 2 stride: 2"), [(1, 2, N, 4)],
     [(1, 2, N, 2)]),
    # SPP: level l pools into 2^l bins; levels flattened and concatenated
    ("spp-single-level", 'type: "SPP" spp_param { pyramid_height: 1 }', [(2, 8, 13, 13)],
     [(2, 8, 1, 1)]),
    ("spp-three-levels", 'type: "SPP" spp_param { pyramid_height: 3 }', [(2, 256, 13, 13)],
     [(2, 256 * (1 + 4 + 16))]),
    ("spp-unknown-size", 'type: "SPP" spp_param { pyramid_height: 2 }', [(2, 8, N, N)],
     [(2, 40)]),
    ("spp-unknown-channels", 'type: "SPP" spp_param { pyramid_height: 2 }', [(2, N, 6, 6)],
     [(2, N)]),
    # InnerProduct and Embed
    ("ip", 'type: "InnerProduct" inner_product_param { num_output: 10 }', [(2, 256, 6, 6)],
     [(2, 10)]),
    ("ip-axis-2", 'type: "InnerProduct" inner_product_param { num_output: 7 axis: 2 }',
     [(2, 3, 4, 5)], [(2, 3, 7)]),
    ("ip-axis-negative", 'type: "InnerProduct" inner_product_param { num_output: 7 '
                         'axis: -1 }', [(2, 3, 4)], [(2, 3, 7)]),
    ("ip-unknown-batch", 'type: "InnerProduct" inner_product_param { num_output: 7 }',
     [(N, 3, 4)], [(N, 7)]),
    ("embed", 'type: "Embed" embed_param { num_output: 16 input_dim: 100 }', [(5, 7)],
     [(5, 7, 16)]),
    # element-wise layers keep the shape
    ("relu", 'type: "ReLU"', [(2, 3, N)], [(2, 3, N)]),
    ("prelu", 'type: "PReLU"', [(2, 3, 4, 4)], [(2, 3, 4, 4)]),
    ("softmax-axis", 'type: "Softmax" softmax_param { axis: 2 }', [(2, 3, 4)], [(2, 3, 4)]),
    # normalisation
    ("batchnorm", 'type: "BatchNorm"', [(2, 3, 4, 4)], [(2, 3, 4, 4)]),
    ("lrn", 'type: "LRN" lrn_param { norm_region: WITHIN_CHANNEL }', [(2, 3, 4, 4)],
     [(2, 3, 4, 4)]),
    ("mvn-2d-becomes-4d", 'type: "MVN"', [(2, 3)], [(2, 3, 1, 1)]),
    ("mvn-4d", 'type: "MVN" mvn_param { across_channels: true }', [(2, 3, 4, 5)],
     [(2, 3, 4, 5)]),
    ("scale-one-bottom", 'type: "Scale" bottom: "x"', [(2, 3, 4, 4)], [(2, 3, 4, 4)]),
    ("scale-two-bottoms", 'type: "Scale" bottom: "x" bottom: "s"', [(2, 3, 4, 4), (3, 4)],
     [(2, 3, 4, 4)]),
    ("scale-scalar-bottom", 'type: "Scale" bottom: "x" bottom: "s" scale_param { axis: 9 }',
     [(2, 3), ()], [(2, 3)]),  # a 0-D scale ignores the axis
    ("scale-unknown-input", 'type: "Scale" bottom: "x" bottom: "s"', [None, (3,)], [None]),
    ("bias-two-bottoms", 'type: "Bias" bottom: "x" bottom: "b" bias_param { axis: 0 }',
     [(2, 3, 4), (2, 3)], [(2, 3, 4)]),
    # losses: a scalar loss; SoftmaxWithLoss and InfogainLoss may also output probabilities
    ("softmax-loss", 'type: "SoftmaxWithLoss" top: "loss"', [(2, 10, 4, 4), (2, 1, 4, 4)],
     [()]),
    ("softmax-loss-prob", 'type: "SoftmaxWithLoss" top: "loss" top: "prob"',
     [(2, 10), (2,)], [(), (2, 10)]),
    ("softmax-loss-axis", 'type: "SoftmaxWithLoss" top: "l" softmax_param { axis: 2 }',
     [(2, 3, 5), (2, 3)], [()]),  # 2 * 3 labels for classes along axis 2
    ("softmax-loss-auto-top", 'type: "SoftmaxWithLoss"', [(2, 10), (2,)], [()]),
    ("euclidean", 'type: "EuclideanLoss" top: "l"', [(4, 3, 2), (4, 6)], [()]),
    ("sigmoid-ce", 'type: "SigmoidCrossEntropyLoss" top: "l"', [(4, 5), (4, 5)], [()]),
    ("multinomial", 'type: "MultinomialLogisticLoss" top: "l"', [(4, 5), (4,)], [()]),
    ("hinge", 'type: "HingeLoss" top: "l"', [(4, 5), (4,)], [()]),
    ("contrastive", 'type: "ContrastiveLoss" top: "l"', [(4, 8), (4, 8, 1, 1), (4,)], [()]),
    ("infogain", 'type: "InfogainLoss" top: "l" infogain_loss_param { source: "H" }',
     [(2, 5), (2,)], [()]),
    ("infogain-matrix-bottom-and-prob", 'type: "InfogainLoss" bottom: "x" bottom: "l" '
                                        'bottom: "H" top: "l" top: "p"',
     [(2, 5), (2,), (1, 1, 5, 5)], [(), (2, 5)]),
    ("losses-unknown-inputs", 'type: "EuclideanLoss" top: "l"', [None, None], [()]),
    ("accuracy", 'type: "Accuracy" top: "a"', [(2, 10), (2,)], [()]),
    ("accuracy-per-class", 'type: "Accuracy" top: "a" top: "c"', [(2, 10), (2,)],
     [(), (10,)]),
    ("accuracy-axis-2", 'type: "Accuracy" top: "a" top: "c" accuracy_param { axis: 2 }',
     [(2, 3, 4), (2, 3)], [(), (4,)]),
    ("accuracy-unknown", 'type: "Accuracy" top: "a" top: "c"', [None, (2,)], [(), (N,)]),
    # Concat
    ("concat", 'type: "Concat"', [(2, 3, 4), (2, 5, 4)], [(2, 8, 4)]),
    ("concat-axis-0", 'type: "Concat" concat_param { axis: 0 }', [(2, 3), (4, 3)], [(6, 3)]),
    ("concat-axis-negative", 'type: "Concat" concat_param { axis: -1 }', [(2, 3), (2, 4)],
     [(2, 7)]),
    ("concat-dim-legacy", 'type: "Concat" concat_param { concat_dim: 0 }', [(2, 3), (4, 3)],
     [(6, 3)]),
    ("concat-unknown-axis-size", 'type: "Concat"', [(2, N, 4), (2, 5, 4)], [(2, N, 4)]),
    ("concat-fills-other-dims", 'type: "Concat"', [(N, 3, 4), (2, 5, N)], [(2, 8, 4)]),
    ("concat-unknown-bottom", 'type: "Concat"', [None, (2, 5, 4)], [(2, N, 4)]),
    # Slice
    ("slice-equal", 'type: "Slice" top: "a" top: "b" top: "c"', [(2, 6, 4)],
     [(2, 2, 4)] * 3),
    ("slice-points", 'type: "Slice" top: "a" top: "b" top: "c" slice_param { slice_point: 1 '
                     'slice_point: 4 }', [(2, 6, 4)], [(2, 1, 4), (2, 3, 4), (2, 2, 4)]),
    ("slice-axis-2", 'type: "Slice" top: "a" top: "b" slice_param { axis: 2 slice_point: 1 }',
     [(2, 6, 4)], [(2, 6, 1), (2, 6, 3)]),
    ("slice-dim-legacy", 'type: "Slice" top: "a" top: "b" slice_param { slice_dim: 0 }',
     [(4, 3)], [(2, 3), (2, 3)]),
    ("slice-unknown-size", 'type: "Slice" top: "a" top: "b" slice_param { slice_point: 2 }',
     [(2, N)], [(2, 2), (2, N)]),
    ("split", 'type: "Split" top: "a" top: "b"', [(2, 3)], [(2, 3), (2, 3)]),
    ("silence", 'type: "Silence" bottom: "a" bottom: "b"', [(2, 3), (4,)], []),
    ("eltwise", 'type: "Eltwise"', [(2, 3), (2, 3), (2, 3)], [(2, 3)]),
    ("eltwise-fills-unknown", 'type: "Eltwise"', [(2, N), (N, 3)], [(2, 3)]),
    # Flatten
    ("flatten", 'type: "Flatten"', [(2, 3, 4, 5)], [(2, 60)]),
    ("flatten-axis-2", 'type: "Flatten" flatten_param { axis: 2 }', [(2, 3, 4, 5)],
     [(2, 3, 20)]),
    ("flatten-end-axis", 'type: "Flatten" flatten_param { end_axis: 2 }', [(2, 3, 4, 5)],
     [(2, 12, 5)]),
    ("flatten-negative", 'type: "Flatten" flatten_param { axis: -2 end_axis: -1 }',
     [(2, 3, 4, 5)], [(2, 3, 20)]),
    ("flatten-all", 'type: "Flatten" flatten_param { axis: 0 }', [(2, 3, 4)], [(24,)]),
    # end_axis = axis - 1 flattens nothing and inserts a 1 (Blob::count(2, 2) is 1)
    ("flatten-empty-range", 'type: "Flatten" flatten_param { axis: 2 end_axis: 1 }',
     [(2, 3, 4)], [(2, 3, 1, 4)]),
    ("flatten-unknown", 'type: "Flatten"', [(N, 3, 4)], [(N, 12)]),
    # Reshape
    ("reshape-copy-infer", 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 } }',
     [(2, 3, 4, 5)], [(2, 60)]),
    ("reshape-infer-first", 'type: "Reshape" reshape_param { shape { dim: -1 dim: 4 dim: 5 } }',
     [(2, 3, 4, 5)], [(6, 4, 5)]),
    ("reshape-axis-num-axes", 'type: "Reshape" reshape_param { shape { dim: 12 } axis: 1 '
                              'num_axes: 2 }', [(2, 3, 4, 5)], [(2, 12, 5)]),
    ("reshape-append-axis", 'type: "Reshape" reshape_param { shape { dim: 1 } axis: -1 '
                            'num_axes: 0 }', [(2, 3)], [(2, 3, 1)]),
    ("reshape-insert-front", 'type: "Reshape" reshape_param { shape { dim: 1 } num_axes: 0 }',
     [(2, 3)], [(1, 2, 3)]),
    ("reshape-unknown-input", 'type: "Reshape" reshape_param { shape { dim: 2 dim: -1 } }',
     [None], [(2, N)]),
    ("reshape-unknown-rank", 'type: "Reshape" reshape_param { shape { dim: 2 } axis: 1 }',
     [None], [None]),
    ("reshape-unknown-dim", 'type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 4 } }',
     [(2, N, 4)], [(2, N, 4)]),
    # Crop: bottom 1's size from axis on, at the offsets
    ("crop", 'type: "Crop"', [(2, 3, 10, 10), (2, 3, 6, 6)], [(2, 3, 6, 6)]),
    ("crop-offsets", 'type: "Crop" crop_param { offset: 1 offset: 4 }',
     [(2, 3, 10, 10), (1, 1, 6, 6)], [(2, 3, 6, 6)]),
    ("crop-axis-1", 'type: "Crop" crop_param { axis: 1 offset: 1 }',
     [(2, 3, 10, 10), (1, 2, 6, 6)], [(2, 2, 6, 6)]),
    ("crop-unknown-reference", 'type: "Crop"', [(2, 3, 10, 10), None], [(2, 3, N, N)]),
    ("tile", 'type: "Tile" tile_param { tiles: 4 }', [(2, 3)], [(2, 12)]),
    ("tile-axis-0", 'type: "Tile" tile_param { tiles: 2 axis: 0 }', [(2, 3)], [(4, 3)]),
    ("tile-unknown", 'type: "Tile" tile_param { tiles: 2 }', [(2, N)], [(2, N)]),
    ("reduction-all", 'type: "Reduction"', [(2, 3, 4)], [()]),
    ("reduction-axis-2", 'type: "Reduction" reduction_param { axis: 2 operation: MEAN }',
     [(2, 3, 4)], [(2, 3)]),
    ("reduction-axis-negative", 'type: "Reduction" reduction_param { axis: -1 }',
     [(2, 3, 4)], [(2, 3)]),
    ("filter", 'type: "Filter" bottom: "a" bottom: "b" bottom: "s" top: "fa" top: "fb"',
     [(4, 3), (4, 5, 5), (4, 1)], [(N, 3), (N, 5, 5)]),
    ("argmax", 'type: "ArgMax"', [(2, 10)], [(2, 1, 1)]),
    ("argmax-max-val", 'type: "ArgMax" argmax_param { out_max_val: true top_k: 3 }',
     [(2, 10)], [(2, 2, 3)]),
    ("argmax-4d", 'type: "ArgMax"', [(2, 3, 4, 5)], [(2, 1, 1, 1)]),
    ("argmax-axis", 'type: "ArgMax" argmax_param { axis: 1 top_k: 2 }', [(2, 10, 4)],
     [(2, 2, 4)]),
    ("argmax-axis-max-val", 'type: "ArgMax" argmax_param { axis: -1 out_max_val: true }',
     [(2, 10, 4)], [(2, 10, 1)]),
    ("batch-reindex", 'type: "BatchReindex"', [(5, 3, 4), (7,)], [(7, 3, 4)]),
    ("batch-reindex-unknown", 'type: "BatchReindex"', [(5, 3, 4), None], [(N, 3, 4)]),
    ("parameter", 'type: "Parameter" parameter_param { shape { dim: 3 dim: 4 } }', [],
     [(3, 4)]),
    # recurrent
    ("rnn", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 8 }',
     [(5, 2, 3), (5, 2)], [(5, 2, 8)]),
    ("lstm", 'type: "LSTM" bottom: "x" bottom: "c" recurrent_param { num_output: 8 }',
     [(5, 2, 3, 4), (5, 2)], [(5, 2, 8)]),
    ("lstm-static", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "s" '
                    'recurrent_param { num_output: 8 }', [(5, 2, 3), (5, 2), (2, 6)],
     [(5, 2, 8)]),
    ("lstm-expose-hidden", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "h0" bottom: "c0" '
                           'top: "h" top: "hT" top: "cT" '
                           'recurrent_param { num_output: 8 expose_hidden: true }',
     [(5, 2, 3), (5, 2), (1, 2, 8), (1, 2, 8)], [(5, 2, 8), (1, 2, 8), (1, 2, 8)]),
    ("rnn-expose-hidden-static", 'type: "RNN" bottom: "x" bottom: "c" bottom: "s" bottom: "h0" '
                                 'top: "o" top: "hT" '
                                 'recurrent_param { num_output: 8 expose_hidden: true }',
     [(5, 2, 3), (5, 2), (2, 7), (1, 2, 8)], [(5, 2, 8), (1, 2, 8)]),
    ("rnn-unknown-x", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 8 }',
     [None, (5, 2)], [(5, 2, 8)]),
    ("lstm-unit", 'type: "LSTMUnit"', [(1, 2, 4), (1, 2, 16), (1, 2)],
     [(1, 2, 4), (1, 2, 4)]),
    ("lstm-unit-from-gates", 'type: "LSTMUnit"', [None, (1, 2, 16), (1, 2)],
     [(1, 2, 4), (1, 2, 4)]),
    # data layers
    ("data", 'type: "Data" top: "d" top: "l" data_param { source: "db" batch_size: 32 } '
             'transform_param { crop_size: 227 }', [], [(32, N, 227, 227), (32,)]),
    ("data-mean-values", 'type: "Data" top: "d" data_param { source: "db" batch_size: 8 } '
                         'transform_param { mean_value: 104 mean_value: 117 mean_value: 123 }',
     [], [(8, 3, N, N)]),
    ("data-one-mean-value", 'type: "Data" top: "d" data_param { source: "db" batch_size: 8 } '
                            'transform_param { mean_value: 128 }', [], [(8, N, N, N)]),
    ("image-data-resize-gray", 'type: "ImageData" top: "d" top: "l" image_data_param '
                               '{ source: "l" batch_size: 8 new_height: 256 new_width: 128 '
                               'is_color: false }', [], [(8, 1, 256, 128), (8,)]),
    ("image-data-crop", 'type: "ImageData" top: "d" top: "l" image_data_param { source: "l" '
                        'batch_size: 8 new_height: 256 new_width: 256 } '
                        'transform_param { crop_size: 224 }', [], [(8, 3, 224, 224), (8,)]),
    ("image-data-unknown-size", 'type: "ImageData" top: "d" top: "l" image_data_param '
                                '{ source: "l" }', [], [(1, 3, N, N), (1,)]),
    ("memory-data", GOOD["MemoryData"], [], [(2, 3, 4, 4), (2,)]),
    ("window-data", 'type: "WindowData" top: "d" top: "l" window_data_param { source: "w" '
                    'batch_size: 128 } transform_param { crop_size: 227 }', [],
     [(128, N, 227, 227), (128,)]),
    ("hdf5-data", GOOD["HDF5Data"], [], [None, None]),
    ("dummy-one-shape", 'type: "DummyData" top: "a" top: "b" dummy_data_param '
                        '{ shape { dim: 2 dim: 3 } }', [], [(2, 3), (2, 3)]),
    ("dummy-shape-per-top", 'type: "DummyData" top: "a" top: "b" dummy_data_param '
                            '{ shape { dim: 2 dim: 3 } shape { dim: 5 } }', [], [(2, 3), (5,)]),
    ("dummy-legacy", 'type: "DummyData" top: "a" top: "b" dummy_data_param { num: 1 num: 2 '
                     'channels: 3 height: 4 width: 5 width: 6 }', [],
     [(1, 3, 4, 5), (2, 3, 4, 6)]),
    ("input-one-shape", 'type: "Input" top: "a" top: "b" input_param '
                        '{ shape { dim: 1 dim: 3 dim: 8 dim: 8 } }', [],
     [(1, 3, 8, 8), (1, 3, 8, 8)]),
    ("input-shape-per-top", 'type: "Input" top: "a" top: "b" input_param { shape { dim: 1 } '
                            'shape { dim: 2 dim: 2 } }', [], [(1,), (2, 2)]),
    ("input-no-shape", 'type: "Input" top: "a"', [], [None]),
    ("hdf5-output", GOOD["HDF5Output"], [(4, 3), (4,)], []),
    ("python", GOOD["Python"], [(2, 3)], [None]),
]


@pytest.mark.parametrize("text, bottoms, expected",
                         [pytest.param(*case[1:], id=case[0]) for case in SHAPES])
def test_shapes(text, bottoms, expected):
    assert shapes(text, bottoms) == expected


# -- where Caffe aborts on shapes -----------------------------------------------------------------

# (id, layer, bottom shapes, code, field)
FAILURES = [
    ("conv-kernel-count-vs-rank", conv("num_output: 1 kernel_size: 3 kernel_size: 3"),
     [(1, 1, 8, 8, 8)], "L010", (CONV, "kernel_size")),
    ("conv-stride-count-vs-rank", conv("num_output: 1 kernel_size: 3 stride: 1 stride: 1"),
     [(1, 1, 8)], "L010", (CONV, "stride")),
    ("conv-kernel-h-on-3d", conv("num_output: 1 kernel_h: 3 kernel_w: 3"), [(1, 1, 8, 8, 8)],
     "L010", (CONV, "kernel_h")),
    ("conv-pad-h-on-1d", conv("num_output: 1 kernel_size: 3 pad_h: 1"), [(1, 1, 8)], "L010",
     (CONV, "pad_h")),
    ("conv-channels-vs-group", conv("num_output: 4 kernel_size: 1 group: 2"), [(1, 3, 8, 8)],
     "L010", (CONV, "group")),
    ("conv-output-not-positive", conv("num_output: 1 kernel_size: 5"), [(1, 1, 2, 8)], "L010",
     (CONV,)),  # (2 - 5) / 1 + 1 = -2
    ("conv-axis-out-of-range", conv("num_output: 1 kernel_size: 1 axis: 4"), [(1, 1, 8, 8)],
     "L003", (CONV, "axis")),
    ("conv-bottoms-differ", conv("num_output: 1 kernel_size: 1", bottoms=2),
     [(1, 3, 8, 8), (1, 3, 8, 9)], "L010", ("bottom", 1)),
    ("deconv-output-not-positive", conv("num_output: 1 kernel_size: 1 pad: 1",
                                        "Deconvolution"), [(1, 1, 1, 1)], "L010", (CONV,)),
    ("im2col-no-spatial-axis", f'type: "Im2col" {CONV} {{ kernel_size: 1 }}', [(2, 3)], "L010",
     (CONV, "axis")),
    ("pool-not-4d", pool("kernel_size: 2"), [(1, 2, 8)], "L020", ("bottom", 0)),
    ("pool-output-not-positive", pool("kernel_size: 5"), [(1, 1, 3, 8)], "L020", (POOL,)),
    ("spp-not-4d", 'type: "SPP" spp_param { pyramid_height: 2 }', [(1, 2, 8)], "L020",
     ("bottom", 0)),
    # level 2 on height 5: kernel ceil(5 / 4) = 2, pad (2 * 4 - 5 + 1) / 2 = 2: not < kernel
    ("spp-input-too-small", 'type: "SPP" spp_param { pyramid_height: 3 }', [(1, 2, 5, 5)],
     "L020", ("spp_param", "pyramid_height")),
    ("spp-stochastic-padding", 'type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }',
     [(1, 2, 5, 5)], "L020", ("spp_param", "pool")),
    ("ip-axis", 'type: "InnerProduct" inner_product_param { num_output: 2 axis: 3 }',
     [(2, 3, 4)], "L003", ("inner_product_param", "axis")),
    ("softmax-axis", 'type: "Softmax" softmax_param { axis: -4 }', [(2, 3, 4)], "L003",
     ("softmax_param", "axis")),
    ("prelu-1d", 'type: "PReLU"', [(5,)], "L090", ("bottom", 0)),
    ("prelu-5d", 'type: "PReLU"', [(1, 2, 3, 4, 5)], "L090", ("bottom", 0)),
    ("batchnorm-1d", 'type: "BatchNorm"', [(5,)], "L080", ("bottom", 0)),
    ("lrn-3d", 'type: "LRN"', [(1, 2, 3)], "L080", ("bottom", 0)),
    ("mvn-5d", 'type: "MVN"', [(1, 2, 3, 4, 5)], "L080", ("bottom", 0)),
    ("scale-past-end", 'type: "Scale" bottom: "x" scale_param { axis: 3 num_axes: 2 }',
     [(2, 3, 4, 4)], "L080", ("scale_param", "num_axes")),
    ("scale-axis", 'type: "Scale" bottom: "x" scale_param { axis: 4 }', [(2, 3, 4, 4)],
     "L003", ("scale_param", "axis")),
    ("scale-mismatch", 'type: "Scale" bottom: "x" bottom: "s"', [(2, 3, 4, 4), (3, 5)],
     "L080", ("bottom", 1)),
    ("scale-second-past-end", 'type: "Scale" bottom: "x" bottom: "s" scale_param { axis: 2 }',
     [(2, 3, 4), (4, 1)], "L080", ("bottom", 1)),
    ("bias-mismatch", 'type: "Bias" bottom: "x" bottom: "b"', [(2, 3, 4), (4,)], "L080",
     ("bottom", 1)),
    ("loss-batch-differs", 'type: "SoftmaxWithLoss"', [(2, 10), (3,)], "L100", ("bottom", 1)),
    ("loss-scalar-input", 'type: "HingeLoss"', [(), (3,)], "L100", ("bottom", 0)),
    ("softmax-loss-label-count", 'type: "SoftmaxWithLoss"', [(2, 10, 4, 4), (2, 1, 4, 5)],
     "L100", ("bottom", 1)),
    ("euclidean-per-sample", 'type: "EuclideanLoss"', [(2, 3), (2, 4)], "L100", ("bottom", 1)),
    ("sigmoid-ce-count", 'type: "SigmoidCrossEntropyLoss"', [(2, 5), (2, 6)], "L100",
     ("bottom", 1)),
    ("multinomial-labels", 'type: "MultinomialLogisticLoss"', [(2, 5), (2, 3)], "L100",
     ("bottom", 1)),
    ("contrastive-channels", 'type: "ContrastiveLoss"', [(4, 8), (4, 9), (4,)], "L100",
     ("bottom", 1)),
    ("contrastive-not-flat", 'type: "ContrastiveLoss"', [(4, 8, 2, 1), (4, 8, 2, 1), (4,)],
     "L100", ("bottom", 0)),
    ("contrastive-similarity", 'type: "ContrastiveLoss"', [(4, 8), (4, 8), (4, 2)], "L100",
     ("bottom", 2)),
    ("infogain-matrix-size", 'type: "InfogainLoss" bottom: "x" bottom: "l" bottom: "H"',
     [(2, 5), (2,), (1, 1, 4, 4)], "L100", ("bottom", 2)),
    ("infogain-labels", 'type: "InfogainLoss" infogain_loss_param { source: "H" axis: 2 }',
     [(2, 5, 3), (2, 3)], "L100", ("bottom", 1)),
    ("accuracy-top-k", 'type: "Accuracy" accuracy_param { top_k: 11 }', [(2, 10), (2,)],
     "L100", ("accuracy_param", "top_k")),
    ("accuracy-labels", 'type: "Accuracy"', [(2, 10), (3,)], "L100", ("bottom", 1)),
    ("accuracy-axis", 'type: "Accuracy" accuracy_param { axis: 2 }', [(2, 10), (2,)], "L003",
     ("accuracy_param", "axis")),
    ("concat-other-dim", 'type: "Concat"', [(2, 3, 4), (2, 5, 5)], "L050", ("bottom", 1)),
    ("concat-rank", 'type: "Concat"', [(2, 3, 4), (2, 5)], "L050", ("bottom", 1)),
    ("concat-axis", 'type: "Concat" concat_param { axis: 3 }', [(2, 3, 4), (2, 5, 4)], "L003",
     ("concat_param", "axis")),
    ("concat-dim-range", 'type: "Concat" concat_param { concat_dim: 2 }', [(2, 3), (2, 5)],
     "L050", ("concat_param", "concat_dim")),
    ("slice-indivisible", 'type: "Slice" top: "a" top: "b"', [(2, 7)], "L050", ("bottom", 0)),
    ("slice-point-past-end", 'type: "Slice" top: "a" top: "b" slice_param { slice_point: 5 }',
     [(2, 4)], "L050", ("slice_param", "slice_point", 0)),
    ("slice-too-many-tops", 'type: "Slice" top: "a" top: "b" top: "c" slice_param '
                            '{ slice_point: 1 slice_point: 2 }', [(2, 2)], "L050", ("top",)),
    ("slice-dim-range", 'type: "Slice" top: "a" top: "b" slice_param { slice_dim: 2 }',
     [(2, 4)], "L050", ("slice_param", "slice_dim")),
    ("eltwise-shapes", 'type: "Eltwise"', [(2, 3), (2, 4)], "L040", ("bottom", 1)),
    ("flatten-end-before-start", 'type: "Flatten" flatten_param { axis: 2 end_axis: 0 }',
     [(2, 3, 4)], "L070", ("flatten_param", "end_axis")),
    ("flatten-axis", 'type: "Flatten" flatten_param { axis: 3 }', [(2, 3, 4)], "L003",
     ("flatten_param", "axis")),
    ("reshape-count", 'type: "Reshape" reshape_param { shape { dim: 7 } }', [(2, 3)], "L070",
     ("reshape_param", "shape")),
    ("reshape-indivisible", 'type: "Reshape" reshape_param { shape { dim: 4 dim: -1 } }',
     [(2, 3)], "L070", ("reshape_param", "shape")),
    ("reshape-copy-missing-axis", 'type: "Reshape" reshape_param { shape { dim: 0 dim: 0 '
                                  'dim: 0 } }', [(2, 3)], "L070",
     ("reshape_param", "shape", "dim", 2)),
    ("reshape-axis", 'type: "Reshape" reshape_param { shape { dim: 1 } axis: 3 num_axes: 0 }',
     [(2, 3)], "L003", ("reshape_param", "axis")),
    ("reshape-num-axes-past-end", 'type: "Reshape" reshape_param { shape { dim: 6 } axis: 1 '
                                  'num_axes: 2 }', [(2, 3)], "L003",
     ("reshape_param", "num_axes")),
    ("crop-out-of-range", 'type: "Crop" crop_param { offset: 5 }',
     [(2, 3, 10, 10), (2, 3, 6, 6)], "L060", ("crop_param", "offset")),
    ("crop-offset-count", 'type: "Crop" crop_param { offset: 1 offset: 1 offset: 1 }',
     [(2, 3, 10, 10), (2, 3, 6, 6)], "L060", ("crop_param", "offset")),
    ("crop-reference-rank", 'type: "Crop"', [(2, 3, 10, 10), (2, 3, 6)], "L060",
     ("bottom", 1)),
    ("crop-axis", 'type: "Crop" crop_param { axis: 4 }', [(2, 3, 10, 10), (2, 3, 6, 6)],
     "L003", ("crop_param", "axis")),
    ("tile-axis", 'type: "Tile" tile_param { tiles: 2 axis: 2 }', [(2, 3)], "L003",
     ("tile_param", "axis")),
    ("reduction-axis", 'type: "Reduction" reduction_param { axis: 3 }', [(2, 3)], "L003",
     ("reduction_param", "axis")),
    ("filter-selector", 'type: "Filter" bottom: "a" bottom: "s" top: "f"', [(4, 3), (4, 2)],
     "L120", ("bottom", 1)),
    ("filter-first-dim", 'type: "Filter" bottom: "a" bottom: "s" top: "f"', [(5, 3), (4, 1)],
     "L120", ("bottom", 0)),
    ("argmax-top-k", 'type: "ArgMax" argmax_param { top_k: 11 }', [(2, 10)], "L120",
     ("argmax_param", "top_k")),
    ("argmax-axis-top-k", 'type: "ArgMax" argmax_param { axis: 2 top_k: 5 }', [(2, 10, 4)],
     "L120", ("argmax_param", "top_k")),
    ("batch-reindex-indices", 'type: "BatchReindex"', [(5, 3), (7, 1)], "L120", ("bottom", 1)),
    ("rnn-x-rank", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 2 }',
     [(5,), (5, 2)], "L120", ("bottom", 0)),
    ("rnn-cont-shape", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 2 }',
     [(5, 2, 3), (5, 3)], "L120", ("bottom", 1)),
    ("lstm-static-streams", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "s" '
                            'recurrent_param { num_output: 2 }', [(5, 2, 3), (5, 2), (3, 4)],
     "L120", ("bottom", 2)),
    ("lstm-hidden-state", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "h0" bottom: "c0" '
                          'recurrent_param { num_output: 2 expose_hidden: true }',
     [(5, 2, 3), (5, 2), (1, 2, 2), (1, 2, 3)], "L120", ("bottom", 3)),
    ("lstm-unit-gates", 'type: "LSTMUnit"', [(1, 2, 4), (1, 2, 15), (1, 2)], "L120",
     ("bottom", 1)),
    ("lstm-unit-cont", 'type: "LSTMUnit"', [(1, 2, 4), (1, 2, 16), (1, 3)], "L120",
     ("bottom", 2)),
    ("hdf5-output-batch", GOOD["HDF5Output"], [(4, 3), (5,)], "L110", ("bottom", 1)),
    ("hdf5-output-5d", GOOD["HDF5Output"], [(4, 3, 1, 1, 1), (4,)], "L110", ("bottom", 0)),
    ("pool-global-empty", pool("global_pooling: true"), [(1, 1, 0, 3)], "L020", ("bottom", 0)),
    ("spp-empty", 'type: "SPP" spp_param { pyramid_height: 1 }', [(1, 1, 4, 0)], "L020",
     ("bottom", 0)),
    ("rnn-cont-rank", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 2 }',
     [(5, 2, 3), (5, 2, 1)], "L120", ("bottom", 1)),
    ("filter-scalar", 'type: "Filter" bottom: "a" bottom: "s" top: "f"', [(), (4, 1)], "L120",
     ("bottom", 0)),
    ("argmax-scalar", 'type: "ArgMax"', [()], "L120", ("bottom", 0)),
]


@pytest.mark.parametrize("text, bottoms, code, field",
                         [pytest.param(*case[1:], id=case[0]) for case in FAILURES])
def test_caffe_aborts(text, bottoms, code, field):
    problem = failure(text, bottoms)
    assert (problem.code, problem.field) == (code, field), problem
    assert problem.severity == "error" and problem.message


# -- unknown inputs never crash -------------------------------------------------------------------

@pytest.mark.parametrize("type_name", sorted(GOOD))
def test_unknown_bottoms_propagate(type_name):
    layer = parse(GOOD[type_name])
    spec = spec_of(layer)
    tops = spec.shape(layer, [None] * len(layer.bottom), ShapeContext())
    assert len(tops) == max(len(layer.top), spec.top_range(layer)[0])
    for top in tops:
        assert top is None or isinstance(top, tuple)
    blobs = spec.blob_shapes(layer, [None] * len(layer.bottom))
    assert blobs is None or len(blobs) == spec.blob_count(layer)


@pytest.mark.parametrize("type_name", sorted(GOOD))
def test_unknown_dimensions_propagate(type_name):
    """Bottoms of a plausible rank with every dimension unknown."""
    layer = parse(GOOD[type_name])
    spec = spec_of(layer)
    ranks = {"LSTMUnit": [3, 3, 2], "BatchReindex": [4, 1], "RNN": [3, 2], "LSTM": [3, 2]}
    bottoms = [(None,) * rank for rank in ranks.get(type_name, [4] * len(layer.bottom))]
    tops = spec.shape(layer, bottoms, ShapeContext())
    assert len(tops) == max(len(layer.top), spec.top_range(layer)[0])


@pytest.mark.parametrize("text, bottoms", [
    ('type: "Reshape" reshape_param { shape { dim: -1 dim: 0 } }', [(N, N, N)]),
    ('type: "SoftmaxWithLoss"', [(N, N), (N,)]),
    ('type: "Accuracy" top: "a" top: "b"', [(N, N), (N,)]),
    (conv("num_output: 2 kernel_size: 3 group: 2"), [(N, N, N, N)]),
    ('type: "Crop"', [(N, N, N, N), (N, N, N, N)]),
    ('type: "Slice" top: "a" top: "b"', [(N, N)]),
    ('type: "Concat"', [(N, N), None, (N, 3)]),
])
def test_unknown_dims_do_not_fail(text, bottoms):
    shapes(text, bottoms)


# -- warnings through the context -----------------------------------------------------------------

def test_conv_kernel_larger_than_padded_input_warns():
    context = ShapeContext()
    layer = parse(conv("num_output: 1 kernel_size: 3 stride: 2"))
    assert spec_of(layer).shape(layer, [(1, 1, 2, 5)], context) == [(1, 1, 1, 2)]
    assert [(p.code, p.severity) for p in context.problems] == [("L010", "warning")]


def test_no_warning_for_a_fitting_kernel():
    context = ShapeContext()
    layer = parse(conv("num_output: 1 kernel_size: 3"))
    spec_of(layer).shape(layer, [(1, 1, 3, 3)], context)
    assert context.problems == []


def test_bad_parameters_leave_tops_unknown_without_raising():
    # the check reports the problem; the shape rule does not report it a second time
    assert shapes(conv("num_output: 3 kernel_size: 3 group: 2"), [(1, 4, 8, 8)]) == [None]
    assert shapes(pool("kernel_h: 3"), [(1, 1, 8, 8)]) == [None]
    assert shapes('type: "Tile"', [(2, 3)]) == [None]
    assert shapes('type: "Reshape" reshape_param { shape { dim: -1 dim: -1 } }', [(2, 3)]) \
        == [None]
    assert shapes('type: "Parameter" parameter_param { shape { dim: -1 } }', []) == [None]
    # Scale and Bias have no parameter-only abort besides num_axes: the top keeps its shape
    assert shapes('type: "Scale" bottom: "x" scale_param { num_axes: -2 }', [(2, 3)]) \
        == [(2, 3)]


# -- --input-shape overrides ----------------------------------------------------------------------

@pytest.mark.parametrize("text, overrides, expected", [
    ('type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } }',
     {"data": (8, 3, 32, 32)}, [(8, 3, 32, 32)]),
    ('type: "Input" top: "data" top: "im_info"', {"im_info": (1, 3)}, [None, (1, 3)]),
    ('type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 4 }',
     {"data": (4, 3, 28, 28)}, [(4, 3, 28, 28), (4,)]),
    ('type: "HDF5Data" top: "x" hdf5_data_param { source: "l" batch_size: 4 }',
     {"x": (4, 10)}, [(4, 10)]),
    ('type: "Python" top: "data" python_param { module: "m" layer: "L" }',
     {"data": (1, 3, 5, 5)}, [(1, 3, 5, 5)]),
    ('type: "DummyData" top: "a" dummy_data_param { shape { dim: 1 } }', {"other": (2,)},
     [(1,)]),
])
def test_input_shape_overrides(text, overrides, expected):
    assert shapes(text, [], input_shapes=overrides) == expected


# -- learnable blobs ------------------------------------------------------------------------------

# (id, layer, bottom shapes, blob count, blob shapes)
BLOBS = [
    ("conv", conv("num_output: 64 kernel_size: 3"), [(1, 3, 8, 8)], 2,
     [(64, 3, 3, 3), (64,)]),
    ("conv-no-bias-group", conv("num_output: 8 kernel_h: 1 kernel_w: 3 group: 2 "
                                "bias_term: false"), [(1, 4, 8, 8)], 1, [(8, 2, 1, 3)]),
    ("conv-3d", conv("num_output: 4 kernel_size: 3 kernel_size: 1 kernel_size: 2"),
     [(1, 2, 8, 8, 8)], 2, [(4, 2, 3, 1, 2), (4,)]),
    ("conv-unknown-input", conv("num_output: 4 kernel_size: 3"), [None], 2, [None, (4,)]),
    ("conv-unknown-channels", conv("num_output: 4 kernel_size: 3"), [(1, N, 8, 8)], 2,
     [(4, N, 3, 3), (4,)]),
    ("deconv", conv("num_output: 16 kernel_size: 4 stride: 2 group: 2", "Deconvolution"),
     [(1, 8, 7, 7)], 2, [(8, 8, 4, 4), (16,)]),
    ("ip", 'type: "InnerProduct" inner_product_param { num_output: 10 }', [(2, 256, 6, 6)], 2,
     [(10, 9216), (10,)]),
    ("ip-transpose-no-bias", 'type: "InnerProduct" inner_product_param { num_output: 10 '
                             'transpose: true bias_term: false axis: 2 }', [(2, 3, 4, 5)], 1,
     [(20, 10)]),
    ("ip-unknown", 'type: "InnerProduct" inner_product_param { num_output: 10 }',
     [(2, N, 6)], 2, [(10, N), (10,)]),
    ("embed", 'type: "Embed" embed_param { num_output: 16 input_dim: 100 }', [(5,)], 2,
     [(100, 16), (16,)]),
    ("embed-no-bias", 'type: "Embed" embed_param { num_output: 16 input_dim: 100 '
                      'bias_term: false }', [(5,)], 1, [(100, 16)]),
    ("batchnorm", 'type: "BatchNorm"', [(2, 3, 4, 4)], 3, [(3,), (3,), (1,)]),
    ("prelu", 'type: "PReLU"', [(2, 3, 4, 4)], 1, [(3,)]),
    ("prelu-shared", 'type: "PReLU" prelu_param { channel_shared: true }', [(2, 3, 4, 4)], 1,
     [()]),
    ("scale", 'type: "Scale" bottom: "x"', [(2, 3, 4, 4)], 1, [(3,)]),
    ("scale-bias", 'type: "Scale" bottom: "x" scale_param { bias_term: true }',
     [(2, 3, 4, 4)], 2, [(3,), (3,)]),
    ("scale-to-end", 'type: "Scale" bottom: "x" scale_param { num_axes: -1 }',
     [(2, 3, 4, 4)], 1, [(3, 4, 4)]),
    ("scale-scalar", 'type: "Scale" bottom: "x" scale_param { num_axes: 0 }', [(2, 3, 4, 4)],
     1, [()]),
    ("scale-axis-0", 'type: "Scale" bottom: "x" scale_param { axis: 0 num_axes: 2 }',
     [(2, 3, 4, 4)], 1, [(2, 3)]),
    ("scale-two-bottoms", 'type: "Scale" bottom: "x" bottom: "s"', [(2, 3, 4, 4), (3,)], 0,
     []),
    ("scale-two-bottoms-bias", 'type: "Scale" bottom: "x" bottom: "s" '
                               'scale_param { bias_term: true }', [(2, 3, 4, 4), (3, 4)], 1,
     [(3, 4)]),
    ("bias", 'type: "Bias" bottom: "x"', [(2, 3, 4, 4)], 1, [(3,)]),
    ("bias-two-bottoms", 'type: "Bias" bottom: "x" bottom: "b"', [(2, 3), (3,)], 0, []),
    ("rnn", 'type: "RNN" bottom: "x" bottom: "c" recurrent_param { num_output: 8 }',
     [(5, 2, 3), (5, 2)], 5, [(8, 3), (8,), (8, 8), (8, 8), (8,)]),
    ("rnn-static", 'type: "RNN" bottom: "x" bottom: "c" bottom: "s" '
                   'recurrent_param { num_output: 8 }', [(5, 2, 3), (5, 2), (2, 2, 3)], 6,
     [(8, 3), (8,), (8, 6), (8, 8), (8, 8), (8,)]),
    ("lstm", 'type: "LSTM" bottom: "x" bottom: "c" recurrent_param { num_output: 8 }',
     [(5, 2, 3, 4), (5, 2)], 3, [(32, 12), (32,), (32, 8)]),
    ("lstm-static", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "s" '
                    'recurrent_param { num_output: 8 }', [(5, 2, 3), (5, 2), (2, 6)], 4,
     [(32, 3), (32,), (32, 6), (32, 8)]),
    ("lstm-expose-hidden-no-static", 'type: "LSTM" bottom: "x" bottom: "c" bottom: "h0" '
                                     'bottom: "c0" recurrent_param { num_output: 8 '
                                     'expose_hidden: true }', [(5, 2, 3), (5, 2), None, None], 3,
     [(32, 3), (32,), (32, 8)]),
    ("parameter", 'type: "Parameter" parameter_param { shape { dim: 3 dim: 4 } }', [], 1,
     [(3, 4)]),
    ("conv-input-rejected", conv("num_output: 2 kernel_size: 3 kernel_size: 3"),
     [(1, 1, 8, 8, 8)], 2, [None, (2,)]),
    ("scale-rejected-second-bottom", 'type: "Scale" bottom: "x" bottom: "s" '
                                     'scale_param { bias_term: true }', [(2, 3), (4,)], 1, [None]),
    ("scale-bad-num-axes", 'type: "Scale" bottom: "x" scale_param { num_axes: -2 }', [(2, 3)],
     1, [None]),
    ("relu", 'type: "ReLU"', [(2, 3)], 0, []),
    ("pooling", pool("kernel_size: 2"), [(1, 1, 4, 4)], 0, []),
]


@pytest.mark.parametrize("text, bottoms, count, expected",
                         [pytest.param(*case[1:], id=case[0]) for case in BLOBS])
def test_blobs(text, bottoms, count, expected):
    layer = parse(text)
    spec = spec_of(layer)
    assert spec.blob_count(layer) == count
    assert spec.blob_shapes(layer, bottoms) == expected


@pytest.mark.parametrize("type_name", sorted(set(COUNTS) - {
    "Convolution", "Deconvolution", "InnerProduct", "Embed", "BatchNorm", "Scale", "Bias",
    "PReLU", "RNN", "LSTM", "Parameter"}))
def test_types_without_learnable_blobs(type_name):
    layer = parse(GOOD[type_name])
    assert spec_of(layer).blob_count(layer) == 0
    assert spec_of(layer).blob_shapes(layer, [None] * len(layer.bottom)) == []
