"""A net as one self-contained HTML page: the drawing, and each layer's definition on demand.

The SVG that Graphviz lays out is inlined; hovering a node shows its layers in a side panel
(type, bottoms and tops with shapes, the layer's text as written in the file), clicking pins
it. Everything is in the one file (CSS, script, data), nothing is fetched, so the page works
offline, attached to a bug report or opened from a CI artifact.

The per-node data is JSON in a ``<script type="application/json">`` keyed by the ids the DOT
``id`` attributes gave the SVG ``<g>`` elements (``l3``, ``o0``, ``e7``), and the script sets
``data-ready="yes"`` on ``<body>`` once every node is wired, so a headless browser test can
tell the script ran to the end.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from typing import Any, Iterable, Optional

from google.protobuf import text_format

from ..layers.base import TEST
from ..net.model import ORIGIN_INPUT
from .dot import FAMILY_COLORS, UNKNOWN_COLOR, Graph, build_graph, format_shape, render, visible


def to_html(net: Any, *, phase: int = TEST, rankdir: str = "TB", collapse: bool = True,
            stages: Iterable[str] = (), level: Optional[int] = None) -> str:
    """``net`` as an interactive page (needs Graphviz's ``dot`` to lay out the drawing)."""
    graph = build_graph(net, phase=phase, rankdir=rankdir, collapse=collapse, stages=stages,
                        level=level)
    return graph_to_html(graph)


def graph_to_html(graph: Graph) -> str:
    """The page for an already built graph (the command builds it once for its counts)."""
    svg = _inline_svg(render(graph.to_dot(tooltips=False), "svg", target="html").decode(
        "utf-8", "replace"))
    data = {"nodes": {node.id: _node_data(graph, node) for node in graph.nodes},
            "edges": {edge.id: _edge_data(graph, edge) for edge in graph.edges}}
    view = graph.view
    path = view.net.document.path if view.net.document is not None else None
    heading = visible(graph.title)
    legend = "".join(
        f'<span class="swatch" style="background:{color}"></span>{family} '
        for family, color in [*FAMILY_COLORS.items(), ("unknown type", UNKNOWN_COLOR)]
        if family != "other")
    layers = len(view.layers)
    return _PAGE.format(
        title=html.escape(heading),
        heading=html.escape(heading),
        source=html.escape(visible(path)) + " &middot; " if path else "",
        counts=f"{layers} layer{'s' if layers != 1 else ''}, {len(graph.nodes)} nodes",
        legend=legend,
        svg=svg,
        data=_script_json(data),
        style=_STYLE,
        script=_SCRIPT,
    )


# -- the drawing -------------------------------------------------------------------------------

_XML_PROLOG = re.compile(r"<\?xml.*?\?>", re.S)
_DOCTYPE = re.compile(r"<!DOCTYPE.*?>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TITLE = re.compile(r"<title>.*?</title>", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG document as an element of an HTML page: no XML prolog, doctype (it names
    a DTD on the web), comments, namespace declarations (HTML implies them) or ``<title>``
    elements (the browser would show node ids such as ``l3`` as tooltips)."""
    svg = _XML_PROLOG.sub("", svg)
    svg = _DOCTYPE.sub("", svg)
    svg = _COMMENT.sub("", svg)
    svg = _TITLE.sub("", svg)
    svg = _NAMESPACES.sub("", svg, count=2)
    return svg.strip()


# -- the data ----------------------------------------------------------------------------------

def _shape_text(shape: Any) -> str:
    text = format_shape(shape)
    return text if text is not None else "unknown"


def _blobs(graph: Graph, refs: list, names: Iterable[str]) -> list:
    shapes = graph.view.shapes.shapes
    out = []
    for index, name in enumerate(names):
        ref = refs[index] if index < len(refs) else None
        shape = shapes.get(ref) if ref is not None else None
        out.append({"name": visible(name),
                    "shape": "never written" if ref is None else _shape_text(shape)})
    return out


def _layer_text(layer: Any) -> str:
    """The layer as written in the file (re-indented to the left margin), or, for a layer the
    file spells as legacy ``input:`` fields, the upgraded LayerParameter."""
    node = layer.node
    if node is not None and layer.origin != ORIGIN_INPUT:
        text = node.text
        column = node.span.start.column
        return textwrap.dedent(" " * (column - 1) + text)
    return text_format.MessageToString(layer.param, as_utf8=True)


def _node_data(graph: Graph, node: Any) -> dict:
    view = graph.view
    if node.kind != "layer":
        data = {"kind": node.kind, "blob": visible(node.blob or "")}
        if node.kind == "output":
            data["shape"] = _shape_text(node.shape)
        return data
    layers = []
    for layer in node.layers:
        spec = layer.spec
        tops = view.outputs.get(layer.index, [])
        start = layer.node.span.start if layer.node is not None else None
        layers.append({
            "name": visible(layer.name),
            "type": visible(layer.type),
            "family": spec.family if spec is not None else "unknown type (not in BVLC Caffe)",
            "line": start.line if start is not None else None,
            "column": start.column if start is not None else None,
            "bottoms": _blobs(graph, view.inputs.get(layer.index, []), layer.bottoms),
            "tops": [{"name": visible(ref.name) or "(anonymous)",
                      "shape": _shape_text(view.shapes.shapes.get(ref))} for ref in tops],
            "text": visible_text(_layer_text(layer)),
        })
    return {"kind": "layer", "layers": layers}


def _edge_data(graph: Graph, edge: Any) -> dict:
    return {"blob": visible(edge.blob), "shape": _shape_text(edge.shape),
            "tail": edge.tail, "head": edge.head}


def visible_text(text: str) -> str:
    """Multi-line text with every line made :func:`visible` (line breaks kept)."""
    return "\n".join(visible(line) for line in text.split("\n"))


def _script_json(data: dict) -> str:
    """JSON that cannot end its ``<script>`` element early (``</script>`` in a layer name)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- the page ----------------------------------------------------------------------------------

_STYLE = """
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { display: flex; flex-direction: column; font: 13px/1.4 system-ui, -apple-system,
  "Segoe UI", Helvetica, Arial, sans-serif; color: #222; background: #fafafa; }
header { padding: 6px 12px; border-bottom: 1px solid #ddd; background: #fff;
  display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; }
header h1 { font-size: 15px; margin: 0; }
header .meta { color: #666; }
header .legend { color: #444; font-size: 12px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 6px;
  border: 1px solid #888; vertical-align: -1px; }
header button { font: inherit; padding: 1px 8px; }
main { flex: 1; display: flex; min-height: 0; }
#graph { flex: 1; overflow: auto; background: #fff; }
#graph.fit svg { width: 100%; height: auto; }
#graph g.node, #graph g.edge { cursor: pointer; }
#graph g.node:hover path, #graph g.node:hover polygon, #graph g.node:hover ellipse {
  stroke: #1f5fbf; stroke-width: 2px; }
#graph g.node.selected path, #graph g.node.selected polygon,
#graph g.node.selected ellipse { stroke: #d62728; stroke-width: 3px; }
#graph g.edge.related path { stroke: #d62728; stroke-width: 2px; }
#graph g.edge.related polygon { stroke: #d62728; fill: #d62728; }
#graph g.edge.selected path { stroke: #d62728; stroke-width: 3px; }
#graph g.edge.selected text { fill: #d62728; font-weight: bold; }
aside { width: 440px; max-width: 45%; overflow: auto; border-left: 1px solid #ddd;
  padding: 10px 14px; background: #fff; }
aside h2 { font-size: 14px; margin: 12px 0 4px; word-break: break-all; }
aside h2:first-child { margin-top: 0; }
aside .type { color: #555; font-weight: normal; }
aside .hint { color: #777; }
aside table { border-collapse: collapse; margin: 4px 0; }
aside td { padding: 1px 8px 1px 0; vertical-align: top; word-break: break-all; }
aside td.role { color: #777; }
aside pre { background: #f4f4f4; border: 1px solid #e2e2e2; padding: 6px 8px; margin: 4px 0;
  overflow: auto; font: 12px/1.35 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("net-data").textContent);
  var panel = document.getElementById("panel");
  var graph = document.getElementById("graph");
  var pinned = null;

  function add(parent, tag, className, text) {
    var element = document.createElement(tag);
    if (className) { element.className = className; }
    if (text !== undefined && text !== null) { element.textContent = String(text); }
    parent.appendChild(element);
    return element;
  }

  function blobRows(table, role, blobs) {
    blobs.forEach(function (blob, index) {
      var row = add(table, "tr");
      add(row, "td", "role", index === 0 ? role : "");
      add(row, "td", "", blob.name);
      add(row, "td", "", blob.shape);
    });
  }

  function showHint() {
    panel.textContent = "";
    add(panel, "p", "hint", "Hover over a layer to see its definition; click to keep it " +
      "shown (Escape or a click on the background releases it). Edges are blobs, " +
      "labelled with their shapes.");
  }

  function showNode(id) {
    var node = data.nodes[id];
    panel.textContent = "";
    if (!node) { showHint(); return; }
    if (node.kind === "output") {
      add(panel, "h2", "", node.blob);
      add(panel, "p", "", "Net output (no layer reads it), shape " + node.shape + ".");
      return;
    }
    if (node.kind === "missing") {
      add(panel, "h2", "", node.blob);
      add(panel, "p", "", "Read as a bottom, but no layer before the reader writes it.");
      return;
    }
    node.layers.forEach(function (layer) {
      var title = add(panel, "h2", "", layer.name + " ");
      add(title, "span", "type", "(" + layer.type + ")");
      var where = layer.line ? "line " + layer.line + ", " : "";
      add(panel, "div", "hint", where + layer.family);
      var table = add(panel, "table");
      blobRows(table, "bottom", layer.bottoms);
      blobRows(table, "top", layer.tops);
      add(panel, "pre", "", layer.text);
    });
  }

  function showEdge(id) {
    var edge = data.edges[id];
    panel.textContent = "";
    if (!edge) { showHint(); return; }
    add(panel, "h2", "", edge.blob);
    add(panel, "p", "", "Blob, shape " + edge.shape + ".");
  }

  function show(id) {
    if (data.nodes.hasOwnProperty(id)) { showNode(id); } else { showEdge(id); }
  }

  function mark(id, on) {
    var element = document.getElementById(id);
    if (element) { element.classList.toggle("selected", on); }
    Object.keys(data.edges).forEach(function (edgeId) {
      var edge = data.edges[edgeId];
      if (edge.tail === id || edge.head === id) {
        var path = document.getElementById(edgeId);
        if (path) { path.classList.toggle("related", on); }
      }
    });
  }

  function pin(id) {
    if (pinned) { mark(pinned, false); }
    pinned = id;
    mark(id, true);
    show(id);
  }

  function release() {
    if (pinned) { mark(pinned, false); }
    pinned = null;
    showHint();
  }

  function wire(id) {
    var element = document.getElementById(id);
    if (!element) { return; }
    element.addEventListener("mouseenter", function () { if (!pinned) { show(id); } });
    element.addEventListener("mouseleave", function () { if (!pinned) { showHint(); } });
    element.addEventListener("click", function (event) {
      event.stopPropagation();
      if (pinned === id) { release(); } else { pin(id); }
    });
  }

  Object.keys(data.nodes).forEach(wire);
  Object.keys(data.edges).forEach(wire);
  graph.addEventListener("click", release);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { release(); }
  });
  document.getElementById("fit").addEventListener("click", function () {
    graph.classList.toggle("fit");
  });
  showHint();
  document.body.dataset.ready = "yes";
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{style}</style>
</head>
<body>
<header>
<h1>{heading}</h1>
<span class="meta">{source}{counts}</span>
<span class="legend">{legend}</span>
<button type="button" id="fit" title="fit the drawing to the window width">fit width</button>
</header>
<main>
<div id="graph">
{svg}
</div>
<aside id="panel"></aside>
</main>
<script type="application/json" id="net-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
