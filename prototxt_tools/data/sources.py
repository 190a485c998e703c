"""Records and batches as Caffe's data layers produce them.

A source yields records ``(image, label)``: ``image`` a (C, H, W) array -- uint8 pixels, or
float32 values -- and ``label`` an int. ``source.records(wrap=True)`` runs forever, starting
over at the end as Caffe's data layers do; ``iter(source)`` is one pass.

* :class:`LMDBSource` -- a Caffe LMDB of serialized ``Datum`` values, in key order (Caffe's
  cursor order). Raw ``data`` (uint8, channels x height x width), ``float_data``, or
  ``encoded`` image bytes decoded as Caffe's DataTransformer decodes them: the file's own
  channels (``cv::imdecode(-1)``) unless ``force_color`` (3 channels) or ``force_gray``
  (1 channel); colour comes out in OpenCV's BGR order. Needs the ``lmdb`` package.
* :class:`ArraySource` -- a ``.npy`` (N, C, H, W) array, or a ``.npz`` with ``data`` (else its
  first array) and optional ``label``/``labels``; read record by record (``.npy`` memory-mapped,
  ``.npz`` streamed), so a large file is never loaded whole.
* :class:`ImageListSource` -- ImageData's list file: ``path label`` per line (the label follows
  the last space), images read as ``root_folder + path`` (a plain concatenation, as Caffe
  does), colour (BGR) or gray (``is_color``), resized to new_height x new_width with OpenCV's
  bilinear filter, optionally shuffled at the start of every pass.

:func:`batches` turns a data layer (Data, ImageData, or any layer with an explicit ``source``)
into an endless stream of ``{top name: array}`` batches: data (N, C, h, w) float32 after the
layer's ``transform_param``, labels (N,) float32. Only the batch being built (and the mean
image) is held in memory.

Relative paths (DB folders, list files, mean files, listed images) are resolved against
``root`` (the prototxt's folder), then the working directory; listed images also against the
list file's folder.
"""

from __future__ import annotations

import os
import re
import threading
import zipfile
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PrototxtError
from ..fileio import read_bytes
from . import _image
from .transform import TEST, PhaseLike, Transformer, parse_phase, resolve_path

__all__ = [
    "Record", "Source", "LMDBSource", "ArraySource", "ImageListSource", "BatchStream",
    "batches", "open_source", "source_for_layer", "decode_datum", "LEVELDB_MESSAGE",
]

Record = Tuple[np.ndarray, int]

INSTALL_HINT = _image.INSTALL_HINT
LEVELDB_MESSAGE = ("LevelDB is not supported; convert to LMDB (Caffe's convert_imageset "
                   "-backend lmdb) or use another source (LMDB, .npy/.npz or an image list)")

#: Layer types whose second top is the label.
_LABEL_TOP_TYPES = frozenset({"Data", "ImageData", "MemoryData", "WindowData"})


class _Where:
    """Where a record came from, for messages: a description and optionally a line."""

    __slots__ = ("text", "line")

    def __init__(self, text: str, line: Optional[int] = None):
        self.text = text
        self.line = line


class Source:
    """A sequence of (image, label) records. Subclasses implement :meth:`_items`."""

    kind = "source"

    def __init__(self, path: str):
        self.path = os.fspath(path)

    def __len__(self) -> int:
        raise NotImplementedError

    def _items(self, wrap: bool) -> Iterator[Tuple[np.ndarray, Any, _Where]]:
        raise NotImplementedError

    def records(self, wrap: bool = True) -> Iterator[Record]:
        """Records in Caffe's order; with ``wrap`` starting over at the end, forever."""
        for image, label, _ in self._items(wrap):
            yield image, label

    def __iter__(self) -> Iterator[Record]:
        return self.records(wrap=False)

    def error(self, message: str, where: Optional[_Where] = None) -> PrototxtError:
        if where is None:
            return PrototxtError(message, self.path)
        return PrototxtError(f"{where.text}: {message}", self.path, where.line,
                             1 if where.line is not None else None)

    def close(self) -> None:
        """Release files and handles (the source can be iterated again afterwards)."""

    def describe(self) -> str:
        return f"{self.kind} {self.path} ({len(self)} records)"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}>"


