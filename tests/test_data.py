"""prototxt_tools.data: Caffe's DataTransformer, LMDB/array/image-list sources and batches.

Every database, array and image is made here in tmp_path. Expected values come from direct
NumPy computations of Caffe's formulas and, where OpenCV is installed (a test dependency), from
OpenCV itself -- the library Caffe decodes and resizes with.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import zipfile

import numpy as np
import pytest

from prototxt_tools import parse
from prototxt_tools.data import (
    TEST, TRAIN, ArraySource, ImageListSource, LMDBSource, Transformer, batches, decode_datum,
    open_source,
)
from prototxt_tools.data import _image
from prototxt_tools.data.sources import LEVELDB_MESSAGE
from prototxt_tools.errors import PrototxtError
from prototxt_tools.net.model import Net
from prototxt_tools.schema import caffe_pb2
from prototxt_tools.schema.caffemodel import write_binaryproto

lmdb = pytest.importorskip("lmdb")
Image = pytest.importorskip("PIL.Image")

try:
    import cv2
except ImportError:  # pragma: no cover - OpenCV is a test dependency
    cv2 = None

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="OpenCV (opencv-python-headless) missing")


# -- helpers ---------------------------------------------------------------------------------


def smooth_rgb(rng, h, w, channels=3):
    """A smooth random image (JPEG-friendly), (H, W, C) uint8."""
    small = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, channels)).astype(np.float64)
    ys = np.linspace(0, small.shape[0] - 1, h)
    xs = np.linspace(0, small.shape[1] - 1, w)
    y0 = np.floor(ys).astype(int).clip(0, small.shape[0] - 2)
    x0 = np.floor(xs).astype(int).clip(0, small.shape[1] - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = small[y0][:, x0] * (1 - fx) + small[y0][:, x0 + 1] * fx
    bottom = small[y0 + 1][:, x0] * (1 - fx) + small[y0 + 1][:, x0 + 1] * fx
    return np.round(top * (1 - fy) + bottom * fy).astype(np.uint8)


def encode(array, fmt, mode=None, **kwargs):
    image = Image.fromarray(array if array.ndim == 2 or array.shape[2] > 1 else array[:, :, 0])
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def raw_datum(chw, label):
    c, h, w = chw.shape
    return caffe_pb2.Datum(channels=c, height=h, width=w, label=label,
                           data=np.ascontiguousarray(chw, np.uint8).tobytes())


def float_datum(chw, label):
    c, h, w = chw.shape
    return caffe_pb2.Datum(channels=c, height=h, width=w, label=label,
                           float_data=chw.astype(np.float32).ravel().tolist())


def encoded_datum(data, label):
    return caffe_pb2.Datum(data=data, label=label, encoded=True)


def make_lmdb(path, items):
    """items: (key, Datum or bytes) pairs, written in the given order."""
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in items:
            if not isinstance(value, bytes):
                value = value.SerializeToString()
            txn.put(key.encode() if isinstance(key, str) else key, value)
    env.close()
    return str(path)


def layer_from(text, phase=TRAIN, path=None, index=0):
    net = Net.from_document(parse(text, path=path))
    return net.view(phase).layers[index]


def data_layer(source, *, batch_size=2, transform="", backend="backend: LMDB", include=""):
    return f"""
name: "n"
layer {{ name: "data" type: "Data" top: "data" top: "label" {include}
  transform_param {{ {transform} }}
  data_param {{ source: "{source}" batch_size: {batch_size} {backend} }} }}
"""


def expected_transform(image, *, scale=1.0, mean=None, crop=0, h_off=0, w_off=0,
                       mirror=False):
    """Caffe's per-pixel loop, written out with NumPy in float32."""
    x = np.asarray(image).astype(np.float32)
    c, h, w = x.shape
    oh, ow = (crop, crop) if crop else (h, w)
    x = x[:, h_off:h_off + oh, w_off:w_off + ow]
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        if mean.ndim == 1:
            mean = np.broadcast_to(mean if mean.size == c else np.repeat(mean, c),
                                   (c,))[:, None, None]
        else:
            mean = mean[:, h_off:h_off + oh, w_off:w_off + ow]
        y = (x - mean) * np.float32(scale)
    else:
        y = x * np.float32(scale)
    return y[:, :, ::-1] if mirror else y


