"""Drawing nets: DOT text, SVG/PNG through Graphviz, the HTML page, and `prototxt draw`."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import SAMPLES, corpus_net_params
from prototxt_tools import PrototxtError
from prototxt_tools.cli import main
from prototxt_tools.draw import build_graph, render, to_dot, to_html
from prototxt_tools.draw.dot import FAMILY_COLORS, UNKNOWN_COLOR
from prototxt_tools.layers.base import TEST, TRAIN
from prototxt_tools.net.model import Net
from prototxt_tools.syntax.parser import parse
from test_cli import run

SVG = "{http://www.w3.org/2000/svg}"
NETS = sorted(path for path in SAMPLES.glob("*.prototxt") if path.name != "solver.prototxt")
TRAIN_VAL = SAMPLES / "resnet_tiny_train_val.prototxt"
CHROMIUM = "/usr/bin/chromium"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NO_DOT = ("{out}: drawing .{ext} needs Graphviz's dot program, which is not installed (Debian: "
          "apt-get install graphviz); .dot output works without it")

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot program is not installed "
                                      "(apt-get install graphviz)")
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"no headless browser at {CHROMIUM} "
                                           f"(apt-get install chromium)")


def _net(path, shapes=None) -> Net:
    return Net.from_document(parse(path.read_bytes(), str(path)), input_shapes=shapes)


def _text_net(text: str) -> Net:
    return Net.from_document(parse(text, "test.prototxt"))


def _folded(view, layer, collapse: bool) -> bool:
    """Restated independently of the drawing code: an in-place layer with a writer."""
    return (collapse and len(layer.bottoms) == 1 and len(layer.tops) == 1
            and layer.bottoms[0] == layer.tops[0] and view.writer(layer, 0) is not None)


def _head(view, layer, collapse: bool):
    while _folded(view, layer, collapse):
        layer = view.writer(layer, 0)[0]
    return layer


def _expected_counts(view, collapse: bool) -> tuple:
    """(nodes, edges): one node per unfolded layer, net output and never-written blob; one
    edge per (writer, reader) pair outside a folded chain, per never-written bottom and per
    net output."""
    edges = 0
    for layer in view.layers:
        for index, ref in enumerate(view.inputs[layer.index]):
            if ref is None:
                edges += 1
            elif view.producer.get(ref) and not (index == 0 and _folded(view, layer, collapse)):
                edges += 1
    edges += len(view.net_outputs)
    missing = {layer.bottoms[index] for layer, index in view.unknown_bottoms}
    nodes = sum(not _folded(view, layer, collapse) for layer in view.layers)
    return nodes + len(view.net_outputs) + len(missing), edges


def _svg_groups(svg: bytes, kind: str) -> dict:
    """{id: (text of its labels, fill, stroke-dasharray)} for the node or edge <g>s."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    groups = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != kind:
            continue
        text = "\n".join(t.text or "" for t in group.iter(f"{SVG}text"))
        shape = next((e for e in group.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon",
                                                            f"{SVG}ellipse")), None)
        fill = shape.get("fill") if shape is not None else None
        dashes = shape.get("stroke-dasharray") if shape is not None else None
        groups[group.get("id")] = (text, fill, dashes)
    return groups


# -- samples through Graphviz ------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("collapse", [True, False], ids=["collapsed", "each-layer"])
@pytest.mark.parametrize("path", NETS, ids=[p.name for p in NETS])
def test_sample_svg_shows_every_layer_blob_and_family(path, collapse):
    net = _net(path)
    view = net.view(TEST)
    svg = render(to_dot(net, collapse=collapse), "svg")
    nodes = _svg_groups(svg, "node")
    edges = _svg_groups(svg, "edge")
    expected_nodes, expected_edges = _expected_counts(view, collapse)
    assert len(nodes) == expected_nodes
    assert len(edges) == expected_edges
    folded = 0
    families = set()
    for layer in view.layers:
        head = _head(view, layer, collapse)
        text, fill, _ = nodes[f"l{head.index}"]
        assert layer.name in text, (layer.name, text)
        if head is not layer:
            folded += 1
            assert f"+ {layer.name}" in text
            continue
        assert f"{layer.name} ({layer.type})" in text
        assert fill == FAMILY_COLORS[layer.spec.family], layer.name
        families.add(layer.spec.family)
    assert {"vision", "data"} <= families
    if collapse and any(len(layer.in_place_tops) for layer in view.layers):
        assert folded
    if not collapse:
        assert folded == 0


