"""A net as a Graphviz graph: layers are nodes, blobs are edges labelled with their shapes.

We write the DOT text ourselves (no graphviz Python package) and hand it to Graphviz's ``dot``
program only to lay it out as SVG or PNG, so ``.dot`` output works where Graphviz is missing.

The graph is the net Caffe instantiates for one state (``net.view``): layers excluded from the
phase are not drawn, and each edge is one exact (writer, reader) pair of that wiring, so a blob
rewritten in place links to the layer that really reads it. By default in-place layers (one
bottom, one top, the same blob name: BatchNorm, Scale, ReLU, Dropout written in place) fold into
the node of the layer that wrote the blob they rewrite, which keeps a ResNet readable; their
names stay in that node's label.

Node ids are stable: ``l<index>`` for a layer (the head layer's index in the whole net, so the
same layer has the same id in every phase and with or without collapsing), ``o<k>`` for a net
output, ``m<k>`` for a blob read but never written; edges are ``e<k>``. They are also the DOT
``id`` attributes, so the SVG ``<g>`` elements carry them (the HTML page relies on it).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from ..errors import PrototxtError
from ..layers.base import TEST
from ..schema import caffe_pb2

#: Fill colour per layer family (LayerSpec.family): light enough for black text, distinct
#: enough to tell convolutions from normalization from activations at a glance.
FAMILY_COLORS = {
    "data": "#b9e4a8",
    "vision": "#9ec9ee",
    "common": "#cdb4e6",
    "activation": "#fdd49e",
    "normalization": "#f7e98e",
    "structure": "#a8e0d4",
    "loss": "#f4aaa6",
    "recurrent": "#f2c0dd",
    "python": "#e6d3b3",
    "other": "#e3e3e3",
}
#: Types BVLC Caffe lacks (fork layers) have no spec and no family: grey, dashed border.
UNKNOWN_COLOR = "#c8c8c8"
OUTPUT_COLOR = "#ffffff"
MISSING_COLOR = "#ffe0e0"

RANKDIRS = ("TB", "LR", "BT", "RL")

_CHAIN_WIDTH = 36  # characters per line of a collapsed chain's "+ name + name" list


@dataclass
class Node:
    """One drawn node: a layer (with the in-place layers folded into it), a net output, or a
    blob read but never written."""

    id: str
    kind: str  # "layer", "output" or "missing"
    lines: list  # label lines, unescaped
    fill: str
    dashed: bool = False
    layers: list = field(default_factory=list)  # Layer objects, head first (kind "layer")
    blob: Optional[str] = None  # the blob's name (kinds "output" and "missing")
    shape: Any = None  # the output blob's shape (kind "output")


@dataclass
class Edge:
    """One blob going from the node that writes it to a node that reads it."""

    id: str
    tail: str
    head: str
    blob: str
    shape: Any  # tuple, or None when unknown
    label: str


@dataclass
class Graph:
    """What ``to_dot`` draws, kept as data so the HTML page and the command can use it too."""

    view: Any  # the NetView drawn
    title: str
    rankdir: str
    nodes: list
    edges: list
    node_of: dict  # layer index -> node id (every active layer, collapsed ones included)

    def to_dot(self, tooltips: bool = True) -> str:
        """The graph as DOT text (``tooltips``: hover text on nodes in SVG viewers)."""
        return _write_dot(self, tooltips)


def build_graph(net: Any, *, phase: int = TEST, rankdir: str = "TB", collapse: bool = True,
                stages: Iterable[str] = (), level: Optional[int] = None) -> Graph:
    """The nodes and edges of ``net`` as Caffe instantiates it in ``phase``/``level``/
    ``stages``. ``collapse`` folds each in-place layer into the node that wrote its blob."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
    view = net.view(phase, level, tuple(stages))
    shapes = view.shapes.shapes
    nodes: list[Node] = []
    node_of: dict[int, str] = {}
    members: dict[str, list] = {}
    for layer in view.layers:
        head = None
        if collapse and _in_place(layer):
            ref = view.inputs.get(layer.index, [None])[0]
            written = view.producer.get(ref) if ref is not None else None
            if written is not None:
                head = node_of.get(written[0].index)
        if head is None:
            head = f"l{layer.index}"
            members[head] = []
        members[head].append(layer)
        node_of[layer.index] = head
    for node_id, group in members.items():
        nodes.append(_layer_node(node_id, group))

    edges: list[Edge] = []
    missing: dict[str, str] = {}  # blob name -> node id
    for layer in view.layers:
        target = node_of[layer.index]
        for bottom_index, ref in enumerate(view.inputs.get(layer.index, [])):
            if ref is None:
                name = layer.bottoms[bottom_index]
                source = missing.get(name)
                if source is None:
                    source = missing[name] = f"m{len(missing)}"
                    nodes.append(Node(source, "missing", [name, "(never written)"],
                                      MISSING_COLOR, dashed=True, blob=name))
                edges.append(Edge(f"e{len(edges)}", source, target, name, None, name))
                continue
            written = view.producer.get(ref)
            if written is None:
                continue
            source = node_of[written[0].index]
            if source == target:  # the link inside a collapsed in-place chain
                continue
            shape = shapes.get(ref)
            edges.append(Edge(f"e{len(edges)}", source, target, ref.name, shape,
                              _edge_label(ref.name, shape)))
    for number, ref in enumerate(view.net_outputs):
        written = view.producer.get(ref)
        if written is None:
            continue
        node_id = f"o{number}"
        shape = shapes.get(ref)
        nodes.append(Node(node_id, "output", [ref.name], OUTPUT_COLOR, blob=ref.name,
                          shape=shape))
        edges.append(Edge(f"e{len(edges)}", node_of[written[0].index], node_id, ref.name, shape,
                          _edge_label(ref.name, shape)))
    name = net.upgraded.name or "net"
    title = f"{name} ({view.state.describe()})"
    return Graph(view, title, rankdir, nodes, edges, node_of)


