"""The HDF5 files themselves: shards (regular datasets, chunked by jets) and split files (virtual datasets
over the shards), written reproducibly (no timestamps), and file operations on any Beam filesystem.

Each file is built in memory (hdf5_image) and its bytes written with Beam's FileSystems, on any filesystem:
the HDF5 library never writes to disk, so a full disk is an OSError naming the path (an OutputError), not a
crash of the C library in a worker. The bytes are those HDF5 writes to a file; building them costs twice the
file's size in memory for a moment (the image is copied out), next to the shard's columns in memory.
"""
from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass

import h5py
import numpy as np
from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core.batch import Columns
from root2hdf5.transforms.core.errors import Root2Hdf5Error, output_errors
from root2hdf5.transforms.output import lzf_chunks


@dataclass(frozen=True)
class DatasetSpec:
    """One output dataset: per-jet shape (after the jet axis), dtype, attributes, VDS fill value."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()
    chunk_rows: int | None = None  # rows per chunk when not Storage.chunk_jets (e.g. 1 for images)

    @property
    def fill(self):
        kind = np.dtype(self.dtype).kind
        return {"f": np.nan, "b": False}.get(kind, -1)


BLOSC = {"blosc-lz4": ("lz4", 5), "blosc-zstd": ("zstd", 1)}  # compression -> (Blosc codec, default level)
BLOSC_NOTE = ("Blosc-compressed (HDF5 filter 32001 from hdf5plugin): run `import hdf5plugin` before opening with "
              "h5py, or set HDF5_PLUGIN_PATH to hdf5plugin.PLUGIN_PATH for other HDF5 readers")


def hdf5plugin_missing() -> str | None:
    """Why the Blosc codecs cannot be used here, or None."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError as err:
        return f"{err}; install it with pip install hdf5plugin (or pip install 'root2hdf5[blosc]')"
    return None


@dataclass(frozen=True)
class Storage:
    """How datasets are stored: compression ('lzf', 'gzip', 'none', 'blosc-lz4' or 'blosc-zstd'), its level
    (gzip, Blosc), rows per chunk."""

    compression: str = "lzf"
    level: int | None = None
    chunk_jets: int = 256

    def options(self, n: int, shape: tuple[int, ...], rows: int | None = None) -> dict:
        if n == 0 or 0 in shape:  # nothing to chunk (HDF5 chunks must be non-empty)
            return {}
        options = {"chunks": (min(n, rows or self.chunk_jets), *shape)}
        if self.compression == "gzip":
            options.update(compression="gzip", compression_opts=self.level or 4, shuffle=True)
        elif self.compression == "lzf":
            options.update(compression="lzf", shuffle=True)
        elif self.compression in BLOSC:
            import hdf5plugin

            codec, level = BLOSC[self.compression]
            options.update(hdf5plugin.Blosc(cname=codec, clevel=level if self.level is None else self.level,
                                            shuffle=hdf5plugin.Blosc.SHUFFLE))
        return options

    @property
    def attrs(self) -> dict:
        """File attributes that tell a reader what it needs."""
        return {"compression": self.compression, "hdf5plugin": BLOSC_NOTE} if self.compression in BLOSC else {}


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def write_bytes(destination: str, data) -> None:
    """Write `data` (bytes or any buffer) to `destination` on any Beam filesystem; on failure (no space, no
    permission ...) remove what was written and raise an OutputError naming the path."""
    try:
        with output_errors(destination), FileSystems.create(destination, compression_type="uncompressed") as handle:
            handle.write(data)
    except Root2Hdf5Error:
        if is_local(destination) and os.path.exists(destination):
            os.unlink(destination)  # a partial file would hold the space the next attempt needs
        raise