@needs_dot
def test_resnet_colours_every_family_it_uses():
    svg = render(to_dot(_net(TRAIN_VAL), collapse=False), "svg")
    fills = {fill for _, fill, _ in _svg_groups(svg, "node").values()}
    for family in ("data", "vision", "normalization", "activation", "structure", "common",
                   "loss"):
        assert FAMILY_COLORS[family] in fills, family


# -- DOT text ----------------------------------------------------------------------------------

ODD = r'''name: "odd \"net\""
layer { name: "in\"put" type: "Input" top: "da\\ta"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "back\\slash \\N" type: "Convolution" bottom: "da\\ta" top: "c&amp;<b>"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "new\nline" type: "ReLU" bottom: "c&amp;<b>" top: "c&amp;<b>" }
layer { name: "ünïcødé 名前" type: "MyForkLayer" bottom: "c&amp;<b>" top: "f" }
layer { name: "tab\there" type: "ReLU" bottom: "f" top: "g" }
layer { name: "</script><script>alert(1)</script>" type: "Eltwise" bottom: "g"
        bottom: "ghost" top: "h" }
'''
ODD_SHOWN = ['in"put', "back\\slash \\N", "new\\nline", "ünïcødé 名前", "tab\\there",
             "</script><script>alert(1)</script>"]


def test_dot_escapes_quotes_backslashes_newlines_entities():
    dot = to_dot(_text_net(ODD), collapse=False)
    assert 'label="odd \\"net\\" (TEST)"' in dot
    assert 'label="in\\"put (Input)\\n1x3x8x8"' in dot
    assert 'label="back\\\\slash \\\\N (Convolution)\\n3x3, 4"' in dot
    assert 'label="new\\\\nline (ReLU)"' in dot  # shown as \n, not a line break
    assert 'label="ünïcødé 名前 (MyForkLayer)"' in dot  # UTF-8 as is
    assert 'label="tab\\\\there (ReLU)"' in dot
    assert "c&amp;amp;<b>" in dot  # Graphviz reads entities: & must become &amp;
    assert "\t" not in dot and dot.count("\n") == len(dot.splitlines())
    for line in dot.splitlines()[1:-1]:  # every statement is one line and ends properly
        assert line.startswith("  ") and line.endswith(";"), line


@needs_dot
def test_odd_names_render_as_written():
    svg = render(to_dot(_text_net(ODD), collapse=False), "svg")
    nodes = _svg_groups(svg, "node")
    texts = "\n".join(text for text, _, _ in nodes.values())
    for shown in ODD_SHOWN:
        assert shown in texts, shown
    edges = {text for text, _, _ in _svg_groups(svg, "edge").values()}
    assert "1x4x6x6" in edges  # the conv output, through the in-place ReLU
    assert "f" in edges and "g" in edges  # after the fork layer, shapes are unknown: names
    assert "ghost" in edges and "(never written)" in texts


def test_fork_layers_are_grey_and_dashed():
    graph = build_graph(_text_net(ODD))
    dot = graph.to_dot()
    fork = next(node for node in graph.nodes if node.kind == "layer"
                and node.layers[0].type == "MyForkLayer")
    line = next(line for line in dot.splitlines() if line.startswith(f"  {fork.id} ["))
    assert f'fillcolor="{UNKNOWN_COLOR}"' in line and "dashed" in line


