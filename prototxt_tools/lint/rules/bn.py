"""BatchNorm rules (BN): the mistakes Caffe's BatchNorm invites.

Caffe's BatchNorm only normalises: the learned scale and shift live in a following
``Scale { bias_term: true }``. Its three blobs are running statistics that must never be
trained, ``use_global_stats`` must follow the phase, and batch statistics need a batch.
"""

from __future__ import annotations

from typing import Iterator, Optional

from ...errors import ERROR, INFO, WARNING
from ...layers.base import TRAIN
from ...net.model import Layer, NetView
from ...syntax.edits import delete, indent_unit, insert_field
from ..context import LintContext
from ..fixes import block_text, insert_layer_after, layer_text, set_field, unique_layer_name
from ..rule import Finding, Rule, register_rule

ACTIVATIONS = frozenset({"ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "Swish", "AbsVal", "BNLL",
                         "Clip", "Threshold"})
PRODUCERS_WITH_BIAS = {"Convolution": "convolution_param", "Deconvolution": "convolution_param",
                       "InnerProduct": "inner_product_param"}


def batch_norms(context: LintContext) -> list[Layer]:
    return [layer for layer in context.active_layers() if layer.type == "BatchNorm"]


def uses_global_stats(layer: Layer, phase: int) -> bool:
    """Caffe's rule: use_global_stats when set, else (phase == TEST)."""
    params = layer.param.batch_norm_param
    if params.HasField("use_global_stats"):
        return params.use_global_stats
    return phase != TRAIN


def following_scale(view: NetView, layer: Layer) -> Optional[Layer]:
    """The Scale that reads this BatchNorm's output, if any."""
    for reader, bottom_index in view.readers(layer, 0):
        if reader.type == "Scale" and bottom_index == 0:
            return reader
    return None


def reads_bias_after(view: NetView, scale: Layer) -> bool:
    """A Bias layer reading the Scale's output supplies the shift instead of bias_term."""
    return any(reader.type == "Bias" and index == 0 for reader, index in view.readers(scale, 0))


@register_rule
class BatchNormWithoutScale(Rule):
    code = "BN001"
    name = "bn-missing-scale"
    severity = WARNING
    summary = "BatchNorm not followed by a Scale layer with bias_term: true"
    why = ("Caffe's BatchNorm only normalises each channel to zero mean and unit variance; "
           "unlike PyTorch's BatchNorm2d or Keras' BatchNormalization it has no learned scale "
           "(gamma) and shift (beta). Without a following Scale layer with bias_term: true the "
           "network cannot learn them, which usually costs accuracy, and a port to another "
           "framework will silently add an identity affine where the original had none.")
    example = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }"""
    use_instead = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer {
  name: "scale1"
  type: "Scale"
  bottom: "conv1"
  top: "conv1"
  scale_param { bias_term: true }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }"""
    fix_description = ("Inserts an in-place Scale layer with bias_term: true right after the "
                       "BatchNorm, with the BatchNorm's include/exclude rules.")
    fix_safety = ("Unsafe: it adds two learnable blobs, so weights trained without them no "
                  "longer match the net (Caffe refuses to load a layer whose blob count "
                  "differs); intended for nets about to be trained.")

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in batch_norms(context):
            views = context.views_with(layer)
            if any(following_scale(view, layer) is not None for view in views):
                continue
            yield self.finding(context, layer,
                               f"BatchNorm '{layer.name}' is not followed by a Scale layer, so "
                               f"its output has no learned scale and shift",
                               fix=self._fix(layer))

    def _fix(self, layer: Layer):
        if not layer.is_v2_syntax or not layer.tops:
            return None
        unit = indent_unit(layer.node.document)
        top = layer.tops[0]
        extra = [block_text("scale_param", ["bias_term: true"], unit)]
        for rule_name in ("include", "exclude"):
            for rule_field in layer.node.get_all(rule_name):
                extra.append(rule_field.text)
        text = layer_text(unit, unique_layer_name(layer, f"{layer.name}_scale"), "Scale",
                          [top], [top], "\n".join(extra).split("\n"))
        edits = insert_layer_after(layer, text)
        return self.make_fix(edits, False, "insert an in-place Scale with bias_term: true") \
            if edits else None