# -- LMDB ----------------------------------------------------------------------------------


def _import_lmdb(path: Optional[str]) -> Any:
    try:
        import lmdb
    except ImportError:
        raise PrototxtError(f"reading LMDB needs the 'lmdb' package: {INSTALL_HINT}",
                            path) from None
    return lmdb


def _looks_like_leveldb(path: str) -> bool:
    if os.path.isdir(path):
        try:
            names = os.listdir(path)
        except OSError:
            return False
        return "CURRENT" in names and any(n.startswith("MANIFEST-") or n.endswith(
            (".ldb", ".sst")) for n in names)
    name = os.path.basename(path)
    return name.endswith((".ldb", ".sst")) or name.startswith("MANIFEST-")


def decode_datum(value: bytes, *, force_color: bool = False, force_gray: bool = False,
                 where: str = "record") -> Record:
    """A serialized Datum as (image (C, H, W), label), as Caffe's DataTransformer reads it.

    Raw ``data`` gives uint8, ``float_data`` float32 (``data`` wins when both are set, as in
    Caffe); only the first channels*height*width values are used. Encoded images are decoded
    unchanged, or in colour / gray when ``force_color`` / ``force_gray``. Errors are
    PrototxtErrors (without a path: the caller adds it)."""
    from google.protobuf.message import DecodeError

    from ..schema import caffe_pb2

    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid protobuf"
        raise PrototxtError(f"{where}: not a serialized Datum ({reason})") from None
    label = int(datum.label)
    if datum.encoded:
        if force_color and force_gray:
            raise PrototxtError(f"{where}: cannot set both force_color and force_gray "
                                "(transform_param) for an encoded image")
        mode = _image.COLOR if force_color else _image.GRAY if force_gray else _image.UNCHANGED
        try:
            hwc = _image.decode_image(datum.data, mode)
        except _image.DecodeError as exc:
            raise PrototxtError(f"{where}: cannot decode the encoded image: {exc}") from None
        return hwc.transpose(2, 0, 1), label
    c, h, w = datum.channels, datum.height, datum.width
    if c <= 0 or h <= 0 or w <= 0:
        raise PrototxtError(f"{where}: Datum has shape {c}x{h}x{w} (channels, height and width "
                            "must be positive)")
    count = c * h * w
    if len(datum.data):
        if len(datum.data) < count:
            raise PrototxtError(f"{where}: Datum holds {len(datum.data)} bytes of data but "
                                f"{c}x{h}x{w} needs {count}")
        pixels = np.frombuffer(datum.data, dtype=np.uint8, count=count)
        return pixels.reshape(c, h, w), label
    if len(datum.float_data):
        if len(datum.float_data) < count:
            raise PrototxtError(f"{where}: Datum holds {len(datum.float_data)} float_data "
                                f"values but {c}x{h}x{w} needs {count}")
        values = np.array(datum.float_data, dtype=np.float32)[:count]
        return values.reshape(c, h, w), label
    raise PrototxtError(f"{where}: Datum holds neither data nor float_data")


def _key_text(key: bytes) -> str:
    return repr(key.decode("utf-8", "backslashreplace"))


