"""Freeze BatchNorm for fine-tuning with tiny batches.

With batch size 1 (or a handful of values per channel) batch statistics are noise, and the
training net normalises with them. Freezing makes every BatchNorm that runs in TRAIN use its
stored statistics (``use_global_stats: true``); with ``freeze_scale`` the Scale layer right after
each one stops learning too (``lr_mult: 0`` on gamma and beta). Nothing else changes: the edits
touch exactly those fields, so comments and layout stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from ..errors import PrototxtError
from ..layers.base import TRAIN
from ..lint.fixes import block_text, set_field
from ..net.model import Layer, Net
from ..syntax.edits import apply_edits, indent_unit, insert_field, replace_value
from ..syntax.parser import parse
from ..syntax.tree import Document, Message


@dataclass
class FreezeResult:
    text: str
    changed: bool
    frozen: list = field(default_factory=list)  # BatchNorm layer names now using global stats
    scales: list = field(default_factory=list)  # Scale layer names given lr_mult 0
    notes: list = field(default_factory=list)


def freeze_bn(source: Union[str, bytes, Document], *, freeze_scale: bool = False,
              stages: Sequence[str] = (), level: Optional[int] = None,
              path: Optional[str] = None) -> FreezeResult:
    """``use_global_stats: true`` on every BatchNorm active in TRAIN (and, with
    ``freeze_scale``, ``lr_mult: 0`` on the Scale layers reading them)."""
    document = source if isinstance(source, Document) else parse(source, path)
    net = Net.from_document(document)
    view = net.view(TRAIN, level, tuple(stages))
    edits: list = []
    result = FreezeResult("", False)
    if net.is_deploy or not any(not layer.param.bottom and layer.param.top
                                for layer in view.layers):
        result.notes.append("a deploy net does not train: nothing to freeze" if net.is_deploy
                            else "no data layer runs in TRAIN (a TEST-only net): nothing to "
                                 "freeze")
        result.text = document.to_text()
        return result
    for layer in view.layers:
        if layer.type != "BatchNorm":
            continue
        if not layer.is_v2_syntax:
            raise _error(layer, "written in the legacy format; run 'prototxt upgrade' first")
        current = layer.param.batch_norm_param
        if not (current.HasField("use_global_stats") and current.use_global_stats):
            edits += set_field(layer, ("batch_norm_param",), "use_global_stats", "true") or []
            result.frozen.append(layer.name)
        if freeze_scale:
            for scale in _scales_after(view, layer):
                scale_edits = _freeze_params(scale)
                if scale_edits:
                    edits += scale_edits
                    result.scales.append(scale.name)
    if not any(layer.type == "BatchNorm" for layer in view.layers):
        result.notes.append("no BatchNorm layer runs in TRAIN: nothing to freeze")
    if not edits:
        result.text = document.to_text()
        return result
    text = apply_edits(document.source, edits)
    result.text = ("\ufeff" + text) if document.bom else text
    parse(result.text, document.path)  # the edits must leave valid syntax
    result.changed = True
    return result


def _scales_after(view, batch_norm: Layer) -> list:
    """Scale layers reading what the BatchNorm writes."""
    return [reader for reader, slot in view.readers(batch_norm, 0)
            if reader.type == "Scale" and slot == 0]


def _freeze_params(scale: Layer) -> list:
    """Edits giving every learnable blob of a Scale layer ``lr_mult: 0``."""
    if not scale.is_v2_syntax:
        raise _error(scale, "written in the legacy format; run 'prototxt upgrade' first")
    scale_param = scale.param.scale_param
    blobs = (1 if len(scale.bottoms) == 1 else 0) + (1 if scale_param.bias_term else 0)
    specs = scale.node.get_all("param")
    edits = []
    for index in range(blobs):
        if index < len(specs):
            spec = specs[index]
            if not isinstance(spec.value, Message):
                continue
            lr_mult = spec.get("lr_mult")
            if lr_mult is None:
                edits.append(insert_field(spec, "lr_mult: 0", 0))
            elif float(lr_mult.value.text) != 0:
                edits.append(replace_value(lr_mult, "0"))
    missing = blobs - len(specs)
    if missing > 0:
        unit = indent_unit(scale.node.document)
        text = "\n".join(block_text("param", ["lr_mult: 0"], unit) for _ in range(missing))
        fields = scale.node.fields
        anchor = (fields.index(specs[-1]) + 1 if specs else
                  max((i + 1 for i, f in enumerate(fields) if f.name in ("bottom", "top", "name",
                                                                        "type")), default=0))
        edits.append(insert_field(scale.node, text, anchor))
    return edits


def _error(layer: Layer, message: str) -> PrototxtError:
    return PrototxtError.at(layer.node, f"layer '{layer.name}' ({layer.type}): {message}")
