"""Binary weights: .caffemodel / .binaryproto readers and writers.

Every weight file is generated here from seeds; wire bytes for encodings protobuf itself never
writes (unpacked floats, groups, non-canonical tags...) are built by hand with the small
encoder below, which is independent of the module under test.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prototxt_tools.errors import PrototxtError
from prototxt_tools.schema import caffe_pb2
from prototxt_tools.schema import caffemodel as cm
from prototxt_tools.schema.caffemodel import (
    LayerWeights,
    array_to_blob,
    blob_to_array,
    layer_weights_from_net,
    read_binaryproto,
    read_blobproto_message,
    read_caffemodel,
    read_weights,
    summarize,
    write_binaryproto,
    write_caffemodel,
    write_weights,
)

# --------------------------------------------------------------------------------------------
# A tiny independent protobuf wire encoder


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def vint(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(value)


def packed_floats(values, field: int = 5) -> bytes:
    return ld(field, np.asarray(values, "<f4").tobytes())


def unpacked_floats(values) -> bytes:
    return b"".join(b"\x2d" + struct.pack("<f", v) for v in np.asarray(values, np.float32))


def packed_doubles(values) -> bytes:
    return ld(8, np.asarray(values, "<f8").tobytes())


def unpacked_doubles(values) -> bytes:
    return b"".join(b"\x41" + struct.pack("<d", v) for v in values)


def shape_msg(dims, packed: bool = True) -> bytes:
    if packed:
        inner = ld(1, b"".join(varint(d) for d in dims)) if dims else b""
    else:
        inner = b"".join(vint(1, d) for d in dims)
    return ld(7, inner)


def v2_layer(name: str, type_: str, blobs) -> bytes:
    body = ld(1, name.encode()) + ld(2, type_.encode()) + b"".join(ld(7, b) for b in blobs)
    return ld(100, body)


def write_file(path, data: bytes):
    path.write_bytes(data)
    return path


def message_weights(path):
    return layer_weights_from_net(read_caffemodel(path))


def assert_agree(path):
    """Both readers give the same layers; returns them."""
    slow = message_weights(path)
    fast = read_weights(path)
    fast_copy = read_weights(path, copy=True)
    assert fast == slow
    assert fast_copy == slow
    return fast


def random_layers(seed: int, count: int = 4):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(count):
        blobs = []
        for _ in range(int(rng.integers(0, 3))):
            ndim = int(rng.integers(0, 5))
            shape = tuple(int(d) for d in rng.integers(1, 5, ndim))
            blobs.append(rng.standard_normal(shape).astype(np.float32))
        layers.append((f"layer{i}", ["Convolution", "InnerProduct", "ReLU", "Scale"][i % 4],
                       blobs))
    return layers


def expected_weights(layers, dtype=np.float32):
    return [LayerWeights(n, t, [np.asarray(a, dtype) for a in arrays], "layer")
            for n, t, arrays in layers]


def no_temp_files(directory) -> bool:
    return not [n for n in os.listdir(directory) if n.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("seed", range(5))
def test_write_weights_reads_back_through_every_reader(tmp_path, seed):
    layers = random_layers(seed)
    path = tmp_path / "w.caffemodel"
    write_weights(layers, path)
    assert assert_agree(path) == expected_weights(layers)
    # protobuf's own serialization of the same net is byte-identical
    net = caffe_pb2.NetParameter()
    for name, type_, arrays in layers:
        layer = net.layer.add(name=name, type=type_)
        for array in arrays:
            array_to_blob(array, layer.blobs.add())
    assert net.SerializeToString() == path.read_bytes()
    assert read_caffemodel(path) == net


def test_write_caffemodel_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    net = caffe_pb2.NetParameter(name="net")
    layer = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    layer.convolution_param.num_output = 8
    array_to_blob(rng.standard_normal((8, 3, 3, 3)), layer.blobs.add())
    array_to_blob(rng.standard_normal((2, 2)), layer.blobs.add(), dtype=np.float64)
    path = tmp_path / "m.caffemodel"
    write_caffemodel(net, path)
    again = read_caffemodel(path)
    assert again == net
    assert again.layer[0].convolution_param.num_output == 8
    weights = assert_agree(path)
    assert [b.dtype for b in weights[0].blobs] == [np.float32, np.float64]
    # write_weights from what was read reproduces the weights (types kept as strings)
    write_weights(weights, tmp_path / "copy.caffemodel", dtype=None)
    assert read_weights(tmp_path / "copy.caffemodel") == weights


def test_weights_round_trip_through_layerweights_and_copies(tmp_path):
    layers = random_layers(11, 6)
    first = tmp_path / "a.caffemodel"
    write_weights(layers, first)
    views = read_weights(first)
    second = tmp_path / "b.caffemodel"
    write_weights(views, second)  # read-only mmap views are written without copying
    assert first.read_bytes() == second.read_bytes()


def test_write_weights_converts_awkward_arrays_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "_CHUNK_ELEMENTS", 7)  # force many small chunks
    rng = np.random.default_rng(12)
    base = rng.standard_normal((6, 5, 4))
    arrays = [base, base.transpose(2, 0, 1), base[:, ::2, 1:], base.astype(">f4"),
              np.arange(40).reshape(40, 1, 1), rng.standard_normal((3, 20))[:, ::3],
              np.asfortranarray(base.astype(np.float32)), np.float64(2.5), np.ones(3, bool)]
    path = tmp_path / "w.caffemodel"
    write_weights([("a", "X", arrays)], path)
    (weights,) = assert_agree(path)
    for got, want in zip(weights.blobs, arrays):
        assert got.dtype == np.float32
        assert np.array_equal(got, np.asarray(want, dtype=np.float32))
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="a", type="X")
    for array in arrays:
        array_to_blob(array, layer.blobs.add())
    assert path.read_bytes() == net.SerializeToString()
    write_weights([("a", "X", arrays)], path, dtype=None)
    assert [b.dtype for b in read_weights(path)[0].blobs] == [np.float64] * 3 + [np.float32] * 2 + [
        np.float64, np.float32, np.float64, np.float32]


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3), (1, 1, 4, 7),
                                   (2, 1, 1, 1, 3)])
def test_array_to_blob_and_back(shape):
    rng = np.random.default_rng(len(shape))
    array = rng.standard_normal(shape)
    blob = array_to_blob(array)
    assert list(blob.shape.dim) == list(shape) and blob.HasField("shape")
    assert len(blob.double_data) == 0
    out = blob_to_array(blob)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out, array.astype(np.float32))
    assert out.flags.writeable

    double = array_to_blob(array, dtype=np.float64)
    assert len(double.data) == 0 and len(double.double_data) == array.size
    out = blob_to_array(double)
    # an empty blob stores no values, so nothing says they were doubles: it reads as float32
    assert out.dtype == (np.float64 if array.size else np.float32)
    assert np.array_equal(out, array)
    assert blob_to_array(array_to_blob(array, dtype=None)).dtype == out.dtype
    assert blob_to_array(array_to_blob(array.astype(np.float32), dtype=None)).dtype == np.float32
    assert blob_to_array(array_to_blob(array.astype(">f8"), dtype=None)).dtype == out.dtype


def test_array_to_blob_matches_extend_and_handles_odd_inputs():
    rng = np.random.default_rng(3)
    array = rng.standard_normal((4, 5)).astype(np.float32)
    reference = caffe_pb2.BlobProto()
    reference.shape.dim.extend(array.shape)
    reference.data.extend(array.ravel().tolist())
    assert array_to_blob(array).SerializeToString() == reference.SerializeToString()
    # non-contiguous, big-endian and integer inputs
    assert np.array_equal(blob_to_array(array_to_blob(array.T)), array.T)
    assert np.array_equal(blob_to_array(array_to_blob(array.astype(">f4"))), array)
    assert np.array_equal(blob_to_array(array_to_blob(np.arange(6).reshape(2, 3))),
                          np.arange(6, dtype=np.float32).reshape(2, 3))
    # filling an existing blob replaces everything in it
    blob = caffe_pb2.BlobProto(num=1, channels=2, height=3, width=4)
    blob.diff.extend([1.0, 2.0])
    array_to_blob(np.ones(3), blob)
    assert not blob.HasField("num") and len(blob.diff) == 0
    assert blob_to_array(blob).shape == (3,)
    with pytest.raises(TypeError):
        array_to_blob(np.array(["a"]))
    with pytest.raises(ValueError):
        array_to_blob(np.ones(2), dtype=np.int32)


def test_nan_bits_survive_both_paths(tmp_path):
    bits = np.array([0x7F800001, 0x7FC12345, 0xFFBFFFFF, 0x3F800000], dtype="<u4")
    array = bits.view("<f4")
    blob = array_to_blob(array)
    assert np.array_equal(blob_to_array(blob).view("<u4"), bits)
    path = tmp_path / "nan.caffemodel"
    write_weights([("n", "X", [array])], path)
    (weights,) = assert_agree(path)
    assert np.array_equal(weights.blobs[0].view("<u4"), bits)


# --------------------------------------------------------------------------------------------
# Encodings


def test_packed_and_unpacked_float_data_agree(tmp_path):
    values = np.random.default_rng(5).standard_normal(24).astype(np.float32)
    shape = shape_msg([2, 3, 4])
    encodings = {
        "packed": packed_floats(values) + shape,
        "unpacked": shape + unpacked_floats(values),
        "mixed": (unpacked_floats(values[:5]) + packed_floats(values[5:9]) + shape
                  + unpacked_floats(values[9:10]) + packed_floats([]) + packed_floats(values[10:20])
                  + vint(99, 1) + unpacked_floats(values[20:])),
        # tag 5/fixed32 spelled in two bytes, which protobuf accepts
        "noncanonical tag": b"".join(b"\xad\x00" + struct.pack("<f", v) for v in values) + shape,
        "unpacked dims": shape_msg([2, 3, 4], packed=False) + unpacked_floats(values),
    }
    expected = values.reshape(2, 3, 4)
    for label, blob in encodings.items():
        path = write_file(tmp_path / f"{label}.caffemodel", v2_layer("ip", "InnerProduct", [blob]))
        (weights,) = assert_agree(path)
        assert np.array_equal(weights.blobs[0], expected), label
        assert summarize(path)[0]["checksum"] == hashlib.sha256(
            values.tobytes()).hexdigest()[:16], label
    views = read_weights(tmp_path / "packed.caffemodel")[0].blobs[0]
    assert not views.flags.writeable and not views.flags.owndata  # a view of the map


def test_long_unpacked_run_is_vectorised(tmp_path):
    values = np.arange(300_000, dtype=np.float32)
    records = np.empty(values.size, dtype=[("tag", "u1"), ("value", "<f4")])
    records["tag"] = 0x2D
    records["value"] = values
    blob = shape_msg([values.size]) + records.tobytes()
    path = write_file(tmp_path / "u.caffemodel", v2_layer("big", "X", [blob]))
    start = time.perf_counter()
    (weights,) = read_weights(path)
    assert time.perf_counter() - start < 1.0
    assert np.array_equal(weights.blobs[0], values)
    assert weights == message_weights(path)[0]


def test_value_by_value_alternating_encodings(tmp_path):
    # every value in its own piece: canonical and two-byte tags, and tiny packed fields
    values = np.random.default_rng(6).standard_normal(30_000).astype(np.float32)
    pieces = []
    for i, v in enumerate(values):
        if i % 3 == 0:
            pieces.append(b"\x2d" + v.tobytes())
        elif i % 3 == 1:
            pieces.append(b"\xad\x00" + v.tobytes())
        else:
            pieces.append(packed_floats([v]))
    blob = b"".join(pieces) + shape_msg([values.size])
    path = write_file(tmp_path / "alt.caffemodel", v2_layer("a", "X", [blob]))
    (weights,) = assert_agree(path)
    assert np.array_equal(weights.blobs[0], values)


def test_double_data(tmp_path):
    values = np.random.default_rng(9).standard_normal(6)
    cases = {
        "packed": packed_doubles(values) + shape_msg([2, 3]),
        "unpacked": unpacked_doubles(values) + shape_msg([2, 3]),
        # double_data wins over data, as in Caffe's Blob::FromProto
        "both": packed_floats(np.zeros(6)) + shape_msg([2, 3]) + packed_doubles(values),
    }
    for label, blob in cases.items():
        path = write_file(tmp_path / f"{label}.caffemodel", v2_layer("d", "X", [blob]))
        (weights,) = assert_agree(path)
        assert weights.blobs[0].dtype == np.float64, label
        assert np.array_equal(weights.blobs[0], values.reshape(2, 3)), label
        row = summarize(path)[0]
        assert row["dtype"] == "float64" and row["count"] == 6
        assert row["checksum"] == hashlib.sha256(values.astype("<f8").tobytes()).hexdigest()[:16]


def test_legacy_4d_shape(tmp_path):
    values = np.random.default_rng(1).standard_normal(2 * 3 * 4 * 5).astype(np.float32)
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="conv", type="Convolution")
    blob = layer.blobs.add(num=2, channels=3, height=4, width=5)
    blob.data.extend(values.tolist())
    # old InnerProduct weights 1x1xNxK are reported as stored
    ip = net.layer.add(name="ip", type="InnerProduct").blobs.add(num=1, channels=1, height=2,
                                                                  width=3)
    ip.data.extend(range(6))
    # an old bias blob, 1x1x1xN
    partial = net.layer.add(name="bias", type="X").blobs.add(width=4, num=1, channels=1, height=1)
    partial.data.extend(range(4))
    path = tmp_path / "legacy.caffemodel"
    write_caffemodel(net, path)
    weights = assert_agree(path)
    assert weights[0].blobs[0].shape == (2, 3, 4, 5)
    assert np.array_equal(weights[0].blobs[0].ravel(), values)
    assert weights[1].blobs[0].shape == (1, 1, 2, 3)
    assert weights[2].blobs[0].shape == (1, 1, 1, 4)


def test_shape_rules_when_both_or_neither_given(tmp_path):
    # legacy fields win over shape, as in Caffe's Blob::FromProto; neither means a scalar (0-D)
    both = (vint(1, 1) + vint(2, 1) + vint(3, 1) + vint(4, 3) + shape_msg([3])
            + packed_floats([1, 2, 3]))
    neither = packed_floats([4.5])
    empty_shape = shape_msg([]) + unpacked_floats([2.0])
    path = write_file(tmp_path / "s.caffemodel",
                      v2_layer("a", "X", [both, neither, empty_shape]))
    (weights,) = assert_agree(path)
    assert [b.shape for b in weights.blobs] == [(1, 1, 1, 3), (), ()]
    assert weights.blobs[1] == np.float32(4.5)
    # Legacy fields that disagree with the data are an error even when `shape` would fit.
    clash = vint(1, 7) + vint(2, 7) + shape_msg([3]) + packed_floats([1, 2, 3])
    bad = write_file(tmp_path / "clash.caffemodel", v2_layer("b", "X", [clash]))
    with pytest.raises(PrototxtError):
        read_weights(bad)
    with pytest.raises(PrototxtError):
        layer_weights_from_net(read_caffemodel(bad))


def test_v1_layers_and_v0_inside_v1(tmp_path):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    net = caffe_pb2.NetParameter(name="old")
    v1 = net.layers.add(name="conv1", type=caffe_pb2.V1LayerParameter.CONVOLUTION,
                        bottom=["data"], top=["conv1"])
    array_to_blob(w, v1.blobs.add())
    legacy = v1.blobs.add(num=1, channels=1, height=1, width=4)
    legacy.data.extend(b.tolist())
    net.layers.add(name="relu1", type=caffe_pb2.V1LayerParameter.RELU)
    net.layers.add(name="untyped")  # type unset: Caffe's NONE
    v0_wrapper = net.layers.add(bottom=["conv1"], top=["ip"])
    v0 = v0_wrapper.layer
    v0.name = "fc"
    v0.type = "innerproduct"
    v0.num_output = 4
    array_to_blob(rng.standard_normal((1, 1, 4, 36)), v0.blobs.add())
    path = tmp_path / "v1.caffemodel"
    write_caffemodel(net, path)
    weights = assert_agree(path)
    assert [(layer.name, layer.type, layer.format) for layer in weights] == [
        ("conv1", "CONVOLUTION", "layers(V1)"),
        ("relu1", "RELU", "layers(V1)"),
        ("untyped", "NONE", "layers(V1)"),
        ("fc", "innerproduct", "V0"),
    ]
    assert np.array_equal(weights[0].blobs[0], w)
    assert weights[0].blobs[1].shape == (1, 1, 1, 4)
    assert weights[3].blobs[0].shape == (1, 1, 4, 36)
    rows = summarize(path)
    assert [(r["layer"], r["type"], r["blob"], r["format"]) for r in rows] == [
        ("conv1", "CONVOLUTION", 0, "layers(V1)"),
        ("conv1", "CONVOLUTION", 1, "layers(V1)"),
        ("fc", "innerproduct", 0, "V0"),
    ]


def test_v2_layers_come_before_v1_layers_like_the_message_path(tmp_path):
    v1 = ld(2, ld(4, b"old") + vint(5, caffe_pb2.V1LayerParameter.POOLING))
    data = v1 + v2_layer("new", "ReLU", []) + v1
    path = write_file(tmp_path / "mixed.caffemodel", data)
    assert [layer.name for layer in assert_agree(path)] == ["new", "old", "old"]


def test_protobuf_merge_and_unknown_field_rules(tmp_path):
    """Odd but legal encodings: the fast reader must read them as protobuf does."""
    blob = (shape_msg([2]) + shape_msg([3]) + packed_floats(range(6))  # shapes merge: (2, 3)
            + vint(5, 1)  # data as a varint: an unknown field
            + tag(1, 2) + varint(1) + b"\x05"  # num as LD: unknown, so no legacy shape
            + tag(20, 3) + vint(1, 5) + tag(21, 3) + ld(2, b"xy") + tag(21, 4) + tag(20, 4)
            + tag(30, 1) + b"\x00" * 8 + tag(31, 5) + b"\x00" * 4
            + tag(2**29 - 1, 0) + b"\x01")
    v1_type = (vint(5, caffe_pb2.V1LayerParameter.CONVOLUTION)
               + vint(5, 9999)  # not in the enum: ignored, CONVOLUTION stays
               + ld(5, b"\x04"))  # enum as LD: unknown
    layer = (ld(1, b"first") + ld(1, b"second")  # last name wins
             + ld(2, b"Convolution") + vint(1, 3)  # name as a varint: unknown
             + ld(7, blob) + tag(7, 3) + tag(7, 4)  # blobs as a group: unknown
             + ld(12345, b"\xff\xff"))
    v0_twice = ld(1, ld(1, b"v0") + ld(50, packed_floats([1]) + shape_msg([1]))) + ld(
        1, ld(2, b"conv") + ld(50, packed_floats([2]) + shape_msg([1])))
    data = (ld(1, b"netname") + ld(100, layer)
            + ld(2, ld(4, b"v1") + v1_type)
            + ld(2, ld(4, b"v1-int32") + vint(5, (1 << 32) + 4))  # int32 truncation: 4
            + ld(2, ld(4, b"v1-neg") + vint(5, -1))
            + ld(2, ld(4, b"ignored") + v0_twice)
            + ld(100, ld(1, b"\xff\xfebad utf-8"))
            + tag(3, 3) + tag(4, 3) + tag(4, 4) + tag(3, 4)
            + tag(7, 0) + varint(2**64 - 1))
    path = write_file(tmp_path / "odd.caffemodel", data)
    weights = assert_agree(path)
    assert [(layer.name, layer.type, layer.format) for layer in weights] == [
        ("second", "Convolution", "layer"),
        ("\udcff\udcfebad utf-8", "", "layer"),
        ("v1", "CONVOLUTION", "layers(V1)"),
        ("v1-int32", "CONVOLUTION", "layers(V1)"),
        ("v1-neg", "NONE", "layers(V1)"),
        ("v0", "conv", "V0"),
    ]
    assert weights[0].blobs[0].shape == (2, 3)
    assert [b.tolist() for b in weights[5].blobs] == [[1.0], [2.0]]


# --------------------------------------------------------------------------------------------
# .binaryproto


def test_binaryproto_round_trip(tmp_path):
    mean = np.random.default_rng(4).uniform(0, 255, (1, 3, 8, 8))
    path = tmp_path / "mean.binaryproto"
    write_binaryproto(mean, path)
    out = read_binaryproto(path)
    assert out.dtype == np.float32 and np.array_equal(out, mean.astype(np.float32))
    assert list(read_blobproto_message(path).shape.dim) == [1, 3, 8, 8]
    write_binaryproto(mean, path, dtype=np.float64)
    assert np.array_equal(read_binaryproto(path), mean)
    (row,) = summarize(path)
    assert row["format"] == "binaryproto" and row["shape"] == (1, 3, 8, 8)
    assert row["checksum"] == hashlib.sha256(mean.tobytes()).hexdigest()[:16]
    # a legacy mean file (Caffe's compute_image_mean wrote num/channels/height/width)
    legacy = caffe_pb2.BlobProto(num=1, channels=3, height=2, width=2)
    legacy.data.extend(range(12))
    other = tmp_path / "mean.bin"  # no telling suffix: recognised by content
    write_caffemodel(legacy, other)
    assert read_binaryproto(other).shape == (1, 3, 2, 2)
    assert summarize(other)[0]["format"] == "binaryproto"
    with pytest.raises(PrototxtError, match="looks like a .binaryproto"):
        read_weights(other)
    with pytest.raises(PrototxtError, match="looks like a .binaryproto"):
        read_caffemodel(other)


def test_caffemodel_given_as_binaryproto(tmp_path):
    path = tmp_path / "w.binaryproto"
    write_weights(random_layers(1), path)
    with pytest.raises(PrototxtError, match="looks like a .caffemodel"):
        read_binaryproto(path)


# --------------------------------------------------------------------------------------------
# Errors


def test_element_count_mismatch(tmp_path):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.data.extend(range(5))
    with pytest.raises(PrototxtError, match=r"needs 6 elements but the blob holds 5"):
        blob_to_array(blob)
    path = write_file(tmp_path / "bad.caffemodel",
                      v2_layer("conv", "X", [packed_floats(np.ones(3)) + shape_msg([3]),
                                                  blob.SerializeToString()]))
    for reader in (read_weights, message_weights, summarize):
        with pytest.raises(PrototxtError) as info:
            reader(path)
        assert ("layer 'conv' blob 1: blob shape (2, 3) needs 6 elements but the blob holds 5"
                in str(info.value))
        if reader is not message_weights:  # layer_weights_from_net has no path to report
            assert str(info.value).startswith(str(path))
    with pytest.raises(PrototxtError, match="negative dimension"):
        blob_to_array(caffe_pb2.BlobProto(num=-1, channels=1, height=1, width=1))
    with pytest.raises(PrototxtError, match="negative dimension"):
        read_weights(write_file(tmp_path / "neg.caffemodel",
                                v2_layer("n", "X", [shape_msg([-2]) + packed_floats([])])))


@pytest.mark.parametrize("dims, count", [([1] * 65, 1), ([0, 2**62], 0), ([0, 2**63 - 1, 4], 0)])
def test_shapes_numpy_cannot_hold_are_errors(tmp_path, dims, count):
    blob = shape_msg(dims) + packed_floats(np.ones(count))
    with pytest.raises(PrototxtError, match="not supported"):
        blob_to_array(caffe_pb2.BlobProto.FromString(blob))
    path = write_file(tmp_path / "s.caffemodel", v2_layer("x", "X", [blob]))
    for reader in (read_weights, message_weights, summarize):
        with pytest.raises(PrototxtError, match="not supported"):
            reader(path)


def test_names_that_are_not_utf8_round_trip(tmp_path):
    data = ld(100, ld(1, b"\xffa\xfe") + ld(2, b"X"))
    path = write_file(tmp_path / "n.caffemodel", data)
    (layer,) = assert_agree(path)
    assert layer.name == "\udcffa\udcfe"
    write_weights([layer], tmp_path / "again.caffemodel")
    assert (tmp_path / "again.caffemodel").read_bytes() == data


@pytest.mark.parametrize("data, offset, message", [
    (b"\x0e", 0, "invalid wire type 6"),
    (ld(1, b"n") + b"\x0f", 3, "invalid wire type 7"),
    (ld(1, b"n") + b"\x00\x01", 3, "field number 0"),
    # a field that is cut short or overruns is reported at its tag
    (ld(100, ld(7, tag(5, 2) + varint(3) + b"\x00\x00\x80")), 5, "not a whole number"),
    (ld(100, ld(7, tag(8, 2) + varint(4) + b"\x00" * 4)), 5, "not a whole number"),
    (ld(100, ld(1, b"conv")) + b"\xa2\x06\x10abc", 9, "file truncated inside a layer"),
    (ld(100, tag(1, 2) + varint(9) + b"abc") + ld(1, b"xxxxxxx"), 3, "runs past the end"),
    (ld(100, ld(7, shape_msg([2]) + b"\x2d\x00\x00")) + ld(1, b"net"), 10,
     "float value runs past the end of its enclosing message"),
    (ld(100, ld(7, packed_floats([1.0])))[:-2], 0, "file truncated inside a layer"),
    # a malformed varint at its own first byte
    (ld(100, tag(7, 2) + b"\x80\x80\x80\x80\x80\x01"), 4, "longer than 5 bytes"),
    (b"\x08" + b"\xff" * 10 + b"\x01", 1, "longer than 10 bytes"),
    (tag(3, 3) + tag(4, 4), 1, "closes group 3"),
    (tag(3, 3) + vint(1, 1), 0, "truncated inside group"),
    (tag(3, 4), 0, "outside a group"),
    (b"\xff\xff\xff\xff\x7f", 0, "more than 32 bits"),
])
def test_corrupt_files_give_offsets(tmp_path, data, offset, message):
    path = write_file(tmp_path / "c.caffemodel", data)
    with pytest.raises(PrototxtError) as info:
        read_weights(path)
    assert info.value.offset == offset
    assert message in str(info.value) and f"byte offset {offset}" in str(info.value)
    assert str(info.value).startswith(f"{path}: not a valid .caffemodel (binary NetParameter): ")
    with pytest.raises(PrototxtError, match="not a valid .caffemodel"):
        read_caffemodel(path)


def test_every_truncation_is_rejected_or_agrees(tmp_path):
    path = tmp_path / "w.caffemodel"
    write_weights(random_layers(3, 3), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    for size in range(len(data)):
        cut.write_bytes(data[:size])
        try:
            slow = message_weights(cut)
        except PrototxtError:
            slow = None
        try:
            fast = read_weights(cut)
        except PrototxtError as exc:
            assert slow is None, size
            assert exc.offset is None or 0 <= exc.offset <= size
            continue
        assert fast == slow, size


def test_unreadable_and_wrong_kind_inputs(tmp_path):
    empty = write_file(tmp_path / "empty.caffemodel", b"")
    for reader in (read_weights, read_caffemodel, summarize, read_binaryproto):
        with pytest.raises(PrototxtError, match="empty"):
            reader(empty)
        with pytest.raises(PrototxtError, match="no such file"):
            reader(tmp_path / "missing.caffemodel")
        with pytest.raises(PrototxtError, match="directory"):
            reader(tmp_path)
    text = write_file(tmp_path / "deploy.caffemodel",
                      b'name: "net"\nlayer {\n  name: "conv1"\n  type: "Convolution"\n}\n')
    for reader in (read_weights, read_caffemodel, read_binaryproto):
        with pytest.raises(PrototxtError, match=r"looks like text \(a .prototxt"):
            reader(text)
    # a text file that happens to parse as a (layerless) binary message still gets the hint
    sneaky = write_file(tmp_path / "sneaky.caffemodel", b"\n " + b"x" * 32)
    with pytest.raises(PrototxtError, match="looks like text"):
        read_weights(sneaky)
    with pytest.raises(PrototxtError, match="looks like text"):
        read_caffemodel(sneaky)
    # but a binary net without weights is a valid (empty) caffemodel
    bare = write_file(tmp_path / "bare.caffemodel",
                      ld(1, b"x") + vint(5, 1) + ld(2000, b"\xff\x00"))
    assert read_weights(bare) == [] == message_weights(bare)


# --------------------------------------------------------------------------------------------
# Fuzzing: corruptions never raise anything but PrototxtError, and never make the readers
# disagree when protobuf accepts the file


def _fuzz_seed_file() -> bytes:
    rng = np.random.default_rng(123)
    net = caffe_pb2.NetParameter(name="fuzz")
    conv = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    conv.convolution_param.num_output = 2
    array_to_blob(rng.standard_normal((2, 1, 2, 2)), conv.blobs.add())
    array_to_blob(rng.standard_normal(2), conv.blobs.add(), dtype=np.float64)
    legacy = net.layer.add(name="ip", type="InnerProduct").blobs.add(num=1, channels=1, height=2,
                                                                     width=2)
    legacy.data.extend(rng.standard_normal(4).tolist())
    data = net.SerializeToString()
    data += v2_layer("u", "Scale", [shape_msg([3]) + unpacked_floats([1, 2, 3])])
    v1 = net.layers.add(name="old", type=caffe_pb2.V1LayerParameter.INNER_PRODUCT)
    array_to_blob(np.arange(3), v1.blobs.add())
    v0 = net.layers.add().layer
    v0.name, v0.type = "v0", "conv"
    array_to_blob(np.ones((1, 2)), v0.blobs.add())
    wrapper = caffe_pb2.NetParameter()
    wrapper.layers.extend(net.layers)
    return data + wrapper.SerializeToString() + tag(9, 3) + vint(1, 3) + tag(9, 4)


FUZZ_SEED = _fuzz_seed_file()

edits = st.one_of(
    st.tuples(st.just("set"), st.integers(0, len(FUZZ_SEED) - 1), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(FUZZ_SEED) - 1), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, len(FUZZ_SEED) - 1), st.just(0)),
    st.tuples(st.just("delete"), st.integers(0, len(FUZZ_SEED) - 1), st.integers(1, 8)),
    st.tuples(st.just("insert"), st.integers(0, len(FUZZ_SEED)), st.integers(0, 255)),
)


def _apply(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, at, arg in ops:
        at = min(at, len(buf))
        if op == "set" and at < len(buf):
            buf[at] = arg
        elif op == "flip" and at < len(buf):
            buf[at] ^= 1 << arg
        elif op == "truncate":
            del buf[at:]
        elif op == "delete":
            del buf[at:at + arg]
        elif op == "insert":
            buf[at:at] = bytes([arg])
    return bytes(buf)


def _outcome(reader, path):
    try:
        return reader(path), None
    except PrototxtError as exc:  # anything else fails the test
        return None, exc


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(edits, min_size=1, max_size=4))
def test_corruption_only_raises_prototxt_error(tmp_path_factory, ops):
    path = tmp_path_factory.getbasetemp() / "fuzz.caffemodel"
    path.write_bytes(_apply(FUZZ_SEED, ops))
    net, net_error = _outcome(read_caffemodel, path)
    fast, fast_error = _outcome(read_weights, path)
    _outcome(summarize, path)
    if net is not None:
        slow, slow_error = _outcome(layer_weights_from_net, net)
        if slow_error is None:
            assert fast_error is None, fast_error
            assert fast == slow
        else:
            assert fast_error is not None
    if fast_error is not None and fast_error.offset is not None:
        assert 0 <= fast_error.offset <= path.stat().st_size


def test_fuzz_seed_file_is_valid(tmp_path):
    weights = assert_agree(write_file(tmp_path / "seed.caffemodel", FUZZ_SEED))
    assert [layer.format for layer in weights] == ["layer"] * 3 + ["layers(V1)", "V0"]


# Random structures in random (legal) encodings: both readers must agree exactly.

@st.composite
def blob_bytes(draw):
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 3), min_size=ndim, max_size=ndim))
    count = int(np.prod(dims)) if dims else 1
    bits = draw(st.lists(st.integers(0, 2**32 - 1), min_size=count, max_size=count))
    values = np.array(bits, dtype="<u4").view("<f4")
    double = draw(st.booleans())
    if double:
        values = values.astype(np.float64)
    legacy = ndim == 4 and draw(st.booleans())
    shape = b"".join(vint(i + 1, d) for i, d in enumerate(dims)) if legacy else shape_msg(
        dims, packed=draw(st.booleans()))
    pieces = []
    start = 0
    while start < count:
        stop = draw(st.integers(start + 1, count))
        part = values[start:stop]
        if double:
            pieces.append(packed_doubles(part) if draw(st.booleans()) else unpacked_doubles(part))
        else:
            pieces.append(packed_floats(part) if draw(st.booleans()) else unpacked_floats(part))
        start = stop
    where = draw(st.integers(0, len(pieces)))
    return b"".join(pieces[:where]) + shape + b"".join(pieces[where:])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=st.lists(st.tuples(st.sampled_from(["layer", "V1", "V0"]),
                                 st.text(max_size=5), st.lists(blob_bytes(), max_size=3)),
                       min_size=1, max_size=4))
def test_random_encodings_agree(tmp_path_factory, layers):
    data = b""
    for fmt, name, blobs in layers:
        name_bytes = name.encode("utf-8", "surrogatepass")
        if fmt == "layer":
            data += ld(100, ld(1, name_bytes) + b"".join(ld(7, b) for b in blobs))
        elif fmt == "V1":
            data += ld(2, ld(4, name_bytes) + vint(5, 4) + b"".join(ld(6, b) for b in blobs))
        else:
            data += ld(2, ld(1, ld(1, name_bytes) + b"".join(ld(50, b) for b in blobs)))
    path = tmp_path_factory.getbasetemp() / "random.caffemodel"
    path.write_bytes(data)
    weights = assert_agree(path)
    assert [layer.format for layer in weights] == sorted(
        ("layer" if f == "layer" else "layers(V1)" if f == "V1" else "V0" for f, _, _ in layers),
        key=lambda f: f != "layer")


# --------------------------------------------------------------------------------------------
# Big files


def test_file_over_64_mb(tmp_path):
    rng = np.random.default_rng(64)
    big = rng.standard_normal(17_000_000, dtype=np.float32).reshape(1000, 17000)
    small = rng.standard_normal(10).astype(np.float32)
    path = tmp_path / "big.caffemodel"
    write_weights([("fc", "InnerProduct", [big, small]), ("relu", "ReLU", [])], path)
    assert path.stat().st_size > 64 * 2**20
    fast = read_weights(path)
    assert fast[0].blobs[0].shape == (1000, 17000)
    assert np.array_equal(fast[0].blobs[0], big) and np.array_equal(fast[0].blobs[1], small)
    slow = message_weights(path)
    assert slow == fast
    assert read_weights(path, copy=True) == fast
    (row, _) = summarize(path)
    assert row["count"] == 17_000_000
    assert row["checksum"] == hashlib.sha256(big.tobytes()).hexdigest()[:16]


def test_refuses_to_write_over_2_gb(tmp_path):
    huge = np.broadcast_to(np.float32(1), (2**29 + 1,))  # 2 GB of values, no memory
    with pytest.raises(PrototxtError, match="2 GB"):
        write_weights([("x", "X", [huge])], tmp_path / "huge.caffemodel")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_failed_streaming_write_leaves_nothing(tmp_path, monkeypatch):
    layers = random_layers(8)
    path = tmp_path / "w.caffemodel"
    real = cm._write_array
    calls = []

    def failing(handle, array, dtype):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"partial")
            handle.flush()
            raise OSError(28, "No space left on device")
        real(handle, array, dtype)

    monkeypatch.setattr(cm, "_write_array", failing)
    with pytest.raises(PrototxtError, match="No space left"):
        write_weights(layers, path)
    assert os.listdir(tmp_path) == []

    # an existing file is left untouched, also for errors that are not OSErrors
    monkeypatch.setattr(cm, "_write_array", real)
    write_weights(layers[:1], path)
    before = path.read_bytes()

    def explode(handle, array, dtype):
        handle.write(b"junk")
        raise RuntimeError("boom")

    monkeypatch.setattr(cm, "_write_array", explode)
    with pytest.raises(RuntimeError, match="boom"):
        write_weights(layers, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.caffemodel"]


@pytest.mark.parametrize("writer", ["caffemodel", "binaryproto", "weights"])
def test_failed_fsync_leaves_old_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "out"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    net = caffe_pb2.NetParameter()
    array_to_blob(np.ones(3), net.layer.add(name="a").blobs.add())
    write = {
        "caffemodel": lambda: write_caffemodel(net, path),
        "binaryproto": lambda: write_binaryproto(np.ones((2, 2)), path),
        "weights": lambda: write_weights([("a", "X", [np.ones(3)])], path),
    }[writer]

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(PrototxtError, match="cannot write"):
            write()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out"]
    write()
    assert os.listdir(tmp_path) == ["out"] and no_temp_files(tmp_path)
    assert os.stat(path).st_mode & 0o777 == 0o640  # permissions of the replaced file kept
    assert path.read_bytes() != b"old"


def test_rewriting_a_file_keeps_earlier_views_valid(tmp_path):
    path = tmp_path / "w.caffemodel"
    write_weights([("a", "X", [np.arange(4, dtype=np.float32)])], path)
    (old,) = read_weights(path)
    write_weights([("a", "X", [np.zeros(4, dtype=np.float32)])], path)
    assert old.blobs[0].tolist() == [0, 1, 2, 3]  # the old map still holds the old file
    (new,) = read_weights(path, copy=True)
    assert new.blobs[0].tolist() == [0, 0, 0, 0] and new.blobs[0].flags.writeable


# --------------------------------------------------------------------------------------------
# summarize


def test_summarize_rows_and_stable_checksums(tmp_path):
    arange = np.arange(6, dtype=np.float32).reshape(2, 3)
    layers = [("conv", "Convolution", [arange, np.ones(2, np.float32)]),
              ("relu", "ReLU", []), ("bn", "BatchNorm", [np.float32(7)])]
    a = tmp_path / "a.caffemodel"
    write_weights(layers, a)
    rows = summarize(a)
    assert rows == [
        {"layer": "conv", "type": "Convolution", "blob": 0, "shape": (2, 3), "dtype": "float32",
         "count": 6, "checksum": "e2c0a71510b5394d", "format": "layer"},
        {"layer": "conv", "type": "Convolution", "blob": 1, "shape": (2,), "dtype": "float32",
         "count": 2, "checksum": hashlib.sha256(np.ones(2, "<f4").tobytes()).hexdigest()[:16],
         "format": "layer"},
        {"layer": "bn", "type": "BatchNorm", "blob": 0, "shape": (), "dtype": "float32",
         "count": 1, "checksum": hashlib.sha256(struct.pack("<f", 7)).hexdigest()[:16],
         "format": "layer"},
    ]
    assert rows[0]["checksum"] == hashlib.sha256(arange.tobytes()).hexdigest()[:16]
    # the same weights written another way (protobuf, unpacked data) list identically
    net = read_caffemodel(a)
    b = tmp_path / "b.caffemodel"
    write_caffemodel(net, b)
    c = write_file(tmp_path / "c.caffemodel",
                   v2_layer("conv", "Convolution",
                            [unpacked_floats(arange.ravel()) + shape_msg([2, 3]),
                             unpacked_floats([1, 1]) + shape_msg([2])])
                   + v2_layer("relu", "ReLU", [])
                   + v2_layer("bn", "BatchNorm", [shape_msg([]) + unpacked_floats([7])]))
    assert summarize(b) == rows == summarize(c)
    assert summarize(a) == rows  # stable across runs
    with pytest.raises(ValueError):
        summarize(a, kind="zip")