@register_rule
class ScaleWithoutBias(Rule):
    code = "BN002"
    name = "bn-scale-no-bias"
    severity = WARNING
    summary = "the Scale after a BatchNorm has no bias_term: true"
    why = ("Scale's bias_term defaults to false (unlike Convolution's). After a BatchNorm the "
           "Scale is meant to provide both gamma and beta; without the bias every channel is "
           "forced to zero mean, which limits what the next layer can learn. Other frameworks' "
           "batch norm layers always have the shift, so ports disagree too.")
    example = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" }"""
    use_instead = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }"""
    fix_description = "Sets bias_term: true in the Scale layer's scale_param."
    fix_safety = ("Unsafe: it adds a learnable blob, so trained weights no longer match the "
                  "layer until retrained.")

    def check(self, context: LintContext) -> Iterator[Finding]:
        reported = set()
        for layer in batch_norms(context):
            for view in context.views_with(layer):
                scale = following_scale(view, layer)
                if scale is None or scale.index in reported:
                    continue
                if scale.param.scale_param.bias_term or reads_bias_after(view, scale):
                    continue
                reported.add(scale.index)
                edits = set_field(scale, ("scale_param",), "bias_term", "true")
                yield self.finding(
                    context, scale,
                    f"Scale '{scale.name}' after BatchNorm '{layer.name}' has no bias "
                    f"(bias_term defaults to false), so it learns gamma but not beta",
                    path=("scale_param", "bias_term"),
                    fix=self.make_fix(edits, False, "set bias_term: true") if edits else None)


@register_rule
class TrainableStatistics(Rule):
    code = "BN003"
    name = "bn-trainable-stats"
    severity = ERROR
    summary = "BatchNorm statistics given a non-zero learning rate, or not 0 or 3 param specs"
    why = ("A BatchNorm's three blobs are the running mean, variance and their scale factor, "
           "updated by the layer itself; they are not weights. Caffe 1.0 refuses a non-zero "
           "lr_mult (\"Cannot configure batch normalization statistics as layer parameters\"), "
           "or quietly resets exactly three specs to zero when loading the net; older Caffe and "
           "some forks train them by gradient descent, which corrupts them. One or two param "
           "specs are padded by Caffe, and more than three is an error.")
    example = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  param { lr_mult: 1 }
}"""
    use_instead = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  param { lr_mult: 0 decay_mult: 0 }
  param { lr_mult: 0 decay_mult: 0 }
  param { lr_mult: 0 decay_mult: 0 }
}"""
    fix_description = ("Replaces the layer's param specs with three "
                       "param { lr_mult: 0 decay_mult: 0 }.")
    fix_safety = "Safe: it states what Caffe 1.0 requires; the statistics are never meant to learn."

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in batch_norms(context):
            specs = list(layer.source.param) if layer.origin == "layer" else list(layer.param.param)
            count = len(specs)
            trained = [i for i, spec in enumerate(specs) if spec.lr_mult != 0]
            decayed = [i for i, spec in enumerate(specs)
                       if spec.HasField("decay_mult") and spec.decay_mult != 0]
            if trained:
                message = (f"BatchNorm '{layer.name}' gives its statistics lr_mult "
                           f"{specs[trained[0]].lr_mult:g}: Caffe 1.0 aborts or resets it, older "
                           f"Caffe trains the running mean and variance by gradient descent")
                severity, path = ERROR, ("param", trained[0], "lr_mult")
            elif count > 3:
                message = (f"BatchNorm '{layer.name}' has {count} param specs but only 3 blobs; "
                           f"Caffe aborts (too many params)")
                severity, path = ERROR, ("param", 3)
            elif count in (1, 2):
                message = (f"BatchNorm '{layer.name}' has {count} param spec"
                           f"{'s' if count > 1 else ''}; give 0 or all 3 "
                           f"(lr_mult: 0) so the intent is explicit")
                severity, path = WARNING, ("param", 0)
            elif decayed:
                message = (f"BatchNorm '{layer.name}' sets decay_mult "
                           f"{specs[decayed[0]].decay_mult:g} on a statistic; statistics take no "
                           f"weight decay (set decay_mult: 0)")
                severity, path = WARNING, ("param", decayed[0], "decay_mult")
            else:
                continue
            yield self.finding(context, layer, message, path=path, severity=severity,
                               fix=self._fix(layer))

    def _fix(self, layer: Layer):
        if not layer.is_v2_syntax:
            return None
        node = layer.node
        unit = indent_unit(node.document)
        specs = node.get_all("param")
        text = "\n".join(block_text("param", ["lr_mult: 0", "decay_mult: 0"], unit)
                         for _ in range(3))
        if specs:
            index = node.fields.index(specs[0])
            edits = [delete(spec, with_comments=False) for spec in specs]
            edits.append(insert_field(node, text, index))
        else:
            edits = [insert_field(node, text)]
        return self.make_fix(edits, True, "give the three statistics lr_mult: 0 decay_mult: 0")


@register_rule
class FrozenInTraining(Rule):
    code = "BN004"
    name = "bn-frozen-in-training"
    severity = WARNING
    summary = "use_global_stats: true in a BatchNorm that runs in TRAIN"
    why = ("With use_global_stats: true the layer normalises with its stored statistics and "
           "never updates them, also while training. That is right when fine-tuning with tiny "
           "batches (where batch statistics are noise) but wrong when training from scratch: "
           "the statistics stay at their initial values and the net trains against them.")
    example = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  batch_norm_param { use_global_stats: true }
}
# (in a train_val net, active in TRAIN)"""
    use_instead = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
}
# (Caffe uses batch statistics in TRAIN and the stored ones in TEST)"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        train = context.train
        if train is None or context.net.is_deploy:
            return
        for layer in batch_norms(context):
            if not train.is_active(layer):
                continue
            params = layer.param.batch_norm_param
            if params.HasField("use_global_stats") and params.use_global_stats:
                yield self.finding(
                    context, layer,
                    f"BatchNorm '{layer.name}' uses its stored statistics in TRAIN and never "
                    f"updates them: right for fine-tuning with tiny batches, wrong for training "
                    f"from scratch", path=("batch_norm_param", "use_global_stats"))


