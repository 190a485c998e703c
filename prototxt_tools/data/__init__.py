"""Real data for nets: Caffe's data layers and DataTransformer, in NumPy.

* :mod:`.transform` -- :class:`Transformer`, Caffe's DataTransformer (scale, mean_file,
  mean_value, crop_size, mirror; force_color/force_gray for encoded images);
* :mod:`.sources` -- records from LMDB (Datum), ``.npy``/``.npz`` arrays and ImageData image
  lists, and :func:`batches`, which turns a data layer into ``{top: array}`` batches.

LMDB needs the ``lmdb`` package and encoded or listed images need Pillow
(``pip install 'prototxt-tools[data]'``); both are imported only when used.
"""

from __future__ import annotations

from .sources import (
    ArraySource, BatchStream, ImageListSource, LMDBSource, Record, Source, batches,
    decode_datum, open_source, source_for_layer,
)
from .transform import TEST, TRAIN, Transformer, load_mean, parse_phase

__all__ = [
    "ArraySource", "BatchStream", "ImageListSource", "LMDBSource", "Record", "Source",
    "TEST", "TRAIN", "Transformer", "batches", "decode_datum", "load_mean", "open_source",
    "parse_phase", "source_for_layer",
]
