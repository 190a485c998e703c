"""Loss layers and Accuracy.

Caffe's LossLayer takes the prediction and the target, gives a scalar (0-D) top carrying loss
weight 1 by default, and creates that top itself when the file names none. The first axes of
prediction and target must agree.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import axis_of, bottom, count, differ, fmt, has, legacy_4d, top_count
from .base import IN_PLACE_WRONG, LayerSpec, Problem, Shape, ShapeContext, fail, register


def _label_axis(x: Shape, labels: Shape, axis: int, field: tuple) -> Optional[int]:
    """Checks one label per prediction position outside the class axis; returns that axis."""
    if x is None:
        return None
    axis = axis_of(axis, x, field)
    outer, inner = count(x, 0, axis), count(x, axis + 1)
    expected = None if outer is None or inner is None else outer * inner
    given = None if labels is None else count(labels)
    if differ(expected, given):
        fail("L100", f"the labels {fmt(labels)} hold {given} values but the predictions "
                     f"{fmt(x)} with class axis {axis} need one label per position outside that "
                     f"axis: {expected}", ("bottom", 1))
    return axis


class LossSpec(LayerSpec):
    """Caffe's LossLayer: (prediction, target) -> scalar loss."""

    family = "loss"
    min_bottoms = max_bottoms = 2
    min_tops = max_tops = 1
    auto_tops = True
    is_loss = True
    in_place = IN_PLACE_WRONG

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        """LossLayer::Reshape: prediction and target agree on their first axis."""
        x, y = bottom(bottoms, 0), bottom(bottoms, 1)
        for index, shape in ((0, x), (1, y)):
            if shape is not None and len(shape) == 0:
                fail("L100", f"bottom {index} is a scalar; a loss needs a first (batch) axis",
                     ("bottom", index))
        if x is not None and y is not None and differ(x[0], y[0]):
            fail("L100", f"the prediction {fmt(x)} and the target {fmt(y)} differ in their first "
                         f"(batch) dimension", ("bottom", 1))

    def extra_tops(self, layer: Any, bottoms: list) -> list:
        """Shapes of the optional tops after the loss."""
        return []

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        self.check_inputs(layer, bottoms)
        return ([()] + self.extra_tops(layer, bottoms))[:top_count(self, layer)]


@register
class ContrastiveLossSpec(LossSpec):
    """Siamese loss over (a, b, similar): a and b are (N, C[, 1, 1]), similar is (N[, 1, 1, 1])."""

    type = "ContrastiveLoss"
    param_field = "contrastive_loss_param"
    min_bottoms = max_bottoms = 3

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        a, b, similar = (bottom(bottoms, i) for i in range(3))
        legacy = [None if s is None else legacy_4d(s, "L100", "ContrastiveLoss", ("bottom", i))
                  for i, s in enumerate((a, b, similar))]
        if legacy[0] is not None and legacy[1] is not None and differ(legacy[0][1], legacy[1][1]):
            fail("L100", f"the two feature inputs {fmt(a)} and {fmt(b)} differ in channels",
                 ("bottom", 1))
        for index, shape in enumerate(legacy):
            if shape is None:
                continue
            ones = (1, 2, 3) if index == 2 else (2, 3)
            if any(differ(shape[i], 1) for i in ones):
                what = "the similarity input must be (N, 1, 1, 1)" if index == 2 else \
                    "the feature inputs must be (N, C, 1, 1)"
                fail("L100", f"{what}; bottom {index} is {fmt(bottoms[index])}",
                     ("bottom", index))
        super().check_inputs(layer, bottoms)


@register
class EuclideanLossSpec(LossSpec):
    """sum((a - b)^2) / 2N; a and b hold the same number of values per sample."""

    type = "EuclideanLoss"

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        super().check_inputs(layer, bottoms)
        a, b = bottom(bottoms, 0), bottom(bottoms, 1)
        if a is not None and b is not None and differ(count(a, 1), count(b, 1)):
            fail("L100", f"the inputs {fmt(a)} and {fmt(b)} must have the same number of values "
                         f"per sample", ("bottom", 1))


@register
class HingeLossSpec(LossSpec):
    """One-vs-all hinge loss (L1 or L2) over N x K scores and N integer labels."""

    type = "HingeLoss"
    param_field = "hinge_loss_param"