class LMDBSource(Source):
    """Datum records from a Caffe LMDB (the folder holding ``data.mdb``, or that file).

    Opened read-only without a lock file; keys are read in LMDB order, values decoded with
    :func:`decode_datum`."""

    kind = "LMDB"

    def __init__(self, path: str, *, force_color: bool = False, force_gray: bool = False):
        super().__init__(path)
        self.force_color = force_color
        self.force_gray = force_gray
        path = self.path
        lmdb = _import_lmdb(path)
        if not os.path.exists(path):
            raise PrototxtError("LMDB: no such file or directory", path)
        subdir = os.path.isdir(path)
        if subdir and not os.path.isfile(os.path.join(path, "data.mdb")):
            if _looks_like_leveldb(path):
                raise PrototxtError(LEVELDB_MESSAGE, path)
            raise PrototxtError("not an LMDB database: the folder holds no data.mdb", path)
        self._env = None
        try:
            self._env = _open_env(lmdb, path, subdir)
            self._count = int(self._env.stat()["entries"])
        except lmdb.Error as exc:
            self.close()
            raise PrototxtError(f"cannot open LMDB: {_lmdb_reason(exc, path)}",
                                path) from None
        if self._count == 0:
            self.close()
            raise PrototxtError("the LMDB holds no records", path)

    def __len__(self) -> int:
        return self._count

    def _items(self, wrap: bool) -> Iterator[Tuple[np.ndarray, Any, _Where]]:
        import lmdb

        env = self._env
        if env is None:
            raise self.error("the LMDB was closed")
        try:
            with env.begin(buffers=False) as txn:
                cursor = txn.cursor()
                while True:
                    if not cursor.first():
                        raise self.error("the LMDB holds no records")
                    for key, value in cursor:
                        where = _Where(f"record {_key_text(key)}")
                        try:
                            image, label = decode_datum(value, force_color=self.force_color,
                                                        force_gray=self.force_gray,
                                                        where=where.text)
                        except PrototxtError as exc:
                            raise PrototxtError(exc.message, self.path) from None
                        yield image, label, where
                    if not wrap:
                        return
        except lmdb.Error as exc:
            raise self.error(f"cannot read LMDB: {_lmdb_reason(exc, self.path)}") from None

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            self._env = None
            _release_env(env)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


# py-lmdb refuses to open one environment twice in a process: sources share it.
_ENVS: dict = {}
_ENVS_LOCK = threading.Lock()


def _open_env(lmdb: Any, path: str, subdir: bool) -> Any:
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, max_readers=64,
                            max_dbs=0)
            entry = _ENVS[key] = [env, 0]
        entry[1] += 1
        return entry[0]


def _release_env(env: Any) -> None:
    with _ENVS_LOCK:
        for key, entry in list(_ENVS.items()):
            if entry[0] is env:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _ENVS[key]
                    env.close()
                return


def _lmdb_reason(exc: Exception, path: str = "") -> str:
    text = str(exc).strip()
    # py-lmdb prefixes the path: "/x/y: MDB_INVALID: File is not an LMDB file"
    if path and text.startswith(path + ": "):
        text = text[len(path) + 2:]
    return text.splitlines()[0] if text else type(exc).__name__


# -- .npy / .npz ----------------------------------------------------------------------------


class _NpzStream:
    """Sequential reading of one ``.npy`` member of a ``.npz`` without loading it whole."""

    def __init__(self, path: str, member: str):
        self.path = path
        self.member = member
        with self._open() as stream:
            self.shape, self.fortran, self.dtype = self._header(stream)

    def _open(self) -> Any:
        archive = zipfile.ZipFile(self.path)
        try:
            stream = archive.open(self.member)
        except Exception:
            archive.close()
            raise
        stream._archive = archive  # keep the archive open while the member is read
        return stream

    @staticmethod
    def _header(stream: Any) -> tuple:
        fmt = np.lib.format
        version = fmt.read_magic(stream)
        if version == (1, 0):
            return fmt.read_array_header_1_0(stream)
        if version == (2, 0):
            return fmt.read_array_header_2_0(stream)
        raise ValueError(f"unsupported .npy format version {version}")

    def rows(self) -> Iterator[np.ndarray]:
        per_row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        stream = self._open()
        try:
            self._header(stream)
            for _ in range(self.shape[0]):
                data = stream.read(per_row)
                if len(data) != per_row:
                    raise EOFError("the array ends early")
                yield np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])
        finally:
            stream.close()
            stream._archive.close()