def to_dot(net: Any, *, phase: int = TEST, rankdir: str = "TB", collapse: bool = True,
           stages: Iterable[str] = (), level: Optional[int] = None) -> str:
    """``net`` (a :class:`~prototxt_tools.net.model.Net`) as Graphviz DOT text.

    Layers are boxes coloured by family; each edge is a blob from the layer writing it to a
    layer reading it, labelled with its shape when shape inference knows it (``1x64x112x112``,
    ``?`` for unknown dimensions), else with the blob's name. Net outputs are ellipses.
    """
    return build_graph(net, phase=phase, rankdir=rankdir, collapse=collapse, stages=stages,
                       level=level).to_dot()


def render(dot_text: str, fmt: str, *, target: Optional[str] = None) -> bytes:
    """Lay out ``dot_text`` with Graphviz's ``dot -T<fmt>`` (``svg`` or ``png``); ``dot``
    returns the text itself and needs no Graphviz. ``target`` names the requested output
    format in the error when ``dot`` is missing (``html``, drawn through SVG)."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    if fmt not in ("svg", "png"):
        raise ValueError(f"cannot render {fmt!r}: use svg, png or dot")
    program = shutil.which("dot")
    if program is None:
        raise PrototxtError(f"drawing .{target or fmt} needs Graphviz's dot program, which is "
                            f"not installed (Debian: apt-get install graphviz); .dot output "
                            f"works without it")
    try:
        result = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                                capture_output=True, check=False)
    except OSError as exc:
        raise PrototxtError(f"cannot run Graphviz's dot ({program}): "
                            f"{exc.strerror or exc}") from None
    if result.returncode != 0 or not result.stdout:
        messages = result.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = messages[0] if messages else f"exit status {result.returncode}"
        raise PrototxtError(f"Graphviz's dot failed: {reason}")
    return result.stdout


# -- nodes -------------------------------------------------------------------------------------

def _in_place(layer: Any) -> bool:
    """One bottom, one top, the same blob: the layers a collapsed drawing folds away."""
    bottoms, tops = layer.bottoms, layer.tops
    return len(bottoms) == 1 and len(tops) == 1 and bottoms[0] == tops[0]


def _layer_node(node_id: str, group: Sequence) -> Node:
    head = group[0]
    lines = [f"{head.name} ({head.type})"]
    summary = _summary(head.param)
    if summary:
        lines.append(summary)
    lines.extend(_chain_lines([layer.name for layer in group[1:]]))
    spec = head.spec
    fill = FAMILY_COLORS.get(spec.family, FAMILY_COLORS["other"]) if spec else UNKNOWN_COLOR
    return Node(node_id, "layer", lines, fill, dashed=spec is None, layers=list(group))


def _chain_lines(names: Sequence[str]) -> list:
    """``+ a + b`` lines, broken between names (never inside one) near _CHAIN_WIDTH."""
    lines: list[str] = []
    current = ""
    for name in names:
        item = f"+ {name}"
        if current and len(current) + 1 + len(item) > _CHAIN_WIDTH:
            lines.append(current)
            current = item
        else:
            current = f"{current} {item}" if current else item
    if current:
        lines.append(current)
    return lines


def _summary(param: Any) -> str:
    """The one or two parameters that say what a layer does (``3x3/2, 64``, ``MAX 3x3/2``)."""
    kind = param.type
    if kind in ("Convolution", "Deconvolution", "Im2col"):
        conv = param.convolution_param
        if conv.HasField("kernel_h") or conv.HasField("kernel_w"):
            kernel = [conv.kernel_h, conv.kernel_w]
        else:
            kernel = list(conv.kernel_size)
            if len(kernel) == 1:
                kernel *= 2
        if conv.HasField("stride_h") or conv.HasField("stride_w"):
            stride = [conv.stride_h, conv.stride_w]
        else:
            stride = list(conv.stride) or [1]
        text = _window(kernel, stride)
        parts = [text] if text else []
        if kind != "Im2col":
            parts.append(str(conv.num_output))
        if conv.group != 1:
            parts.append(f"group {conv.group}")
        dilation = list(conv.dilation)
        if any(d != 1 for d in dilation):
            parts.append("dilation " + "x".join(str(d) for d in dilation))
        return ", ".join(parts)
    if kind == "Pooling":
        pool = param.pooling_param
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(pool.pool)
        if pool.global_pooling:
            return f"{method} global"
        if pool.HasField("kernel_h") or pool.HasField("kernel_w"):
            kernel = [pool.kernel_h, pool.kernel_w]
        else:
            kernel = [pool.kernel_size] * 2
        if pool.HasField("stride_h") or pool.HasField("stride_w"):
            stride = [pool.stride_h, pool.stride_w]
        else:
            stride = [pool.stride]
        return f"{method} {_window(kernel, stride)}".strip()
    if kind == "InnerProduct":
        return str(param.inner_product_param.num_output)
    if kind == "Embed":
        return f"{param.embed_param.input_dim} -> {param.embed_param.num_output}"
    if kind in ("RNN", "LSTM"):
        return str(param.recurrent_param.num_output)
    if kind == "Dropout":
        return f"{param.dropout_param.dropout_ratio:g}"
    if kind == "Eltwise":
        return caffe_pb2.EltwiseParameter.EltwiseOp.Name(param.eltwise_param.operation)
    if kind == "LRN":
        return f"size {param.lrn_param.local_size}"
    if kind == "Accuracy" and param.accuracy_param.top_k != 1:
        return f"top-{param.accuracy_param.top_k}"
    if kind in ("Concat", "Slice"):
        axis = param.concat_param.axis if kind == "Concat" else param.slice_param.axis
        return f"axis {axis}" if axis != 1 else ""
    if kind == "Input":
        return ", ".join("x".join(str(d) for d in shape.dim) for shape in param.input_param.shape)
    if kind == "Python":
        python = param.python_param
        return ".".join(part for part in (python.module, python.layer) if part)
    return ""


def _window(kernel: Sequence[int], stride: Sequence[int]) -> str:
    """``3x3/2``: the kernel, and the stride after a slash unless it is 1."""
    if not kernel or not any(kernel):
        return ""
    text = "x".join(str(k) for k in kernel)
    if any(s != 1 for s in stride):
        text += "/" + ("x".join(str(s) for s in stride) if len(set(stride)) > 1
                       else str(stride[0]))
    return text


def format_shape(shape: Any) -> Optional[str]:
    """``1x64x112x112`` (``?`` for an unknown dimension, ``scalar`` for ``()``), or None when
    not even the number of axes is known."""
    if shape is None:
        return None
    if len(shape) == 0:
        return "scalar"
    return "x".join("?" if d is None else str(d) for d in shape)


def _edge_label(name: str, shape: Any) -> str:
    text = format_shape(shape)
    return text if text is not None else name


# -- DOT text ----------------------------------------------------------------------------------

def visible(text: str) -> str:
    """``text`` with control characters as their C escapes (``\\n``) and bytes that are not
    UTF-8 (kept as lone surrogates) as ``\\xNN``: how the prototxt spells them, and always one
    line that every output format can carry."""
    out = []
    for char in text:
        code = ord(char)
        if char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte decode_text could not read as UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def _quote(text: str, backslash: str = "\\\\") -> str:
    """A DOT quoted string that Graphviz renders as exactly ``text``.

    Graphviz reads backslash escapes (``\\n``, ``\\N``, ``\\l``...) and HTML entities
    (``&amp;``) inside labels, so a backslash is doubled and ``&`` becomes ``&amp;``.
    Tooltips go through one more round of backslash escapes (``\\N`` there is the node's id),
    hence ``backslash`` (what one backslash becomes)."""
    escaped = (visible(text).replace("\\", backslash).replace('"', '\\"')
               .replace("&", "&amp;"))
    return f'"{escaped}"'


def _quote_tooltip(text: str) -> str:
    return _quote(text, "\\" * 4)


def _label(lines: Sequence[str]) -> str:
    """Several lines as one DOT label (``\\n`` between the escaped lines)."""
    return '"' + "\\n".join(_quote(line)[1:-1] for line in lines) + '"'


def _write_dot(graph: Graph, tooltips: bool) -> str:
    out = [
        "digraph net {",
        f'  graph [id="net-graph", rankdir={graph.rankdir}, label={_quote(graph.title)}, '
        'labelloc=t, fontname="Helvetica", fontsize=12, nodesep=0.3, ranksep=0.35, '
        'bgcolor="white"];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        'color="#555555", margin="0.12,0.04"];',
        '  edge [fontname="Helvetica", fontsize=8, color="#666666", fontcolor="#333333", '
        'arrowsize=0.6];',
    ]
    for node in graph.nodes:
        attrs = [f'id="{node.id}"', f"label={_label(node.lines)}", f'fillcolor="{node.fill}"']
        if node.kind == "output":
            attrs.append('shape=ellipse, style="filled", color="#888888"')
        elif node.kind == "missing":
            attrs.append('shape=ellipse, style="filled,dashed", color="#c0392b"')
        elif node.dashed:
            attrs.append('style="rounded,filled,dashed"')
        if tooltips:
            attrs.append(f"tooltip={_quote_tooltip(_tooltip(node))}")
        out.append(f"  {node.id} [{', '.join(attrs)}];")
    for edge in graph.edges:
        attrs = [f'id="{edge.id}"', f"label={_quote(edge.label)}"]
        if tooltips:
            attrs.append(f"tooltip={_quote_tooltip(edge.blob)}")
        out.append(f"  {edge.tail} -> {edge.head} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _tooltip(node: Node) -> str:
    if node.kind == "layer":
        return "; ".join(f"{layer.name} ({layer.type})" for layer in node.layers)
    if node.kind == "output":
        shape = format_shape(node.shape)
        return f"net output {node.blob}" + (f": {shape}" if shape else "")
    return f"{node.blob}: read but never written"