def test_collapse_folds_in_place_chains_into_the_writer():
    net = _net(SAMPLES / "resnet_tiny_deploy.prototxt")
    view = net.view(TEST)
    conv1 = next(layer for layer in view.layers if layer.name == "conv1")
    chain = [layer for layer in view.layers
             if layer.index > conv1.index and list(layer.bottoms) == ["conv1"]
             and list(layer.tops) == ["conv1"]]
    assert [layer.type for layer in chain] == ["BatchNorm", "Scale", "ReLU"]
    collapsed = to_dot(net)
    head = next(line for line in collapsed.splitlines() if line.startswith(f"  l{conv1.index} ["))
    assert "conv1 (Convolution)" in head
    assert " + ".join(layer.name for layer in chain) in head.replace("\\n", " ")
    for layer in chain:
        assert f"  l{layer.index} [" not in collapsed
    each = to_dot(net, collapse=False)
    for layer in chain:
        assert f'  l{layer.index} [id="l{layer.index}", label="{layer.name} ({layer.type})' in each
    ids = [f"l{layer.index}" for layer in [conv1, *chain]]
    for tail, head_id in zip(ids, ids[1:]):
        assert f"  {tail} -> {head_id} [" in each


def test_collapse_keeps_ids_stable():
    net = _net(TRAIN_VAL)
    collapsed = build_graph(net)
    each = build_graph(net, collapse=False)
    assert {n.id for n in collapsed.nodes if n.kind == "layer"} < \
        {n.id for n in each.nodes if n.kind == "layer"}
    assert to_dot(net) == to_dot(_net(TRAIN_VAL))  # deterministic


def test_phases_draw_their_own_layers():
    net = _net(TRAIN_VAL)
    train = to_dot(net, phase=TRAIN)
    test = to_dot(net, phase=TEST)
    assert train != test
    # The TRAIN Data layer is layer 0, the TEST one layer 1 (both named "cifar").
    assert "  l0 [" in train and "  l1 [" not in train
    assert "  l1 [" in test and "  l0 [" not in test
    assert "128x3x32x32" in train and "100x3x32x32" in test
    assert "accuracy" not in train
    assert "accuracy (Accuracy)" in test and "accuracy_top5 (Accuracy)\\ntop-5" in test
    assert 'label="ResNetTiny (TRAIN)"' in train and 'label="ResNetTiny (TEST)"' in test


def test_rankdir():
    net = _net(TRAIN_VAL)
    assert "rankdir=TB" in to_dot(net)
    assert "rankdir=LR" in to_dot(net, rankdir="LR")
    with pytest.raises(ValueError):
        to_dot(net, rankdir="sideways")


def test_edge_labels_show_shapes_given_by_input_shape():
    path = SAMPLES / "lenet_bn_train_val.prototxt"
    unknown = to_dot(_net(path))
    assert 'label="100x?x?x?"' in unknown  # the Data layer knows its batch only
    known = to_dot(_net(path, {"data": (100, 1, 28, 28)}))
    assert 'label="100x1x28x28"' in known
    assert 'label="100x20x24x24"' in known  # conv1: 5x5, 20 outputs
    assert 'label="100x10"' in known and 'label="scalar"' in known


def test_key_parameters_in_labels():
    dot = to_dot(_net(SAMPLES / "resnet50_deploy.prototxt"))
    assert 'label="data (Input)\\n1x3x224x224"' in dot
    assert "conv1 (Convolution)\\n7x7/2, 64" in dot
    assert "pool1 (Pooling)\\nMAX 3x3/2" in dot
    assert "res2a (Eltwise)\\nSUM" in dot


def test_render_dot_needs_no_graphviz(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    text = to_dot(_net(TRAIN_VAL))
    assert render(text, "dot") == text.encode("utf-8")
    with pytest.raises(PrototxtError, match=r"drawing \.png needs Graphviz's dot program"):
        render(text, "png")


@needs_dot
def test_render_reports_graphviz_failures_in_one_line():
    with pytest.raises(PrototxtError, match="Graphviz's dot failed: ") as info:
        render("digraph { a -> }", "svg")
    assert "\n" not in str(info.value)


# -- the HTML page -----------------------------------------------------------------------------

def _page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="net-data">(.*?)</script>', page,
                      re.S)
    assert found
    return json.loads(found.group(1))