class ArraySource(Source):
    """Records from a ``.npy`` (N, C, H, W) array, or a ``.npz`` holding ``data`` (else its
    first array) and optionally ``label``/``labels`` (N,). uint8 arrays keep their bytes;
    other numeric arrays are read as float32 (as a Datum's float_data is). Without labels,
    every label is 0."""

    kind = "array"

    def __init__(self, path: str):
        super().__init__(path)
        path = self.path
        self._array: Optional[np.ndarray] = None
        self._stream: Optional[_NpzStream] = None
        self.labels: Optional[np.ndarray] = None
        self.data_key: Optional[str] = None
        self.label_key: Optional[str] = None
        self._npy = False
        if not os.path.exists(path):
            raise PrototxtError("no such file", path)
        try:
            with open(path, "rb") as handle:
                magic = handle.read(6)
        except OSError as exc:
            raise PrototxtError(f"cannot read: {exc.strerror or exc}", path) from None
        if magic[:4] == b"PK\x03\x04" or magic[:4] == b"PK\x05\x06":
            is_npz = True
        elif magic == b"\x93NUMPY":
            is_npz = False
        else:
            raise PrototxtError("not a .npy or .npz file (no NumPy or zip header)", path)
        try:
            if is_npz:
                self._open_npz(path)
            else:
                self._npy = True
                self._array = self._load_npy()
        except PrototxtError:
            raise
        except ValueError as exc:
            raise PrototxtError(f"cannot read array: {_np_reason(exc)}", path) from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise PrototxtError(f"cannot read array: {_np_reason(exc)}", path) from None
        shape, dtype = self.shape, self.dtype
        where = f"array {self.data_key!r}" if self.data_key else "array"
        if len(shape) != 4:
            raise PrototxtError(f"{where} has shape {tuple(shape)}; expected (N, C, H, W)", path)
        if dtype.kind not in "biuf":
            raise PrototxtError(f"{where} has dtype {dtype}; expected uint8 or a float type",
                                path)
        if shape[0] == 0 or 0 in shape[1:]:
            raise PrototxtError(f"{where} holds no images (shape {tuple(shape)})", path)
        if self.labels is not None and self.labels.shape[0] != shape[0]:
            raise PrototxtError(f"{self.label_key!r} holds {self.labels.shape[0]} labels for "
                                f"{shape[0]} images", path)

    def _load_npy(self) -> np.ndarray:
        array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise PrototxtError("not a .npy array file", self.path)
        return array

    def _open_npz(self, path: str) -> None:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if not keys:
                raise PrototxtError("the .npz holds no arrays", path)
            data_key = "data" if "data" in keys else keys[0]
            label_key = next((k for k in ("label", "labels") if k in keys and k != data_key),
                             None)
            labels = archive[label_key] if label_key else None
        with zipfile.ZipFile(path) as names:
            member = next((name for name in names.namelist()
                           if name in (data_key, data_key + ".npy")), None)
        self.data_key, self.label_key = data_key, label_key
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1 or labels.dtype.kind not in "biuf":
                raise PrototxtError(f"{label_key!r} must be a 1-D numeric array, not "
                                    f"{labels.dtype} {tuple(labels.shape)}", path)
            self.labels = labels
        try:
            stream = _NpzStream(path, member) if member else None
        except ValueError:  # a header layout the streaming reader does not know
            stream = None
        if stream is None or stream.fortran or stream.dtype.hasobject:
            # Rare layouts: read the array whole (allow_pickle=False still refuses objects).
            with np.load(path, allow_pickle=False) as archive:
                self._array = np.asarray(archive[data_key])
        else:
            self._stream = stream

    @property
    def shape(self) -> tuple:
        if self._stream is not None:
            return tuple(self._stream.shape)
        if self._array is None:
            self._array = self._load_npy()
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        if self._stream is not None:
            return self._stream.dtype
        if self._array is None:
            self._array = self._load_npy()
        return self._array.dtype

    def __len__(self) -> int:
        return int(self.shape[0])

    def _label(self, index: int) -> Any:
        if self.labels is None:
            return 0
        value = self.labels[index].item()
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def _rows(self) -> Iterator[np.ndarray]:
        if self._npy and self._array is None:
            self._array = self._load_npy()
        if self._array is not None:
            for index in range(self._array.shape[0]):
                yield self._array[index]
        else:
            yield from self._stream.rows()

    def _items(self, wrap: bool) -> Iterator[Tuple[np.ndarray, Any, _Where]]:
        raw = self.dtype == np.uint8
        while True:
            try:
                for index, row in enumerate(self._rows()):
                    image = np.asarray(row) if raw else np.asarray(row, dtype=np.float32)
                    yield image, self._label(index), _Where(f"record {index}")
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
                raise self.error(f"cannot read array: {_np_reason(exc)}") from None
            if not wrap:
                return

    def close(self) -> None:
        if self._npy and self._array is not None:
            # Drop the memory map; it is reopened if the source is iterated again.
            self._array = None

