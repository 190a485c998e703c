"""freeze-bn: only use_global_stats (and the Scale learning rates) change; the linter then
reports BN004 exactly on the frozen layers."""

from __future__ import annotations

import pytest

from conftest import CORPUS_FILES, SAMPLE_FILES
from prototxt_tools import PrototxtError, parse
from prototxt_tools.layers.base import TRAIN
from prototxt_tools.lint.engine import lint_text
from prototxt_tools.net.model import Net
from prototxt_tools.rewrite import freeze_bn
from prototxt_tools.schema.binding import bind, detect_kind
from test_cli import run


def _nets_with_batchnorm() -> list:
    params = []
    for path in [*SAMPLE_FILES, *CORPUS_FILES]:
        try:
            document = parse(path.read_bytes(), path.name)
            if detect_kind(document) != "net":
                continue
            net = Net.from_document(document)
        except PrototxtError:
            continue
        if not net.is_deploy and any(layer.type == "BatchNorm" and layer.is_v2_syntax
                                     for layer in net.view(TRAIN).layers):
            params.append(pytest.param(path, id=path.name[:80]))
    return params


def _without_frozen_fields(message, frozen: set, scales: set):
    copy = type(message)()
    copy.CopyFrom(message)
    for layer in copy.layer:
        if layer.name in frozen and layer.type == "BatchNorm":
            layer.batch_norm_param.ClearField("use_global_stats")
            if not layer.batch_norm_param.ListFields():
                layer.ClearField("batch_norm_param")
        if layer.name in scales and layer.type == "Scale":
            for spec in layer.param:
                spec.ClearField("lr_mult")
            kept = [spec for spec in layer.param if spec.ListFields()]
            del layer.param[:]
            layer.param.extend(kept)
    return copy


def _frozen_already(scale) -> bool:
    specs = scale.param.param
    blobs = 1 + int(scale.param.scale_param.bias_term)
    return len(specs) >= blobs and all(spec.lr_mult == 0 for spec in specs[:blobs])


NETS = _nets_with_batchnorm()


def test_the_samples_and_corpus_give_enough_nets():
    assert len([p for p in NETS if "samples" in str(p.values[0])]) >= 2


@pytest.mark.parametrize("freeze_scale", [False, True], ids=["bn", "bn+scale"])
@pytest.mark.parametrize("path", NETS)
def test_freeze_changes_only_what_it_says(path, freeze_scale):
    text = path.read_bytes()
    result = freeze_bn(text, freeze_scale=freeze_scale, path=path.name)
    original_train = Net.from_document(parse(text, path.name)).view(TRAIN)
    if not any(not layer.param.bottom and layer.param.top for layer in original_train.layers):
        # no data in TRAIN: a TEST-only net, which never trains
        assert not result.changed and "TEST-only" in result.notes[0]
        return
    assert result.changed or not result.frozen
    before = bind(parse(text, path.name)).message
    after = bind(parse(result.text, path.name)).message
    frozen, scales = set(result.frozen), set(result.scales)
    assert _without_frozen_fields(after, frozen, scales) == \
        _without_frozen_fields(before, frozen, scales)
    net = Net.from_document(parse(result.text, path.name))
    train = net.view(TRAIN)
    for layer in train.layers:
        if layer.type == "BatchNorm":
            assert layer.param.batch_norm_param.use_global_stats, layer.name
        if layer.name in scales:
            assert [spec.lr_mult for spec in layer.param.param] == \
                [0.0] * len(layer.param.param) and len(layer.param.param) >= 1
    if freeze_scale:
        followers = [reader for layer in original_train.layers if layer.type == "BatchNorm"
                     for reader, _ in original_train.readers(layer, 0)
                     if reader.type == "Scale"]
        assert scales == {scale.name for scale in followers if not _frozen_already(scale)}
    # re-lint: BN004 exactly on the BatchNorm layers running in TRAIN, nothing new otherwise
    old = lint_text(text, path.name).findings
    new = lint_text(result.text, path.name).findings
    bn004 = {f.message.split("'")[1] for f in new if f.code == "BN004"}
    assert bn004 == {layer.name for layer in train.layers if layer.type == "BatchNorm"}
    old_other = {(f.code, f.message) for f in old if f.code != "BN004"}
    new_other = {(f.code, f.message) for f in new if f.code != "BN004"}
    assert new_other <= old_other, new_other - old_other
    assert freeze_bn(result.text, freeze_scale=freeze_scale).changed is False


def test_test_only_nets_are_left_alone():
    text = ('layer { name: "d" type: "Data" top: "x" include { phase: TEST } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }\n')
    result = freeze_bn(text)
    assert not result.changed and "TEST-only" in result.notes[0]


def test_deploy_nets_are_left_alone():
    deploy = next(p for p in SAMPLE_FILES if p.name == "resnet_tiny_deploy.prototxt")
    result = freeze_bn(deploy.read_bytes(), path=deploy.name)
    assert not result.changed and result.text == deploy.read_text()
    assert "deploy net" in result.notes[0]


def test_comments_and_layout_stay():
    text = '''name: "n"
layer { name: "d" type: "Data" top: "x" data_param { source: "db" batch_size: 2 } }
layer {
  name: "bn"  # the first one
  type: "BatchNorm"
  bottom: "x"
  top: "x"
  batch_norm_param { eps: 0.001 }  # tuned
}
layer {
  name: "sc"
  type: "Scale"
  bottom: "x"
  top: "x"
  param { lr_mult: 1 decay_mult: 0 }
  scale_param { bias_term: true }
}
'''
    result = freeze_bn(text, freeze_scale=True)
    assert result.text == text.replace(
        "batch_norm_param { eps: 0.001 }", "batch_norm_param { eps: 0.001 use_global_stats: true }"
    ).replace("param { lr_mult: 1 decay_mult: 0 }", "param { lr_mult: 0 decay_mult: 0 }").replace(
        "  scale_param {", "  param {\n    lr_mult: 0\n  }\n  scale_param {")


def test_test_only_batchnorm_is_left_alone():
    text = '''name: "n"
layer { name: "d" type: "Data" top: "x" data_param { source: "db" batch_size: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" include { phase: TEST } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
  include { phase: TRAIN } batch_norm_param { use_global_stats: false } }
'''
    result = freeze_bn(text)
    assert result.frozen == ["bn"]
    assert result.text.count("use_global_stats: true") == 1
    assert "include { phase: TEST } }" in result.text.splitlines()[2]


def test_command(tmp_path):
    source = tmp_path / "train_val.prototxt"
    source.write_text('layer { name: "d" type: "Data" top: "x" data_param { source: "db" } }\n'
                      'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" }\n'
                      'layer { name: "s" type: "Scale" bottom: "x" top: "x" }\n')
    out = tmp_path / "finetune.prototxt"
    code, _, stderr = run(["freeze-bn", str(source), "-o", str(out), "--freeze-scale"])
    assert code == 0, stderr
    assert "froze 1 BatchNorm layer and 1 Scale layer" in stderr
    assert "use_global_stats: true" in out.read_text()
    code, _, stderr = run(["freeze-bn", str(source), "-o", str(source)])
    assert code == 2 and "refusing to overwrite" in stderr
