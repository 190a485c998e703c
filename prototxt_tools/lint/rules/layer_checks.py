"""Layer rules (L): Caffe's own set-up checks, decided before anything runs.

Each layer type's checks live with its semantics in prototxt_tools/layers; every check
carries one of the codes below, and each code is a rule here. Checks that need shapes run on
the nets of the linted phases, after shape inference.
"""

from __future__ import annotations

from typing import Iterator

from ...errors import ERROR
from ...layers.base import CHECK_CODES
from ...net.shapes import count_problem
from ..context import LintContext
from ..rule import Finding, Rule, register_rule

# Documentation per code: (why, example, use instead). Examples are small complete nets: an
# Input (DummyData for losses) of a known shape, so shapes are inferred, then the layer under
# test.
_DOCS = {
    "L001": (
        "Every layer type takes a fixed number of bottoms and tops: Eltwise at least two "
        "bottoms, Crop exactly two, BatchNorm one of each, a Convolution one top per bottom, "
        "Pooling a second top (the argmax mask) only with MAX, Silence no top at all. Caffe "
        "checks the counts when it sets the layer up and aborts the whole net when they are "
        "wrong. Loss layers are the one leniency: Caffe creates the loss top itself when the "
        "file names none.",
        """\
layer { name: "data" type: "Input" top: "a" input_param { shape { dim: 1 dim: 64 dim: 28 dim: 28 } } }
layer { name: "sum" type: "Eltwise" bottom: "a" top: "sum" }""",
        """\
layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 64 dim: 28 dim: 28 } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }"""),
    "L002": (
        "propagate_down says, bottom by bottom, whether gradients flow back into it (false "
        "stops backpropagation into the labels or into a frozen branch). Caffe pairs the "
        "values with the bottoms by position and aborts unless the field is absent or given "
        "exactly once per bottom; a single value is not applied to every bottom.",
        """\
layer { name: "data" type: "DummyData" top: "score" top: "label" dummy_data_param { shape { dim: 4 dim: 10 } shape { dim: 4 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" propagate_down: false }""",
        """\
layer { name: "data" type: "DummyData" top: "score" top: "label" dummy_data_param { shape { dim: 4 dim: 10 } shape { dim: 4 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" propagate_down: true propagate_down: false }"""),
    "L003": (
        "Many layers take an axis: Softmax, InnerProduct, Concat, Slice, Flatten, Crop, Scale, "
        "Bias, Reduction, ArgMax, the losses... Caffe reads it like a Python index, 0 to N-1 "
        "for an input with N axes or -N to -1 counting from the end, and aborts on anything "
        "else when it sets the layer up (Reshape's axis may also be N, appending after the "
        "last axis, but axis + num_axes must stay inside the input). The usual cause is an "
        "axis written for 4-D feature maps applied to the 2-D output of an InnerProduct or a "
        "Flatten, or a default that does not fit: Crop starts at axis 2, which a 2-D input "
        "lacks.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 10 } } }
layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" softmax_param { axis: 2 } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 10 } } }
layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" softmax_param { axis: 1 } }"""),
    "L010": (
        "Convolution, Deconvolution and Im2col take kernel_size, stride, pad and dilation "
        "once for all spatial axes or once per spatial axis, or the 2-D forms kernel_h and "
        "kernel_w (stride_h/stride_w, pad_h/pad_w) instead, never both. Caffe aborts at set-up "
        "on a missing kernel, a kernel or stride of 0, a missing num_output, and a group that "
        "does not divide both num_output and the input's channels (each group convolves its "
        "own slice of the channels). With shapes known the output must have a positive size, "
        "(H + 2 pad - dilation (kernel - 1) - 1) / stride + 1 for a Convolution, so a kernel "
        "larger than the padded input is an error; a kernel that overhangs the input but still "
        "gives an output because the stride rounds it up is a warning.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 32 dim: 56 dim: 56 } } }
layer {
  name: "conv_dw"
  type: "Convolution"
  bottom: "data"
  top: "conv_dw"
  convolution_param { num_output: 48 group: 32 kernel_size: 3 pad: 1 }
}""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 32 dim: 56 dim: 56 } } }
layer {
  name: "conv_dw"
  type: "Convolution"
  bottom: "data"
  top: "conv_dw"
  convolution_param { num_output: 64 group: 32 kernel_size: 3 pad: 1 }
}"""),
    "L020": (
        "Pooling takes its window as kernel_size, as both kernel_h and kernel_w, or from the "
        "whole input with global_pooling, which then allows no kernel, no padding and only "
        "stride 1; pad and stride likewise come as one value or as both _h and _w. Caffe "
        "aborts on a missing or zero kernel, on padding with STOCHASTIC pooling, and on a pad "
        "not smaller than the kernel (a window that would see only padding). With shapes "
        "known the input must be 4-D and the output size positive; note that Pooling rounds "
        "its output size up by default (round_mode CEIL), unlike Convolution. SPP pools a 4-D "
        "input into 1, 4, 16... bins (pyramid_height levels); an input too small for the "
        "deepest level needs a pad as large as the kernel, which Caffe rejects.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 512 dim: 7 dim: 7 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE global_pooling: true kernel_size: 7 } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 512 dim: 7 dim: 7 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE global_pooling: true } }"""),
    "L030": (
        "An InnerProduct multiplies its input, flattened from axis (default 1) on, by a "
        "num_output x K weight matrix. num_output has no default: leaving it out builds a "
        "layer with no outputs and empty weights, never what was meant (and the xavier and "
        "msra fillers divide by zero on them). "
        "Embed is a lookup table of input_dim rows of num_output values, one row per index in "
        "[0, input_dim); Caffe aborts unless both are positive.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 256 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { weight_filler { type: "xavier" } } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 256 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }"""),
    "L040": (
        "Eltwise combines inputs of exactly the same shape value by value: SUM (the default), "
        "PROD or MAX. It does not broadcast, so a residual shortcut must first be projected to "
        "the branch's channels and spatial size (a 1x1 Convolution with the same stride). "
        "coeff weights the inputs of a SUM (1 and -1 make a difference); Caffe aborts unless "
        "there is one coeff per bottom or none, and rejects coeff with PROD.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 64 dim: 56 dim: 56 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 128 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "conv" top: "sum" }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 64 dim: 56 dim: 56 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 128 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "proj" type: "Convolution" bottom: "data" top: "proj" convolution_param { num_output: 128 kernel_size: 1 stride: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "proj" bottom: "conv" top: "sum" }"""),
    "L050": (
        "Concat joins its inputs along one axis (axis, default 1: the channels); all inputs "
        "need the same number of axes and the same size on every other axis. Slice cuts its "
        "input along an axis at slice_point values (one fewer than the tops, increasing, "
        "inside the axis) or, without points, into equal parts, which the axis size must "
        "divide. concat_dim and slice_dim are the old names of axis; giving both is an error. "
        "Caffe checks all this when it sets the net up.",
        """\
layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 64 dim: 28 dim: 28 } shape { dim: 1 dim: 32 dim: 14 dim: 14 } } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }""",
        """\
layer { name: "data" type: "Input" top: "a" top: "b" input_param { shape { dim: 1 dim: 64 dim: 28 dim: 28 } shape { dim: 1 dim: 32 dim: 28 dim: 28 } } }
layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "cat" }"""),
    "L060": (
        "Crop cuts bottom 0 to the size of bottom 1 on every axis from axis (default 2, the "
        "spatial axes) on, starting at offset: one offset for all those axes, or one per axis. "
        "Caffe aborts when the crop does not fit, that is when offset plus the reference's "
        "size exceeds the input's size on a cropped axis, or when the reference lacks one of "
        "those axes. In FCN-style nets this happens when the upsampled scores come out smaller "
        "than the image they are cropped to.",
        """\
layer { name: "data" type: "Input" top: "score" top: "image" input_param { shape { dim: 1 dim: 21 dim: 40 dim: 40 } shape { dim: 1 dim: 3 dim: 48 dim: 48 } } }
layer { name: "crop" type: "Crop" bottom: "score" bottom: "image" top: "crop" }""",
        """\
layer { name: "data" type: "Input" top: "score" top: "image" input_param { shape { dim: 1 dim: 21 dim: 64 dim: 64 } shape { dim: 1 dim: 3 dim: 48 dim: 48 } } }
layer { name: "crop" type: "Crop" bottom: "score" bottom: "image" top: "crop" crop_param { axis: 2 offset: 8 } }"""),
    "L070": (
        "Reshape changes the shape without moving any data, so the number of values must stay "
        "the same. In reshape_param.shape a 0 copies the input's dimension at that position "
        "and a single -1 is inferred from the others; a second -1, other negative values, or "
        "a 0 where the input has no axis are errors, and axis and num_axes limit the reshape "
        "to a range of the input's axes. Flatten merges the axes from axis to end_axis into "
        "one, so end_axis may not come before axis.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "reshape" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 2 dim: 3 dim: 8 } } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "reshape" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: 3 dim: -1 } } }"""),
    "L080": (
        "LRN normalises each value over a window of local_size neighbouring channels (or "
        "positions, with WITHIN_CHANNEL) centred on it, so Caffe only accepts odd sizes, and "
        "it needs a 4-D input. BatchNorm takes its channels from axis 1 and needs at least 2 "
        "axes; MVN reads its input as (num, channels, height, width) and rejects more than 4 "
        "axes. Scale and Bias multiply by or add a parameter shaped like the input's axes from "
        "axis on (num_axes of them, -1 for all the rest), learned or given as a second bottom, "
        "and broadcast it over the other axes; that shape must fit inside the input's and "
        "match it.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 96 dim: 55 dim: 55 } } }
layer { name: "norm1" type: "LRN" bottom: "data" top: "norm1" lrn_param { local_size: 4 alpha: 0.0001 beta: 0.75 } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 96 dim: 55 dim: 55 } } }
layer { name: "norm1" type: "LRN" bottom: "data" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }"""),
    "L090": (
        "Dropout zeroes each value with probability dropout_ratio and scales the others by "
        "1 / (1 - ratio), so the ratio must lie in [0, 1): 1 divides by zero, more than 1 "
        "flips the sign (50 meant as a percentage is the usual slip), and 0 makes the layer "
        "do nothing (a warning). Exp and Log take a base that must be positive, or -1 for e. "
        "Clip needs both min and max, and min above max clips everything to min. PReLU learns "
        "one slope per channel (axis 1), so its input needs 2 to 4 axes.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 4096 } } }
layer { name: "drop" type: "Dropout" bottom: "data" top: "data" dropout_param { dropout_ratio: 50 } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 4096 } } }
layer { name: "drop" type: "Dropout" bottom: "data" top: "data" dropout_param { dropout_ratio: 0.5 } }"""),
    "L100": (
        "A loss compares predictions (bottom 0) with targets (bottom 1), and Caffe checks "
        "their shapes before anything runs: every loss needs the same first (batch) dimension; "
        "SoftmaxWithLoss, InfogainLoss and Accuracy one integer label per position outside the "
        "class axis (N labels for (N, C) scores, N x H x W for per-pixel scores); "
        "EuclideanLoss and SigmoidCrossEntropyLoss as many targets as predictions; "
        "MultinomialLogisticLoss labels of shape (N, 1, 1, 1); ContrastiveLoss two (N, C, 1, 1) "
        "features and an (N, 1, 1, 1) similarity. InfogainLoss needs its matrix (a file or a "
        "third bottom) and rejects the deprecated loss_param.normalize. Accuracy's top_k may "
        "not exceed the number of classes (top_k 0, which never counts a hit, is a warning).",
        """\
layer { name: "data" type: "DummyData" top: "score" top: "label" dummy_data_param { shape { dim: 2 dim: 21 dim: 64 dim: 64 } shape { dim: 2 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }""",
        """\
layer { name: "data" type: "DummyData" top: "score" top: "label" dummy_data_param { shape { dim: 2 dim: 21 dim: 64 dim: 64 } shape { dim: 2 dim: 1 dim: 64 dim: 64 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }"""),
    "L110": (
        "Data layers are set up from their parameters alone. Data, ImageData, WindowData and "
        "HDF5Data need a source; ImageData a positive batch_size and new_height together with "
        "new_width; WindowData a crop_size; MemoryData a positive batch_size, channels, height "
        "and width. The data transformer takes mean_file or mean_value, not both, and one mean "
        "value or one per channel; HDF5Data transforms nothing and rejects a transform_param. "
        "Input and DummyData take shape once for all tops or once per top, with no negative "
        "dimension: Caffe has no -1 for a batch size decided later (give one and reshape the "
        "net at run time). A Data layer without batch_size only outputs empty batches, a "
        "warning.",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: -1 dim: 3 dim: 224 dim: 224 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 64 kernel_size: 7 stride: 2 pad: 3 } }""",
        """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 64 kernel_size: 7 stride: 2 pad: 3 } }"""),
    "L120": (
        "The remaining layer types have set-up checks of their own. RNN and LSTM need a "
        "positive num_output, x of shape (time steps, streams, ...) and cont of shape (time "
        "steps, streams): time comes first, not the batch. An optional static input has one "
        "row per stream, and with expose_hidden the initial states are (1, streams, "
        "num_output). LSTMUnit takes (1, N, D) cells, (1, N, 4 D) gates and a (1, N) cont. "
        "Tile needs tiles > 0, ArgMax a top_k from 1 to the number of values it ranks, Filter "
        "an (N, 1, ...) selector with the batch size of the filtered inputs, BatchReindex 1-D "
        "indices, Parameter non-negative dimensions, and a Python layer its module and layer "
        "names.",
        """\