@register_rule
class BatchStatisticsAtTest(Rule):
    code = "BN005"
    name = "bn-batch-stats-at-test"
    severity = WARNING
    summary = "use_global_stats: false in a BatchNorm that runs in TEST or in a deploy net"
    why = ("use_global_stats has no default in Caffe: unset means batch statistics in TRAIN and "
           "the stored running statistics in TEST. An explicit false forces batch statistics "
           "at test time too, so a prediction depends on the other images in the batch (and "
           "collapses for a batch of one). Many train_val files copied from ResNet examples "
           "carry this mistake; in a deploy net it is an error.")
    example = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  batch_norm_param { use_global_stats: false }
}"""
    use_instead = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
}"""
    fix_description = "Removes the explicit use_global_stats: false."
    fix_safety = ("Safe: in TRAIN nothing changes (false is what Caffe picks there anyway) and "
                  "in TEST the layer uses the stored statistics, as intended.")

    def check(self, context: LintContext) -> Iterator[Finding]:
        test = context.test
        deploy = context.net.is_deploy
        for layer in batch_norms(context):
            params = layer.param.batch_norm_param
            if not params.HasField("use_global_stats") or params.use_global_stats:
                continue
            if test is None or not test.is_active(layer):
                continue
            edits = None
            field = layer.field("batch_norm_param", "use_global_stats")
            if field is not None:
                edits = [delete(field, with_comments=False)]
            where = "a deploy net" if deploy else "TEST"
            yield self.finding(
                context, layer,
                f"BatchNorm '{layer.name}' uses batch statistics in {where}: outputs depend on "
                f"the rest of the batch", path=("batch_norm_param", "use_global_stats"),
                severity=ERROR if deploy else WARNING,
                fix=self.make_fix(edits, True, "remove use_global_stats: false") if edits
                else None)