def _np_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "allow_pickle" in text or "Object arrays" in text:
        return "the array holds Python objects (only numeric arrays are read; pickles never)"
    if isinstance(exc, zipfile.BadZipFile):
        return "not a valid .npz (zip) file"
    return text.splitlines()[0] if text else type(exc).__name__


# -- image lists (ImageData) ---------------------------------------------------------------

_LABEL = re.compile(r"\s*([+-]?\d+)\s*")


class ImageListSource(Source):
    """ImageData's list file: one ``relative/path.jpg label`` per line.

    Images are read as ``root_folder + path`` (string concatenation, as Caffe does), relative
    paths resolved against ``root`` (the prototxt's folder), the working directory, then the
    list's folder. ``is_color``: 3 channels BGR, else 1 gray channel. ``new_height`` and
    ``new_width`` (both or neither) resize with OpenCV's bilinear filter. ``shuffle`` reorders
    the list at the start and at every wrap; ``rand_skip`` starts at a random offset below it
    (both from ``rng``). Blank lines are skipped; a line without a label is an error."""

    kind = "image list"

    def __init__(self, path: str, *, root_folder: str = "", new_height: int = 0,
                 new_width: int = 0, is_color: bool = True, shuffle: bool = False,
                 rand_skip: int = 0, rng: Optional[np.random.Generator] = None, seed: int = 0,
                 root: Optional[str] = None):
        super().__init__(path)
        path = self.path
        if not ((new_height == 0 and new_width == 0) or (new_height > 0 and new_width > 0)):
            raise PrototxtError("image_data_param: new_height and new_width must be set "
                                "together", path)
        self.root_folder = root_folder
        self.new_height, self.new_width = int(new_height), int(new_width)
        self.is_color = bool(is_color)
        self.shuffle = bool(shuffle)
        self.rand_skip = int(rand_skip)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.root = root
        self.entries = self._parse(path)
        self._order = list(range(len(self.entries)))
        if self.shuffle:
            self.rng.shuffle(self._order)
        self._start = 0
        if self.rand_skip:
            skip = int(self.rng.integers(0, 2**32)) % self.rand_skip
            if skip >= len(self.entries):
                raise PrototxtError(f"rand_skip: skipping {skip} of {len(self.entries)} images "
                                    "leaves none (not enough points to skip)", path)
            self._start = skip

    @staticmethod
    def _parse(path: str) -> List[Tuple[str, int, int]]:
        if os.path.isdir(path):
            raise PrototxtError("is a directory, not an image list file", path)
        data = read_bytes(path)
        if b"\0" in data[:4096]:
            raise PrototxtError("not a text image list (binary data); expected 'path label' "
                                "lines", path)
        text = data.decode("utf-8", "surrogateescape")
        entries = []
        pieces = text.split("\n")
        if pieces and pieces[-1] == "":
            pieces.pop()
        for number, line in enumerate(pieces, 1):
            if not line.strip():
                continue
            pos = line.rfind(" ")
            if pos < 0:
                raise PrototxtError("expected 'path label' (the label follows the last space), "
                                    f"found {line.strip()[:80]!r}", path, number, 1)
            name, label_text = line[:pos], line[pos + 1:]
            match = _LABEL.fullmatch(label_text)
            if match is None:
                raise PrototxtError(f"label {label_text.strip()[:40]!r} is not an integer",
                                    path, number, pos + 2)
            if not name:
                raise PrototxtError("missing image path before the label", path, number, 1)
            entries.append((name, int(match.group(1)), number))
        if not entries:
            raise PrototxtError("the image list is empty", path)
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def decode_mode(self) -> str:
        return _image.COLOR if self.is_color else _image.GRAY

    def image_path(self, name: str) -> Tuple[str, list]:
        return resolve_path(self.root_folder + name, self.root,
                            extra=[os.path.dirname(os.path.abspath(self.path))])

    def load(self, index: int) -> np.ndarray:
        """The (C, H, W) uint8 image of list entry ``index`` (ReadImageToCVMat)."""
        name, _, line = self.entries[index]
        full, candidates = self.image_path(name)
        where = _Where(f"image {self.root_folder + name!r}", line)
        problem = _image.ensure_file(full)
        if problem is not None:
            hint = ""
            if problem == "no such file":
                problem = f"no such file: {full}"
                if self.root_folder and not self.root_folder.endswith(("/", os.sep)):
                    hint = (f" (Caffe joins root_folder {self.root_folder!r} and the path "
                            "without a separator: end root_folder with '/')")
                elif len(candidates) > 1:
                    hint = " (also looked in " + ", ".join(c for c in candidates
                                                           if c != full) + ")"
            raise self.error(f"cannot load: {problem}{hint}", where)
        try:
            hwc = _image.read_image(full, self.decode_mode)
        except _image.DecodeError as exc:
            raise self.error(f"cannot load: {exc}", where) from None
        except OSError as exc:
            raise self.error(f"cannot load: {exc.strerror or exc}", where) from None
        if self.new_height > 0 and self.new_width > 0:
            hwc = _image.resize_linear(hwc, self.new_height, self.new_width)
        return hwc.transpose(2, 0, 1)

    def _items(self, wrap: bool) -> Iterator[Tuple[np.ndarray, Any, _Where]]:
        position = self._start
        while True:
            index = self._order[position]
            name, label, line = self.entries[index]
            yield self.load(index), label, _Where(f"image {self.root_folder + name!r}", line)
            position += 1
            if position >= len(self._order):
                position = 0
                if self.shuffle:
                    self.rng.shuffle(self._order)
                if not wrap:
                    return


