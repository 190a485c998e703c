"""Deploy from train_val: the rewrite, its edge cases, the authors' own deploys, OpenCV."""

from __future__ import annotations

import csv

import pytest

from conftest import CORPUS, CORPUS_FILES, SAMPLES, corpus_params
from netdiff import structural_diff
from oracle import compare_with_opencv
from prototxt_tools import PrototxtError, parse
from prototxt_tools.layers.base import TEST
from prototxt_tools.lint.engine import lint_text
from prototxt_tools.net.model import Net
from prototxt_tools.rewrite import deploy
from prototxt_tools.schema.binding import bind
from test_cli import run

HEAD = '''name: "t"
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  transform_param { crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3 }
  data_param { source: "train_lmdb" batch_size: 16 }
}
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TEST }
  transform_param { crop_size: 8 mean_value: 1 mean_value: 2 mean_value: 3 }
  data_param { source: "test_lmdb" batch_size: 4 }
}
'''


def layer(name: str, layer_type: str, bottoms=(), tops=(), body: str = "") -> str:
    lines = [f'  name: "{name}"', f'  type: "{layer_type}"']
    lines += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
    if body:
        lines.append("  " + body)
    return "layer {\n" + "\n".join(lines) + "\n}\n"


def ip(name: str, bottom: str, top: str = "", outputs: int = 4) -> str:
    return layer(name, "InnerProduct", [bottom], [top or name],
                 f"inner_product_param {{ num_output: {outputs} }}")


def loss(name: str, bottom: str, layer_type: str = "SoftmaxWithLoss", extra: str = "") -> str:
    return layer(name, layer_type, [bottom, "label"], [name], extra)


def layers_of(text: str) -> list:
    """(name, type, bottoms, tops) of the TEST phase of ``text``."""
    view = Net.from_document(parse(text)).view(TEST)
    return [(lay.name, lay.type, list(lay.bottoms), list(lay.tops)) for lay in view.layers]


def input_shapes(text: str) -> dict:
    view = Net.from_document(parse(text)).view(TEST)
    return {lay.tops[0]: list(lay.param.input_param.shape[0].dim) for lay in view.layers
            if lay.type == "Input"}


# -- what goes and what becomes what -------------------------------------------------------

def test_classifier_becomes_input_net_softmax():
    text = HEAD + ip("fc", "data", outputs=10) + loss("loss", "fc") + layer(
        "acc", "Accuracy", ["fc", "label"], ["acc"], "include { phase: TEST }")
    result = deploy(text)
    assert result.changed and result.inputs == {"data": (1, 3, 8, 8)}
    assert layers_of(result.text) == [
        ("data", "Input", [], ["data"]),
        ("fc", "InnerProduct", ["data"], ["fc"]),
        ("prob", "Softmax", ["fc"], ["prob"]),
    ]
    assert input_shapes(result.text) == {"data": [1, 3, 8, 8]}
    assert "label" not in result.text and "include" not in result.text


def test_no_softmax_and_custom_prob_top():
    text = HEAD + ip("fc", "data") + loss("loss", "fc")
    assert [row[0] for row in layers_of(deploy(text, softmax=False).text)] == ["data", "fc"]
    renamed = deploy(text, prob_top="scores").text
    assert layers_of(renamed)[-1] == ("scores", "Softmax", ["fc"], ["scores"])


def test_existing_softmax_is_not_duplicated():
    text = HEAD + ip("fc", "data") + layer("sm", "Softmax", ["fc"], ["sm"]) + loss("loss", "fc")
    assert [row[0] for row in layers_of(deploy(text).text)] == ["data", "fc", "sm"]


def test_sigmoid_cross_entropy_becomes_sigmoid():
    text = HEAD + ip("fc", "data") + loss("loss", "fc", "SigmoidCrossEntropyLoss")
    assert layers_of(deploy(text).text)[-1] == ("prob", "Sigmoid", ["fc"], ["prob"])


def test_regression_loss_leaves_its_prediction():
    text = HEAD + ip("pred", "data", outputs=1) + loss("loss", "pred", "EuclideanLoss")
    assert [row[0] for row in layers_of(deploy(text).text)] == ["data", "pred"]


