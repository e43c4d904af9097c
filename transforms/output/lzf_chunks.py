"""Byte-reproducible LZF: the chunks of an lzf dataset compressed here and written with write_direct_chunk.

h5py's bundled LZF filter is built with INIT_HTAB 0: its hash table lives uninitialised on the stack, so a
chunk may compress to different (equally valid) bytes from one run to the next, and two runs of the same job
gave files that differ in a few bytes although they decode to the same data. The files must be identical
for the same inputs and config, and lzf is the default.

So, when the PyPI package `lzf` is installed (a CFFI binding of liblzf 3.6, built with INIT_HTAB 1: the
table is cleared for every chunk, the output depends only on the input), each chunk is encoded here exactly
as HDF5's pipeline would encode it for h5py's reader: rows padded with zeros (the fill value) to a full
chunk, byte-shuffled as the shuffle filter does, LZF-compressed into a buffer the size of the chunk; a chunk
that LZF cannot shrink is stored shuffled with the lzf filter's bit set in its filter mask, as HDF5 does for
the optional filter. The datasets keep h5py's filter pipeline (shuffle + filter 32000), so any h5py reads
them without extra packages. Without `lzf`, h5py's filter writes them (same content, bytes may vary).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("root2hdf5")

try:  # PyPI `lzf` (sdist, CFFI; built with a C compiler at install time): pip install 'root2hdf5[lzf]'
    from _lzf import ffi as _ffi
    from _lzf import lib as _lib
except ImportError:  # pragma: no cover - depends on the installation
    _ffi = _lib = None

_SHUFFLE, _LZF = 2, 32000  # HDF5 filter ids
_LZF_SKIPPED = 1 << 1  # filter mask bit of the pipeline's second filter (lzf) for a chunk stored without it
_warned = False


def available() -> bool:
    return _lib is not None


def compress(data) -> bytes | None:
    """liblzf's compression of `data` if it fits in len(data) bytes (HDF5's lzf filter rule), else None."""
    view = memoryview(data).cast("B")
    out = _ffi.new("char[]", max(len(view), 1))
    size = _lib.lzf_compress(_ffi.from_buffer(view), len(view), out, len(view))
    return _ffi.buffer(out, size)[:] if size else None


def shuffle(chunk: np.ndarray) -> np.ndarray:
    """HDF5's shuffle filter: byte k of every element, then byte k + 1 ... (a no-op for 1-byte types)."""
    raw = np.ascontiguousarray(chunk).view(np.uint8).reshape(-1, chunk.dtype.itemsize)
    return raw.T.copy() if chunk.dtype.itemsize > 1 else raw.ravel()


def _pipeline_ok(dataset, data: np.ndarray) -> bool:
    """The dataset is stored as `data` is laid out in memory, and filtered by exactly shuffle + lzf."""
    plist = dataset.id.get_create_plist()
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    return (dataset.dtype == data.dtype and dataset.id.get_type().get_size() == data.dtype.itemsize
            and [f[0] for f in filters] == [_SHUFFLE, _LZF] and tuple(filters[0][2]) == (data.dtype.itemsize,))


def write(dataset, data: np.ndarray) -> None:
    """Fill a fresh chunked lzf + shuffle dataset (chunked along the first axis only) with `data`."""
    global _warned
    rows = dataset.chunks[0]
    if _lib is None or data.dtype.hasobject or not _pipeline_ok(dataset, data) or \
            tuple(dataset.chunks[1:]) != tuple(data.shape[1:]):
        if _lib is None and not _warned:
            _warned = True
            log.info("lzf: h5py's encoder (same data, bytes may differ from run to run); "
                     "pip install 'root2hdf5[lzf]' for byte-reproducible lzf files")
        dataset[...] = data
        return
    tail = np.zeros((rows, *data.shape[1:]), data.dtype)  # the last chunk, padded with the fill value (0)
    offset = [0] * data.ndim
    for start in range(0, len(data), rows):
        block = data[start:start + rows]
        if len(block) < rows:
            tail[:len(block)] = block
            block = tail
        shuffled = shuffle(block)
        packed = compress(shuffled)
        offset[0] = start
        if packed is None:
            dataset.id.write_direct_chunk(tuple(offset), shuffled.tobytes(), filter_mask=_LZF_SKIPPED)
        else:
            dataset.id.write_direct_chunk(tuple(offset), packed, filter_mask=0)