@register_rule
class DegenerateBatch(Rule):
    code = "BN006"
    name = "bn-degenerate-batch"
    severity = WARNING
    summary = "batch statistics over too few values per channel in TRAIN"
    why = ("In TRAIN a BatchNorm normalises each channel with the mean and variance of that "
           "batch, over m = N*H*W values. With m == 1 the variance is 0 and every output is 0 "
           "(then beta after the Scale): the layer destroys its input. With small m the "
           "statistics are so noisy that training is unstable and the running averages are "
           "poor. Fine-tune such nets with use_global_stats: true, or fold the BatchNorm into "
           "the preceding layer.")
    example = """\
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 1 dim: 1 } }
}
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" include { phase: TRAIN } }"""
    use_instead = """\
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 32 dim: 3 dim: 8 dim: 8 } }
}
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" include { phase: TRAIN } }"""
    options = {"threshold": 16}
    option_docs = {"threshold": "below this many values per channel (but above 1) the rule "
                                "warns"}

    def check(self, context: LintContext) -> Iterator[Finding]:
        train = context.train
        if train is None:
            return
        threshold = int(self.option(context, "threshold"))
        shapes = train.shapes
        for layer in batch_norms(context):
            if not train.is_active(layer) or uses_global_stats(layer, TRAIN):
                continue
            bottoms = shapes.bottom_shapes(train, layer)
            shape = bottoms[0] if bottoms else None
            if not shape or len(shape) < 2:
                continue
            values = 1
            for axis, dim in enumerate(shape):
                if axis == 1:
                    continue
                if dim is None:
                    values = None
                    break
                values *= dim
            if values is None:
                continue
            dims = "x".join("?" if d is None else str(d) for d in shape)
            if values <= 1:
                yield self.finding(
                    context, layer,
                    f"BatchNorm '{layer.name}' normalises over 1 value per channel in TRAIN "
                    f"(input {dims}): the variance is 0 and the output collapses to 0",
                    severity=ERROR)
            elif values < threshold:
                yield self.finding(
                    context, layer,
                    f"BatchNorm '{layer.name}' normalises over only {values} values per channel "
                    f"in TRAIN (input {dims}; threshold {threshold}): batch statistics will be "
                    f"noisy")


@register_rule
class RedundantBias(Rule):
    code = "BN007"
    name = "bn-redundant-bias"
    severity = INFO
    summary = "a Convolution or InnerProduct feeding a BatchNorm has a bias BatchNorm cancels"
    why = ("BatchNorm subtracts the per-channel mean, so a constant per-channel bias added just "
           "before it has no effect on the output: it is a wasted parameter that still takes "
           "memory and gradient updates. bias_term defaults to true for Convolution and "
           "InnerProduct, so it is easy to leave in.")
    example = """\
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 }
}
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }"""
    use_instead = """\
layer {
  name: "conv1"
  type: "Convolution"
  bottom: "data"
  top: "conv1"
  convolution_param { num_output: 16 kernel_size: 3 bias_term: false }
}
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }"""
    fix_description = "Sets bias_term: false on the producing layer."
    fix_safety = ("Unsafe: it removes a blob, so weights trained with the bias no longer load "
                  "into the layer; the outputs are unchanged only after retraining.")

    def check(self, context: LintContext) -> Iterator[Finding]:
        reported = set()
        for layer in batch_norms(context):
            for view in context.views_with(layer):
                written = view.writer(layer, 0)
                if written is None:
                    continue
                producer, top_index = written
                block = PRODUCERS_WITH_BIAS.get(producer.type)
                if block is None or producer.index in reported:
                    continue
                if not getattr(producer.param, block).bias_term:
                    continue
                if [reader for reader, _ in view.readers(producer, top_index)] != [layer]:
                    continue  # the un-normalised output is used elsewhere too
                reported.add(producer.index)
                edits = set_field(producer, (block,), "bias_term", "false")
                yield self.finding(
                    context, producer,
                    f"{producer.type} '{producer.name}' has a bias that BatchNorm "
                    f"'{layer.name}' cancels (bias_term defaults to true)",
                    path=(block, "bias_term"),
                    fix=self.make_fix(edits, False, "set bias_term: false") if edits else None)


