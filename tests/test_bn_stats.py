"""bn-stats: recomputed BatchNorm statistics against a direct NumPy computation, on a tiny
LMDB, a .npy array and an image list; restoring zeroed statistics; the command."""

from __future__ import annotations

import numpy as np
import pytest

from prototxt_tools import PrototxtError
from prototxt_tools.layers.base import TEST
from prototxt_tools.rewrite import bn_stats, freeze_bn
from prototxt_tools.run import Executor, init_weights
from prototxt_tools.run.executor import load_net
from prototxt_tools.schema.caffemodel import read_weights, write_weights
from test_cli import run

lmdb = pytest.importorskip("lmdb")
pytest.importorskip("PIL.Image")
from test_data import make_lmdb, raw_datum  # noqa: E402 - after the skips

SCALE = 0.0078125
MEANS = (100.0, 120.0)
EPS = 1e-5


def net_text(source: str, *, layer_type: str = "Data", extra_transform: str = "",
             batch: int = 4, means: tuple = MEANS) -> str:
    if layer_type == "Data":
        params = f'data_param {{ source: "{source}" batch_size: {batch} backend: LMDB }}'
    else:
        params = f'image_data_param {{ source: "{source}" batch_size: {batch} }}'
    mean_values = " ".join(f"mean_value: {m}" for m in means)
    data = f'''layer {{
  name: "data"
  type: "{layer_type}"
  top: "data"
  top: "label"
  include {{ phase: TRAIN }}
  transform_param {{ scale: {SCALE} {mean_values} {extra_transform} }}
  {params}
}}
'''
    return 'name: "stats"\n' + data + data.replace("TRAIN", "TEST") + '''
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 1 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "drop" type: "Dropout" bottom: "conv1" top: "conv1" include { phase: TEST } }
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip"
  inner_product_param { num_output: 5 } }
layer { name: "bn2" type: "BatchNorm" bottom: "ip" top: "ip" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
'''


def images(count: int = 10, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 2, 4, 4)).astype(np.uint8)


@pytest.fixture
def setup(tmp_path):
    data = images()
    make_lmdb(tmp_path / "db", [(f"{i:04d}", raw_datum(img, i % 5)) for i, img in enumerate(data)])
    net = tmp_path / "train_val.prototxt"
    net.write_text(net_text("db"))
    shaped = load_net(str(net), {"data": (4, 2, 4, 4)})
    weights = {name: arrays for name, _, arrays in init_weights(shaped, 7)}
    model = tmp_path / "w.caffemodel"
    write_weights([(name, "", arrays) for name, arrays in weights.items()], model)
    return tmp_path, net, model, weights, data


def reference(weights: dict, data: np.ndarray, batch: int, batches: int) -> list:
    """Per batch, in float64: [(mean1, corrected var1, m1), (mean2, corrected var2, m2)],
    with the net written out by hand (1x1 convolution, Scale, ReLU, InnerProduct)."""
    mean = np.array(MEANS).reshape(1, 2, 1, 1)
    out = []
    for b in range(batches):
        index = [(b * batch + i) % len(data) for i in range(batch)]  # Caffe wraps around
        x = (data[index].astype(np.float64) - mean) * SCALE
        w1 = np.asarray(weights["conv1"][0], np.float64).reshape(3, 2)
        y = np.einsum("oc,nchw->nohw", w1, x)
        m1 = y.shape[0] * y.shape[2] * y.shape[3]
        mu1 = y.mean(axis=(0, 2, 3))
        var1 = y.var(axis=(0, 2, 3))
        z = (y - mu1[None, :, None, None]) / np.sqrt(var1 + EPS)[None, :, None, None]
        gamma, beta = (np.asarray(a, np.float64) for a in weights["sc1"])
        z = np.maximum(z * gamma[None, :, None, None] + beta[None, :, None, None], 0)
        w2, b2 = (np.asarray(a, np.float64) for a in weights["ip"])
        h = z.reshape(batch, -1) @ w2.T + b2
        m2 = batch
        out.append([(mu1, var1 * m1 / (m1 - 1)), (h.mean(axis=0), h.var(axis=0) * m2 / (m2 - 1))])
    return out


