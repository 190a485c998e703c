"""Per-layer summary of a net: top shapes, parameters, multiply-adds and activation memory.

Conventions (also in ``prototxt summary --help``):
- parameters: the values of a layer's learned blobs (weights, biases, Scale's gamma and beta,
  PReLU slopes...). BatchNorm's three blobs are statistics, counted apart. A blob shared by
  name (``param { name: ... }``) counts once, at its first layer.
- MACs: multiply-adds of one forward pass at the given input shapes, from each layer type's
  spec: Convolution (C/group x kernel per output), Deconvolution, InnerProduct, recurrent
  layers (each weight matrix per step), and one per value for BatchNorm, Scale and PReLU,
  LRN's window, MVN's variance; pooling, ReLU and other comparisons, plain additions (Eltwise
  SUM, Bias), softmax, copies and lookups count 0.
- memory: the bytes of the tops a layer creates (float32); a layer computing in place
  creates none and is shown with its host, the layer whose blob it rewrites.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

from .layers.base import TEST, elements
from .net.model import Net

BYTES_PER_VALUE = 4  # Caffe's float blobs


@dataclass
class LayerRow:
    name: str
    type: str
    tops: list  # [[blob name, shape list or None], ...]
    params: Optional[int]  # None when a needed shape is unknown
    statistics: int  # BatchNorm's accumulated blobs
    macs: Optional[int]
    memory: Optional[int]  # bytes of new tops
    host: Optional[str] = None  # for a layer computing in place: the layer that made the blob
    line: Optional[int] = None


@dataclass
class NetSummary:
    name: str
    phase: str
    layers: list = field(default_factory=list)
    params: int = 0
    statistics: int = 0
    macs: int = 0
    memory: int = 0
    unknown: list = field(default_factory=list)  # layers whose counts are not known

    @property
    def complete(self) -> bool:
        return not self.unknown


def summarize(net: Net, phase: int = TEST, stages: Sequence[str] = (),
              level: Optional[int] = None) -> NetSummary:
    """The summary of ``net`` in the given state, with the shapes its inputs (or
    ``Net.input_shapes``) give."""
    view = net.view(phase, level, tuple(stages))
    shapes = view.shapes
    summary = NetSummary(net.upgraded.name or "net", "TEST" if phase == TEST else "TRAIN")
    producer: dict = {}  # BlobRef -> the name of the layer that created its storage
    shared: set = set()
    for layer in view.layers:
        bottom_refs = view.inputs.get(layer.index, [])
        top_refs = view.outputs.get(layer.index, [])
        bottoms = shapes.bottom_shapes(view, layer)
        tops = [shapes.shapes.get(ref) for ref in top_refs]
        spec = layer.spec
        host = None
        memory: Optional[int] = 0
        in_place = layer.in_place_tops
        for index, ref in enumerate(top_refs):
            if index in in_place and index < len(bottom_refs):  # the storage stays its host's
                host = producer.get(bottom_refs[index])
                producer[ref] = host
                continue
            producer[ref] = layer.name
            count = elements(shapes.shapes.get(ref))
            memory = None if memory is None or count is None else memory + count * \
                BYTES_PER_VALUE
        params: Optional[int] = 0
        statistics = 0
        macs: Optional[int] = None
        if spec is not None:
            macs = spec.macs(layer.param, bottoms, tops)
            blob_shapes = spec.blob_shapes(layer.param, bottoms)
            if blob_shapes is None:
                params = None
            else:
                for index, shape in enumerate(blob_shapes):
                    key = _shared_name(layer, index)
                    if key is not None:
                        if key in shared:
                            continue
                        shared.add(key)
                    count = elements(shape)
                    if count is None:
                        params = None
                        break
                    if spec.learnable(layer.param, index):
                        params = None if params is None else params + count
                    else:
                        statistics += count
        else:
            params = None
        node = layer.node
        row = LayerRow(layer.name, layer.type,
                       [[ref.name, None if shape is None else list(shape)]
                        for ref, shape in zip(top_refs, tops)],
                       params, statistics, macs, memory, host,
                       node.span.start.line if node is not None else None)
        summary.layers.append(row)
        if params is None or macs is None or memory is None:
            summary.unknown.append(layer.name)
        summary.params += params or 0
        summary.statistics += statistics
        summary.macs += macs or 0
        summary.memory += memory or 0
    return summary


def _shared_name(layer: Any, index: int) -> Optional[str]:
    specs = layer.param.param
    if index < len(specs) and specs[index].name:
        return specs[index].name
    return None


# -- output ----------------------------------------------------------------------------------

def _shape_text(shape: Optional[list]) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def _number(value: Optional[int]) -> str:
    return "?" if value is None else f"{value:,}"


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (B for bytes gives KiB/MiB/GiB)."""
    if unit == "B":
        for suffix, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if value >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{int(value)} B"
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{suffix}"
    return str(int(value))


