"""Net wiring rules (G): what Caffe's Net::Init rejects, and wiring it accepts but that is wrong.

Each check runs on the nets Caffe builds for the linted states (TRAIN and TEST by default),
after phase filtering, so a bottom that exists only in the other phase is caught.
"""

from __future__ import annotations

import difflib
from typing import Iterator

from ...errors import ERROR, INFO, WARNING
from ...layers.base import IN_PLACE_FORBIDDEN, IN_PLACE_WRONG, known_types
from ...schema.forks import KNOWN_FORK_LAYER_TYPES
from ..context import LintContext
from ..rule import Finding, Rule, register_rule


@register_rule
class UnknownBottom(Rule):
    code = "G001"
    name = "unknown-bottom"
    severity = ERROR
    summary = "a bottom no earlier layer produces (in some phase)"
    why = ("Caffe wires layers in file order after dropping the layers the phase excludes; a "
           "bottom must be the top of an earlier active layer, or Net::Init aborts with "
           "\"Unknown bottom blob\". A blob produced only under include { phase: TRAIN } is "
           "missing in TEST, a typo is missing everywhere.")
    example = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "dta" top: "ip" inner_product_param { num_output: 2 } }"""
    use_instead = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        # One finding per (layer, bottom), naming every linted state where it is missing.
        missing: dict = {}
        for view in context.views:
            produced = sorted({ref.name for ref in view.producer if ref.name})
            for layer, index in view.unknown_bottoms:
                name = layer.bottoms[index]
                if name in {top for other in view.excluded for top in other.tops}:
                    reason = "its producer is not active there"
                elif any(name in other.tops for other in view.layers
                         if other.index > layer.index):
                    reason = "it is only produced by a later layer"
                else:
                    reason = "no layer produces it"
                    hint = difflib.get_close_matches(name, produced, n=1, cutoff=0.7)
                    if hint:
                        reason += f"; did you mean '{hint[0]}'?"
                entry = missing.setdefault((layer.index, index), (layer, index, reason, []))
                entry[3].append(view.state.describe())
        for layer, index, reason, states in missing.values():
            where = " and ".join(dict.fromkeys(states))
            yield self.finding(context, layer,
                               f"layer '{layer.name}' reads bottom '{layer.bottoms[index]}' in "
                               f"{where}, but {reason}", path=("bottom", index))


@register_rule
class DuplicateTop(Rule):
    code = "G002"
    name = "top-produced-twice"
    severity = ERROR
    summary = "a top already produced by another layer, not in place"
    why = ("A layer may write a blob that already exists only in place (top[i] equal to its own "
           "bottom[i]); otherwise Caffe aborts with \"Duplicate blobs produced by multiple "
           "sources\". Usually a copy-pasted top name.")
    example = """\
layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
layer { name: "b" type: "Sigmoid" bottom: "x" top: "y" }"""
    use_instead = """\
layer { name: "a" type: "ReLU" bottom: "x" top: "y" }
layer { name: "b" type: "Sigmoid" bottom: "x" top: "z" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for view in context.views:
            for layer, index, first in view.duplicate_tops:
                source = f" by '{first.name}'" if first is not None else ""
                yield self.finding(context, layer,
                                   f"layer '{layer.name}' writes top '{layer.tops[index]}', "
                                   f"already produced{source}, and not in place: Caffe aborts",
                                   path=("top", index))


@register_rule
class IncludeAndExclude(Rule):
    code = "G003"
    name = "include-and-exclude"
    severity = ERROR
    summary = "a layer with both include and exclude rules"
    why = ("Caffe's FilterNet accepts either include rules or exclude rules on a layer, not "
           "both: \"Specify either include rules or exclude rules; not both.\"")
    example = """\
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN } exclude { stage: "deploy" } }"""
    use_instead = """\
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN not_stage: "deploy" } }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in context.net.layers:
            if layer.param.include and layer.param.exclude:
                yield self.finding(context, layer,
                                   f"layer '{layer.name}' has both include and exclude rules; "
                                   f"Caffe accepts one kind only", path=("exclude", 0))


@register_rule
class DuplicateLayerName(Rule):
    code = "G004"
    name = "duplicate-layer-name"
    severity = WARNING
    summary = "two active layers with one name in the same phase"
    why = ("Trained weights are copied into a net by layer name: two layers with one name get "
           "the same weights (whichever the .caffemodel holds under that name) and tools that "
           "address layers by name see only one of them. Layers that share a name in different "
           "phases are fine.")
    example = """\
layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }
layer { name: "relu" type: "ReLU" bottom: "b" top: "b" }"""
    use_instead = """\
