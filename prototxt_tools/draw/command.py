"""``prototxt draw``: the command-line face of :mod:`prototxt_tools.draw`.

Kept out of ``cli.py`` so the drawing code and its command live together; ``cli.py`` only
calls :func:`add_parser` while it builds its parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import PrototxtError

#: Output formats by the extension of -o.
FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".html": "html"}


def add_parser(commands: Any, formatter_class: Any) -> None:
    """Add the ``draw`` subcommand to ``commands`` (the parser's subparsers action)."""
    draw = commands.add_parser(
        "draw", formatter_class=formatter_class,
        help="draw the net as SVG, PNG, Graphviz DOT or an interactive HTML page",
        description="Draw the net Caffe instantiates for the chosen state (--phase, --stage): "
                    "layers are boxes coloured by family (types BVLC Caffe lacks are grey "
                    "and dashed), each edge is a blob from the layer writing it to a layer "
                    "reading it, labelled with its shape (give unknown input sizes with "
                    "--input-shape), and net outputs are ellipses. In-place layers (BatchNorm, "
                    "Scale, ReLU... whose top is their bottom) fold into the node of the layer "
                    "that wrote the blob, their names listed in its label; --no-collapse draws "
                    "each. The format follows the extension of -o: .dot (needs nothing), .svg "
                    "and .png (need Graphviz's dot program), .html (one self-contained page: "
                    "hover or click a layer to see its definition; needs dot too).\n\n"
                    "exit status: 0 written, 2 unreadable input, unknown output extension or "
                    "Graphviz missing",
        epilog="examples:\n"
               "  prototxt draw deploy.prototxt -o net.svg\n"
               "  prototxt draw train_val.prototxt --phase TRAIN --rankdir LR -o train.png\n"
               "  prototxt draw deploy.prototxt --input-shape data=1,3,224,224 -o net.html\n"
               "  prototxt draw deploy.prototxt --no-collapse -o net.dot",
    )
    draw.add_argument("net", metavar="NET")
    draw.add_argument("-o", "--output", required=True, metavar="FILE",
                      help="net.svg, net.png, net.dot or net.html")
    draw.add_argument("--phase", choices=["TEST", "TRAIN"], default="TEST",
                      help="the net state to draw (default TEST)")
    draw.add_argument("--stage", action="append", metavar="NAME",
                      help="a stage of the net state (repeatable)")
    draw.add_argument("--level", type=int, help="the net state's level")
    draw.add_argument("--rankdir", choices=["TB", "LR"], default="TB",
                      help="top to bottom (default) or left to right")
    draw.add_argument("--no-collapse", dest="collapse", action="store_false",
                      help="draw in-place layers as nodes of their own")
    draw.add_argument("--input-shape", action="append", metavar="NAME=N,C,H,W",
                      help="the shape of an input blob, for the edge labels")
    draw.set_defaults(handler=cmd_draw)


def cmd_draw(args: argparse.Namespace) -> int:
    """Handle ``prototxt draw``: check the output first, then read, draw and write at once."""
    from ..cli import _display, _reader, _refuse_overwrite, parse_input_shape
    from ..fileio import atomic_write
    from ..layers.base import TRAIN, TEST
    from ..net.model import Net
    from ..syntax.parser import parse
    from .dot import build_graph, render
    from .html import graph_to_html

    output = args.output
    extension = os.path.splitext(output)[1].lower()
    fmt = FORMATS.get(extension)
    if fmt is None:
        problem = (f"cannot draw to a {extension} file" if extension
                   else "the output has no extension to choose the drawing format")
        raise PrototxtError(f"{problem}; name it .svg, .png, .dot or .html", output)
    _refuse_overwrite(args.net, output)
    shapes = dict(parse_input_shape(text) for text in args.input_shape or ())
    display = _display(args.net)
    net = Net.from_document(parse(_reader(args.net), display), input_shapes=shapes)
    if not net.layers:
        raise PrototxtError("no layers to draw; is this a net?", display)
    phase = TRAIN if args.phase == "TRAIN" else TEST
    graph = build_graph(net, phase=phase, rankdir=args.rankdir, collapse=args.collapse,
                        stages=args.stage or (), level=args.level)
    if not graph.view.layers:
        raise PrototxtError(f"no layer is active in the {graph.view.state.describe()} "
                            f"state", display)
    try:
        if fmt == "html":
            data: Any = graph_to_html(graph)
        else:
            data = render(graph.to_dot(), fmt)
    except PrototxtError as exc:
        raise exc.with_path(output) if exc.path is None else exc from None
    atomic_write(output, data)
    layers = len(graph.view.layers)
    print(f"wrote {output} ({layers} layer{'s' if layers != 1 else ''}, "
          f"{len(graph.nodes)} node{'s' if len(graph.nodes) != 1 else ''})", file=sys.stderr)
    return 0