# -- opening sources -----------------------------------------------------------------------


def _db_source(path: str, candidates: list, *, backend_leveldb: bool, explicit_backend: bool,
               force_color: bool, force_gray: bool, notes: Optional[list]) -> Source:
    """A Data layer's DB: LMDB when the path holds one, the LevelDB error otherwise."""
    if not os.path.exists(path):
        what = "data_param source"
        where = path if len(candidates) <= 1 else path + " (also looked in " + ", ".join(
            c for c in candidates if c != path) + ")"
        raise PrototxtError(f"{what}: no such file or directory: {where}", path)
    is_lmdb = (os.path.isfile(os.path.join(path, "data.mdb")) if os.path.isdir(path)
               else path.endswith(".mdb"))
    if is_lmdb:
        if backend_leveldb and notes is not None:
            told = "backend is LEVELDB" if explicit_backend else \
                "backend is unset (Caffe's default: LEVELDB)"
            notes.append(f"data_param {told} but {path} is an LMDB database; reading it as "
                         "LMDB (Caffe itself would need backend: LMDB)")
        return LMDBSource(path, force_color=force_color, force_gray=force_gray)
    if backend_leveldb or _looks_like_leveldb(path):
        raise PrototxtError(LEVELDB_MESSAGE, path)
    if os.path.isdir(path):
        raise PrototxtError("not an LMDB database: the folder holds no data.mdb", path)
    raise PrototxtError("a Data layer's source must be an LMDB folder (holding data.mdb)",
                        path)