layer { name: "relu_a" type: "ReLU" bottom: "a" top: "a" }
layer { name: "relu_b" type: "ReLU" bottom: "b" top: "b" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        repeats: dict = {}  # layer index -> (layer, first layer, [states])
        for view in context.views:
            first_seen: dict = {}
            for layer in view.layers:
                earlier = first_seen.setdefault(layer.name, layer)
                if earlier is not layer:
                    entry = repeats.setdefault(layer.index, (layer, earlier, []))
                    entry[2].append(view.state.describe())
        for layer, earlier, states in repeats.values():
            where = " and ".join(dict.fromkeys(states))
            yield self.finding(context, layer,
                               f"layer name '{layer.name}' is used again in {where} (first by "
                               f"the {earlier.type} layer above); weights load by name",
                               path=("name",))


@register_rule
class InPlaceNotSupported(Rule):
    code = "G005"
    name = "in-place-unsupported"
    severity = ERROR
    summary = "a layer run in place that cannot compute in place"
    why = ("Element-wise layers (ReLU, BatchNorm, Scale, Dropout...) may write their output over "
           "their input (top == bottom). Others cannot: Reshape, Flatten and Split abort "
           "(\"does not allow in-place computation\"), and Convolution, InnerProduct, Pooling and "
           "the like read their input while writing the output, so Caffe silently computes "
           "garbage.")
    example = """\
layer { name: "flat" type: "Flatten" bottom: "pool" top: "pool" }"""
    use_instead = """\
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in context.active_layers():
            spec = layer.spec
            if spec is None or spec.in_place not in (IN_PLACE_FORBIDDEN, IN_PLACE_WRONG):
                continue
            for index in layer.in_place_tops:
                consequence = ("Caffe aborts" if spec.in_place == IN_PLACE_FORBIDDEN
                               else "Caffe computes garbage")
                yield self.finding(context, layer,
                                   f"{layer.type} '{layer.name}' runs in place on "
                                   f"'{layer.tops[index]}' ({consequence}): give it a new top",
                                   path=("top", index))


@register_rule
class TooManyParamSpecs(Rule):
    code = "G006"
    name = "too-many-param-specs"
    severity = ERROR
    summary = "more param specs than the layer has learnable blobs"
    why = ("Each param { } spec configures one learnable blob (lr_mult, decay_mult, sharing). "
           "Caffe aborts when a layer lists more specs than it has blobs (\"Too many params "
           "specified for layer\"); a common case is two specs on a convolution with "
           "bias_term: false.")
    example = """\
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  param { lr_mult: 1 }
  param { lr_mult: 2 }
  convolution_param { num_output: 8 kernel_size: 3 bias_term: false }
}"""
    use_instead = """\
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  param { lr_mult: 1 }
  convolution_param { num_output: 8 kernel_size: 3 bias_term: false }
}"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in context.active_layers():
            spec = layer.spec
            if spec is None:
                continue
            blobs = spec.blob_count(layer.param)
            specs = len(layer.param.param)
            if specs > blobs:
                yield self.finding(context, layer,
                                   f"{layer.type} '{layer.name}' has {specs} param spec"
                                   f"{'s' if specs != 1 else ''} but {blobs} learnable blob"
                                   f"{'s' if blobs != 1 else ''}: Caffe aborts",
                                   path=("param", blobs))