def test_auxiliary_heads_go_with_their_branches():
    text = (HEAD + ip("trunk", "data") + ip("aux_fc", "trunk")
            + layer("aux_relu", "ReLU", ["aux_fc"], ["aux_fc"])
            + loss("aux_loss", "aux_fc", extra="loss_weight: 0.3")
            + layer("aux_acc", "Accuracy", ["aux_fc", "label"], ["aux_acc"])
            + ip("fc", "trunk") + loss("loss", "fc", extra="loss_weight: 1"))
    assert [row[0] for row in layers_of(deploy(text).text)] == ["data", "trunk", "fc", "prob"]


def test_train_only_loss_still_gives_probabilities():
    # VGG-style: the loss runs in TRAIN only and TEST has just an Accuracy layer.
    text = (HEAD + ip("fc", "data")
            + layer("acc", "Accuracy", ["fc", "label"], ["acc"], "include { phase: TEST }")
            + loss("loss", "fc", extra="include { phase: TRAIN }"))
    result = deploy(text)
    assert layers_of(result.text)[-1] == ("prob", "Softmax", ["fc"], ["prob"])
    assert "include" not in result.text


def test_label_branch_goes_and_label_is_not_an_input():
    text = (HEAD + ip("fc", "data")
            + layer("label_flat", "Flatten", ["label"], ["label_flat"])
            + layer("loss", "SoftmaxWithLoss", ["fc", "label_flat"], ["loss"]))
    result = deploy(text)
    assert [row[0] for row in layers_of(result.text)] == ["data", "fc", "prob"]
    assert set(result.inputs) == {"data"}


def test_dropout_removed_in_place_and_bypassed_otherwise():
    text = (HEAD + ip("fc1", "data")
            + layer("drop1", "Dropout", ["fc1"], ["fc1"])
            + layer("drop2", "Dropout", ["fc1"], ["fc1_drop"])
            + ip("fc2", "fc1_drop") + ip("side", "fc1_drop") + layer(
                "cat", "Concat", ["fc2", "side"], ["cat"]) + loss("loss", "cat"))
    rows = layers_of(deploy(text).text)
    assert [row[0] for row in rows] == ["data", "fc1", "fc2", "side", "cat", "prob"]
    assert rows[2][2] == ["fc1"] and rows[3][2] == ["fc1"]
    kept = deploy(text, keep_dropout=True).text
    assert [row[0] for row in layers_of(kept)][2:4] == ["drop1", "drop2"]


def test_training_settings_stripped_and_comments_kept():
    text = HEAD + '''force_backward: true
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  # weights shared with the siamese twin
  param { name: "conv_w" lr_mult: 1 decay_mult: 1 }
  param { lr_mult: 2 decay_mult: 0 }
  convolution_param {
    num_output: 4  # four feature maps
    kernel_size: 3
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layer {
  name: "bn"
  type: "BatchNorm"
  bottom: "conv"
  top: "conv"
  param { lr_mult: 0 }
  param { lr_mult: 0 }
  param { lr_mult: 0 }
  batch_norm_param { use_global_stats: false eps: 0.001 }
}
layer {
  name: "scale"
  type: "Scale"
  bottom: "conv"
  top: "conv"
  scale_param { bias_term: true filler { value: 1 } }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "conv"
  bottom: "label"
  top: "loss"
  loss_weight: 1
  propagate_down: true
  propagate_down: false
  loss_param { ignore_label: 255 }
}
'''
    result = deploy(text)
    out = result.text
    for gone in ("lr_mult", "decay_mult", "filler", "use_global_stats", "force_backward",
                 "loss_weight", "propagate_down", "ignore_label", "include"):
        assert gone not in out, gone
    assert 'param { name: "conv_w" }' in out  # weight sharing survives
    assert "# four feature maps" in out and "# weights shared with the siamese twin" in out
    assert "eps: 0.001" in out and "bias_term: true" in out
    message = bind(parse(out)).message
    assert [lay.name for lay in message.layer] == ["data", "conv", "bn", "scale", "prob"]


