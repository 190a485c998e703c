"""Loss layers and Accuracy.

Caffe's LossLayer takes the prediction and the target, gives a scalar (0-D) top carrying loss
weight 1 by default, and creates that top itself when the file names none. The first axes of
prediction and target must agree.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ..schema import caffe_pb2
from ._np import np
from ._util import axis_of, bottom, count, differ, fmt, has, legacy_4d, top_count
from .activation import caffe_softmax, canonical, scalar
from .base import IN_PLACE_WRONG, LayerSpec, Problem, Shape, ShapeContext, TorchCode, \
    TorchContext, TorchUnsupported, fail, register, torch_axis, torch_helper, torch_number

_Norm = caffe_pb2.LossParameter
_HingeNorm = caffe_pb2.HingeLossParameter
#: Caffe's kLOG_THRESHOLD (loss_layer.hpp): the floor of probabilities before the log.
LOG_THRESHOLD = 1e-20
#: FLT_MIN, SoftmaxWithLoss's floor (for double nets too: Dtype(FLT_MIN)).
FLT_MIN = 1.17549435e-38


def normalization_mode(layer: Any, default: int = _Norm.VALID) -> int:
    """loss_param.normalization when set; else the deprecated ``normalize`` (true: VALID,
    false: BATCH_SIZE) when set; else ``default`` (VALID, the schema's default, except for
    SigmoidCrossEntropyLoss, which uses BATCH_SIZE)."""
    p = layer.loss_param
    if has(p, "normalization"):
        return p.normalization
    if has(p, "normalize"):
        return _Norm.VALID if p.normalize else _Norm.BATCH_SIZE
    return default


def normalizer(mode: int, outer: int, inner: int, valid: int) -> float:
    """LossLayer's get_normalizer: FULL outer * inner, VALID the labels not ignored, BATCH_SIZE
    outer, NONE 1; never below 1."""
    if mode == _Norm.FULL:
        value = outer * inner
    elif mode == _Norm.VALID:
        value = valid
    elif mode == _Norm.BATCH_SIZE:
        value = outer
    elif mode == _Norm.NONE:
        value = 1
    else:
        raise ValueError(f"unknown normalization mode {mode}")
    return max(1.0, float(value))


def int_labels(labels: Any) -> Any:
    """static_cast<int> of float labels: truncation toward zero."""
    with np.errstate(invalid="ignore"):
        return np.trunc(labels).astype(np.int64)


def _ignore_label(message: Any) -> Optional[int]:
    return message.ignore_label if has(message, "ignore_label") else None


def _check_labels(labels: Any, valid: Any, classes: int) -> None:
    bad = valid & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise ValueError(f"label {int(labels[bad][0])} is outside the {classes} classes "
                         f"(0 to {classes - 1})")


def _class_view(x: Any, labels: Any, axis: int) -> tuple:
    """(x as (outer, classes, inner), labels as (outer, inner) ints) for a class axis."""
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    classes = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    if labels.size != outer * inner:
        raise ValueError(f"{labels.size} labels for {outer * inner} predictions (shape "
                         f"{x.shape}, class axis {axis})")
    return x.reshape(outer, classes, inner), int_labels(labels).reshape(outer, inner)


def _gather(values: Any, labels: Any) -> Any:
    """values[i, labels[i, j], j] for a (outer, classes, inner) array (labels clipped into
    range: callers mask the invalid ones)."""
    safe = np.clip(labels, 0, values.shape[1] - 1)
    return np.take_along_axis(values, safe[:, None, :], axis=1)[:, 0, :]


def loss_top(value: Any, dtype: Any) -> Any:
    """A loss as Caffe's 0-D top."""
    return np.asarray(value, dtype=dtype).reshape(())


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """ContrastiveLossLayer: d^2 = |a - b|^2 per pair; similar pairs (int(y) != 0) add
        d^2, dissimilar ones max(margin - d, 0)^2 (legacy_version: max(margin - d^2, 0));
        the sum over N pairs / 2N."""
        a, b, similar = bottoms
        p = layer.contrastive_loss_param
        dtype = a.dtype
        num = a.shape[0]
        diff = (a - b).reshape(num, -1)
        distance_sq = np.einsum("nc,nc->n", diff, diff)
        margin = scalar(p.margin, dtype)
        same = int_labels(similar.reshape(-1)[:num]) != 0  # Caffe reads value i
        if p.legacy_version:
            apart = np.maximum(margin - distance_sq, 0)
        else:
            apart = np.square(np.maximum(margin - np.sqrt(distance_sq), 0))
        total = np.sum(np.where(same, distance_sq, apart), dtype=dtype)
        return [loss_top(total / scalar(num, dtype) / scalar(2, dtype), dtype)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _contrastive_torch(layer)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """sum((a - b)^2) / N / 2."""
        a, b = bottoms
        if a.size != b.size:
            raise ValueError(f"the inputs {a.shape} and {b.shape} hold different numbers of "
                             f"values")
        diff = (a.reshape(-1) - b.reshape(-1))
        dot = np.dot(diff, diff)
        return [loss_top(dot / scalar(a.shape[0], a.dtype) / scalar(2, a.dtype), a.dtype)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _torch_loss("caffe_euclidean_loss", 2)


@register
class HingeLossSpec(LossSpec):
    """One-vs-all hinge loss (L1 or L2) over N x K scores and N integer labels."""

    type = "HingeLoss"
    param_field = "hinge_loss_param"

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """HingeLossLayer: t = x with t[n, label_n] negated; t = max(0, 1 + t); L1: sum |t| / N,
        L2: sum t^2 / N."""
        x, labels = bottoms
        dtype = x.dtype
        num = x.shape[0]
        margins = x.reshape(num, -1).copy()
        label = int_labels(labels.reshape(-1))
        if label.size < num:
            raise ValueError(f"{label.size} labels for {num} samples")
        label = label[:num]
        _check_labels(label, np.ones(num, bool), margins.shape[1])
        rows = np.arange(num)
        margins[rows, label] *= -1
        margins += 1
        np.maximum(margins, 0, out=margins)
        if layer.hinge_loss_param.norm == _HingeNorm.L2:
            total = np.einsum("nk,nk->", margins, margins)
        else:
            total = np.sum(np.abs(margins), dtype=dtype)
        return [loss_top(total / scalar(num, dtype), dtype)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _hinge_torch(layer)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """Final Caffe's InfogainLossLayer: p = softmax(x) along infogain_loss_param.axis;
        loss = -sum over labelled positions of sum_l H[label, l] log(max(p_l, 1e-20)),
        normalised by loss_param.normalization (default VALID; ``normalize`` is rejected).
        The matrix must come as the third bottom here (reading ``source`` is not done)."""
        if has(layer.loss_param, "normalize"):
            raise ValueError("loss_param.normalize is deprecated and InfogainLoss rejects it; "
                             "use loss_param.normalization")
        if len(bottoms) < 3:
            source = layer.infogain_loss_param.source
            raise ValueError("InfogainLoss needs the infogain matrix H as its third bottom; "
                             "reading it from infogain_loss_param.source"
                             f"{f' ({source!r})' if source else ''} is not supported -- "
                             "feed the matrix as an input blob")
        x, labels, matrix = bottoms
        dtype = x.dtype
        axis = canonical(layer.infogain_loss_param.axis, x.ndim)
        prob = caffe_softmax(x, axis)
        values, label = _class_view(prob, labels, axis)
        classes = values.shape[1]
        if matrix.size != classes * classes:
            raise ValueError(f"the infogain matrix holds {matrix.size} values; {classes} "
                             f"classes need {classes} x {classes}")
        weights = np.asarray(matrix, dtype=dtype).reshape(classes, classes)
        ignore = _ignore_label(layer.loss_param)
        valid = np.ones(label.shape, bool) if ignore is None else label != ignore
        _check_labels(label, valid, classes)
        logs = np.log(np.maximum(values, scalar(LOG_THRESHOLD, dtype)))  # (outer, K, inner)
        rows = weights[np.clip(label, 0, classes - 1)]  # (outer, inner, K)
        per_position = np.einsum("oik,oki->oi", rows, logs)
        total = -np.sum(per_position[valid], dtype=dtype)
        norm = normalizer(layer.loss_param.normalization, label.shape[0], label.shape[1],
                          int(valid.sum()))
        tops = [loss_top(total / scalar(norm, dtype), dtype)]
        if len(layer.top) > 1:
            tops.append(prob)
        return tops

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _infogain_torch(layer, context)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """-sum_n log(max(p[n, label_n], 1e-20)) / N over the N x (count / N) probabilities."""
        x, labels = bottoms
        dtype = x.dtype
        num = x.shape[0]
        probs = x.reshape(num, -1)
        label = int_labels(labels.reshape(-1))[:num]
        _check_labels(label, np.ones(num, bool), probs.shape[1])
        chosen = probs[np.arange(num), label]
        total = -np.sum(np.log(np.maximum(chosen, scalar(LOG_THRESHOLD, dtype))), dtype=dtype)
        return [loss_top(total / scalar(num, dtype), dtype)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _torch_loss("caffe_multinomial_logistic_loss", 2)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """Final Caffe: loss = -sum over targets not ignored (int(t) != ignore_label) of
        x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0])), normalised by
        loss_param.normalization (BATCH_SIZE when neither it nor ``normalize`` is set), with
        outer = N and inner = count / N."""
        x, target = bottoms
        if x.size != target.size:
            raise ValueError(f"the scores {x.shape} and targets {target.shape} hold different "
                             f"numbers of values")
        dtype = x.dtype
        scores = x.reshape(-1)
        targets = np.asarray(target, dtype=dtype).reshape(-1)
        positive = scores >= 0
        terms = scores * (targets - positive) - np.log1p(np.exp(-np.abs(scores)))
        ignore = _ignore_label(layer.loss_param)
        if ignore is not None:
            valid = int_labels(targets) != ignore
            terms = terms[valid]
        total = -np.sum(terms, dtype=dtype)
        outer = x.shape[0]
        inner = x.size // outer if outer else 0
        mode = normalization_mode(layer, default=_Norm.BATCH_SIZE)
        norm = normalizer(mode, outer, inner, terms.size)
        return [loss_top(total / scalar(norm, dtype), dtype)]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _sigmoid_ce_torch(layer)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """p = softmax(x) along softmax_param.axis; loss = -sum over labels not ignored of
        log(max(p[label], FLT_MIN)), normalised by loss_param.normalization (default VALID;
        the legacy ``normalize`` when normalization is unset). The raw loss (the net applies
        loss_weight); the optional second top is p."""
        x, labels = bottoms
        dtype = x.dtype
        axis = canonical(layer.softmax_param.axis, x.ndim)
        prob = caffe_softmax(x, axis)
        values, label = _class_view(prob, labels, axis)
        ignore = _ignore_label(layer.loss_param)
        valid = np.ones(label.shape, bool) if ignore is None else label != ignore
        _check_labels(label, valid, values.shape[1])
        chosen = _gather(values, label)[valid]
        total = -np.sum(np.log(np.maximum(chosen, scalar(FLT_MIN, dtype))), dtype=dtype)
        norm = normalizer(normalization_mode(layer), label.shape[0], label.shape[1],
                          chosen.size)
        tops = [loss_top(total / scalar(norm, dtype), dtype)]
        if len(layer.top) > 1:
            tops.append(prob)
        return tops

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _softmax_loss_torch(layer, context)


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """AccuracyLayer: a labelled position counts as right when fewer than top_k classes
        score >= the true class's score besides the true class itself (ties count against);
        labels equal to accuracy_param.ignore_label are skipped. Top 0: right / counted (0
        when none counted); top 1: per class right / labelled (0 for absent classes)."""
        x, labels = bottoms
        p = layer.accuracy_param
        dtype = x.dtype
        axis = canonical(p.axis, x.ndim)
        values, label = _class_view(x, labels, axis)
        classes = values.shape[1]
        ignore = _ignore_label(p)
        valid = np.ones(label.shape, bool) if ignore is None else label != ignore
        _check_labels(label, valid, classes)
        true_score = _gather(values, label)  # (outer, inner)
        better = np.sum(values >= true_score[:, None, :], axis=1) - 1
        right = valid & (better < int(p.top_k))
        counted = int(valid.sum())
        accuracy = scalar(0, dtype) if counted == 0 else \
            scalar(int(right.sum()), dtype) / scalar(counted, dtype)
        tops = [loss_top(accuracy, dtype)]
        if len(layer.top) > 1:
            totals = np.bincount(label[valid], minlength=classes)[:classes]
            hits = np.bincount(label[right], minlength=classes)[:classes]
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class = np.where(totals == 0, 0, hits.astype(dtype) / totals.astype(dtype))
            tops.append(per_class.astype(dtype))
        return tops

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return _accuracy_torch(layer, context)


# -- PyTorch ---------------------------------------------------------------------------------------
# Each loss is one small helper pasted into the emitted module; the spec's ``torch`` writes the
# call with the parameters that differ from the helper's defaults. Every helper returns the loss
# itself, as ``forward`` does (the net applies loss_weight only to the objective).

torch_helper("caffe_positions", '''
def caffe_positions(scores, labels, axis, ignore_label=None):
    """Caffe's view of a prediction whose classes lie along ``axis``: one row of classes per
    position (each index of the other axes, in order), the labels (one per position) as
    integers (Caffe's static_cast<int>: truncation toward zero), and which positions count
    (label != ignore_label). Ignored positions get label 0, so they can index safely."""
    scores = scores.movedim(axis, -1)
    label = labels.reshape(-1).long()
    if ignore_label is None:
        valid = torch.ones_like(label, dtype=torch.bool)
    else:
        valid = label != ignore_label
    return scores.reshape(-1, scores.shape[-1]), torch.where(valid, label, 0), valid
''')

torch_helper("caffe_loss_normalizer", '''
def caffe_loss_normalizer(normalization, valid, batch_size):
    """What Caffe divides a summed loss by (LossLayer::GetNormalizer), never less than 1:
    "valid" the positions whose label is not ignored (``valid``: a bool per position), "full"
    all positions, "batch_size" the product of the axes before the class axis, "none" 1."""
    if normalization == "valid":
        return valid.sum().clamp(min=1)
    if normalization == "full":
        return max(valid.numel(), 1)
    if normalization == "batch_size":
        return max(batch_size, 1)
    return 1
''')

torch_helper("caffe_softmax_loss", '''
def caffe_softmax_loss(scores, labels, axis=1, ignore_label=None, normalization="valid"):
    """Caffe's SoftmaxWithLoss: p = softmax(scores) along ``axis`` (the classes), then
    -sum log(max(p[label], FLT_MIN)) over the positions whose integer label is not
    ``ignore_label``, divided by caffe_loss_normalizer (Caffe's default "valid": the
    positions counted; the legacy ``normalize: false`` means "batch_size")."""
    prob, label, valid = caffe_positions(torch.softmax(scores, axis), labels, axis,
                                         ignore_label)
    chosen = prob.gather(1, label[:, None]).squeeze(1)
    total = -torch.where(valid, torch.log(chosen.clamp(min=1.17549435e-38)), 0).sum()
    return total / caffe_loss_normalizer(normalization, valid, scores.shape[:axis].numel())
''', requires=("caffe_positions", "caffe_loss_normalizer"))

torch_helper("caffe_infogain_loss", '''
def caffe_infogain_loss(scores, labels, infogain, axis=1, ignore_label=None,
                        normalization="valid"):
    """Caffe's InfogainLoss: p = softmax(scores) along ``axis`` (K classes); at each position
    whose integer label is not ``ignore_label``, -sum_k H[label, k] log(max(p_k, 1e-20)) with
    H = ``infogain`` (K x K); the sum divided by caffe_loss_normalizer (default "valid")."""
    prob, label, valid = caffe_positions(torch.softmax(scores, axis), labels, axis,
                                         ignore_label)
    classes = prob.shape[1]
    weights = infogain.reshape(classes, classes)[label]
    per_position = (weights * torch.log(prob.clamp(min=1e-20))).sum(1)
    total = -torch.where(valid, per_position, 0).sum()
    return total / caffe_loss_normalizer(normalization, valid, scores.shape[:axis].numel())
''', requires=("caffe_positions", "caffe_loss_normalizer"))

torch_helper("caffe_sigmoid_cross_entropy_loss", '''
def caffe_sigmoid_cross_entropy_loss(scores, targets, ignore_label=None,
                                     normalization="batch_size"):
    """Caffe's SigmoidCrossEntropyLoss: -sum t log(sigmoid(x)) + (1 - t) log(1 - sigmoid(x)),
    computed stably as x (t - [x >= 0]) - log(1 + exp(-|x|)), over the targets whose integer
    value is not ``ignore_label``; divided by caffe_loss_normalizer (default here
    "batch_size": the first axis; "full" counts every value)."""
    x = scores.reshape(-1)
    t = targets.reshape(-1)
    terms = x * (t - (x >= 0).to(x.dtype)) - torch.log1p(torch.exp(-x.abs()))
    if ignore_label is None:
        valid = torch.ones_like(t, dtype=torch.bool)
    else:
        valid = t.long() != ignore_label
    total = -torch.where(valid, terms, 0).sum()
    return total / caffe_loss_normalizer(normalization, valid, scores.shape[0])
''', requires=("caffe_loss_normalizer",))

torch_helper("caffe_euclidean_loss", '''
def caffe_euclidean_loss(a, b):
    """Caffe's EuclideanLoss: sum((a - b)^2) / N / 2, N the first axis (a and b may differ in
    shape but hold the same number of values)."""
    diff = a.reshape(-1) - b.reshape(-1)
    return diff.dot(diff) / a.shape[0] / 2
''')

torch_helper("caffe_hinge_loss", '''
def caffe_hinge_loss(scores, labels, norm="L1"):
    """Caffe's HingeLoss (one vs. all) over N samples of K scores (the axes after the first),
    one integer label per sample: t = max(0, 1 - x) for the true class, max(0, 1 + x) for the
    others; sum(t) / N ("L1") or sum(t^2) / N ("L2")."""
    num = scores.shape[0]
    x = scores.reshape(num, -1)
    label = labels.reshape(-1)[:num].long()
    is_label = label[:, None] == torch.arange(x.shape[1], device=x.device)
    margins = torch.clamp(1 + torch.where(is_label, -x, x), min=0)
    total = margins.sum() if norm == "L1" else (margins * margins).sum()
    return total / num
''')

torch_helper("caffe_multinomial_logistic_loss", '''
def caffe_multinomial_logistic_loss(probs, labels):
    """Caffe's MultinomialLogisticLoss: -sum_n log(max(p[n, label_n], 1e-20)) / N over N
    samples of class probabilities (the axes after the first), one integer label each."""
    num = probs.shape[0]
    label = labels.reshape(-1)[:num].long()
    chosen = probs.reshape(num, -1).gather(1, label[:, None])
    return -torch.log(chosen.clamp(min=1e-20)).sum() / num
''')

torch_helper("caffe_contrastive_loss", '''
def caffe_contrastive_loss(a, b, similar, margin=1.0, legacy_version=False):
    """Caffe's ContrastiveLoss over N pairs (a_n, b_n): with d^2 = |a_n - b_n|^2, a similar
    pair (integer similar_n != 0) adds d^2, a dissimilar one max(margin - d, 0)^2
    (legacy_version: max(margin - d^2, 0)); the sum / 2N."""
    num = a.shape[0]
    diff = a.reshape(num, -1) - b.reshape(num, -1)
    dist_sq = (diff * diff).sum(1)
    same = similar.reshape(-1)[:num].long() != 0
    if legacy_version:
        apart = torch.clamp(margin - dist_sq, min=0)
    else:
        apart = torch.clamp(margin - dist_sq.sqrt(), min=0) ** 2
    return torch.where(same, dist_sq, apart).sum() / num / 2
''')

torch_helper("caffe_accuracy", '''
def caffe_accuracy(scores, labels, top_k=1, axis=1, ignore_label=None, per_class=False):
    """Caffe's Accuracy: at each position (index outside the class ``axis``) whose integer
    label is not ``ignore_label``, the prediction is right when fewer than ``top_k`` other
    classes score at least as high as the true class (ties count against it). Returns right /
    counted (0 when nothing counts); with ``per_class`` also each class's right / labelled
    (0 for a class never labelled)."""
    x, label, valid = caffe_positions(scores, labels, axis, ignore_label)
    true_score = x.gather(1, label[:, None])
    rivals = (x >= true_score).sum(1) - 1
    right = valid & (rivals < top_k)
    accuracy = right.sum().to(x.dtype) / valid.sum().clamp(min=1)
    if not per_class:
        return accuracy
    is_class = label[:, None] == torch.arange(x.shape[1], device=x.device)
    labelled = (is_class & valid[:, None]).sum(0)
    hits = (is_class & right[:, None]).sum(0)
    return accuracy, hits.to(x.dtype) / labelled.clamp(min=1)
''', requires=("caffe_positions",))

_NORMALIZATION_NAMES = {_Norm.FULL: "full", _Norm.VALID: "valid", _Norm.BATCH_SIZE: "batch_size",
                        _Norm.NONE: "none"}


def _torch_axis(axis: int, context: TorchContext, what: str) -> int:
    """A class axis as the non-negative index the helpers take."""
    return torch_axis(axis, context.bottom_shapes[0] if context.bottom_shapes else None, what)


def _torch_call(helper: str, bottoms: int, options: list) -> str:
    """``helper({b0}, ..., option=value, ...)`` keeping only options given (not None)."""
    args = [f"{{b{i}}}" for i in range(bottoms)]
    args += [f"{name}={value}" for name, value in options if value is not None]
    return f"{helper}({', '.join(args)})"


def _torch_normalization(mode: int, default: int) -> Optional[str]:
    return None if mode == default else f'"{_NORMALIZATION_NAMES[mode]}"'


def _torch_ignore(message: Any) -> Optional[str]:
    ignore = _ignore_label(message)
    return None if ignore is None else str(int(ignore))


def _torch_loss(helper: str, bottoms: int, options: list = ()) -> TorchCode:
    return TorchCode(_torch_call(helper, bottoms, list(options)), helpers=(helper,))


def _torch_with_prob(call: str, helper: str, layer: Any, axis: int) -> TorchCode:
    """The loss, and with a second top the softmax probabilities too (one tuple when the loss
    top overwrites a bottom the probabilities read)."""
    if len(layer.top) < 2:
        return TorchCode(call, helpers=(helper,))
    prob = f"torch.softmax({{b0}}, {axis})"
    if layer.top[0] in layer.bottom:
        return TorchCode(f"({call}, {prob})", helpers=(helper,), tuple_tops=True)
    return TorchCode([call, prob], helpers=(helper,))


def _contrastive_torch(layer: Any) -> TorchCode:
    p = layer.contrastive_loss_param
    return _torch_loss("caffe_contrastive_loss", 3, [
        ("margin", torch_number(p.margin) if p.margin != 1 else None),
        ("legacy_version", "True" if p.legacy_version else None)])


def _hinge_torch(layer: Any) -> TorchCode:
    l2 = layer.hinge_loss_param.norm == _HingeNorm.L2
    return _torch_loss("caffe_hinge_loss", 2, [("norm", '"L2"' if l2 else None)])


def _infogain_torch(layer: Any, context: TorchContext) -> TorchCode:
    if has(layer.loss_param, "normalize"):
        raise TorchUnsupported("loss_param.normalize is deprecated and InfogainLoss rejects it; "
                               "use loss_param.normalization")
    if len(layer.bottom) < 3:
        raise TorchUnsupported("the infogain matrix comes from infogain_loss_param.source, a "
                               "file the export does not read; feed it as a third bottom")
    axis = _torch_axis(layer.infogain_loss_param.axis, context, "infogain_loss_param.axis")
    call = _torch_call("caffe_infogain_loss", 3, [
        ("axis", str(axis) if axis != 1 else None),
        ("ignore_label", _torch_ignore(layer.loss_param)),
        ("normalization", _torch_normalization(layer.loss_param.normalization, _Norm.VALID))])
    return _torch_with_prob(call, "caffe_infogain_loss", layer, axis)


def _sigmoid_ce_torch(layer: Any) -> TorchCode:
    mode = normalization_mode(layer, default=_Norm.BATCH_SIZE)
    return _torch_loss("caffe_sigmoid_cross_entropy_loss", 2, [
        ("ignore_label", _torch_ignore(layer.loss_param)),
        ("normalization", _torch_normalization(mode, _Norm.BATCH_SIZE))])


def _softmax_loss_torch(layer: Any, context: TorchContext) -> TorchCode:
    axis = _torch_axis(layer.softmax_param.axis, context, "softmax_param.axis")
    call = _torch_call("caffe_softmax_loss", 2, [
        ("axis", str(axis) if axis != 1 else None),
        ("ignore_label", _torch_ignore(layer.loss_param)),
        ("normalization", _torch_normalization(normalization_mode(layer), _Norm.VALID))])
    return _torch_with_prob(call, "caffe_softmax_loss", layer, axis)


def _accuracy_torch(layer: Any, context: TorchContext) -> TorchCode:
    p = layer.accuracy_param
    axis = _torch_axis(p.axis, context, "accuracy_param.axis")
    per_class = len(layer.top) > 1
    call = _torch_call("caffe_accuracy", 2, [
        ("top_k", str(p.top_k) if p.top_k != 1 else None),
        ("axis", str(axis) if axis != 1 else None),
        ("ignore_label", _torch_ignore(p)),
        ("per_class", "True" if per_class else None)])
    return TorchCode(call, helpers=("caffe_accuracy",), tuple_tops=per_class)