@register_rule
class BadParameters(Rule):
    code = "BN008"
    name = "bn-bad-params"
    severity = ERROR
    summary = "BatchNorm eps <= 0 or moving_average_fraction outside (0, 1]"
    why = ("eps is added to the variance inside the square root; with eps <= 0 a channel of "
           "constant values divides by zero (or by the root of a negative number). "
           "moving_average_fraction is the weight of the OLD running value in each update "
           "(the opposite of PyTorch's momentum): 0 keeps only the last batch, values above 1 "
           "make the running statistics diverge.")
    example = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  batch_norm_param { eps: 0 moving_average_fraction: 0.1 }
}"""
    use_instead = """\
layer {
  name: "bn1"
  type: "BatchNorm"
  bottom: "conv1"
  top: "conv1"
  batch_norm_param { eps: 1e-5 moving_average_fraction: 0.999 }
}"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in batch_norms(context):
            params = layer.param.batch_norm_param
            if params.eps <= 0:
                yield self.finding(context, layer,
                                   f"BatchNorm '{layer.name}' has eps {params.eps:g}; it must be "
                                   f"positive (it keeps the square root away from zero)",
                                   path=("batch_norm_param", "eps"))
            fraction = params.moving_average_fraction
            if not 0 < fraction <= 1:
                yield self.finding(context, layer,
                                   f"BatchNorm '{layer.name}' has moving_average_fraction "
                                   f"{fraction:g}; it must be in (0, 1] (it weighs the old "
                                   f"running value; Caffe's default is 0.999)",
                                   path=("batch_norm_param", "moving_average_fraction"))
            elif fraction < 0.5:
                yield self.finding(context, layer,
                                   f"BatchNorm '{layer.name}' has moving_average_fraction "
                                   f"{fraction:g}: in Caffe it weighs the OLD value (PyTorch's "
                                   f"momentum is the reverse); did you mean {1 - fraction:g}?",
                                   path=("batch_norm_param", "moving_average_fraction"),
                                   severity=WARNING)


@register_rule
class Placement(Rule):
    code = "BN009"
    name = "bn-placement"
    severity = INFO
    summary = "BatchNorm placed after the activation when the team prefers before, or vice versa"
    why = ("Whether BatchNorm goes before the nonlinearity (as in the original paper and "
           "ResNet) or after it is debated and both work; mixing the two in one code base "
           "makes nets harder to compare and to fold. This rule is off by default; turn it on "
           "and set `preferred` to keep a team consistent.")
    example = """\
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
# (with preferred = "before-activation")"""
    use_instead = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }"""
    options = {"preferred": "before-activation"}
    option_docs = {"preferred": '"before-activation" or "after-activation"'}
    enabled_by_default = False

    def check(self, context: LintContext) -> Iterator[Finding]:
        preferred = self.option(context, "preferred")
        if preferred not in ("before-activation", "after-activation"):
            yield self.finding(context, None, f"BN009 option 'preferred' must be "
                                              f"\"before-activation\" or \"after-activation\", "
                                              f"not {preferred!r}")
            return
        for layer in batch_norms(context):
            for view in context.views_with(layer)[:1]:
                written = view.writer(layer, 0)
                after_activation = written is not None and written[0].type in ACTIVATIONS
                before_activation = self._feeds_activation(view, layer)
                if preferred == "before-activation" and after_activation:
                    yield self.finding(context, layer,
                                       f"BatchNorm '{layer.name}' follows activation "
                                       f"'{written[0].name}'; this project puts BatchNorm "
                                       f"before the activation")
                elif preferred == "after-activation" and before_activation:
                    yield self.finding(context, layer,
                                       f"BatchNorm '{layer.name}' feeds an activation; this "
                                       f"project puts BatchNorm after the activation")

    @staticmethod
    def _feeds_activation(view: NetView, layer: Layer) -> bool:
        current = layer
        for _ in range(3):  # BatchNorm -> (Scale) -> (Bias) -> activation
            readers = view.readers(current, 0)
            if any(reader.type in ACTIVATIONS for reader, _ in readers):
                return True
            affine = [reader for reader, _ in readers if reader.type in ("Scale", "Bias")]
            if not affine:
                return False
            current = affine[0]
        return False


@register_rule
class AfterDropout(Rule):
    code = "BN010"
    name = "bn-after-dropout"
    severity = WARNING
    summary = "a Dropout layer feeds a BatchNorm"
    why = ("Dropout changes the variance of its output between TRAIN (units dropped and the rest "
           "scaled up) and TEST (identity). A BatchNorm right after it learns running "
           "statistics under the training variance and applies them to test-time activations "
           "with a different variance, shifting every output (the 'variance shift' described "
           "by Li et al., 2019). Put Dropout after the BatchNorm, or before the last layer.")
    example = """\