# -- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data_layer,shape", [
    ('layer { name: "d" type: "ImageData" top: "data" top: "label"\n'
     '  image_data_param { source: "list.txt" new_height: 20 new_width: 30 }\n}\n', [1, 3, 20, 30]),
    ('layer { name: "d" type: "ImageData" top: "data" top: "label"\n'
     '  image_data_param { source: "l.txt" new_height: 20 new_width: 30 is_color: false }\n}\n',
     [1, 1, 20, 30]),
    ('layer { name: "d" type: "MemoryData" top: "data" top: "label"\n'
     '  memory_data_param { batch_size: 5 channels: 2 height: 6 width: 7 }\n}\n', [1, 2, 6, 7]),
    ('layer { name: "d" type: "DummyData" top: "data" top: "label"\n'
     '  dummy_data_param { shape { dim: 9 dim: 4 } shape { dim: 9 } }\n}\n', [1, 4]),
])
def test_input_shape_from_the_data_layer(data_layer, shape):
    text = 'name: "t"\n' + data_layer + ip("fc", "data") + loss("loss", "fc")
    assert input_shapes(deploy(text).text) == {"data": shape}


def test_unknown_shape_is_a_located_error_and_input_shape_fixes_it():
    text = ('name: "t"\nlayer {\n  name: "mnist"\n  type: "Data"\n  top: "data"\n'
            '  top: "label"\n  data_param { source: "mnist_lmdb" batch_size: 64 }\n}\n'
            + ip("fc", "data") + loss("loss", "fc"))
    with pytest.raises(PrototxtError) as caught:
        deploy(text, path="net.prototxt")
    message = str(caught.value)
    assert message.startswith("net.prototxt:2:1: data layer 'mnist' (Data)")
    assert "--input-shape data=" in message
    given = deploy(text, input_shapes={"data": (2, 1, 28, 28)})
    assert input_shapes(given.text) == {"data": [2, 1, 28, 28]}


def test_shape_read_from_the_lmdb_when_it_is_there(tmp_path):
    lmdb_helpers = pytest.importorskip("test_data")
    import numpy as np

    image = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7)
    lmdb_helpers.make_lmdb(tmp_path / "db", [("0", lmdb_helpers.raw_datum(image, 3))])
    net = tmp_path / "net.prototxt"
    net.write_text('name: "t"\nlayer { name: "d" type: "Data" top: "data" top: "label"\n'
                   '  data_param { source: "db" batch_size: 8 backend: LMDB } }\n'
                   + ip("fc", "data") + loss("loss", "fc"))
    result = deploy(net.read_text(), path=str(net))  # "db" is relative to the net's folder
    assert input_shapes(result.text) == {"data": [1, 2, 5, 7]}
    assert any("first record" in note for note in result.notes)


def test_channels_read_from_the_mean_file(tmp_path):
    import numpy as np

    from prototxt_tools.schema.caffemodel import write_binaryproto

    write_binaryproto(np.zeros((1, 3, 40, 50), np.float32), tmp_path / "mean.binaryproto")
    net = tmp_path / "net.prototxt"
    layer_text = ('name: "t"\nlayer {{ name: "d" type: "Data" top: "data" top: "label"\n'
                  '  transform_param {{ mean_file: "mean.binaryproto" {crop} }}\n'
                  '  data_param {{ source: "absent_lmdb" batch_size: 8 backend: LMDB }} }}\n')
    for crop, shape in (("crop_size: 32", [1, 3, 32, 32]), ("", [1, 3, 40, 50])):
        net.write_text(layer_text.format(crop=crop) + ip("fc", "data") + loss("loss", "fc"))
        result = deploy(net.read_text(), path=str(net))
        assert input_shapes(result.text) == {"data": shape}
        assert any("mean_file" in note for note in result.notes)


def test_train_only_data_layer_gives_the_inputs():
    text = ('name: "t"\n' + layer("data", "DummyData", [], ["data", "label"],
                                  "dummy_data_param { shape { dim: 8 dim: 3 } "
                                  "shape { dim: 8 } }\n  include { phase: TRAIN }")
            + ip("fc", "data") + loss("loss", "fc"))
    result = deploy(text)
    assert layers_of(result.text)[0] == ("data", "Input", [], ["data"])
    assert input_shapes(result.text) == {"data": [1, 3]}
    assert any("TRAIN" in note for note in result.notes)


