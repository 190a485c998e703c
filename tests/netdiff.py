"""Structural comparison of two nets' TEST phase, for checking derived deploy nets against the
ones their authors wrote.

Layers are matched by name (Input layers by their top, since nothing loads weights into them);
for each matched pair the bottoms, tops, type and layer parameters are compared, leaving out
what only training reads (param lr/decay specs, fillers, include/exclude, loss weights). Each
difference is one line: ``only ours: prob (Softmax)``, ``only theirs: drop6 (Dropout)``,
``ip2: num_output: 1 (ours) / num_output: 10 (theirs)``.
"""

from __future__ import annotations

import difflib

from prototxt_tools import parse
from prototxt_tools.layers.base import TEST
from prototxt_tools.net.model import Net
from prototxt_tools.schema.binding import message_to_text

TRAINING_ONLY = ("include", "exclude", "loss_weight", "propagate_down", "phase")
FILLERS = ("weight_filler", "bias_filler", "filler")


def _key(layer) -> str:
    if layer.type in ("Input", "MemoryData") and layer.tops:
        return f"input {layer.tops[0]}"
    return layer.name


def _comparable(layer):
    message = type(layer.param)()
    message.CopyFrom(layer.param)
    for name in TRAINING_ONLY:
        message.ClearField(name)
    for spec in message.param:
        spec.ClearField("lr_mult")
        spec.ClearField("decay_mult")
    kept = [spec for spec in message.param if spec.ListFields()]
    del message.param[:]
    message.param.extend(kept)
    for descriptor, value in message.ListFields():
        if descriptor.name.endswith("_param") and descriptor.message_type is not None:
            for filler in FILLERS:
                if filler in value.DESCRIPTOR.fields_by_name and value.HasField(filler):
                    value.ClearField(filler)
    message.ClearField("name")
    return message


def deploy_layers(text: str, path: str = "<net>") -> dict:
    """{key: layer} of the TEST phase; each input blob is its own entry ``input NAME`` holding
    its shape (one Input layer per blob, one with several tops, legacy ``input`` fields and
    MemoryData all declare the same thing)."""
    net = Net.from_document(parse(text, path))
    view = net.view(TEST)
    found: dict = {}
    for layer in view.layers:
        if layer.type in ("Input", "MemoryData") and layer.tops:
            for index, ref in enumerate(view.outputs.get(layer.index, [])):
                if layer.type == "MemoryData" and index > 0:
                    continue  # its label top: nothing reads it at deploy
                found[f"input {ref.name}"] = view.shapes.shapes.get(ref)
        else:
            found[layer.name] = layer
    return found


def structural_diff(ours_text: str, theirs_text: str) -> list:
    ours = deploy_layers(ours_text, "ours")
    theirs = deploy_layers(theirs_text, "theirs")
    lines = [f"only ours: {key} ({_kind(layer)})" for key, layer in ours.items()
             if key not in theirs]
    lines += [f"only theirs: {key} ({_kind(layer)})" for key, layer in theirs.items()
              if key not in ours]
    for key, layer in ours.items():
        other = theirs.get(key)
        if other is None:
            continue
        if key.startswith("input "):
            if layer != other:
                lines.append(f"{key}: shape {_shape(layer)} (ours) / {_shape(other)} (theirs)")
            continue
        mine, yours = _comparable(layer), _comparable(other)
        if mine == yours:
            continue
        a = message_to_text(mine).strip().splitlines()
        b = message_to_text(yours).strip().splitlines()
        changed = [line for line in difflib.ndiff(b, a) if line[:1] in "+-"]
        ours_part = "; ".join(line[2:].strip() for line in changed if line[0] == "+")
        theirs_part = "; ".join(line[2:].strip() for line in changed if line[0] == "-")
        lines.append(f"{key}: {ours_part or '-'} (ours) / {theirs_part or '-'} (theirs)")
    return lines


def _kind(entry) -> str:
    return "input " + _shape(entry) if not hasattr(entry, "type") else entry.type


def _shape(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) if shape else "?"