layer { name: "drop1" type: "Dropout" bottom: "fc1" top: "fc1" }
layer { name: "bn1" type: "BatchNorm" bottom: "fc1" top: "fc1" }"""
    use_instead = """\
layer { name: "bn1" type: "BatchNorm" bottom: "fc1" top: "fc1" }
layer { name: "drop1" type: "Dropout" bottom: "fc1" top: "fc1" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in batch_norms(context):
            for view in context.views_with(layer):
                written = view.writer(layer, 0)
                if written is not None and written[0].type == "Dropout":
                    yield self.finding(context, layer,
                                       f"BatchNorm '{layer.name}' reads the output of Dropout "
                                       f"'{written[0].name}': its statistics see a different "
                                       f"variance in TRAIN and TEST")
                    break


@register_rule
class ForkBatchNorm(Rule):
    code = "BN011"
    name = "bn-fork-layer"
    severity = INFO
    summary = "a Caffe fork's batch normalisation layer (\"BN\", or NVCaffe's BatchNorm)"
    why = ("SegNet, ENet and PSPNet ship their own layer type \"BN\" (parameters in bn_param, "
           "with the scale and shift built in as blobs 0 and 1), and NVCaffe's BatchNorm takes "
           "five blobs (scale and bias included, scale_bias: true). BVLC Caffe, OpenCV's Caffe "
           "importer and most converters do not read them, and their blobs differ from BVLC "
           "BatchNorm's three, so weights do not transfer without conversion.")
    example = """\
layer { name: "bn1" type: "BN" bottom: "conv1" top: "conv1" bn_param { frozen: true } }"""
    use_instead = """\
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }"""
    needs_net = True

    def check(self, context: LintContext) -> Iterator[Finding]:
        fork_bn = [layer for layer in context.net.layers if layer.type == "BN"]
        if fork_bn:
            count = f" ({len(fork_bn)} layers)" if len(fork_bn) > 1 else ""
            yield self.finding(context, fork_bn[0],
                               f"'{fork_bn[0].name}'{count} uses the \"BN\" layer of the "
                               f"SegNet/ENet/PSPNet Caffe forks (learned scale and shift built "
                               f"in); BVLC Caffe and OpenCV do not read it: replace it with "
                               f"BatchNorm + Scale, converting its blobs", path=("type",))
        nvcaffe = [layer for layer in context.net.layers if layer.type == "BatchNorm"
                   and (len(layer.param.param) == 5 or self._nvcaffe_fields(layer))]
        if nvcaffe:
            count = f" ({len(nvcaffe)} layers)" if len(nvcaffe) > 1 else ""
            yield self.finding(context, nvcaffe[0],
                               f"BatchNorm '{nvcaffe[0].name}'{count} is written for NVCaffe "
                               f"(five blobs with scale and bias); BVLC Caffe's BatchNorm has "
                               f"three and needs a separate Scale", path=("param",))

    @staticmethod
    def _nvcaffe_fields(layer: Layer) -> bool:
        node = layer.field("batch_norm_param")
        return node is not None and any(
            f.name in ("scale_bias", "scale_filler", "bias_filler") for f in node.fields)