def test_stage_specific_net_names_the_stages():
    text = ('name: "t"\n' + layer("data", "DummyData", [], ["data"],
                                  'dummy_data_param { shape { dim: 2 dim: 3 } }\n'
                                  '  include { phase: TEST stage: "on-test" }')
            + ip("fc", "data")
            + layer("loss", "EuclideanLoss", ["fc", "fc"], ["loss"]))
    with pytest.raises(PrototxtError, match="pass --stage, one of on-test"):
        deploy(text)
    result = deploy(text, stages=["on-test"])
    assert input_shapes(result.text) == {"data": [1, 3]}


# -- whole files -----------------------------------------------------------------------------

def test_resnet_tiny_sample_matches_the_hand_written_deploy():
    source = SAMPLES / "resnet_tiny_train_val.prototxt"
    ours = deploy(source.read_text(), path=str(source))
    theirs = (SAMPLES / "resnet_tiny_deploy.prototxt").read_text()
    assert bind(parse(ours.text)).message == bind(parse(theirs)).message
    assert structural_diff(ours.text, theirs) == []


def test_legacy_v1_net_is_upgraded_first():
    source = SAMPLES / "lenet_v1.prototxt"
    result = deploy(source.read_text(), path=str(source), input_shapes={"data": (1, 1, 28, 28)})
    assert result.notes[0].startswith("upgraded from the legacy format")
    assert [row[1] for row in layers_of(result.text)] == [
        "Input", "Convolution", "Pooling", "Convolution", "Pooling", "InnerProduct", "ReLU",
        "InnerProduct", "Softmax"]


def test_crlf_and_bom_are_kept():
    text = "\ufeff" + (HEAD + ip("fc", "data") + loss("loss", "fc")).replace("\n", "\r\n")
    out = deploy(text.encode("utf-8")).text
    assert out.startswith("\ufeff") and "\r\n" in out and "\n" not in out.replace("\r\n", "")


def _sample_train_vals() -> list:
    return [("lenet_bn_train_val.prototxt", {"data": (1, 1, 28, 28)}),
            ("resnet_tiny_train_val.prototxt", {}),
            ("lenet_v1.prototxt", {"data": (1, 1, 28, 28)})]


@pytest.mark.parametrize("name,shapes", _sample_train_vals())
def test_sample_deploys_lint_clean_run_in_opencv_and_are_fixed_points(name, shapes):
    path = SAMPLES / name
    result = deploy(path.read_text(), path=str(path), input_shapes=shapes)
    assert lint_text(result.text, "deploy.prototxt").failing("error") == []
    again = deploy(result.text, path="deploy.prototxt")
    assert not again.changed and again.text == result.text
    compare_with_opencv(result.text, Net.from_document(parse(result.text)))


@pytest.mark.parametrize("path", [p for p in sorted(SAMPLES.glob("*.prototxt"))
                                  if "deploy" in p.name])
def test_deploy_of_a_deploy_changes_nothing(path):
    result = deploy(path.read_bytes(), path=str(path))
    assert not result.changed and result.text == path.read_text()


# -- the authors' own deploys ----------------------------------------------------------------

CAFFENET = "BVLC__caffe__models__bvlc_reference_caffenet__"
FCN8S = "shelhamer__fcn.berkeleyvision.org__voc-fcn8s__"
FRCNN = "rbgirshick__py-faster-rcnn__models__pascal_voc__VGG16__faster_rcnn_end2end__"
ENET = "TimoSaemann__ENet__prototxts__enet_"