def open_source(path: str, *, root: Optional[str] = None, force_color: bool = False,
                force_gray: bool = False, image_options: Optional[dict] = None) -> Source:
    """Open ``path`` by what it is: a ``.npy``/``.npz`` array, an LMDB (a folder holding
    ``data.mdb``, or that file), or else an image list file. A LevelDB is an error.

    ``force_color``/``force_gray`` decode encoded LMDB images; ``image_options`` go to
    :class:`ImageListSource` (root_folder, new_height, new_width, is_color, shuffle, rand_skip,
    rng)."""
    resolved, candidates = resolve_path(os.fspath(path), root)
    if not os.path.exists(resolved):
        where = resolved if len(candidates) <= 1 else resolved + " (also looked in " + \
            ", ".join(c for c in candidates if c != resolved) + ")"
        raise PrototxtError(f"source: no such file or directory: {where}", resolved)
    lower = resolved.lower()
    if os.path.isdir(resolved):
        if os.path.isfile(os.path.join(resolved, "data.mdb")):
            return LMDBSource(resolved, force_color=force_color, force_gray=force_gray)
        if _looks_like_leveldb(resolved):
            raise PrototxtError(LEVELDB_MESSAGE, resolved)
        raise PrototxtError("source is a folder but not an LMDB database (no data.mdb); give "
                            "an LMDB, a .npy/.npz array or an image list file", resolved)
    if lower.endswith((".npy", ".npz")):
        return ArraySource(resolved)
    if lower.endswith(".mdb"):
        return LMDBSource(resolved, force_color=force_color, force_gray=force_gray)
    if _looks_like_leveldb(resolved):
        raise PrototxtError(LEVELDB_MESSAGE, resolved)
    options = dict(image_options or {})
    options.setdefault("root", root)
    return ImageListSource(resolved, **options)


def _param(layer: Any) -> Any:
    """The LayerParameter of a net Layer, or ``layer`` itself when it is one."""
    if hasattr(layer, "DESCRIPTOR"):
        return layer
    return layer.param


def _layer_where(param: Any) -> str:
    return f"layer {param.name!r} ({param.type})"


def source_for_layer(layer: Any, *, source: Optional[str] = None, root: Optional[str] = None,
                     rng: Optional[np.random.Generator] = None,
                     notes: Optional[list] = None) -> Source:
    """The source a data layer reads (or ``source`` instead, opened by :func:`open_source`
    with the layer's image and decoding options)."""
    param = _param(layer)
    transform = param.transform_param
    force_color, force_gray = bool(transform.force_color), bool(transform.force_gray)
    if param.type == "ImageData":
        p = param.image_data_param
        options = dict(root_folder=p.root_folder, new_height=p.new_height,
                       new_width=p.new_width, is_color=p.is_color, shuffle=p.shuffle,
                       rand_skip=p.rand_skip, rng=rng, root=root)
    else:
        options = dict(is_color=not force_gray, rng=rng, root=root)
    if source is not None:
        return open_source(source, root=root, force_color=force_color, force_gray=force_gray,
                           image_options=options)
    if param.type == "Data":
        p = param.data_param
        if not p.source:
            raise PrototxtError(f"{_layer_where(param)}: data_param has no source")
        from ..schema import caffe_pb2

        resolved, candidates = resolve_path(p.source, root)
        return _db_source(resolved, candidates,
                          backend_leveldb=p.backend == caffe_pb2.DataParameter.LEVELDB,
                          explicit_backend=p.HasField("backend"), force_color=force_color,
                          force_gray=force_gray, notes=notes)
    if param.type == "ImageData":
        p = param.image_data_param
        if not p.source:
            raise PrototxtError(f"{_layer_where(param)}: image_data_param has no source")
        resolved, candidates = resolve_path(p.source, root)
        if not os.path.exists(resolved):
            where = resolved if len(candidates) <= 1 else resolved + " (also looked in " + \
                ", ".join(c for c in candidates if c != resolved) + ")"
            raise PrototxtError(f"image_data_param source: no such file: {where}", resolved)
        return ImageListSource(resolved, **options)
    raise PrototxtError(f"{_layer_where(param)} is not a Data or ImageData layer; give an "
                        "explicit source (LMDB, .npy/.npz or an image list)")


def _layer_batch_size(param: Any) -> int:
    kind = param.type
    fields = {"Data": "data_param", "ImageData": "image_data_param",
              "MemoryData": "memory_data_param", "WindowData": "window_data_param",
              "HDF5Data": "hdf5_data_param"}
    if kind in fields:
        return int(getattr(param, fields[kind]).batch_size)
    if kind == "Input" and len(param.input_param.shape) and len(param.input_param.shape[0].dim):
        return int(param.input_param.shape[0].dim[0])
    if kind == "DummyData":
        d = param.dummy_data_param
        if len(d.shape) and len(d.shape[0].dim):
            return int(d.shape[0].dim[0])
        if len(d.num):
            return int(d.num[0])
    return 0