def _top_cell(row: LayerRow) -> str:
    shapes = ", ".join(_shape_text(shape) for _, shape in row.tops) or "-"
    if row.host is not None:
        return f"{shapes} (in place, {row.host})"
    return shapes


def _totals_text(summary: NetSummary) -> str:
    text = (f"total: {summary.params:,} parameters ({human(summary.params * BYTES_PER_VALUE, 'B')}"
            f"), {summary.macs:,} MACs ({human(summary.macs)}), activations "
            f"{human(summary.memory, 'B')}")
    if summary.statistics:
        text += f"; BatchNorm statistics {summary.statistics:,} values"
    if summary.unknown:
        text += (f"; unknown for {len(summary.unknown)} layers (first: {summary.unknown[0]}; "
                 f"give --input-shape)")
    return text


def format_text(summary: NetSummary) -> str:
    header = ["layer", "type", "top shape", "params", "MACs", "memory"]
    rows = [[("  " if row.host else "") + row.name, row.type, _top_cell(row),
             _number(row.params), _number(row.macs),
             "-" if row.memory == 0 else ("?" if row.memory is None
                                          else human(row.memory, "B"))]
            for row in summary.layers]
    widths = [max(len(line[i]) for line in [header] + rows) for i in range(len(header))]
    right = {3, 4, 5}

    def line(cells: list) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    lines = [f"{summary.name} ({summary.phase})", line(header)]
    lines += [line(cells) for cells in rows]
    lines.append(_totals_text(summary))
    return "\n".join(lines) + "\n"


def format_markdown(summary: NetSummary) -> str:
    lines = [f"**{summary.name}** ({summary.phase})", "",
             "| layer | type | top shape | params | MACs | memory (bytes) |",
             "|---|---|---|---:|---:|---:|"]
    for row in summary.layers:
        cells = [row.name.replace("|", "\\|"), row.type, _top_cell(row).replace("|", "\\|"),
                 _number(row.params), _number(row.macs), _number(row.memory)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _totals_text(summary)]
    return "\n".join(lines) + "\n"


def format_csv(summary: NetSummary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["layer", "type", "tops", "top_shapes", "in_place_host", "params",
                     "statistics", "macs", "memory_bytes"])
    for row in summary.layers:
        writer.writerow([row.name, row.type, " ".join(name for name, _ in row.tops),
                         " ".join(_shape_text(shape) for _, shape in row.tops),
                         row.host or "", "" if row.params is None else row.params,
                         row.statistics, "" if row.macs is None else row.macs,
                         "" if row.memory is None else row.memory])
    writer.writerow(["TOTAL", "", "", "", "", summary.params, summary.statistics, summary.macs,
                     summary.memory])
    return out.getvalue()


def format_json(summary: NetSummary) -> str:
    data = {"net": summary.name, "phase": summary.phase,
            "layers": [asdict(row) for row in summary.layers],
            "totals": {"params": summary.params, "statistics": summary.statistics,
                       "macs": summary.macs, "memory_bytes": summary.memory,
                       "complete": summary.complete, "unknown": summary.unknown}}
    return json.dumps(data, indent=2) + "\n"


FORMATS = {"text": format_text, "json": format_json, "csv": format_csv,
           "markdown": format_markdown}