# (train_val, their deploy, --input-shape as in their deploy, every expected difference).
# The closing note of issue 5 explains each difference.
PAIRS = [
    (CAFFENET + "train_val.prototxt", CAFFENET + "deploy.prototxt", {"data": (10, 3, 227, 227)},
     ["only theirs: drop6 (Dropout)", "only theirs: drop7 (Dropout)"]),
    ("BVLC__caffe__examples__mnist__lenet_train_test.prototxt",
     "BVLC__caffe__examples__mnist__lenet.prototxt", {"data": (64, 1, 28, 28)}, []),
    (FCN8S + "train.prototxt", FCN8S + "deploy.prototxt", {"data": (1, 3, 500, 500)},
     ["only ours: prob (Softmax)"]),
    (FCN8S + "val.prototxt", FCN8S + "deploy.prototxt", {"data": (1, 3, 500, 500)},
     ["only ours: prob (Softmax)"]),
    ("JDwu1120__jianyezhimu__network.prototxt", "JDwu1120__jianyezhimu__deploy.prototxt",
     {"data": (1, 3, 1000, 1000)}, ["ip2: num_output: 1 (ours) / num_output: 10 (theirs)"]),
    ("tuzand__logoretrieval__models__vgg_16__train.prototxt",
     "tuzand__logoretrieval__models__vgg_16__VGG_ILSVRC_16_layers_deploy.prototxt",
     {"data": (1, 3, 224, 224)},
     ["only ours: fc8-5 (InnerProduct)", "only theirs: drop6 (Dropout)",
      "only theirs: drop7 (Dropout)", "only theirs: fc8 (InnerProduct)",
      'prob: bottom: "fc8" (ours) / bottom: "fc1000" (theirs)']),
    (FRCNN + "train.prototxt", FRCNN + "test.prototxt",
     {"data": (1, 3, 224, 224), "im_info": (1, 3), "gt_boxes": (1, 5)},
     ["only ours: input gt_boxes (input 1x5)", "only ours: roi-data (Python)",
      "only ours: prob (Softmax)", "only theirs: drop6 (Dropout)",
      "only theirs: drop7 (Dropout)", "only theirs: cls_prob (Softmax)",
      'proposal: top: "rpn_rois" (ours) / top: "rois" (theirs)']),
]


def _corpus(name: str):
    path = CORPUS / "files" / name
    if not path.exists():
        pytest.skip(f"no corpus file {name}")
    return path


def _pair_params() -> list:
    if not CORPUS_FILES:
        return [pytest.param(None, None, None, None,
                             marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    return [pytest.param(*pair, id=pair[0][:60]) for pair in PAIRS]


@pytest.mark.parametrize("train_val,theirs,shapes,expected", _pair_params())
def test_deploy_matches_the_authors_deploy(train_val, theirs, shapes, expected):
    ours = deploy(_corpus(train_val).read_bytes(), path=train_val, input_shapes=shapes)
    assert structural_diff(ours.text, _corpus(theirs).read_text()) == expected
    assert lint_text(ours.text, "deploy.prototxt").failing("error") == []
    assert not deploy(ours.text, path="deploy.prototxt").changed


def test_enet_deploy_differs_only_by_bn_absorption_and_spatial_dropout():
    """ENet's published deploy is the net after its authors' BN-absorption script (the fork
    'BN' layers merged into the convolutions, which therefore gain a bias) and with the
    spatial-dropout Python layers removed; ours keeps both, and adds the Softmax."""
    ours = deploy(_corpus(ENET + "train_encoder_decoder.prototxt").read_bytes(),
                  input_shapes={"data": (1, 3, 512, 1024)})
    diff = structural_diff(ours.text, _corpus(ENET + "deploy_final.prototxt").read_text())
    only_ours = [line for line in diff if line.startswith("only ours")]
    assert not [line for line in diff if line.startswith("only theirs")]
    assert {line.rsplit("(", 1)[1] for line in only_ours} == {"BN)", "Python)", "Softmax)"}
    changed = [line for line in diff if not line.startswith("only")]
    for line in changed:
        assert ("bias_term: false (ours) / bias_term: true (theirs)" in line
                or line.split(": ", 1)[1].startswith("bottom:")), line
    removed = {line.split()[2] for line in only_ours}
    for line in changed:
        if "bottom:" in line:  # rewired around a removed layer
            assert any(f'"{name}"' in line for name in removed), line
    assert any("Python layers kept" in note for note in ours.notes)


def _opencv_pairs() -> list:
    if not CORPUS_FILES:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason="no corpus"))]
    return [
        pytest.param(PAIRS[0][0], {"data": (1, 3, 227, 227)}, id="caffenet"),
        pytest.param(PAIRS[1][0], {"data": (1, 1, 28, 28)}, id="lenet"),
        # Fully convolutional up to ip1: a smaller image keeps the test quick.
        pytest.param(PAIRS[4][0], {"data": (1, 3, 128, 128)}, id="jianyezhimu"),
    ]


