"""zlib inflate of ROOT baskets and RNTuple pages with libdeflate (PyPI `deflate`) when it is installed.

uproot inflates every ZLIB block through `uproot.compression._DecompressZLIB.decompress`. libdeflate decodes
the same DEFLATE streams to the same bytes ~1.7x faster than zlib (it also checks the Adler-32 and the exact
size). uproot's own switch cannot be used: `uproot.ZLIB.library` sets the attribute on the compression
class, not on the decompressor, and `library = "deflate"` passes a keyword (bufsize) that deflate 0.9 does
not take. So `install()` replaces the method; a block libdeflate refuses is inflated again by zlib, so that
a damaged file fails with zlib's own error, as before. Without the package, or with ROOT2HDF5_INFLATE=zlib,
nothing changes.

Installed when transforms.read.trees is imported, i.e. in every process that opens an input file (the
driver and each worker).
"""
from __future__ import annotations

import os
import zlib

ENV = "ROOT2HDF5_INFLATE"


def _zlib(self, data, uncompressed_bytes=None):
    if uncompressed_bytes is None:
        raise ValueError("zlib decompression requires the number of uncompressed bytes")
    return zlib.decompress(data, bufsize=uncompressed_bytes)


def install() -> str:
    """Use libdeflate for uproot's ZLIB blocks when possible (idempotent); the library now in use."""
    import uproot.compression

    cls = uproot.compression._DecompressZLIB
    if getattr(cls.decompress, "_root2hdf5", None) is not None:
        return cls.decompress._root2hdf5
    wanted = os.environ.get(ENV, "deflate")
    try:
        if wanted != "deflate":
            raise ImportError
        import deflate
    except ImportError:
        return "zlib"

    def decompress(self, data, uncompressed_bytes=None):
        if uncompressed_bytes is None:
            return _zlib(self, data, uncompressed_bytes)
        try:
            return deflate.zlib_decompress(data, uncompressed_bytes)
        except deflate.DeflateError:
            return _zlib(self, data, uncompressed_bytes)

    decompress._root2hdf5 = "libdeflate"
    decompress._original = cls.decompress
    cls.decompress = decompress
    return "libdeflate"


def uninstall() -> None:
    """Back to uproot's own method (tests)."""
    import uproot.compression

    cls = uproot.compression._DecompressZLIB
    if getattr(cls.decompress, "_root2hdf5", None) is not None:
        cls.decompress = cls.decompress._original