layer { name: "data" type: "Input" top: "x" top: "cont" input_param { shape { dim: 4 dim: 20 dim: 300 } shape { dim: 20 dim: 4 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "lstm" recurrent_param { num_output: 256 } }""",
        """\
layer { name: "data" type: "Input" top: "x" top: "cont" input_param { shape { dim: 20 dim: 4 dim: 300 } shape { dim: 20 dim: 4 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "lstm" recurrent_param { num_output: 256 } }"""),
}
_GENERIC_WHY = ("Caffe checks these parameters when it sets the layer up and aborts the whole "
                "run with a CHECK failure; this rule finds the same problems before anything "
                "runs, with the reason in plain words.")


class LayerCheckRule(Rule):
    """Reports the layer-type checks (prototxt_tools/layers) that carry this rule's code."""

    severity = ERROR

    def check(self, context: LintContext) -> Iterator[Finding]:
        code = self.code
        skipped = set()
        for layer in context.active_layers():
            spec = layer.spec
            if spec is None or context.has_schema_errors(layer):
                skipped.add(layer.index)
                continue
            if code == "L001":
                problem = count_problem(layer)
                if problem is not None:
                    yield self.finding(context, layer, f"layer '{layer.name}': {problem.message}",
                                       path=problem.field, severity=problem.severity)
                continue
            if code == "L002":
                param = layer.param
                if param.propagate_down and len(param.propagate_down) != len(param.bottom):
                    yield self.finding(
                        context, layer,
                        f"layer '{layer.name}' gives propagate_down {len(param.propagate_down)} "
                        f"times for {len(param.bottom)} bottoms; give it 0 or "
                        f"{len(param.bottom)} times", path=("propagate_down", 0))
                continue
            for problem in spec.check(layer.param):
                if problem.code == code:
                    yield self.finding(context, layer, f"{layer.type} '{layer.name}': "
                                       f"{problem.message}", path=problem.field,
                                       severity=problem.severity)
        if code in ("L001", "L002"):
            return
        for view in context.views:
            for layer, problem in view.shapes.problems:
                if problem.code == code and layer.index not in skipped:
                    yield self.finding(context, layer, f"{layer.type} '{layer.name}': "
                                       f"{problem.message}", path=problem.field,
                                       severity=problem.severity)


def _make_rule(code: str, name: str, summary: str) -> type:
    why, example, use_instead = _DOCS.get(code, (_GENERIC_WHY, "", ""))
    rule_class = type(f"LayerCheck{code}", (LayerCheckRule,), {
        "code": code, "name": name, "summary": summary, "why": why, "example": example,
        "use_instead": use_instead, "__doc__": summary,
    })
    return register_rule(rule_class)


for _code, (_name, _summary) in CHECK_CODES.items():
    globals()[f"LayerCheck{_code}"] = _make_rule(_code, _name, _summary)