def test_exact_statistics_match_numpy(setup):
    folder, net, model, weights, data = setup
    result = bn_stats(str(net), str(model))
    assert result.batches == 3 and result.images == 12  # ceil(10 / 4), wrapping around
    expected = reference(weights, data, 4, 3)
    for position, name in enumerate(["bn1", "bn2"]):
        mean, variance = result.statistics(name)
        want_mean = np.mean([batch[position][0] for batch in expected], axis=0)
        want_var = np.mean([batch[position][1] for batch in expected], axis=0)
        np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(variance, want_var, rtol=1e-5, atol=1e-6)
        stored = dict((n, a) for n, _, a in result.weights)[name]
        assert float(stored[2][0]) == 1.0
    # every other blob is the input's, untouched
    for name, _, arrays in result.weights:
        if name not in ("bn1", "bn2"):
            for new, old in zip(arrays, weights[name]):
                np.testing.assert_array_equal(new, old)


def test_moving_statistics_reproduce_caffes_update(setup):
    folder, net, model, weights, data = setup
    decay = 0.9
    result = bn_stats(str(net), str(model), mode="moving", decay=decay, iterations=5)
    expected = reference(weights, data, 4, 5)
    for position, name in enumerate(["bn1", "bn2"]):
        s, m, v = 0.0, 0.0, 0.0
        for batch in expected:
            s = decay * s + 1
            m = batch[position][0] + decay * m
            v = batch[position][1] + decay * v
        stored = dict((n, a) for n, _, a in result.weights)[name]
        np.testing.assert_allclose(stored[2], [s], rtol=1e-6)
        np.testing.assert_allclose(stored[0], m, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stored[1], v, rtol=1e-5, atol=1e-6)


def test_exact_restores_zeroed_statistics_and_test_outputs(setup):
    folder, net, model, weights, data = setup
    trained = bn_stats(str(net), str(model))
    original = {name: arrays for name, _, arrays in trained.weights}
    zeroed = {name: [np.zeros_like(a) for a in arrays] if name in ("bn1", "bn2") else arrays
              for name, arrays in original.items()}
    restored = bn_stats(str(net), zeroed)
    for name in ("bn1", "bn2"):
        for new, old in zip(dict((n, a) for n, _, a in restored.weights)[name], original[name]):
            np.testing.assert_array_equal(new, old)
    batch = {"data": ((data[:4].astype(np.float32) - np.array(MEANS, np.float32)
                       .reshape(1, 2, 1, 1)) * np.float32(SCALE)), "label": np.zeros(4)}

    def test_output(weights):
        return Executor(str(net), weights, phase=TEST).forward(batch, outputs=["ip"])["ip"]

    restored_weights = {name: arrays for name, _, arrays in restored.weights}
    np.testing.assert_array_equal(test_output(restored_weights), test_output(original))
    # the check can fail: with the zeroed statistics the TEST outputs differ
    assert not np.allclose(test_output(zeroed), test_output(original))


def test_frozen_batchnorm_is_measured_with_batch_statistics(setup):
    folder, net, model, weights, data = setup
    frozen = folder / "frozen.prototxt"
    frozen.write_text(freeze_bn(net.read_text()).text)
    plain = bn_stats(str(net), str(model))
    measured = bn_stats(str(frozen), str(model))
    for name in ("bn1", "bn2"):
        np.testing.assert_array_equal(measured.statistics(name)[0], plain.statistics(name)[0])
    assert any("use_global_stats: true" in note for note in measured.notes)


def test_npy_source_and_seeded_crops(setup):
    folder, net, model, weights, data = setup
    np.save(folder / "images.npy", data.astype(np.float32))
    from_array = bn_stats(str(net), str(model), data=str(folder / "images.npy"))
    from_lmdb = bn_stats(str(net), str(model))
    for name in ("bn1", "bn2"):
        for a, b in zip(from_array.statistics(name), from_lmdb.statistics(name)):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    # random crops and mirroring (TRAIN) are reproducible from the seed, and seed-dependent
    cropped = folder / "cropped.prototxt"
    cropped.write_text(net_text("db", extra_transform="crop_size: 3 mirror: true"))
    crop_weights = {name: arrays for name, _, arrays in
                    init_weights(load_net(str(cropped), {"data": (4, 2, 3, 3)}), 7)}
    one = bn_stats(str(cropped), crop_weights, seed=1).statistics("bn1")[0]
    again = bn_stats(str(cropped), crop_weights, seed=1).statistics("bn1")[0]
    other = bn_stats(str(cropped), crop_weights, seed=2).statistics("bn1")[0]
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, other)


