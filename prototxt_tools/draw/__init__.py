"""Drawing nets: Graphviz DOT text, SVG/PNG through Graphviz's ``dot``, and an interactive page.

``to_dot(net)`` needs nothing but this package; ``render(dot_text, "svg")`` and ``to_html(net)``
run Graphviz's ``dot`` program (a clear one-line error when it is not installed).
"""

from .dot import build_graph, render, to_dot
from .html import to_html

__all__ = ["build_graph", "render", "to_dot", "to_html"]