def hdf5_image(fill) -> bytes:
    """The bytes of the HDF5 file fill(handle) writes, built in memory by HDF5's core driver (no backing
    store): byte for byte the file HDF5 writes to disk. (h5py's file-object driver needs less memory but
    lays some files out differently.)"""
    handle = h5py.File(f"root2hdf5-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)
    try:
        fill(handle)
        handle.flush()
        return handle.id.get_file_image()
    finally:
        handle.close()


def children(directory: str) -> list[str]:
    """Files and subdirectories directly in `directory` (object stores have no directories: there, the
    first path components below it)."""
    if is_local(directory):
        if not os.path.isdir(directory):
            return []
        return sorted(os.path.join(directory, name) for name in os.listdir(directory))
    if not exists(directory):
        return []
    base = directory.rstrip("/") + "/"
    matches = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
    names = {m.path[len(base):].split("/", 1)[0] for m in matches if m.path.startswith(base)}
    return sorted(FileSystems.join(directory, name) for name in names if name)


def files_in(directory: str) -> list[str]:
    """The files directly in `directory`."""
    if not exists(directory):
        return []
    return sorted(m.path for m in FileSystems.match([FileSystems.join(directory, "*")])[0].metadata_list)


def _attrs(target, values) -> None:
    for key, value in dict(values).items():
        target.attrs[key] = value


def write_jets_file(path: str, columns: Columns, datasets: list[DatasetSpec], storage: Storage,
                    attrs: dict, dataset_attrs: dict | None = None, count_attr: str = "num_jets") -> None:
    """A regular HDF5 file with the `datasets` (those in `columns`, or all of them empty when `columns` is
    empty), chunked by rows; file attributes `attrs` plus the row count (`count_attr`). Any Beam path."""
    write_bytes(path, hdf5_image(lambda handle: _fill_jets_file(handle, columns, datasets, storage, attrs,
                                                                dataset_attrs, count_attr)))


def _fill_jets_file(handle, columns: Columns, datasets: list[DatasetSpec], storage: Storage, attrs: dict,
                    dataset_attrs: dict | None, count_attr: str) -> None:
    n = next((len(columns[ds.name]) for ds in datasets if ds.name in columns), 0)
    _attrs(handle, {**attrs, **storage.attrs, count_attr: n})
    for ds in datasets:
        if columns and ds.name not in columns:
            continue
        data = np.asarray(columns[ds.name] if columns else np.zeros((0, *ds.shape), ds.dtype), ds.dtype)
        options = storage.options(n, ds.shape, ds.chunk_rows)
        if options.get("compression") == "lzf":  # chunks encoded reproducibly (transforms.output.lzf_chunks)
            dataset = handle.create_dataset(ds.name, shape=data.shape, dtype=data.dtype, **options)
            lzf_chunks.write(dataset, data)
        else:
            dataset = handle.create_dataset(ds.name, data=data, **options)
        _attrs(dataset, ds.attrs)
        _attrs(dataset, (dataset_attrs or {}).get(ds.name, {}))


class _UntimedLayout(h5py.VirtualLayout):
    """h5py stamps virtual datasets with their creation time; without it the file is reproducible."""

    def _get_dcpl(self, dst_filename):
        dcpl = super()._get_dcpl(dst_filename)
        dcpl.set_obj_track_times(False)
        return dcpl


def write_split_file(path: str, shards: list[tuple[str, int]], datasets: list[DatasetSpec], storage: Storage,
                     attrs: dict, dataset_attrs: dict | None = None, fills: dict | None = None,
                     count_attr: str = "num_jets") -> None:
    """One file presenting the shards [(relative path, jets)] as one dataset each (HDF5 virtual datasets).

    Source paths are relative to the split file, so the output directory can be moved or copied whole;
    missing shards read as the fill value (NaN / -1 / False), never as plausible numbers. dataset_attrs:
    extra attributes per dataset name (e.g. the training statistics). Any Beam path.
    """
    shards = [(rel, n) for rel, n in shards if n > 0]
    total = sum(n for _, n in shards)
    extra = dataset_attrs or {}
    if total == 0:
        write_jets_file(path, {}, datasets, storage, attrs, extra, count_attr)
        return
    write_bytes(path, hdf5_image(lambda handle: _fill_split_file(handle, shards, total, datasets, storage, attrs,
                                                                 extra, fills, count_attr)))


def _fill_split_file(handle, shards: list[tuple[str, int]], total: int, datasets: list[DatasetSpec],
                     storage: Storage, attrs: dict, extra: dict, fills: dict | None, count_attr: str) -> None:
    _attrs(handle, {**attrs, **storage.attrs, count_attr: total})
    for ds in datasets:
        layout = _UntimedLayout(shape=(total, *ds.shape), dtype=ds.dtype)
        start = 0
        for rel, n in shards:
            layout[start:start + n] = h5py.VirtualSource(rel, ds.name, shape=(n, *ds.shape))
            start += n
        dataset = handle.create_virtual_dataset(ds.name, layout, fillvalue=(fills or {}).get(ds.name, ds.fill))
        _attrs(dataset, ds.attrs)
        _attrs(dataset, extra.get(ds.name, {}))


def read_jets_file(path: str, names: list[str] | None = None) -> Columns:
    """The datasets (all, or `names`) of a file written by write_jets_file, from any Beam filesystem."""
    if is_local(path):
        source = path
    else:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            source = io.BytesIO(handle.read())
    with h5py.File(source, "r") as handle:
        if str(handle.attrs.get("compression", "")).startswith("blosc"):
            import hdf5plugin  # noqa: F401  (registers the Blosc filter)
        return {name: handle[name][...] for name in (names or list(handle))}