@needs_dot
def test_html_page_is_self_contained_and_maps_every_node():
    net = _net(TRAIN_VAL)
    page = to_html(net)
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "src=" not in page
    data = _page_data(page)
    graph = build_graph(net)
    assert set(data["nodes"]) == {node.id for node in graph.nodes}
    assert set(data["edges"]) == {edge.id for edge in graph.edges}
    for key in [*data["nodes"], *data["edges"]]:
        assert f'id="{key}"' in page, key
    for layer in net.view(TEST).layers:
        assert layer.name in page
    conv1 = data["nodes"]["l2"]["layers"]
    assert [layer["name"] for layer in conv1] == ["conv1", "conv1_bn", "conv1_scale",
                                                  "conv1_relu"]
    assert conv1[0]["text"].startswith('layer {\n  name: "conv1"\n  type: "Convolution"')
    assert "kernel_size: 3" in conv1[0]["text"] and conv1[0]["line"] == 49
    assert conv1[0]["bottoms"] == [{"name": "data", "shape": "100x3x32x32"}]
    assert conv1[3]["tops"] == [{"name": "conv1", "shape": "100x16x32x32"}]


@needs_dot
def test_html_cannot_be_broken_by_layer_names():
    page = to_html(_text_net(ODD))
    assert page.count("</script>") == 2  # the data and the code, nothing from a name
    names = [layer["name"] for node in _page_data(page)["nodes"].values()
             for layer in node.get("layers", ())]
    assert names == ODD_SHOWN


def _chromium(page, tmp_path) -> tuple:
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, timeout=180)
    dom = result.stdout.decode("utf-8", "replace")
    log = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, log[-2000:]
    console = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    assert 'data-ready="yes"' in dom, "the page's script did not run to its end"
    return dom, log


@needs_dot
@needs_chromium
@pytest.mark.parametrize("path", NETS, ids=[p.name for p in NETS])
def test_html_runs_in_a_browser_without_errors(path, tmp_path):
    page = tmp_path / "net.html"
    code, _, err = run(["draw", str(path), "-o", str(page)])
    assert code == 0, err
    dom, _ = _chromium(page, tmp_path)
    for layer in _net(path).view(TEST).layers:
        assert html.escape(layer.name, quote=False) in dom, layer.name


@needs_dot
@needs_chromium
def test_html_click_shows_the_layer_definition(tmp_path):
    page = tmp_path / "net.html"
    clicked = to_html(_net(TRAIN_VAL)).replace(
        "</body>", '<script>document.getElementById("l2").dispatchEvent('
                   'new MouseEvent("click", {bubbles: true}));</script>\n</body>')
    page.write_text(clicked, encoding="utf-8")
    dom, _ = _chromium(page, tmp_path)
    panel = dom[dom.index('<aside id="panel"'):]
    panel = panel[:panel.index("</aside>")]
    for expected in ("conv1", "conv1_bn", "conv1_scale", "conv1_relu", "kernel_size: 3",
                     "100x16x32x32", "line 49"):
        assert expected in panel, expected
    assert 'class="node selected"' in dom


@needs_dot
@needs_chromium
def test_html_with_odd_names_runs_in_a_browser(tmp_path):
    page = tmp_path / "odd.html"
    page.write_text(to_html(_text_net(ODD)), encoding="utf-8")
    dom, _ = _chromium(page, tmp_path)
    assert dom.count("<script") == 2  # the name stayed text, never became markup
    for shown in ODD_SHOWN:
        assert html.escape(shown, quote=False) in dom, shown


# -- the command -------------------------------------------------------------------------------