def test_image_list_source_matches_the_lmdb(tmp_path):
    from PIL import Image

    # Colour PNGs (ImageData reads them as BGR) against an LMDB of the same BGR pixels.
    bgr = np.random.default_rng(5).integers(0, 256, (6, 3, 4, 4)).astype(np.uint8)
    lines = []
    for index, image in enumerate(bgr):
        rgb = np.transpose(image[::-1], (1, 2, 0))
        Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(tmp_path / f"{index}.png")
        lines.append(f"{index}.png {index % 5}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    make_lmdb(tmp_path / "db", [(f"{i:04d}", raw_datum(img, i % 5)) for i, img in enumerate(bgr)])
    means = (100.0, 120.0, 110.0)
    listed = tmp_path / "listed.prototxt"
    listed.write_text(net_text("list.txt", layer_type="ImageData", means=means))
    stored = tmp_path / "stored.prototxt"
    stored.write_text(net_text("db", means=means))
    weights = {name: arrays for name, _, arrays in
               init_weights(load_net(str(stored), {"data": (4, 3, 4, 4)}), 7)}
    from_list = bn_stats(str(listed), weights)
    from_lmdb = bn_stats(str(stored), weights)
    assert from_list.batches == from_lmdb.batches == 2
    for name in ("bn1", "bn2"):
        for a, b in zip(from_list.statistics(name), from_lmdb.statistics(name)):
            np.testing.assert_array_equal(a, b)


def test_errors(setup, tmp_path):
    folder, net, model, weights, data = setup
    with pytest.raises(PrototxtError, match="unknown mode"):
        bn_stats(str(net), str(model), mode="median")
    no_bn = tmp_path / "plain.prototxt"
    no_bn.write_text(net_text("db").replace('type: "BatchNorm"', 'type: "ReLU"'))
    with pytest.raises(PrototxtError, match="no BatchNorm"):
        bn_stats(str(no_bn), str(model))
    missing = tmp_path / "missing.prototxt"
    missing.write_text(net_text("nowhere_lmdb"))
    with pytest.raises(PrototxtError, match="nowhere_lmdb"):
        bn_stats(str(missing), str(model))


def test_command(setup):
    folder, net, model, weights, data = setup
    out = folder / "fixed.caffemodel"
    code, stdout, stderr = run(["bn-stats", str(net), "--weights", str(model), "-o", str(out),
                                "-v"])
    assert code == 0, stderr
    assert "exact statistics of 2 BatchNorm layers from 3 batches (12 images)" in stdout
    assert "bn1" in stdout and f"wrote {out}" in stderr
    stored = {w.name: w.blobs for w in read_weights(out)}
    assert float(stored["bn1"][2][0]) == 1.0
    code, _, stderr = run(["bn-stats", str(net), "--weights", str(model), "-o", str(model)])
    assert code == 2 and "refusing to overwrite" in stderr
    code, _, stderr = run(["bn-stats", str(net), "--weights", str(model), "-o", str(out),
                           "--data", str(folder / "absent.npy")])
    assert code == 2 and stderr.count("\n") == 1 and "absent.npy" in stderr


def test_progress_is_reported_per_batch_and_memory_stays_at_one_batch(setup):
    import tracemalloc

    folder, net, model, weights, data = setup
    calls = []
    bn_stats(str(net), str(model), iterations=3, progress=lambda done, total:
             calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]

    def peak(iterations):
        tracemalloc.start()
        bn_stats(str(net), weights, iterations=iterations, batch_size=256)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    peak(2)  # warm-up: imports and caches
    small, large = peak(2), peak(30)
    assert large < 1.3 * small, (small, large)  # 30 batches held would add ~2.6 MB


def test_progress_bar_draws_only_on_a_terminal():
    import io

    from prototxt_tools.cli import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = _Progress("bn-stats", stream, min_seconds=0)
        for done in range(1, 5):
            bar(done, 4)
        bar.close()
    assert pipe.getvalue() == ""
    assert "\r" in terminal.getvalue() and "4/4" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
