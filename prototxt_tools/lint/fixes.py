"""Building blocks for fixes: small text edits on V2 layers, indented like their surroundings."""

from __future__ import annotations

from typing import Optional, Sequence

from ..net.model import Layer
from ..syntax.edits import TextEdit, delete, indent_unit, insert_field, replace_value
from ..syntax.tree import Field, Message


def block_text(name: str, lines: Sequence[str], unit: str) -> str:
    """``name {`` + lines + ``}``, inner lines one indent step in (relative indentation; the
    insertion re-indents the whole block to its place)."""
    inner = "\n".join(unit + line for line in lines)
    return f"{name} {{\n{inner}\n}}"


def set_field(layer: Layer, block: Sequence[str], name: str, value: str) -> Optional[list]:
    """Edits making ``layer.<block...>.<name>`` equal ``value`` (text), creating missing
    blocks; None when the layer is not written as a V2 block."""
    if not layer.is_v2_syntax:
        return None
    unit = indent_unit(layer.node.document)
    existing = layer.field(*block, name)
    if existing is not None:
        return [replace_value(existing, value)]
    parent: Field = layer.node
    missing: list[str] = []
    for index in range(len(block)):
        found = layer.field(*block[:index + 1])
        if found is None or not isinstance(found.value, Message):
            missing = list(block[index:])
            break
        parent = found
    text = f"{name}: {value}"
    for step in reversed(missing):
        text = block_text(step, text.split("\n"), unit)
    return [insert_field(parent, text)]


def remove_field(layer: Layer, *path: str) -> Optional[list]:
    found = layer.field(*path) if layer.is_v2_syntax else None
    return None if found is None else [delete(found, with_comments=False)]


def insert_layer_after(layer: Layer, text: str) -> Optional[list]:
    """An edit placing a new top-level block right after ``layer``'s block."""
    if not layer.is_v2_syntax:
        return None
    document = layer.node.document
    index = document.fields.index(layer.node)
    return [insert_field(document, text, index + 1)]


def layer_text(unit: str, name: str, layer_type: str, bottoms: Sequence[str],
               tops: Sequence[str], extra: Sequence[str] = ()) -> str:
    """A V2 layer block; ``extra`` holds further lines (already relative-indented)."""
    lines = [f'name: "{name}"', f'type: "{layer_type}"']
    lines += [f'bottom: "{bottom}"' for bottom in bottoms]
    lines += [f'top: "{top}"' for top in tops]
    lines += list(extra)
    return block_text("layer", lines, unit)


def unique_layer_name(layer: Layer, wanted: str) -> str:
    """``wanted``, or ``wanted_2``... when a layer of the net already has that name."""
    document = layer.node.document if layer.node is not None else None
    taken = set()
    if document is not None:
        for field in document.get_all("layer"):
            name = field.get("name")
            if name is not None:
                taken.add(name.value.text.strip("\"'"))
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = f"{wanted}_{number}"
    return candidate


def edits_or_none(*parts: Optional[list]) -> Optional[list]:
    """All edits, or None if any part could not be built."""
    edits: list[TextEdit] = []
    for part in parts:
        if part is None:
            return None
        edits.extend(part)
    return edits