@register
class InfogainLossSpec(LossSpec):
    """Softmax then a multinomial logistic loss weighted by the infogain matrix H (K x K),
    read from infogain_loss_param.source or given as a third bottom. Optional 2nd top: the
    softmax probabilities."""

    type = "InfogainLoss"
    param_field = "infogain_loss_param"
    max_bottoms = 3
    max_tops = 2

    def check(self, layer: Any) -> Iterator[Problem]:
        if has(layer.loss_param, "normalize"):
            yield Problem("L100", "loss_param.normalize is deprecated and InfogainLoss rejects "
                                  "it; use loss_param.normalization", ("loss_param", "normalize"))
        if len(layer.bottom) < 3 and not has(layer.infogain_loss_param, "source"):
            yield Problem("L100", "no infogain matrix: give infogain_loss_param.source or the "
                                  "matrix as a third bottom", ("infogain_loss_param", "source"))

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        super().check_inputs(layer, bottoms)
        x = bottom(bottoms, 0)
        axis = _label_axis(x, bottom(bottoms, 1), layer.infogain_loss_param.axis,
                           ("infogain_loss_param", "axis"))
        matrix = bottom(bottoms, 2)
        if axis is not None and matrix is not None and x[axis] is not None:
            if differ(count(matrix), x[axis] * x[axis]):
                fail("L100", f"the infogain matrix {fmt(matrix)} must hold {x[axis]} x {x[axis]} "
                             f"values for {x[axis]} classes", ("bottom", 2))

    def extra_tops(self, layer: Any, bottoms: list) -> list:
        return [bottom(bottoms, 0)]


@register
class MultinomialLogisticLossSpec(LossSpec):
    """-log p[label] averaged over N; the labels are (N[, 1, 1, 1])."""

    type = "MultinomialLogisticLoss"

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        super().check_inputs(layer, bottoms)
        labels = bottom(bottoms, 1)
        if labels is not None:
            legacy = legacy_4d(labels, "L100", "MultinomialLogisticLoss", ("bottom", 1))
            if any(differ(d, 1) for d in legacy[1:]):
                fail("L100", f"the labels must be (N, 1, 1, 1); got {fmt(labels)}", ("bottom", 1))


@register
class SigmoidCrossEntropyLossSpec(LossSpec):
    """Cross-entropy of sigmoid(x) against targets in [0, 1] of the same count."""

    type = "SigmoidCrossEntropyLoss"

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        super().check_inputs(layer, bottoms)
        x, t = bottom(bottoms, 0), bottom(bottoms, 1)
        if x is not None and t is not None and differ(count(x), count(t)):
            fail("L100", f"the scores {fmt(x)} and the targets {fmt(t)} must hold the same "
                         f"number of values", ("bottom", 1))


@register
class SoftmaxWithLossSpec(LossSpec):
    """Softmax along softmax_param.axis then -log p[label]; one integer label per position
    outside that axis. Optional 2nd top: the probabilities (the prediction's shape)."""

    type = "SoftmaxWithLoss"
    param_field = "softmax_param"
    max_tops = 2

    def check_inputs(self, layer: Any, bottoms: list) -> None:
        super().check_inputs(layer, bottoms)
        _label_axis(bottom(bottoms, 0), bottom(bottoms, 1), layer.softmax_param.axis,
                    ("softmax_param", "axis"))

    def extra_tops(self, layer: Any, bottoms: list) -> list:
        return [bottom(bottoms, 0)]


@register
class AccuracySpec(LayerSpec):
    """Top-k accuracy of predictions against integer labels: a scalar top, and optionally the
    per-class accuracies (C,). Not a loss: it carries no loss weight."""

    type = "Accuracy"
    family = "loss"
    param_field = "accuracy_param"
    min_bottoms = max_bottoms = 2
    min_tops = 1
    max_tops = 2
    in_place = IN_PLACE_WRONG

    def check(self, layer: Any) -> Iterator[Problem]:
        if layer.accuracy_param.top_k == 0:
            yield Problem("L100", "top_k 0 never counts a prediction as right; the accuracy is "
                                  "always 0", ("accuracy_param", "top_k"), "warning")

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        x, labels = bottom(bottoms, 0), bottom(bottoms, 1)
        p = layer.accuracy_param
        if x is not None and labels is not None:
            n_x, n_labels = count(x), count(labels)
            if n_x is not None and n_labels and p.top_k > n_x // n_labels:
                fail("L100", f"top_k {p.top_k} is more than the {n_x // n_labels} classes of "
                             f"the predictions {fmt(x)}", ("accuracy_param", "top_k"))
        axis = _label_axis(x, labels, p.axis, ("accuracy_param", "axis"))
        per_class = (None if axis is None else x[axis],)
        return [(), per_class][:top_count(self, layer)]