@pytest.mark.parametrize("train_val,shapes", _opencv_pairs())
def test_corpus_deploys_run_in_opencv(train_val, shapes):
    text = deploy(_corpus(train_val).read_bytes(), input_shapes=shapes).text
    compare_with_opencv(text, Net.from_document(parse(text)))


def _corpus_deploys() -> list:
    manifest = CORPUS / "manifest.tsv"
    if not manifest.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no corpus"))]
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [pytest.param(row["file"], id=row["file"][:70]) for row in rows
            if row["kind"] == "deploy"]


@pytest.mark.parametrize("name", _corpus_deploys())
def test_corpus_deploy_of_a_deploy_changes_nothing(name):
    path = _corpus(name)
    result = deploy(path.read_bytes(), path=name)
    assert not result.changed
    assert result.text.encode("utf-8") == path.read_bytes().lstrip(b"\xef\xbb\xbf") or \
        result.text == parse(path.read_bytes(), name).to_text()


# -- the command -----------------------------------------------------------------------------

def test_deploy_command_writes_the_file_and_reports(tmp_path):
    source = tmp_path / "train_val.prototxt"
    source.write_text(HEAD + ip("fc", "data") + loss("loss", "fc"))
    out = tmp_path / "deploy.prototxt"
    code, stdout, stderr = run(["deploy", str(source), "-o", str(out)])
    assert code == 0, stderr
    assert layers_of(out.read_text())[-1][1] == "Softmax"
    assert "inputs data: 1x3x8x8" in stderr and stdout == ""


def test_deploy_command_errors_cleanly(tmp_path):
    source = tmp_path / "train_val.prototxt"
    source.write_text('name: "t"\nlayer { name: "d" type: "Data" top: "data" }\n'
                      + ip("fc", "data"))
    out = tmp_path / "deploy.prototxt"
    code, stdout, stderr = run(["deploy", str(source), "-o", str(out)])
    assert code == 2 and not out.exists()
    assert stderr.strip().count("\n") == 0 and f"{source}:2:1: data layer 'd'" in stderr
    code, _, stderr = run(["deploy", str(source), "-o", str(out), "--input-shape",
                           "data=1,3,4,4"])
    assert code == 0 and out.exists(), stderr


def test_deploy_command_refuses_to_overwrite_its_input(tmp_path):
    source = tmp_path / "train_val.prototxt"
    text = HEAD + ip("fc", "data") + loss("loss", "fc")
    source.write_text(text)
    code, _, stderr = run(["deploy", str(source), "-o", str(source)])
    assert code == 2 and "refusing to overwrite the input" in stderr
    assert source.read_text() == text


def test_deploy_command_prints_to_stdout_without_output():
    code, stdout, stderr = run(["deploy", "-"],
                               (HEAD + ip("fc", "data") + loss("loss", "fc")).encode())
    assert code == 0, stderr
    assert layers_of(stdout)[-1][1] == "Softmax"


@pytest.mark.parametrize("path", [p for p in corpus_params()
                                  if p.values[0] is None or "solver" not in p.values[0].name])
def test_every_corpus_net_deploys_cleanly_or_says_why(path):
    """Each corpus net either gives a deploy net that lints without errors (and is a fixed
    point), or a one-line located PrototxtError (a shape only --input-shape can give, a V0
    net Caffe cannot upgrade, ...); never another exception."""
    try:
        result = deploy(path.read_bytes(), path=path.name)
    except PrototxtError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(path.name)
        return
    if not result.changed:
        return  # already a deploy net, left as it is (its own findings are the linter's)
    assert lint_text(result.text, "deploy.prototxt").failing("error") == []
    assert deploy(result.text, path="deploy.prototxt").changed is False