def test_cli_help_has_exit_status_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["draw", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status: 0 written" in out and "prototxt draw deploy.prototxt -o net.svg" in out


def test_cli_dot_works_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "net.dot"
    code, stdout, err = run(["draw", str(TRAIN_VAL), "-o", str(out)])
    graph = build_graph(_net(TRAIN_VAL))
    assert (code, stdout) == (0, "")
    assert err == f"wrote {out} ({len(graph.view.layers)} layers, {len(graph.nodes)} nodes)\n"
    assert out.read_text(encoding="utf-8") == graph.to_dot()


def test_cli_options_reach_the_drawing(tmp_path):
    out = tmp_path / "net.dot"
    code, _, err = run(["draw", str(TRAIN_VAL), "-o", str(out), "--phase", "TRAIN",
                        "--rankdir", "LR", "--no-collapse"])
    assert code == 0, err
    assert out.read_text(encoding="utf-8") == to_dot(_net(TRAIN_VAL), phase=TRAIN,
                                                     rankdir="LR", collapse=False)
    path = SAMPLES / "lenet_bn_train_val.prototxt"
    code, _, err = run(["draw", str(path), "-o", str(out), "--input-shape",
                        "data=100,1,28,28"])
    assert code == 0, err
    assert 'label="100x20x24x24"' in out.read_text(encoding="utf-8")


@needs_dot
def test_cli_svg_png_html(tmp_path):
    for name in ("net.svg", "net.png", "net.html"):
        out = tmp_path / name
        code, _, err = run(["draw", str(TRAIN_VAL), "-o", str(out)])
        assert code == 0 and err.startswith(f"wrote {out} (31 layers, "), err
    assert ET.parse(tmp_path / "net.svg").getroot().tag == f"{SVG}svg"
    assert (tmp_path / "net.png").read_bytes().startswith(PNG_MAGIC)
    page = (tmp_path / "net.html").read_text(encoding="utf-8")
    assert "<svg" in page and 'dataset.ready = "yes"' in page
    assert all(layer.name in page for layer in _net(TRAIN_VAL).view(TEST).layers)


@pytest.mark.parametrize("name", ["net.jpg", "net", "net.SVGZ"])
def test_cli_bad_extension(tmp_path, name):
    out = tmp_path / name
    code, stdout, err = run(["draw", str(TRAIN_VAL), "-o", str(out)])
    assert (code, stdout) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith(f"{out}: ")
    assert "name it .svg, .png, .dot or .html" in err
    assert not out.exists()


@pytest.mark.parametrize("ext", ["svg", "png", "html"])
def test_cli_missing_graphviz_is_one_line_and_writes_nothing(tmp_path, monkeypatch, ext):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / f"net.{ext}"
    code, stdout, err = run(["draw", str(TRAIN_VAL), "-o", str(out)])
    assert (code, stdout) == (2, "")
    assert err == NO_DOT.format(out=out, ext=ext) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_refuses_to_overwrite_the_input(tmp_path):
    source = tmp_path / "net.dot"  # a net in a file whose name says .dot
    text = TRAIN_VAL.read_text(encoding="utf-8")
    source.write_text(text, encoding="utf-8")
    code, _, err = run(["draw", str(source), "-o", str(source)])
    assert code == 2 and "refusing to overwrite the input" in err
    assert len(err.splitlines()) == 1
    assert source.read_text(encoding="utf-8") == text


def test_cli_parse_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  name: "x"\n  type: "ReLU"\n')
    out = tmp_path / "net.dot"
    code, _, err = run(["draw", str(bad), "-o", str(out)])
    assert code == 2 and len(err.splitlines()) == 1
    assert re.match(rf"{re.escape(str(bad))}:\d+:\d+: ", err), err
    assert not out.exists()


def test_cli_nothing_to_draw(tmp_path):
    out = tmp_path / "net.dot"
    code, _, err = run(["draw", str(SAMPLES / "solver.prototxt"), "-o", str(out)])
    assert code == 2 and "no layers to draw" in err and len(err.splitlines()) == 1
    assert not out.exists()


# -- the corpus --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", corpus_net_params())
def test_corpus_draws(path):
    net = _net(path)
    assert net.layers
    for phase in (TRAIN, TEST):
        for collapse in (True, False):
            graph = build_graph(net, phase=phase, collapse=collapse)
            dot = graph.to_dot()
            assert dot.startswith("digraph net {\n") and dot.endswith("}\n")
            for node in graph.nodes:
                if node.kind == "layer" and node.layers[0].spec is None:
                    line = next(line for line in dot.splitlines()
                                if line.startswith(f"  {node.id} ["))
                    assert f'fillcolor="{UNKNOWN_COLOR}"' in line and "dashed" in line