@register_rule
class UnknownLayerType(Rule):
    code = "G007"
    name = "unknown-layer-type"
    severity = WARNING
    summary = "a layer type BVLC Caffe does not have"
    why = ("Caffe creates layers by type name; an unknown type aborts with \"Unknown layer "
           "type\". Forks add their own (Interp, Upsample, ROIPooling...), which their Caffe "
           "builds read but BVLC Caffe and other tools do not; a misspelt BVLC type is an "
           "error. Shapes after an unknown layer cannot be inferred.")
    example = """\
layer { name: "conv" type: "Convolutional" bottom: "data" top: "conv" }"""
    use_instead = """\
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 } }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        seen: dict = {}
        for layer in context.net.layers:
            if layer.spec is not None:
                continue
            seen.setdefault(layer.type, []).append(layer)
        types = known_types()
        for layer_type, layers in seen.items():
            first = layers[0]
            count = f" ({len(layers)} layers)" if len(layers) > 1 else ""
            fork = KNOWN_FORK_LAYER_TYPES.get(layer_type)
            if fork is not None:
                yield self.finding(context, first,
                                   f"layer type '{layer_type}'{count} belongs to {fork}, not "
                                   f"BVLC Caffe; shapes after it are unknown",
                                   path=("type",), severity=INFO)
                continue
            close = difflib.get_close_matches(layer_type, types, n=1, cutoff=0.8)
            lowered = {t.lower(): t for t in types}.get(layer_type.lower())
            if lowered or close:
                suggestion = lowered or close[0]
                yield self.finding(context, first,
                                   f"unknown layer type '{layer_type}'{count}; did you mean "
                                   f"'{suggestion}'?", path=("type",), severity=ERROR)
            else:
                yield self.finding(context, first,
                                   f"layer type '{layer_type}'{count} is not a BVLC Caffe layer "
                                   f"(a fork's?); shapes after it are unknown", path=("type",))


@register_rule
class UnusedTop(Rule):
    code = "G008"
    name = "unused-top"
    severity = INFO
    summary = "a top nothing reads in a training net (Caffe makes it a net output)"
    why = ("Caffe turns every blob no later layer reads into a net output: it is computed and "
           "kept every iteration, and printed with the losses. In a training net that is "
           "usually a leftover branch, a misspelt bottom further down, or a layer that should "
           "have been removed.")
    example = """\
layer { name: "data" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 4 } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" inner_product_param { num_output: 2 } }
layer { name: "fc2" type: "InnerProduct" bottom: "data" top: "fc2" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1" bottom: "label" top: "loss" }"""
    use_instead = """\
layer { name: "data" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 4 } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc1" bottom: "label" top: "loss" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        train = context.train
        if train is None or context.net.is_deploy:
            return
        for ref in train.net_outputs:
            layer, index = train.producer[ref]
            spec = layer.spec
            if spec is None or spec.is_loss or layer.type in ("Accuracy", "Silence"):
                continue
            if index < len(layer.param.loss_weight) and layer.param.loss_weight[index]:
                continue
            yield self.finding(context, layer,
                               f"top '{ref.name}' of layer '{layer.name}' is never read in "
                               f"TRAIN; Caffe computes and keeps it as a net output",
                               path=("top", index))


@register_rule
class LegacyUpgrade(Rule):
    code = "G009"
    name = "legacy-upgrade"
    severity = ERROR
    summary = "what Caffe's upgrade of a V0/V1 net or of input: fields rejects or drops"
    why = ("Caffe upgrades old nets when it loads them: V0 layers to V1 (folding \"padding\" "
           "layers into the next convolution or pooling), V1 to V2, input: fields to an Input "
           "layer. Some old files cannot be upgraded (a file mixing layer and layers blocks, a V0 "
           "type Caffe never knew) and Caffe stops; in others the upgrade silently drops "
           "something (a padding layer that feeds no convolution, extra input_dim values). "
           "`prototxt upgrade` rewrites the file as Caffe reads it.")
    example = """\
layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "padded" }"""
    use_instead = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        from ...net.upgrade import issue_diagnostic

        net = context.net
        if net.document is None:
            return
        failed = set()
        for issue in net.upgrade_errors:
            failed.add((issue.list_name, issue.entry))
            yield context.finding_at(self, issue_diagnostic(net.document, issue, ERROR))
        for issue in net.upgrade_notes:
            # Info notes restate what the upgrade does; notes on an entry Caffe already fails
            # on (say, fields of an unknown V0 type) would only repeat that failure.
            if issue.severity == WARNING and (issue.list_name, issue.entry) not in failed:
                yield context.finding_at(self, issue_diagnostic(net.document, issue, WARNING))
