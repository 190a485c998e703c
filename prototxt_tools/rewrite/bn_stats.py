"""Recompute BatchNorm statistics over data, with every learned weight frozen.

The TRAIN-phase net runs forward over batches from its data layer (or another source): every
BatchNorm normalises with the batch's statistics, as in training, and the statistics are
collected. Only the layers the BatchNorm layers depend on run (no loss, no labels needed).

- ``exact``: per BatchNorm, the average over all batches of the batch mean and of the
  bias-corrected batch variance (m / (m - 1) times the biased one, m = N x spatial; Caffe's own
  correction), stored with scale factor 1. Independent of the order of the batches and of the
  statistics the weights held before.
- ``moving``: Caffe's moving averages from a fresh start (s = lambda s + 1; mean blob = batch
  mean + lambda mean blob; variance blob = corrected variance + lambda variance blob), with the
  layer's moving_average_fraction or ``decay``, stored unnormalised as Caffe stores them.

A BatchNorm frozen with ``use_global_stats: true`` is measured with batch statistics too (its
stored statistics are what is being replaced). Memory stays at one batch's activations.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..errors import PrototxtError
from ..layers.base import TRAIN
from ..net.model import Layer, Net
from ..syntax.parser import parse
from ..syntax.tree import Document

MODES = ("exact", "moving")


@dataclass
class StatsResult:
    weights: list  # (name, type, [arrays]): the input weights, BatchNorm blobs replaced
    layers: list  # names of the BatchNorm layers whose statistics were recomputed
    batches: int
    images: int
    mode: str
    source: str = ""  # what the data came from
    notes: list = field(default_factory=list)
    #: {layer: (max |change| of the mean, max relative change of the variance)} against the
    #: statistics the weights held (NaN where they held none or a zero scale factor).
    changes: dict = field(default_factory=dict)

    def statistics(self, name: str) -> tuple:
        """(mean, variance) of a BatchNorm layer as TEST uses them."""
        for layer_name, _, arrays in self.weights:
            if layer_name == name:
                return _normalised(arrays)
        raise KeyError(name)


def bn_stats(net: Union[str, bytes, Path, Document, Net], weights: Any,
             data: Optional[str] = None, *, iterations: Optional[int] = None,
             mode: str = "exact", decay: Optional[float] = None,
             batch_size: Optional[int] = None, seed: int = 0, root: Optional[str] = None,
             path: Optional[str] = None, input_shapes: Optional[dict] = None,
             stages: Sequence[str] = (), level: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> StatsResult:
    """New BatchNorm statistics for ``weights`` (a .caffemodel path, {layer: [arrays]} or
    (name, type, arrays) triples) from ``data`` (an LMDB, a .npy/.npz array or an image list;
    default: the source the net's TRAIN data layer names). ``iterations`` batches are run
    (default: one pass over the data). ``progress(done, total)`` is called after each batch.
    """
    if mode not in MODES:
        raise PrototxtError(f"unknown mode {mode!r}: use exact or moving")
    if decay is not None and not 0 < decay <= 1:
        raise PrototxtError(f"decay must be in (0, 1], got {decay}")
    loaded = _load(net, path, input_shapes)
    if root is None and loaded.document is not None and loaded.document.path \
            and os.path.exists(loaded.document.path):
        root = os.path.dirname(os.path.abspath(loaded.document.path))
    view = loaded.view(TRAIN, level, tuple(stages))
    norms = [layer for layer in view.layers if layer.type == "BatchNorm"]
    if not norms:
        raise PrototxtError("the TRAIN net has no BatchNorm layer: no statistics to compute",
                            loaded.document.path if loaded.document is not None else None)
    feeder = _data_layer(view, data)
    original = _weight_list(weights)
    arrays = {name: [np.array(a, dtype=np.float32) for a in blobs]
              for name, _, blobs in original}
    for layer in norms:
        arrays.setdefault(layer.name, [np.zeros(0, np.float32)] * 3)  # replaced below

    from ..data import batches
    from ..run.executor import Executor

    stream = batches(feeder, TRAIN, source=data, seed=seed, root=root, batch_size=batch_size)
    notes = list(stream.notes)
    try:
        total = iterations if iterations is not None else max(
            1, math.ceil(len(stream.source) / stream.batch_size))
        if total <= 0:
            raise PrototxtError(f"iterations must be positive, got {total}")
        first = next(stream)
        shapes = {name: tuple(value.shape) for name, value in first.items()}
        for layer in norms:  # statistics blobs sized from the net, zeroed (a fresh start)
            arrays[layer.name] = _zero_statistics(arrays[layer.name], layer, view, shapes)
        measured = _measuring_net(view, norms, feeder, shapes, mode, decay)
        executor = Executor(measured, {name: blobs for name, blobs in arrays.items()},
                            phase=TRAIN, seed=seed, input_shapes=shapes)
        names = [layer.name for layer in norms]
        blobs = {name: executor.blobs[name] for name in names}
        sums = {name: [np.zeros(blobs[name][0].size), np.zeros(blobs[name][1].size)]
                for name in names}
        images = 0
        batch = first
        for done in range(1, total + 1):
            if mode == "exact":
                for name in names:
                    for blob in blobs[name]:
                        blob[...] = 0
            executor.forward(batch, outputs=())
            images += len(next(iter(batch.values())))
            if mode == "exact":
                for name in names:
                    # After one update from zero: s = 1, blob0 = mean, blob1 = corrected var.
                    sums[name][0] += blobs[name][0].reshape(-1)
                    sums[name][1] += blobs[name][1].reshape(-1)
            if progress is not None:
                progress(done, total)
            if done < total:
                batch = next(stream)
    finally:
        stream.close()

    result_arrays = {}
    for layer in norms:
        name = layer.name
        if mode == "exact":
            mean = (sums[name][0] / total).astype(np.float32).reshape(blobs[name][0].shape)
            variance = (sums[name][1] / total).astype(np.float32).reshape(blobs[name][1].shape)
            scale = np.ones_like(blobs[name][2])
            result_arrays[name] = [mean, variance, scale]
        else:
            result_arrays[name] = [np.array(b, np.float32) for b in blobs[name]]
    changes = {}
    before = {name: blobs for name, _, blobs in original}
    for name, new in result_arrays.items():
        changes[name] = _change(before.get(name), new)
    out = []
    seen = set()
    for name, kind, blobs in original:
        if name in result_arrays and name not in seen:
            out.append((name, kind, result_arrays[name]))
        else:
            out.append((name, kind, list(blobs)))
        seen.add(name)
    for layer in norms:
        if layer.name not in seen:
            out.append((layer.name, "BatchNorm", result_arrays[layer.name]))
            seen.add(layer.name)
    frozen = [layer.name for layer in norms if layer.param.batch_norm_param.use_global_stats]
    if frozen:
        notes.append(f"{len(frozen)} BatchNorm layer(s) with use_global_stats: true measured "
                     f"with batch statistics anyway ({', '.join(frozen[:3])}"
                     f"{'...' if len(frozen) > 3 else ''})")
    return StatsResult(out, [layer.name for layer in norms], total, images, mode,
                       stream.source.describe(), notes, changes)


def _load(net: Any, path: Optional[str], input_shapes: Optional[dict]) -> Net:
    if isinstance(net, Net):
        return net
    if isinstance(net, Document):
        return Net.from_document(net, input_shapes=input_shapes)
    if isinstance(net, Path) or (isinstance(net, str) and "\n" not in net
                                 and os.path.exists(net)):
        from ..fileio import read_bytes

        path = str(net)
        return Net.from_document(parse(read_bytes(path), path), input_shapes=input_shapes)
    return Net.from_document(parse(net, path), input_shapes=input_shapes)


def _data_layer(view: Any, data: Optional[str]) -> Layer:
    """The layer whose first top the batches feed."""
    feeders = [layer for layer in view.layers if layer.spec is not None and layer.spec.is_data]
    if not feeders:
        raise PrototxtError("the TRAIN net has no data or Input layer to feed")
    readable = [layer for layer in feeders if layer.type in ("Data", "ImageData")]
    if data is None:
        if not readable:
            names = ", ".join(f"'{layer.name}' ({layer.type})" for layer in feeders)
            raise PrototxtError(f"no Data or ImageData layer in the TRAIN net to read from "
                                f"({names}): give the data with --data (LMDB, .npy/.npz or an "
                                f"image list)")
        return readable[0]
    return (readable or feeders)[0]


def _measuring_net(view: Any, norms: list, feeder: Layer, shapes: dict, mode: str,
                   decay: Optional[float]) -> Net:
    """The part of the TRAIN net the BatchNorm layers depend on, as measured: the data layer
    an Input layer of the batches' shapes, every BatchNorm on batch statistics with the
    moving-average fraction the mode needs (1 for exact: one update from zero then leaves the
    batch's own statistics)."""
    from ..schema import caffe_pb2

    needed: set = set()
    pending = list(norms)
    while pending:
        layer = pending.pop()
        if layer.index in needed:
            continue
        needed.add(layer.index)
        for index in range(len(layer.bottoms)):
            found = view.writer(layer, index)
            if found is not None:
                pending.append(found[0])
            else:
                raise PrototxtError(f"layer '{layer.name}' reads '{layer.bottoms[index]}', "
                                    f"which nothing produces in TRAIN")
    message = caffe_pb2.NetParameter(name=view.net.upgraded.name)
    for layer in view.layers:
        if layer.index not in needed:
            continue
        if layer.spec is not None and layer.spec.is_data:
            if layer is not feeder:
                raise PrototxtError(f"the BatchNorm layers also depend on data layer "
                                    f"'{layer.name}'; bn-stats feeds one data layer only")
            fed = message.layer.add(name=layer.name, type="Input")
            fed.top.extend(name for name in layer.tops if name in shapes)
            for name in fed.top:
                fed.input_param.shape.add(dim=list(shapes[name]))
            continue
        copy = message.layer.add()
        copy.CopyFrom(layer.param)
        del copy.include[:]
        del copy.exclude[:]
        if copy.type == "BatchNorm":
            p = copy.batch_norm_param
            p.ClearField("use_global_stats")
            if mode == "exact":
                p.moving_average_fraction = 1.0
            elif decay is not None:
                p.moving_average_fraction = decay
    return Net.from_message(message)


def _weight_list(weights: Any) -> list:
    if weights is None:
        raise PrototxtError("bn-stats needs the trained weights (--weights)")
    if isinstance(weights, (str, Path)):
        from ..schema.caffemodel import read_weights

        return [(w.name, w.type, list(w.blobs)) for w in read_weights(weights)]
    if isinstance(weights, dict):
        return [(name, "", list(blobs)) for name, blobs in weights.items()]
    result = []
    for item in weights:
        if hasattr(item, "blobs"):
            result.append((item.name, item.type, list(item.blobs)))
        else:
            result.append((item[0], item[1], list(item[2])))
    return result


def _zero_statistics(current: list, layer: Layer, view: Any, shapes: dict) -> list:
    channels = None
    if current and len(current) == 3 and np.size(current[0]) > 0:
        channels = int(np.size(current[0]))
    else:
        bottom = view.shapes.bottom_shapes(view, layer)
        if bottom and bottom[0] is not None and len(bottom[0]) > 1 and bottom[0][1]:
            channels = int(bottom[0][1])
    if channels is None:
        raise PrototxtError(f"BatchNorm '{layer.name}': cannot tell its channel count (the "
                            f"weights have no statistics for it and its input shape is unknown)")
    return [np.zeros(channels, np.float32), np.zeros(channels, np.float32),
            np.zeros(1, np.float32)]


def _normalised(arrays: Sequence[Any]) -> tuple:
    stored = float(np.asarray(arrays[2]).reshape(-1)[0])
    factor = 0.0 if stored == 0 else 1.0 / stored
    return (np.asarray(arrays[0], np.float64).reshape(-1) * factor,
            np.asarray(arrays[1], np.float64).reshape(-1) * factor)


def _change(old: Optional[list], new: list) -> tuple:
    if not old or len(old) != 3 or np.size(old[0]) != np.size(new[0]) \
            or float(np.asarray(old[2]).reshape(-1)[0]) == 0:
        return (math.nan, math.nan)
    old_mean, old_var = _normalised(old)
    new_mean, new_var = _normalised(new)
    mean_change = float(np.max(np.abs(new_mean - old_mean))) if new_mean.size else 0.0
    scale = np.maximum(np.abs(old_var), 1e-12)
    var_change = float(np.max(np.abs(new_var - old_var) / scale)) if new_var.size else 0.0
    return (mean_change, var_change)