# -- batches -------------------------------------------------------------------------------


class BatchStream:
    """An endless iterator of ``{top name: array}`` batches for one data layer.

    See :func:`batches`. Attributes: ``source``, ``transformer``, ``batch_size``,
    ``data_top``, ``label_top`` (None when the layer has no label top), ``notes`` (things worth
    telling the user, e.g. a backend Caffe would not have opened)."""

    def __init__(self, layer: Any, phase: PhaseLike = TEST, source: Optional[str] = None,
                 seed: int = 0, root: Optional[str] = None, batch_size: Optional[int] = None):
        param = _param(layer)
        self.layer = param
        self.phase = parse_phase(phase)
        if not len(param.top):
            raise PrototxtError(f"{_layer_where(param)} has no top to feed")
        self.data_top = param.top[0]
        self.label_top = param.top[1] if (len(param.top) > 1
                                          and param.type in _LABEL_TOP_TYPES) else None
        size = _layer_batch_size(param) if batch_size is None else int(batch_size)
        if size <= 0:
            raise PrototxtError(f"{_layer_where(param)}: batch_size is {size}; give a positive "
                                "batch size")
        self.batch_size = size
        transform_seed, source_seed = np.random.SeedSequence(seed).spawn(2)
        self.notes: list = []
        self.transformer = Transformer(param.transform_param, self.phase,
                                       rng=np.random.default_rng(transform_seed), root=root,
                                       where=None)
        self.source = source_for_layer(param, source=source, root=root,
                                       rng=np.random.default_rng(source_seed), notes=self.notes)
        self._items: Optional[Iterator] = None

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict:
        if self._items is None:
            self._items = self.source._items(wrap=True)
        data: Optional[np.ndarray] = None
        labels = np.empty(self.batch_size, dtype=np.float32)
        for index in range(self.batch_size):
            image, label, where = next(self._items)
            try:
                shape = self.transformer.output_shape(image.shape)
                if data is None:
                    # Caffe shapes each batch from its first record.
                    data = np.empty((self.batch_size,) + shape, dtype=np.float32)
                elif shape != data.shape[1:]:
                    raise PrototxtError(
                        f"transforms to {_fmt(shape)} but the batch's first record gave "
                        f"{_fmt(data.shape[1:])} (Caffe needs equal sizes within a batch: set "
                        "crop_size, or new_height/new_width)")
                self.transformer(image, out=data[index])
            except PrototxtError as exc:
                raise self.source.error(exc.message, where) from None
            labels[index] = label
        batch = {self.data_top: data}
        if self.label_top is not None:
            batch[self.label_top] = labels
        return batch

    def close(self) -> None:
        if self._items is not None:
            self._items.close()
            self._items = None
        self.source.close()

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def batches(layer: Any, phase: PhaseLike = TEST, source: Optional[str] = None, seed: int = 0,
            root: Optional[str] = None, batch_size: Optional[int] = None) -> BatchStream:
    """Batches exactly as Caffe's data layer ``layer`` produces them in ``phase``.

    ``layer``: a net Layer or a caffe_pb2.LayerParameter -- Data (LMDB) or ImageData, or any
    layer when ``source`` (an LMDB, a .npy/.npz or an image list) replaces what it reads.
    ``batch_size`` overrides the layer's. ``seed`` fixes random crops, mirroring, shuffling and
    rand_skip. ``root``: the prototxt's folder, for relative paths.

    Returns an endless :class:`BatchStream` of ``{top: array}``: the data top (N, C, h, w)
    float32, and for Data/ImageData-like layers the label top (N,) float32. The stream wraps
    around at the end of the data as Caffe does; take as many batches as needed
    (``itertools.islice``) and ``close()`` it (or use ``with``)."""
    return BatchStream(layer, phase, source=source, seed=seed, root=root, batch_size=batch_size)