def tparam(**fields):
    mean_value = fields.pop("mean_value", None)
    p = caffe_pb2.TransformationParameter(**fields)
    if mean_value is not None:
        p.mean_value.extend(mean_value)
    return p


# -- LMDB records ----------------------------------------------------------------------------


def test_lmdb_records_key_order_raw_float_and_encoded(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    floats = rng.normal(size=(2, 3, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    photo = smooth_rgb(rng, 16, 24)
    jpeg = encode(photo, "JPEG", quality=90)
    # written out of order: LMDB (and Caffe's cursor) read keys in byte order
    db = make_lmdb(tmp_path / "db", [
        ("c_jpeg", encoded_datum(jpeg, 3)),
        ("a_raw", raw_datum(raw, 7)),
        ("d_float", float_datum(floats, -1)),
        ("b_png", encoded_datum(encode(rgb, "PNG"), 5)),
    ])
    source = LMDBSource(db)
    assert len(source) == 4
    records = list(source)
    assert [label for _, label in records] == [7, 5, 3, -1]
    image, _ = records[0]
    assert image.dtype == np.uint8 and np.array_equal(image, raw)
    png, _ = records[1]
    assert png.shape == (3, 6, 7) and png.dtype == np.uint8
    # BGR: channel 0 is blue, as OpenCV decodes
    assert np.array_equal(png, rgb[:, :, ::-1].transpose(2, 0, 1))
    decoded, _ = records[2]
    reference = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(decoded, reference.transpose(2, 0, 1))
    values, _ = records[3]
    assert values.dtype == np.float32 and np.array_equal(values, floats)
    source.close()


@needs_cv2
def test_lmdb_encoded_records_match_opencv(tmp_path):
    rng = np.random.default_rng(1)
    photo = smooth_rgb(rng, 20, 28)
    items = [("a", encoded_datum(encode(photo, "JPEG", quality=85), 0)),
             ("b", encoded_datum(encode(photo, "PNG"), 1)),
             ("c", encoded_datum(encode(photo[:, :, :1], "PNG"), 2))]
    db = make_lmdb(tmp_path / "db", items)
    for force_color, force_gray, flag in [(False, False, cv2.IMREAD_UNCHANGED),
                                          (True, False, cv2.IMREAD_COLOR),
                                          (False, True, cv2.IMREAD_GRAYSCALE)]:
        source = LMDBSource(db, force_color=force_color, force_gray=force_gray)
        for (image, _), (_, datum) in zip(source, items):
            ref = cv2.imdecode(np.frombuffer(datum.data, np.uint8), flag)
            ref = ref[:, :, None] if ref.ndim == 2 else ref
            assert np.array_equal(image, ref.transpose(2, 0, 1)), (force_color, force_gray)
        source.close()


def test_lmdb_gray_png_native_force_color_and_force_gray(tmp_path):
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    db = make_lmdb(tmp_path / "db", [("a", encoded_datum(encode(gray, "PNG"), 0)),
                                     ("b", encoded_datum(encode(rgb, "PNG"), 1))])
    native = [image for image, _ in LMDBSource(db)]
    assert native[0].shape == (1, 5, 6) and np.array_equal(native[0][0], gray)
    assert native[1].shape == (3, 5, 6)
    color = [image for image, _ in LMDBSource(db, force_color=True)]
    assert np.array_equal(color[0], np.stack([gray] * 3))
    grays = [image for image, _ in LMDBSource(db, force_gray=True)]
    r, g, b = (rgb[:, :, i].astype(np.int64) for i in range(3))
    libpng = (9797 * r + 19234 * g + 3737 * b) >> 15
    libpng = np.where((r == g) & (g == b), r, libpng)
    assert np.array_equal(grays[1][0], libpng)
    with pytest.raises(PrototxtError, match="force_color and force_gray"):
        list(LMDBSource(db, force_color=True, force_gray=True))


def test_lmdb_wraps_around_like_caffe(tmp_path):
    images = [np.full((1, 2, 2), i, np.uint8) for i in range(3)]
    db = make_lmdb(tmp_path / "db", [(f"{i:03d}", raw_datum(im, i))
                                     for i, im in enumerate(images)])
    source = LMDBSource(db)
    labels = [label for _, label in itertools.islice(source.records(wrap=True), 8)]
    assert labels == [0, 1, 2, 0, 1, 2, 0, 1]
    layer = layer_from(data_layer(db))
    with batches(layer, TRAIN) as stream:
        got = [b["label"].tolist() for b in itertools.islice(stream, 3)]
    assert got == [[0.0, 1.0], [2.0, 0.0], [1.0, 2.0]]
    source.close()


def test_data_layer_batches_with_transform(tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (3, 8, 9), dtype=np.uint8) for _ in range(5)]
    make_lmdb(tmp_path / "train_lmdb", [(f"{i:04d}", raw_datum(im, 10 + i))
                                        for i, im in enumerate(images)])
    text = data_layer("train_lmdb", batch_size=2,
                      transform="crop_size: 5 mirror: true scale: 0.25 "
                                "mean_value: 104 mean_value: 117 mean_value: 123",
                      include="include { phase: TRAIN }")
    layer = layer_from(text, path=str(tmp_path / "train.prototxt"))
    # the relative source resolves against root (the prototxt's folder)
    stream = batches(layer, "TRAIN", seed=11, root=str(tmp_path))
    first = list(itertools.islice(stream, 6))
    stream.close()
    again = list(itertools.islice(batches(layer, TRAIN, seed=11, root=str(tmp_path)), 6))
    assert all(np.array_equal(a["data"], b["data"]) for a, b in zip(first, again))
    mean = [104, 117, 123]
    order = [i % 5 for i in range(12)]
    mirrored_seen = set()
    for n, batch in enumerate(first):
        assert set(batch) == {"data", "label"}
        assert batch["data"].shape == (2, 3, 5, 5) and batch["data"].dtype == np.float32
        assert batch["label"].dtype == np.float32
        for i in range(2):
            index = order[2 * n + i]
            assert batch["label"][i] == 10 + index
            candidates = [
                (h, w, m) for h in range(4) for w in range(5) for m in (False, True)
                if np.array_equal(batch["data"][i], expected_transform(
                    images[index], scale=0.25, mean=mean, crop=5, h_off=h, w_off=w, mirror=m))]
            assert candidates, "not a crop of the record"
            mirrored_seen.update(m for _, _, m in candidates)
    assert mirrored_seen == {False, True}


def test_batches_reproduce_caffe_draw_order(tmp_path):
    """mirror coin first, then h_off, then w_off, from one Generator per transformer."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (2, 7, 6), dtype=np.uint8)
    t = Transformer(tparam(crop_size=3, mirror=True), TRAIN, seed=5)
    draws = np.random.default_rng(5)
    for _ in range(6):
        mirror = bool(draws.integers(0, 2))
        h_off = int(draws.integers(0, 5))
        w_off = int(draws.integers(0, 4))
        assert np.array_equal(t(image), expected_transform(image, crop=3, h_off=h_off,
                                                           w_off=w_off, mirror=mirror))


# -- the transformer against direct NumPy ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_transform_scale_only(dtype):
    image = (np.arange(2 * 3 * 4) * 7 % 256).reshape(2, 3, 4).astype(dtype)
    out = Transformer(tparam(scale=0.00390625), TEST)(image)
    assert out.dtype == np.float32
    assert np.array_equal(out, image.astype(np.float32) * np.float32(0.00390625))
    assert np.array_equal(Transformer(None, TEST)(image), image.astype(np.float32))


def test_transform_mean_value_single_and_per_channel():
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    one = Transformer(tparam(mean_value=[127.5], scale=0.017), TEST)(image)
    assert np.array_equal(one, (image.astype(np.float32) - np.float32(127.5))
                          * np.float32(0.017))
    per = Transformer(tparam(mean_value=[104.0, 117.0, 123.0]), TEST)(image)
    expect = image.astype(np.float32) - np.array([104, 117, 123], np.float32)[:, None, None]
    assert np.array_equal(per, expect)
    with pytest.raises(PrototxtError, match="either 1 mean_value or as many as channels: 3"):
        Transformer(tparam(mean_value=[1.0, 2.0]), TEST)(image)


def test_transform_mean_file_at_cropped_positions(tmp_path):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (3, 9, 8), dtype=np.uint8)
    mean = rng.uniform(0, 255, (1, 3, 9, 8)).astype(np.float32)
    write_binaryproto(mean, tmp_path / "mean.binaryproto")
    # relative mean_file resolves against root
    t = Transformer(tparam(mean_file="mean.binaryproto", crop_size=5, scale=0.5), TEST,
                    root=str(tmp_path))
    expect = expected_transform(image, scale=0.5, mean=mean[0], crop=5, h_off=2, w_off=1)
    assert np.array_equal(t(image), expect)
    # TRAIN: random offsets, mean still taken at the crop's own positions
    t = Transformer(tparam(mean_file=str(tmp_path / "mean.binaryproto"), crop_size=5,
                           mirror=True), TRAIN, seed=3)
    draws = np.random.default_rng(3)
    for _ in range(4):
        m, h, w = bool(draws.integers(0, 2)), int(draws.integers(0, 5)), int(
            draws.integers(0, 4))
        assert np.array_equal(t(image), expected_transform(image, mean=mean[0], crop=5,
                                                           h_off=h, w_off=w, mirror=m))
    # a mean of another size is an error (Caffe checks the full image size)
    small = Transformer(tparam(mean_file=str(tmp_path / "mean.binaryproto")), TEST)
    with pytest.raises(PrototxtError, match=r"mean_file is 3x9x8 but the image is 3x8x8"):
        small(image[:, :8])


def test_transform_mean_file_and_mean_value_is_an_error(tmp_path):
    write_binaryproto(np.zeros((1, 1, 2, 2), np.float32), tmp_path / "m.binaryproto")
    param = tparam(mean_file=str(tmp_path / "m.binaryproto"), mean_value=[1.0])
    with pytest.raises(PrototxtError, match="cannot specify mean_file and mean_value"):
        Transformer(param, TEST)


def test_transform_missing_mean_file(tmp_path):
    with pytest.raises(PrototxtError, match="mean_file: no such file") as info:
        Transformer(tparam(mean_file="nope.binaryproto"), TEST, root=str(tmp_path))
    assert "\n" not in str(info.value)


def test_transform_center_crop_at_test_and_crop_too_large():
    image = np.arange(1 * 7 * 6, dtype=np.uint8).reshape(1, 7, 6)
    t = Transformer(tparam(crop_size=4), TEST)
    assert np.array_equal(t(image), expected_transform(image, crop=4, h_off=1, w_off=1))
    assert t.output_shape((1, 7, 6)) == (1, 4, 4)
    with pytest.raises(PrototxtError, match="crop_size 8 is larger than the image"):
        Transformer(tparam(crop_size=8), TEST)(image)


def test_transform_mirror_is_random_in_every_phase():
    """Caffe's do_mirror is mirror() && Rand(2) with no phase test: TEST mirrors too."""
    image = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    for phase in (TRAIN, TEST):
        t = Transformer(tparam(mirror=True), phase, seed=0)
        outs = [t(image) for _ in range(16)]
        flipped = [np.array_equal(o, image[:, :, ::-1].astype(np.float32)) for o in outs]
        plain = [np.array_equal(o, image.astype(np.float32)) for o in outs]
        assert all(f or p for f, p in zip(flipped, plain))
        assert any(flipped) and any(plain)
    # without mirror no draw is made and nothing flips
    t = Transformer(tparam(), TRAIN, seed=0)
    assert all(np.array_equal(t(image), image.astype(np.float32)) for _ in range(5))


def test_transform_batch_shapes():
    images = [np.full((2, 5, 5), i, np.uint8) for i in range(3)]
    out = Transformer(tparam(crop_size=3), TEST).transform_batch(images)
    assert out.shape == (3, 2, 3, 3) and out.dtype == np.float32
    assert np.array_equal(out[:, 0, 0, 0], [0, 1, 2])
    with pytest.raises(PrototxtError, match="transforms to"):
        Transformer(None, TEST).transform_batch([images[0], np.zeros((2, 4, 4), np.uint8)])


# -- decoding and resizing against OpenCV --------------------------------------------------------


DECODE_CASES = [
    (fmt, kwargs, mode)
    for fmt, kwargs in [("PNG", {}), ("JPEG", {"quality": 90}),
                        ("JPEG", {"quality": 80, "subsampling": 0}), ("BMP", {})]
    for mode in ["RGB", "L", "RGBA", "LA", "P"]
    if not (fmt == "JPEG" and mode not in ("RGB", "L")) and not (fmt == "BMP" and mode == "LA")
]


@needs_cv2
@pytest.mark.parametrize("fmt,kwargs,mode", DECODE_CASES)
def test_decode_matches_opencv(fmt, kwargs, mode):
    rng = np.random.default_rng(8)
    data = encode(smooth_rgb(rng, 23, 31), fmt, mode, **kwargs)
    buffer = np.frombuffer(data, np.uint8)
    for ours, flag in [(_image.UNCHANGED, cv2.IMREAD_UNCHANGED), (_image.COLOR, cv2.IMREAD_COLOR),
                       (_image.GRAY, cv2.IMREAD_GRAYSCALE)]:
        ref = cv2.imdecode(buffer, flag)
        ref = ref[:, :, None] if ref.ndim == 2 else ref
        assert np.array_equal(_image.decode_image(data, ours), ref), ours


@needs_cv2
def test_decode_16bit_png_and_exif_orientation_match_opencv():
    rng = np.random.default_rng(9)
    wide = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    data = encode(wide, "PNG")
    buffer = np.frombuffer(data, np.uint8)
    assert np.array_equal(_image.decode_image(data, _image.COLOR),
                          cv2.imdecode(buffer, cv2.IMREAD_COLOR))
    assert np.array_equal(_image.decode_image(data, _image.GRAY)[:, :, 0],
                          cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE))
    with pytest.raises(_image.DecodeError, match="16-bit"):
        _image.decode_image(data, _image.UNCHANGED)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    photo = encode(smooth_rgb(rng, 12, 20), "JPEG", exif=exif.tobytes())
    buffer = np.frombuffer(photo, np.uint8)
    for ours, flag in [(_image.UNCHANGED, cv2.IMREAD_UNCHANGED),
                       (_image.COLOR, cv2.IMREAD_COLOR)]:
        ref = cv2.imdecode(buffer, flag)
        assert np.array_equal(_image.decode_image(photo, ours), ref), ours


@needs_cv2
def test_resize_is_bit_exact_with_opencv():
    rng = np.random.default_rng(10)
    cases = [(7, 9, 14, 18), (8, 8, 4, 4), (10, 6, 5, 3), (1, 5, 3, 7), (33, 47, 20, 64),
             (5, 5, 5, 5), (64, 48, 227, 227), (300, 200, 224, 224)]
    cases += [tuple(int(v) for v in rng.integers(1, 80, 4)) for _ in range(40)]
    for h, w, nh, nw in cases:
        for channels in (1, 3):
            image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            ref = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            ref = ref.reshape(nh, nw, channels)
            assert np.array_equal(_image.resize_linear(image, nh, nw), ref), (h, w, nh, nw)


# -- .npy / .npz ---------------------------------------------------------------------------------


def test_npy_source_uint8_without_labels(tmp_path):
    rng = np.random.default_rng(11)
    data = rng.integers(0, 256, (3, 2, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", data)
    source = open_source("x.npy", root=str(tmp_path))
    assert isinstance(source, ArraySource) and len(source) == 3
    records = list(source)
    assert [label for _, label in records] == [0, 0, 0]
    assert all(im.dtype == np.uint8 and np.array_equal(im, data[i])
               for i, (im, _) in enumerate(records))
    wrapped = [int(im[0, 0, 0]) for im, _ in itertools.islice(source.records(), 7)]
    assert wrapped == [int(data[i % 3, 0, 0, 0]) for i in range(7)]
    source.close()


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_source_data_and_labels(tmp_path, compressed):
    rng = np.random.default_rng(12)
    data = rng.normal(size=(5, 3, 4, 4))  # float64: read as float32, like Datum.float_data
    labels = np.array([4, 3, 2, 1, 0])
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "x.npz", label=labels, data=data)
    source = ArraySource(str(tmp_path / "x.npz"))
    records = list(source)
    assert [label for _, label in records] == [4, 3, 2, 1, 0]
    assert all(im.dtype == np.float32 and np.array_equal(im, data[i].astype(np.float32))
               for i, (im, _) in enumerate(records))
    # any layer can read it as its source override; labels go to the label top
    layer = layer_from(data_layer("unused", batch_size=2, transform="scale: 2"))
    with batches(layer, TEST, source=str(tmp_path / "x.npz")) as stream:
        batch = next(stream)
        batch2 = next(stream)
        batch3 = next(stream)
    assert np.array_equal(batch["data"], data[:2].astype(np.float32) * np.float32(2))
    assert batch["label"].tolist() == [4.0, 3.0]
    assert batch2["label"].tolist() == [2.0, 1.0]
    assert batch3["label"].tolist() == [0.0, 4.0]


def test_npz_first_array_and_bad_arrays(tmp_path):
    np.savez(tmp_path / "first.npz", np.ones((2, 1, 3, 3), np.uint8))
    assert [label for _, label in ArraySource(str(tmp_path / "first.npz"))] == [0, 0]
    np.save(tmp_path / "flat.npy", np.ones((2, 3, 3)))
    with pytest.raises(PrototxtError, match=r"expected \(N, C, H, W\)"):
        ArraySource(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(PrototxtError, match="Python objects"):
        ArraySource(str(tmp_path / "obj.npy"))
    np.savez(tmp_path / "short.npz", data=np.ones((3, 1, 2, 2)), label=np.arange(2))
    with pytest.raises(PrototxtError, match="2 labels for 3 images"):
        ArraySource(str(tmp_path / "short.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(PrototxtError, match="junk.npz"):
        ArraySource(str(tmp_path / "junk.npz"))


def test_npy_is_read_lazily(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((4, 1, 2, 2), np.uint8))
    source = ArraySource(str(tmp_path / "big.npy"))
    assert isinstance(source._array, np.memmap)
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as archive:
        with archive.open("data.npy", "w") as member:
            np.lib.format.write_array(member, np.arange(24, dtype=np.uint8).reshape(3, 2, 2, 2))
    streamed = ArraySource(str(tmp_path / "s.npz"))
    assert streamed._array is None and streamed._stream is not None
    assert [int(im[0, 0, 0]) for im, _ in streamed] == [0, 8, 16]


# -- ImageData lists -----------------------------------------------------------------------------


def write_images(folder, rng, count=4, size=(10, 12), gray=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(count):
        rgb = smooth_rgb(rng, *size, channels=1 if gray else 3)
        (folder / f"im{i}.png").write_bytes(encode(rgb, "PNG"))
        arrays.append(rgb)
    return arrays


def image_data_layer(source, *, batch_size=2, extra="", transform=""):
    return f"""
name: "n"
layer {{ name: "data" type: "ImageData" top: "data" top: "label"
  transform_param {{ {transform} }}
  image_data_param {{ source: "{source}" batch_size: {batch_size} {extra} }} }}
"""


def test_image_list_source_with_resize(tmp_path):
    rng = np.random.default_rng(13)
    arrays = write_images(tmp_path / "images", rng)
    (tmp_path / "list.txt").write_text("im0.png 3\nim1.png 1\r\nim2.png 4\n\nim3.png 1\n")
    text = image_data_layer("list.txt", batch_size=3,
                            extra='root_folder: "images/" new_height: 7 new_width: 9')
    layer = layer_from(text, path=str(tmp_path / "net.prototxt"))
    with batches(layer, TEST, root=str(tmp_path)) as stream:
        first, second = next(stream), next(stream)
    assert first["data"].shape == (3, 3, 7, 9)
    assert first["label"].tolist() == [3.0, 1.0, 4.0]
    assert second["label"].tolist() == [1.0, 3.0, 1.0]  # wrapped around
    for i, index in enumerate([0, 1, 2]):
        bgr = arrays[index][:, :, ::-1]
        resized = _image.resize_linear(np.ascontiguousarray(bgr), 7, 9)
        assert np.array_equal(first["data"][i], resized.transpose(2, 0, 1).astype(np.float32))
    if cv2 is not None:  # Caffe's own path: cv::imread then cv::resize(INTER_LINEAR)
        ref = cv2.resize(cv2.imread(str(tmp_path / "images" / "im0.png"), cv2.IMREAD_COLOR),
                         (9, 7), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(first["data"][0], ref.transpose(2, 0, 1).astype(np.float32))


def test_image_list_gray_and_shuffle(tmp_path):
    rng = np.random.default_rng(14)
    write_images(tmp_path / "imgs", rng, count=5)
    lines = "".join(f"imgs/im{i}.png {i}\n" for i in range(5))
    (tmp_path / "list.txt").write_text(lines)
    source = ImageListSource(str(tmp_path / "list.txt"), is_color=False, shuffle=True,
                             rng=np.random.default_rng(1), root=str(tmp_path))
    labels = [label for _, label in itertools.islice(source.records(), 15)]
    for epoch in range(3):
        assert sorted(labels[5 * epoch:5 * epoch + 5]) == [0, 1, 2, 3, 4]
    assert labels[:5] != [0, 1, 2, 3, 4] or labels[5:10] != [0, 1, 2, 3, 4]
    again = ImageListSource(str(tmp_path / "list.txt"), is_color=False, shuffle=True,
                            rng=np.random.default_rng(1), root=str(tmp_path))
    assert [label for _, label in itertools.islice(again.records(), 15)] == labels
    image, _ = next(iter(source))
    assert image.shape == (1, 10, 12) and image.dtype == np.uint8


def test_image_list_bad_lines_and_missing_images(tmp_path):
    (tmp_path / "nolabel.txt").write_text("a.png 1\nb.png\n")
    with pytest.raises(PrototxtError) as info:
        ImageListSource(str(tmp_path / "nolabel.txt"))
    assert info.value.line == 2 and "label follows the last space" in info.value.message
    (tmp_path / "badlabel.txt").write_text("a.png cat\n")
    with pytest.raises(PrototxtError, match="label 'cat' is not an integer"):
        ImageListSource(str(tmp_path / "badlabel.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PrototxtError, match="empty"):
        ImageListSource(str(tmp_path / "empty.txt"))
    rng = np.random.default_rng(15)
    write_images(tmp_path / "images", rng, count=1)
    (tmp_path / "list.txt").write_text("im0.png 0\nmissing.png 1\n")
    source = ImageListSource(str(tmp_path / "list.txt"), root_folder="images",
                             root=str(tmp_path))
    with pytest.raises(PrototxtError, match="end root_folder with '/'") as info:
        next(iter(source))
    assert info.value.line == 1 and "\n" not in str(info.value)
    source = ImageListSource(str(tmp_path / "list.txt"), root_folder="images/",
                             root=str(tmp_path))
    records = source.records()
    next(records)
    with pytest.raises(PrototxtError, match="cannot load: no such file") as info:
        next(records)
    assert info.value.line == 2
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp_path / "broken.txt").write_text("broken.png 0\n")
    with pytest.raises(PrototxtError, match="cannot load"):
        next(iter(ImageListSource(str(tmp_path / "broken.txt"), root_folder="images/",
                                  root=str(tmp_path))))


def test_batch_of_unequal_image_sizes_is_an_error(tmp_path):
    rng = np.random.default_rng(16)
    write_images(tmp_path / "a", rng, count=1, size=(8, 8))
    write_images(tmp_path / "b", rng, count=1, size=(9, 8))
    (tmp_path / "list.txt").write_text("a/im0.png 0\nb/im0.png 1\n")
    layer = layer_from(image_data_layer("list.txt", batch_size=2))
    with pytest.raises(PrototxtError, match="equal sizes within a batch"):
        next(batches(layer, TEST, root=str(tmp_path)))
    # with a crop, records of different sizes make one batch, as in Caffe
    layer = layer_from(image_data_layer("list.txt", batch_size=2, transform="crop_size: 6"))
    assert next(batches(layer, TEST, root=str(tmp_path)))["data"].shape == (2, 3, 6, 6)


# -- errors ----------------------------------------------------------------------------------


def test_missing_db_path_is_a_clear_error(tmp_path):
    layer = layer_from(data_layer("no_such_lmdb"))
    with pytest.raises(PrototxtError, match="no such file or directory") as info:
        batches(layer, TRAIN, root=str(tmp_path))
    assert "no_such_lmdb" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(PrototxtError, match="no such file"):
        LMDBSource(str(tmp_path / "nothing"))


def test_corrupt_records_are_clear_errors(tmp_path):
    good = raw_datum(np.zeros((1, 2, 2), np.uint8), 0)
    short = caffe_pb2.Datum(channels=3, height=4, width=4, data=b"\x00" * 10)
    cases = {
        "garbage": b"\xff\xff\xff\xff\xff",
        "short": short.SerializeToString(),
        "undecodable": encoded_datum(b"not an image", 0).SerializeToString(),
        "shapeless": caffe_pb2.Datum(label=3).SerializeToString(),
    }
    messages = {"garbage": "not a serialized Datum", "short": "needs 48",
                "undecodable": "cannot decode the encoded image",
                "shapeless": "Datum has shape 0x0x0"}
    for name, value in cases.items():
        db = make_lmdb(tmp_path / name, [("a", good), ("b", value)])
        source = LMDBSource(db)
        with pytest.raises(PrototxtError, match=messages[name]) as info:
            list(source)
        assert "record 'b'" in str(info.value) and db in str(info.value)
        assert "\n" not in str(info.value)
        source.close()
    with pytest.raises(PrototxtError, match="not a serialized Datum"):
        decode_datum(b"\xff\xff")


def test_corrupt_or_empty_lmdb_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.mdb").write_bytes(os.urandom(4096 * 3))
    with pytest.raises(PrototxtError, match="cannot open LMDB") as info:
        LMDBSource(str(tmp_path / "bad"))
    assert "\n" not in str(info.value)
    make_lmdb(tmp_path / "empty", [])
    with pytest.raises(PrototxtError, match="holds no records"):
        LMDBSource(str(tmp_path / "empty"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(PrototxtError, match="no data.mdb"):
        LMDBSource(str(tmp_path / "plain"))


def test_leveldb_is_reported(tmp_path):
    db = tmp_path / "train_leveldb"
    db.mkdir()
    (db / "CURRENT").write_text("MANIFEST-000002\n")
    (db / "MANIFEST-000002").write_bytes(b"\0" * 8)
    (db / "000003.ldb").write_bytes(b"\0" * 8)
    for backend in ("backend: LEVELDB", "", "backend: LMDB"):
        layer = layer_from(data_layer(str(db), backend=backend))
        with pytest.raises(PrototxtError, match="LevelDB is not supported; convert to LMDB"):
            batches(layer, TRAIN)
    with pytest.raises(PrototxtError, match="LevelDB is not supported"):
        open_source(str(db))
    # an empty folder named by a LEVELDB Data layer: the same message
    (tmp_path / "other").mkdir()
    layer = layer_from(data_layer(str(tmp_path / "other"), backend=""))
    with pytest.raises(PrototxtError) as info:
        batches(layer, TRAIN)
    assert info.value.message == LEVELDB_MESSAGE


def test_lmdb_under_default_leveldb_backend_is_read_with_a_note(tmp_path):
    db = make_lmdb(tmp_path / "db", [("a", raw_datum(np.ones((1, 2, 2), np.uint8), 1))])
    layer = layer_from(data_layer(db, backend="", batch_size=1))
    with batches(layer, TRAIN) as stream:
        assert next(stream)["label"].tolist() == [1.0]
        assert stream.notes and "LEVELDB" in stream.notes[0]


def test_missing_lmdb_package_is_a_clear_error(tmp_path, monkeypatch):
    db = make_lmdb(tmp_path / "db", [("a", raw_datum(np.ones((1, 2, 2), np.uint8), 1))])
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb now raises ImportError
    with pytest.raises(PrototxtError, match=r"pip install 'prototxt-tools\[data\]'") as info:
        LMDBSource(db)
    assert "lmdb" in info.value.message and "\n" not in str(info.value)


def test_missing_pillow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(PrototxtError, match=r"needs Pillow: pip install"):
        _image.decode_image(b"\x89PNG")


def test_layer_errors(tmp_path):
    layer = layer_from(data_layer("x", batch_size=0))
    with pytest.raises(PrototxtError, match="batch_size is 0"):
        batches(layer, TRAIN, root=str(tmp_path))
    conv = layer_from('layer { name: "in" type: "Input" top: "x" '
                      'input_param { shape { dim: 2 dim: 1 dim: 3 dim: 3 } } }')
    with pytest.raises(PrototxtError, match="not a Data or ImageData layer"):
        batches(conv, TEST)
    np.save(tmp_path / "x.npy", np.ones((3, 1, 3, 3), np.float32))
    with batches(conv, TEST, source=str(tmp_path / "x.npy")) as stream:
        batch = next(stream)
    assert set(batch) == {"x"} and batch["x"].shape == (2, 1, 3, 3)
    with pytest.raises(PrototxtError, match="unknown phase"):
        batches(conv, "VALIDATE", source=str(tmp_path / "x.npy"))
    with pytest.raises(PrototxtError, match="not an LMDB database"):
        open_source(str(tmp_path))


def test_two_sources_on_one_lmdb(tmp_path):
    db = make_lmdb(tmp_path / "db", [(f"{i}", raw_datum(np.full((1, 1, 1), i, np.uint8), i))
                                     for i in range(3)])
    a, b = LMDBSource(db), LMDBSource(db)
    assert [label for _, label in a] == [label for _, label in b] == [0, 1, 2]
    a.close()
    assert [label for _, label in b] == [0, 1, 2]
    b.close()
