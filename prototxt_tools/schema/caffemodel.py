"""Binary Caffe weights: ``.caffemodel`` (a binary ``NetParameter``) and ``.binaryproto`` (a
binary ``BlobProto``, e.g. a mean image).

Two ways in:

* the message path -- :func:`read_caffemodel` / :func:`read_blobproto_message` parse the whole
  file with protobuf, and :func:`blob_to_array` / :func:`layer_weights_from_net` turn blobs
  into numpy arrays;
* the fast path -- :func:`read_weights` scans the protobuf wire format itself over a read-only
  memory map and returns ``np.frombuffer`` views of the packed float payloads, so nothing is
  copied and no protobuf message is built for blob data.

Both paths interpret a file identically (tested byte for byte, including protobuf's rules
for repeated, merged, unknown and mis-typed fields); the fast one skips the fields it does
not need without validating their insides, so it accepts some files protobuf rejects, never
the other way round.

How a blob becomes an array (Caffe's ``Blob::FromProto`` rules):

* values come from ``double_data`` (float64) when it holds any, else from ``data`` (float32);
  packed and unpacked encodings, and any mix of them, are accepted;
* the shape is the legacy 4-D ``(num, channels, height, width)`` when any of those fields is
  present (as in Caffe's ``FromProto``, even if ``shape`` is set too), else ``shape.dim``, else
  ``()`` (a scalar, which is what Caffe writes for a 0-D blob);
* the element count must match the shape.

Old InnerProduct weights stored as ``1x1xNxK`` are reported as stored; reshaping them is left
to the caller.

Writers never leave a partial file: output goes to a temporary file in the target directory
that is renamed over the target only when complete.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import PrototxtError
from ..fileio import PathLike, atomic_write, atomic_write_stream, read_bytes, read_error
from . import caffe_pb2

__all__ = [
    "LayerWeights",
    "read_caffemodel",
    "write_caffemodel",
    "read_blobproto_message",
    "read_binaryproto",
    "write_binaryproto",
    "blob_to_array",
    "array_to_blob",
    "layer_weights_from_net",
    "read_weights",
    "write_weights",
    "summarize",
]

CAFFEMODEL_ERROR = "not a valid .caffemodel (binary NetParameter)"
BINARYPROTO_ERROR = "not a valid .binaryproto (binary BlobProto)"

# Protobuf (and Caffe) refuse messages of 2 GB or more.
MAX_MESSAGE_BYTES = 2**31 - 1

FORMAT_V2 = "layer"
FORMAT_V1 = "layers(V1)"
FORMAT_V0 = "V0"
FORMAT_BLOB = "binaryproto"

_F4 = np.dtype("<f4")
_F8 = np.dtype("<f8")

DTypeLike = Any


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """The weights of one layer: its name, its type and its blobs as numpy arrays.

    ``type`` is the layer's type string; for a V1 ``layers`` entry it is the name of its
    ``LayerType`` enum value (``"CONVOLUTION"``), for a V0 layer the V0 type string.
    ``format`` is ``"layer"`` (V2), ``"layers(V1)"`` or ``"V0"`` (a V0 layer inside a V1
    entry). Arrays are float32, or float64 for blobs stored in ``double_data``.

    Equality is exact: same name, type, format and blobs with identical dtype, shape and bytes
    (so NaNs compare equal when their bits do).
    """

    name: str
    type: str
    blobs: List[np.ndarray]
    format: str = FORMAT_V2

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerWeights):
            return NotImplemented
        return (
            (self.name, self.type, self.format) == (other.name, other.type, other.format)
            and len(self.blobs) == len(other.blobs)
            and all(_same_array(a, b) for a, b in zip(self.blobs, other.blobs))
        )

    __hash__ = None  # type: ignore[assignment]


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


# ---------------------------------------------------------------------------------------------
# Message path


def _text_hint(data: Union[bytes, "mmap.mmap"]) -> str:
    """A hint for a text file passed where a binary one was expected, else ''."""
    sample = bytes(data[:4096])
    if not sample or b"\x00" in sample:
        return ""
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off by the 4 KiB sample is still text.
        if exc.reason != "unexpected end of data" or exc.start < len(sample) - 3:
            return ""
        text = sample[: exc.start].decode("utf-8")
    if not text:
        return ""
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f\v")
    if printable < 0.95 * len(text):
        return ""
    return "; the file looks like text (a .prototxt passed by mistake?) -- expected a binary file"


def _parse_message(cls: Any, data: bytes, path: PathLike, what: str) -> Any:
    message = cls()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # DecodeError, and anything else the backend may raise
        reason = str(exc) or type(exc).__name__
        raise PrototxtError(f"{what}: {reason}{_text_hint(data)}", os.fspath(path)) from None
    return message


def read_caffemodel(path: PathLike) -> "caffe_pb2.NetParameter":
    """Parse a ``.caffemodel`` into a full ``NetParameter`` message with protobuf.

    Raises :class:`PrototxtError` when the file is unreadable, empty, not a binary
    ``NetParameter``, or holds no layers while looking like text or a ``.binaryproto``.
    """
    data = read_bytes(path)
    net = _parse_message(caffe_pb2.NetParameter, data, path, CAFFEMODEL_ERROR)
    if not net.layer and not net.layers:
        _check_layerless(data, path)
    return net


def write_caffemodel(message: Any, path: PathLike) -> None:
    """Serialize ``message`` (normally a ``NetParameter``) to ``path`` atomically."""
    try:
        data = message.SerializeToString()
    except Exception as exc:
        raise PrototxtError(f"cannot serialize: {exc}", os.fspath(path)) from None
    atomic_write(path, data)


def read_blobproto_message(path: PathLike) -> "caffe_pb2.BlobProto":
    """Parse a ``.binaryproto`` into a ``BlobProto`` message with protobuf."""
    data = read_bytes(path)
    blob = _parse_message(caffe_pb2.BlobProto, data, path, BINARYPROTO_ERROR)
    if not blob.ListFields():
        if not data:
            reason = "the file is empty"
        else:
            reason = "no BlobProto fields found"
            hint = _text_hint(data)
            if hint:
                reason += hint
            elif _looks_like_net(data):
                reason += "; the file looks like a .caffemodel (binary NetParameter)"
        raise PrototxtError(f"{BINARYPROTO_ERROR}: {reason}", os.fspath(path))
    return blob


def read_binaryproto(path: PathLike) -> np.ndarray:
    """Read a ``.binaryproto`` (e.g. a mean image) as a numpy array (a writable copy)."""
    blob = read_blobproto_message(path)
    try:
        return blob_to_array(blob)
    except PrototxtError as exc:
        raise exc.with_path(os.fspath(path)) from None


def write_binaryproto(array: Any, path: PathLike, *, dtype: DTypeLike = np.float32) -> None:
    """Write ``array`` as a ``.binaryproto`` atomically (``dtype`` as for :func:`array_to_blob`)."""
    atomic_write(path, array_to_blob(array, dtype=dtype).SerializeToString())


def _blob_shape(blob: "caffe_pb2.BlobProto") -> Tuple[int, ...]:
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return ()


def _check_count(shape: Tuple[int, ...], actual: int, where: str = "") -> None:
    if any(d < 0 for d in shape):
        raise PrototxtError(f"{where}negative dimension in blob shape {_fmt_shape(shape)}")
    expected = 1
    for d in shape:
        expected *= d
    if expected != actual:
        raise PrototxtError(
            f"{where}blob shape {_fmt_shape(shape)} needs {expected} elements "
            f"but the blob holds {actual}"
        )


def _shaped(values: np.ndarray, shape: Tuple[int, ...], where: str = "") -> np.ndarray:
    """``values.reshape(shape)``; a shape numpy cannot hold (over 64 axes, or absurd sizes
    around a zero dimension) is a PrototxtError."""
    try:
        return values.reshape(shape)
    except ValueError as exc:
        raise PrototxtError(
            f"{where}blob shape {_fmt_shape(shape)} is not supported: {exc}") from None


def _fmt_shape(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def blob_to_array(blob: "caffe_pb2.BlobProto") -> np.ndarray:
    """A ``BlobProto`` as a new writable numpy array (float64 from ``double_data`` when it
    holds any values, else float32 from ``data``), shaped by the rules in the module docs.

    A blob without values reads as float32 (nothing on the wire says it was float64).
    Raises :class:`PrototxtError` naming expected and actual counts when they disagree.
    """
    shape = _blob_shape(blob)
    if len(blob.double_data):
        values = np.array(blob.double_data, dtype=np.float64)
    else:
        # upb's repeated fields implement __array__, which copies the stored bits exactly.
        values = np.array(blob.data, dtype=np.float32)
    _check_count(shape, values.size)
    return _shaped(values, shape)


def _normalize_dtype(dtype: DTypeLike, array: np.ndarray) -> np.dtype:
    """The little-endian storage dtype for ``array``: float32 unless asked otherwise.

    ``dtype`` is float32 or float64, or ``None`` to keep float64 arrays as float64.
    """
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cannot store an array of dtype {array.dtype} in a blob")
    if dtype is None:
        return _F8 if array.dtype.kind == "f" and array.dtype.itemsize == 8 else _F4
    wanted = np.dtype(dtype)
    if wanted == np.float32:
        return _F4
    if wanted == np.float64:
        return _F8
    raise ValueError(f"blob dtype must be float32, float64 or None, not {wanted}")


def _varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _ld_header(field: int, length: int) -> bytes:
    return _varint_bytes(field << 3 | 2) + _varint_bytes(length)


def _shape_field(shape: Tuple[int, ...]) -> bytes:
    """BlobProto.shape (field 7) holding packed ``dim`` (field 1); present even when 0-D."""
    dims = b"".join(_varint_bytes(int(d)) for d in shape)
    inner = _ld_header(1, len(dims)) + dims if dims else b""
    return _ld_header(7, len(inner)) + inner


class _BlobPlan:
    """The wire encoding of one blob, with the payload still in the source array.

    Fields are laid out in field-number order, as protobuf serializes them:
    ``data`` (5), ``shape`` (7), ``double_data`` (8).
    """

    def __init__(self, array: Any, dtype: DTypeLike) -> None:
        self.array = np.asarray(array)
        self.dtype = _normalize_dtype(dtype, self.array)
        self.nbytes = self.array.size * self.dtype.itemsize
        shape = _shape_field(self.array.shape)
        header = _ld_header(5 if self.dtype == _F4 else 8, self.nbytes) if self.nbytes else b""
        if self.dtype == _F4:
            self.prefix, self.suffix = header, shape
        else:
            self.prefix, self.suffix = shape + header, b""
        self.size = len(self.prefix) + self.nbytes + len(self.suffix)


def array_to_blob(
    array: Any,
    blob: Optional["caffe_pb2.BlobProto"] = None,
    *,
    dtype: DTypeLike = np.float32,
) -> "caffe_pb2.BlobProto":
    """Store ``array`` in a ``BlobProto``: ``shape.dim`` plus packed ``data`` (float32).

    ``dtype=np.float64`` stores ``double_data`` instead; ``dtype=None`` keeps float64 arrays
    as ``double_data`` and stores everything else as float32. When ``blob`` is given it is
    cleared and filled in place (e.g. ``layer.blobs.add()``). The wire bytes are built with
    numpy in one buffer and merged into the message in one call.
    """
    plan = _BlobPlan(array, dtype)
    buffer = bytearray(plan.size)
    start = len(plan.prefix)
    buffer[:start] = plan.prefix
    if plan.nbytes:
        target = np.frombuffer(buffer, dtype=plan.dtype, count=plan.array.size, offset=start)
        np.copyto(target.reshape(plan.array.shape), plan.array, casting="unsafe")
        del target
    buffer[start + plan.nbytes:] = plan.suffix
    if blob is None:
        blob = caffe_pb2.BlobProto()
    else:
        blob.Clear()
    blob.MergeFromString(memoryview(buffer))
    return blob


def _decode_name(value: Union[str, bytes]) -> str:
    # upb hands back proto2 strings that are not valid UTF-8 as bytes.
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _v1_type_name(value: int) -> str:
    return caffe_pb2.V1LayerParameter.LayerType.Name(value)


def layer_weights_from_net(net: "caffe_pb2.NetParameter") -> List[LayerWeights]:
    """The weights of every layer of a parsed net: V2 ``layer`` entries first, then V1
    ``layers`` entries (a V1 entry wrapping a V0 ``layer`` reports the V0 layer's name, type
    and blobs, as Caffe's upgrade does). Arrays are writable copies."""
    result: List[LayerWeights] = []

    def convert(blobs: Iterable["caffe_pb2.BlobProto"], name: str) -> List[np.ndarray]:
        arrays = []
        for index, blob in enumerate(blobs):
            try:
                arrays.append(blob_to_array(blob))
            except PrototxtError as exc:
                raise PrototxtError(f"layer {name!r} blob {index}: {exc.message}") from None
        return arrays

    for layer in net.layer:
        name = _decode_name(layer.name)
        result.append(LayerWeights(name, _decode_name(layer.type), convert(layer.blobs, name),
                                   FORMAT_V2))
    for layer in net.layers:
        if layer.HasField("layer"):
            v0 = layer.layer
            name = _decode_name(v0.name)
            result.append(LayerWeights(name, _decode_name(v0.type), convert(v0.blobs, name),
                                       FORMAT_V0))
        else:
            name = _decode_name(layer.name)
            result.append(LayerWeights(name, _v1_type_name(layer.type),
                                       convert(layer.blobs, name), FORMAT_V1))
    return result


# ---------------------------------------------------------------------------------------------
# Wire-format scanner (the fast path)
#
# It follows protobuf's (upb's) decoder exactly where that decides what a file means:
# tags and lengths are varints of at most 5 bytes below 2**32; field number 0 (except inside
# an unknown group, where upb allows it) and wire types 6 and 7 are errors; other varints
# are at most 10 bytes, bits past 64 dropped; a known field seen with a wire type other than
# its own is an unknown field; groups nest and must close with a matching end-group tag;
# repeated fields accumulate, singular scalars keep the last value, singular messages merge;
# a V1 LayerType value outside the enum is ignored.

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1

_TAG_DATA_UNPACKED = 5 << 3 | 5  # 0x2d: BlobProto.data as fixed32
_TAG_DOUBLE_UNPACKED = 8 << 3 | 1  # 0x41: BlobProto.double_data as fixed64
_REC_F4 = np.dtype([("tag", "u1"), ("value", "<f4")])  # unaligned 5-byte records
_REC_F8 = np.dtype([("tag", "u1"), ("value", "<f8")])  # unaligned 9-byte records

_V1_TYPES = frozenset(caffe_pb2.V1LayerParameter.LayerType.values())


class _WireError(Exception):
    """A decoding problem at a byte offset; turned into a PrototxtError at the top."""

    def __init__(self, reason: str, offset: int, plain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.plain = plain  # a semantic error (bad shape), not a malformed file


class _Scanner:
    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.size = len(buf)

    # -- primitives -------------------------------------------------------------------------

    def _truncated(self, start: int, end: int, what: str) -> _WireError:
        if end >= self.size:
            return _WireError(f"file truncated inside {what}", start)
        return _WireError(f"{what} runs past the end of its enclosing message", start)

    def varint(self, pos: int, end: int) -> Tuple[int, int]:
        buf = self.buf
        if pos < end:
            byte = buf[pos]
            if byte < 0x80:
                return byte, pos + 1
        start = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self._truncated(start, end, "a varint")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result & _MASK64, pos
            shift += 7
            if shift >= 70:
                raise _WireError("varint longer than 10 bytes", start)

    def varint32(self, pos: int, end: int, what: str) -> Tuple[int, int]:
        """A tag or a length: at most 5 bytes, below 2**32."""
        buf = self.buf
        if pos < end:
            byte = buf[pos]
            if byte < 0x80:
                return byte, pos + 1
        start = pos
        result = 0
        for shift in (0, 7, 14, 21, 28):
            if pos >= end:
                raise self._truncated(start, end, what)
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
        else:
            raise _WireError(f"{what} is malformed (varint longer than 5 bytes)", start)
        if result > _MASK32:
            raise _WireError(f"{what} is malformed (more than 32 bits)", start)
        return result, pos

    def tag(self, pos: int, end: int, in_group: bool = False) -> Tuple[int, int, int]:
        value, new = self.varint32(pos, end, "a field tag")
        field = value >> 3
        if field == 0 and not in_group:  # upb tolerates field 0 inside unknown groups
            raise _WireError("field number 0 in a field tag", pos)
        return field, value & 7, new

    def length(self, at: int, pos: int, end: int, what: str) -> Tuple[int, int]:
        """The length prefix at ``pos`` of the field whose tag is at ``at``; returns
        (payload start, payload end)."""
        size, start = self.varint32(pos, end, f"the length of {what}")
        if start + size > end:
            raise self._truncated(at, end, what)
        return start, start + size

    def skip(self, field: int, wire: int, tag_pos: int, pos: int, end: int) -> int:
        """Skip the value of an unknown field whose tag ended at ``pos``."""
        if wire == 0:
            return self.varint(pos, end)[1]
        if wire == 2:
            return self.length(tag_pos, pos, end, f"field {field}")[1]
        if wire == 1 or wire == 5:
            new = pos + (8 if wire == 1 else 4)
            if new > end:
                raise self._truncated(tag_pos, end, f"field {field}")
            return new
        if wire == 3:
            return self.skip_group(field, tag_pos, pos, end)
        if wire == 4:
            raise _WireError(f"end-group tag for field {field} outside a group", tag_pos)
        raise _WireError(f"invalid wire type {wire} for field {field}", tag_pos)

    def skip_group(self, field: int, tag_pos: int, pos: int, end: int) -> int:
        open_groups = [field]
        while open_groups:
            if pos >= end:
                raise self._truncated(tag_pos, end, f"group {open_groups[-1]}")
            at = pos
            inner, wire, pos = self.tag(pos, end, in_group=True)
            if wire == 4:
                if inner != open_groups[-1]:
                    raise _WireError(
                        f"end-group tag for field {inner} closes group {open_groups[-1]}", at)
                open_groups.pop()
            elif wire == 3:
                open_groups.append(inner)
            else:
                pos = self.skip(inner, wire, at, pos, end)
        return pos

    def string(self, start: int, end: int) -> str:
        return bytes(self.buf[start:end]).decode("utf-8", "surrogateescape")

    # -- messages ---------------------------------------------------------------------------

    def net(self, pos: int, end: int) -> Tuple[list, list]:
        v2: list = []
        v1: list = []
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if field == 100 and wire == 2:
                start, pos = self.length(at, pos, end, "a layer")
                v2.append(self.layer_v2(start, pos))
            elif field == 2 and wire == 2:
                start, pos = self.length(at, pos, end, "a V1 layer")
                v1.append(self.layer_v1(start, pos))
            else:
                pos = self.skip(field, wire, at, pos, end)
        return v2, v1

    def layer_v2(self, pos: int, end: int) -> tuple:
        name = kind = ""
        blobs: list = []
        offset = pos
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if wire == 2 and field in (1, 2, 7):
                start, pos = self.length(at, pos, end, "a layer field")
                if field == 1:
                    name = self.string(start, pos)
                elif field == 2:
                    kind = self.string(start, pos)
                else:
                    blobs.append(self.blob(start, pos))
            else:
                pos = self.skip(field, wire, at, pos, end)
        return name, kind, blobs, FORMAT_V2, offset, end

    def layer_v1(self, pos: int, end: int) -> tuple:
        name = ""
        kind = 0
        blobs: list = []
        v0: Optional[list] = None  # [name, type, blobs], merged over repeats like protobuf
        offset = pos
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if wire == 2 and field in (4, 6, 1):
                start, pos = self.length(at, pos, end, "a V1 layer field")
                if field == 4:
                    name = self.string(start, pos)
                elif field == 6:
                    blobs.append(self.blob(start, pos))
                else:
                    if v0 is None:
                        v0 = ["", "", []]
                    self.layer_v0(start, pos, v0)
            elif wire == 0 and field == 5:
                value, pos = self.varint(pos, end)
                value &= _MASK32
                if value >= 1 << 31:
                    value -= 1 << 32
                if value in _V1_TYPES:  # else protobuf files it under unknown fields
                    kind = value
            else:
                pos = self.skip(field, wire, at, pos, end)
        if v0 is not None:
            return v0[0], v0[1], v0[2], FORMAT_V0, offset, end
        return name, _v1_type_name(kind), blobs, FORMAT_V1, offset, end

    def layer_v0(self, pos: int, end: int, into: list) -> None:
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if wire == 2 and field in (1, 2, 50):
                start, pos = self.length(at, pos, end, "a V0 layer field")
                if field == 50:
                    into[2].append(self.blob(start, pos))
                else:
                    into[field - 1] = self.string(start, pos)
            else:
                pos = self.skip(field, wire, at, pos, end)

    def blob(self, pos: int, end: int) -> "_RawBlob":
        raw = _RawBlob(pos)
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if field == 5 and wire == 2:
                pos = self.packed(raw.floats, _F4, "float", at, pos, end)
            elif field == 5 and wire == 5:
                pos = self.unpacked(raw.floats, _REC_F4, _TAG_DATA_UNPACKED, at, pos, end)
            elif field == 8 and wire == 2:
                pos = self.packed(raw.doubles, _F8, "double", at, pos, end)
            elif field == 8 and wire == 1:
                pos = self.unpacked(raw.doubles, _REC_F8, _TAG_DOUBLE_UNPACKED, at, pos, end)
            elif field == 7 and wire == 2:
                start, pos = self.length(at, pos, end, "a blob shape")
                raw.has_shape = True
                self.shape(start, pos, raw.dims)
            elif 1 <= field <= 4 and wire == 0:
                value, pos = self.varint(pos, end)
                value &= _MASK32
                if value >= 1 << 31:
                    value -= 1 << 32
                raw.legacy[field - 1] = value
                raw.has_legacy = True
            else:
                pos = self.skip(field, wire, at, pos, end)
        return raw

    def packed(self, out: "_Values", dtype: np.dtype, what: str, at: int, pos: int,
               end: int) -> int:
        """Packed fixed-width values (one length-delimited field), viewed where they lie."""
        start, pos = self.length(at, pos, end, f"packed {what} data")
        width = np.dtype(dtype).itemsize
        if (pos - start) % width:
            raise _WireError(f"packed {what} data of {pos - start} bytes is not a whole number "
                             f"of {width}-byte values", at)
        out.add(np.frombuffer(self.buf, dtype, (pos - start) // width, start))
        return pos

    def unpacked(self, out: "_Values", rec: np.dtype, tag_byte: int, at: int, pos: int,
                 end: int) -> int:
        """Unpacked fixed-width values: a run of one-byte-tag records is taken in one go."""
        width = rec.itemsize - 1
        if pos + width > end:
            raise self._truncated(at, end, "a float value")
        if pos - at != 1:  # a tag in a non-canonical multi-byte encoding: just this value
            out.add(np.frombuffer(self.buf, rec.fields["value"][0], 1, pos))
            return pos + width
        # Count the records from ``at`` whose tag byte matches, checking in doubling chunks
        # so that a run costs time in proportion to its length.
        size = rec.itemsize
        limit = (end - at) // size
        count = 0
        chunk = 64
        while count < limit:
            take = min(chunk, limit - count)
            tags = np.frombuffer(self.buf, np.uint8, take * size, at + count * size)[::size]
            mismatch = np.flatnonzero(tags != tag_byte)
            if mismatch.size:
                count += int(mismatch[0])
                break
            count += take
            chunk *= 2
        out.add(np.frombuffer(self.buf, rec, count, at)["value"])
        return at + count * size

    def shape(self, pos: int, end: int, dims: list) -> None:
        while pos < end:
            at = pos
            field, wire, pos = self.tag(pos, end)
            if field == 1 and wire == 0:
                value, pos = self.varint(pos, end)
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            elif field == 1 and wire == 2:
                start, stop = self.length(at, pos, end, "packed dims")
                while start < stop:
                    value, start = self.varint(start, stop)
                    dims.append(value - (1 << 64) if value >= 1 << 63 else value)
                pos = stop
            else:
                pos = self.skip(field, wire, at, pos, end)


class _Values:
    """The pieces of one repeated float/double field, in order.

    Big pieces are kept as views of the file; small ones (unpacked values, odd encodings)
    are copied into one byte buffer, so a file that alternates encodings value by value
    costs memory in proportion to its size rather than an array object per value.
    """

    __slots__ = ("dtype", "pieces", "pending", "count")
    SMALL = 256

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.pieces: List[np.ndarray] = []
        self.pending = bytearray()
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        self.count += len(values)
        if len(values) < self.SMALL:
            self.pending += values.tobytes()
        else:
            self._flush()
            self.pieces.append(values)

    def _flush(self) -> None:
        if self.pending:
            self.pieces.append(np.frombuffer(bytes(self.pending), self.dtype))
            self.pending = bytearray()

    def segments(self) -> List[np.ndarray]:
        self._flush()
        return self.pieces


class _RawBlob:
    __slots__ = ("offset", "floats", "doubles", "has_shape", "dims", "has_legacy", "legacy")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.floats = _Values(_F4)
        self.doubles = _Values(_F8)
        self.has_shape = False
        self.dims: list = []
        self.has_legacy = False
        self.legacy = [0, 0, 0, 0]

    def to_array(self, copy: bool, where: str) -> np.ndarray:
        if self.has_legacy:
            shape = tuple(self.legacy)
        elif self.has_shape:
            shape = tuple(self.dims)
        else:
            shape = ()
        values = self.doubles if self.doubles.count else self.floats
        dtype = values.dtype
        segments = values.segments()
        try:
            _check_count(shape, values.count, where)
            if not segments:
                array = np.empty(0, dtype)
            elif len(segments) == 1:
                array = segments[0]
                if copy or not array.flags.c_contiguous:  # unpacked: a strided view
                    array = np.array(array, dtype=dtype, copy=True)
            else:
                array = np.concatenate(segments)
            array = _shaped(array, shape, where)
        except PrototxtError as exc:
            raise _WireError(exc.message, self.offset, plain=True) from None
        if not copy:
            array.flags.writeable = False
        return array


def _map_file(path: PathLike) -> Tuple[Any, Optional[mmap.mmap]]:
    """A read-only memory map of the file (or its bytes when it cannot be mapped)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                try:
                    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):
                    pass
                else:
                    return mapped, mapped
            return handle.read(), None
    except OSError as exc:
        raise read_error(exc, name) from None


def _release(mapped: Optional[mmap.mmap]) -> None:
    if mapped is not None:
        try:
            mapped.close()
        except BufferError:  # arrays still view it; it is unmapped when they are freed
            pass


def _looks_like_blob(buf: Any) -> bool:
    try:
        scanner = _Scanner(buf)
        raw = scanner.blob(0, scanner.size)
        return raw.to_array(False, "").size > 0
    except _WireError:
        return False


def _looks_like_net(buf: Any) -> bool:
    try:
        scanner = _Scanner(buf)
        v2, v1 = scanner.net(0, scanner.size)
        return bool(v2 or v1)
    except _WireError:
        return False


def _check_layerless(buf: Any, path: PathLike) -> None:
    """A parse without layers: fine for a net that merely has none, an error for an empty
    file, a text file or a .binaryproto given by mistake."""
    if len(buf) == 0:
        raise PrototxtError(f"{CAFFEMODEL_ERROR}: the file is empty", os.fspath(path))
    hint = _text_hint(buf)
    if not hint and _looks_like_blob(buf):
        hint = "; it holds no layers and looks like a .binaryproto (binary BlobProto)"
    if hint:
        raise PrototxtError(f"{CAFFEMODEL_ERROR}{hint}", os.fspath(path))


def _wire_error(exc: _WireError, path: PathLike, what: str, buf: Any) -> PrototxtError:
    if exc.plain:
        message = f"{exc.reason} (byte offset {exc.offset})"
    else:
        message = f"{what}: {exc.reason} at byte offset {exc.offset}{_text_hint(buf)}"
    return PrototxtError(message, os.fspath(path), offset=exc.offset)


def _drop_pages(mapped: Optional[mmap.mmap], start: int, end: int) -> None:
    """Let the kernel take back the mapped pages of ``[start, end)``: they stop counting
    towards our resident memory and are read again (from the page cache) if touched. Safe for
    live views, since the map is a read-only shared file mapping."""
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start -= start % mmap.PAGESIZE
    try:
        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)
    except (OSError, ValueError):
        pass


def _scan_weights(buf: Any, copy: bool, mapped: Optional[mmap.mmap] = None,
                  each: Optional[Callable[[LayerWeights], None]] = None) -> List[LayerWeights]:
    """Decode every layer. With ``mapped``, each layer's pages are dropped once it has been
    copied (``copy``) or handed to ``each``, so peak memory stays near one copy."""
    scanner = _Scanner(buf)
    v2, v1 = scanner.net(0, scanner.size)
    result = []
    for name, kind, raws, fmt, start, end in v2 + v1:
        arrays = [raw.to_array(copy, f"layer {name!r} blob {index}: ")
                  for index, raw in enumerate(raws)]
        layer = LayerWeights(name, kind, arrays, fmt)
        if each is not None:
            each(layer)
        if raws and (copy or each is not None):
            _drop_pages(mapped, start, end)
        result.append(layer)
    return result


def read_weights(path: PathLike, *, copy: bool = False) -> List[LayerWeights]:
    """Every layer's weights from a ``.caffemodel``, without building protobuf messages.

    The file is memory-mapped read-only and scanned at the wire level. With ``copy=False``
    (the default) packed blobs -- what Caffe writes -- come back as **read-only views into
    the map**: no copy is made and pages are read from disk only when touched. The map stays
    open while any array uses it, so do not truncate or rewrite the file in place meanwhile
    (replacing it by rename, as every writer here does, is safe); pass ``copy=True`` for
    independent writable arrays. Blobs stored unpacked or in several pieces are assembled
    into new arrays (read-only too unless ``copy=True``).

    Layers come V2 ``layer`` entries first, then V1 ``layers`` entries, exactly as
    :func:`layer_weights_from_net` reports them. Corrupt or truncated input raises
    :class:`PrototxtError` with the byte offset of the problem.
    """
    buf, mapped = _map_file(path)
    error: Optional[PrototxtError] = None
    result: List[LayerWeights] = []
    try:
        result = _scan_weights(buf, copy, mapped)
    except _WireError as exc:
        error = _wire_error(exc, path, CAFFEMODEL_ERROR, buf)
    if error is None and not result:
        try:
            _check_layerless(buf, path)
        except PrototxtError as exc:
            error = exc
    if error is not None or copy:
        del buf
        _release(mapped)
    if error is not None:
        raise error
    return result


# ---------------------------------------------------------------------------------------------
# Streaming writer


_CHUNK_ELEMENTS = 1 << 22  # dtype conversion happens this many values at a time


def _chunks(array: np.ndarray, limit: int) -> Iterable[np.ndarray]:
    """Pieces of ``array`` of at most ``limit`` values (unless one innermost row is longer)
    whose concatenation is its C-order flattening; slicing makes no copies."""
    if array.size <= limit:
        yield array
    elif array.ndim == 1:
        for start in range(0, array.size, limit):
            yield array[start:start + limit]
    else:
        row = array.size // array.shape[0]
        if row > limit:
            for sub in array:
                yield from _chunks(sub, limit)
        else:
            step = limit // row
            for start in range(0, array.shape[0], step):
                yield array[start:start + step]


def _write_array(handle: BinaryIO, array: np.ndarray, dtype: np.dtype) -> None:
    """Write ``array``'s values in C order as little-endian ``dtype``: straight from its
    memory when it already is that, else converted a bounded chunk at a time."""
    if array.size == 0:
        return
    if array.dtype == dtype and array.flags.c_contiguous:
        handle.write(memoryview(array.reshape(-1)).cast("B"))
        return
    for chunk in _chunks(array, _CHUNK_ELEMENTS):
        data = np.ascontiguousarray(chunk, dtype=dtype).reshape(-1)
        handle.write(memoryview(data).cast("B"))


LayerSpec = Union[LayerWeights, Tuple[str, str, Sequence[Any]]]


def write_weights(layers: Iterable[LayerSpec], path: PathLike, *,
                  dtype: DTypeLike = np.float32) -> None:
    """Write a ``.caffemodel`` of V2 ``layer`` entries from ``[(name, type, [arrays...]), ...]``
    (or :class:`LayerWeights`, whose ``type`` is written as is).

    Blobs are stored as packed float32 (``dtype`` as for :func:`array_to_blob`). The wire
    bytes are emitted straight from the arrays into a temporary file -- float32 C-contiguous
    arrays without any copy, others converted a chunk at a time -- which is renamed over
    ``path`` when complete. The output is byte-identical to protobuf's serialization of the
    same ``NetParameter``. Raises :class:`PrototxtError` when the file would exceed 2 GB.
    """
    plans = []
    total = 0
    for item in layers:
        if isinstance(item, LayerWeights):
            name, kind, arrays = item.name, item.type, item.blobs
        else:
            name, kind, arrays = item
        if not isinstance(name, str) or not isinstance(kind, str):
            raise TypeError(f"layer name and type must be strings, not {name!r}, {kind!r}")
        head = b""
        for field, text in ((1, name), (2, kind)):
            data = text.encode("utf-8", "surrogateescape")  # as read_weights decodes
            head += _ld_header(field, len(data)) + data
        blobs = []
        body = len(head)
        for array in arrays:
            plan = _BlobPlan(array, dtype)
            outer = _ld_header(7, plan.size)  # LayerParameter.blobs
            blobs.append((outer, plan))
            body += len(outer) + plan.size
        outer = _ld_header(100, body)  # NetParameter.layer
        total += len(outer) + body  # ``body`` counts the name and type fields in ``head``
        head = outer + head
        plans.append((head, blobs))
    if total > MAX_MESSAGE_BYTES:
        raise PrototxtError(
            f"cannot write: the weights would take {total} bytes, over protobuf's 2 GB limit",
            os.fspath(path))

    def produce(handle: BinaryIO) -> None:
        for head, blobs in plans:
            handle.write(head)
            for outer, plan in blobs:
                handle.write(outer)
                handle.write(plan.prefix)
                _write_array(handle, plan.array, plan.dtype)
                handle.write(plan.suffix)

    atomic_write_stream(path, produce)


# ---------------------------------------------------------------------------------------------
# Listing


def _checksum(array: np.ndarray) -> str:
    data = np.ascontiguousarray(array).reshape(-1)
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()[:16]


def _rows(layer: str, kind: str, fmt: str, arrays: Sequence[np.ndarray]) -> List[dict]:
    rows = []
    for index, array in enumerate(arrays):
        rows.append({
            "layer": layer,
            "type": kind,
            "blob": index,
            "shape": tuple(array.shape),
            "dtype": "float64" if array.dtype.itemsize == 8 else "float32",
            "count": int(array.size),
            "checksum": _checksum(array),
            "format": fmt,
        })
    return rows


def summarize(path: PathLike, *, kind: Optional[str] = None) -> List[dict]:
    """One row per stored blob, for a listing.

    Each row has ``layer``, ``type``, ``blob`` (index within the layer), ``shape`` (tuple),
    ``dtype`` (``'float32'``/``'float64'``), ``count``, ``checksum`` (first 16 hex digits of
    the SHA-256 of the blob's values as stored: little-endian float32 or float64 bytes) and
    ``format`` (``"layer"``, ``"layers(V1)"``, ``"V0"`` or ``"binaryproto"``). Layers
    without blobs have no rows.

    ``kind`` is ``"caffemodel"`` or ``"binaryproto"``; by default a ``.binaryproto`` suffix
    selects the latter, and a file holding no layers that parses as a blob is read as one.
    """
    if kind is None:
        kind = "binaryproto" if Path(path).suffix.lower() == ".binaryproto" else "auto"
    elif kind not in ("caffemodel", "binaryproto"):
        raise ValueError(f"kind must be 'caffemodel' or 'binaryproto', not {kind!r}")
    buf, mapped = _map_file(path)
    try:
        if kind != "binaryproto":
            rows: List[dict] = []

            def add(layer: LayerWeights) -> None:
                rows.extend(_rows(layer.name, layer.type, layer.format, layer.blobs))

            try:
                layers = _scan_weights(buf, False, mapped, add)
            except _WireError as exc:
                raise _wire_error(exc, path, CAFFEMODEL_ERROR, buf) from None
            if layers or kind == "caffemodel" or not _looks_like_blob(buf):
                if not layers:
                    _check_layerless(buf, path)
                return rows
        if len(buf) == 0:
            raise PrototxtError(f"{BINARYPROTO_ERROR}: the file is empty", os.fspath(path))
        scanner = _Scanner(buf)
        try:
            array = scanner.blob(0, scanner.size).to_array(False, "")
        except _WireError as exc:
            raise _wire_error(exc, path, BINARYPROTO_ERROR, buf) from None
        return _rows("", "", FORMAT_BLOB, [array])
    finally:
        del buf
        _release(mapped)
