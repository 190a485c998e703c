"""Deploy-net rules (D): training-only layers left in a net meant for inference.

A deploy net is one whose inputs come from Input layers (or the legacy ``input:`` fields)
rather than from data layers, or whose file name says deploy.
"""

from __future__ import annotations

from typing import Iterator

from ...errors import WARNING
from ...net.model import DEPLOY_INPUT_TYPES
from ..context import LintContext
from ..rule import Finding, Rule, register_rule


def _deploy_layers(context: LintContext) -> list:
    if not context.net.is_deploy:
        return []
    view = context.test or (context.views[0] if context.views else None)
    return list(view.layers) if view is not None else []


@register_rule
class LossInDeploy(Rule):
    code = "D001"
    name = "loss-in-deploy"
    severity = WARNING
    summary = "a loss layer left in a deploy net"
    why = ("A deploy net takes images, not labels: a loss layer there needs a label blob that "
           "does not exist (Caffe aborts on the unknown bottom) or, fed something else, wastes "
           "time and hides the probabilities. Replace SoftmaxWithLoss by Softmax.")
    example = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 10 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "loss" }"""
    use_instead = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 10 } } }
layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in _deploy_layers(context):
            if layer.spec is not None and layer.spec.is_loss:
                hint = " (use Softmax)" if layer.type == "SoftmaxWithLoss" else ""
                yield self.finding(context, layer,
                                   f"loss layer '{layer.name}' ({layer.type}) in a deploy net"
                                   f"{hint}", path=("type",))


@register_rule
class AccuracyInDeploy(Rule):
    code = "D002"
    name = "accuracy-in-deploy"
    severity = WARNING
    summary = "an Accuracy layer left in a deploy net"
    why = ("Accuracy compares predictions with labels; a deploy net has no labels, so the layer "
           "either breaks the net (unknown bottom) or measures nothing.")
    example = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 10 } } }
layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc" }"""
    use_instead = """\
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 10 } } }
layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in _deploy_layers(context):
            if layer.type == "Accuracy":
                yield self.finding(context, layer,
                                   f"Accuracy layer '{layer.name}' in a deploy net",
                                   path=("type",))


@register_rule
class DataLayerInDeploy(Rule):
    code = "D003"
    name = "data-layer-in-deploy"
    severity = WARNING
    summary = "a training data layer (Data, ImageData, HDF5Data, WindowData) in a deploy net"
    why = ("A deploy net receives its input from the caller through Input layers; a data layer "
           "there reads a training database that does not exist where the model is deployed, "
           "and Caffe fails to open it at start-up.")
    example = """\
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "train" type: "Data" top: "train_data" data_param { source: "lmdb" batch_size: 4 } }"""
    use_instead = """\
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }"""

    def check(self, context: LintContext) -> Iterator[Finding]:
        for layer in _deploy_layers(context):
            spec = layer.spec
            if spec is not None and spec.is_data and layer.type not in DEPLOY_INPUT_TYPES:
                yield self.finding(context, layer,
                                   f"data layer '{layer.name}' ({layer.type}) in a deploy net",
                                   path=("type",))
