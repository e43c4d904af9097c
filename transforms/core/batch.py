"""The element that flows through the pipeline: a batch of jets as columns, and its compact byte form.

Semantics are per jet, but a Beam element carries thousands of jets from one entry range of one file, so
every step is a handful of array operations instead of a Python call per jet.
"""
from __future__ import annotations

import json
import pickle
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
from apache_beam import coders

from root2hdf5.transforms.core.layouts import list_offsets, numpy_content  # noqa: F401 - used here, and re-exported

Columns = dict[str, np.ndarray]


@dataclass
class Jagged:
    """Variable-length values per jet as a view on a flat array: jet i holds
    content[starts[i] : starts[i] + counts[i]]. Selecting jets touches only starts and counts."""

    content: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index) -> "Jagged":
        return Jagged(self.content, self.starts[index], self.counts[index])

    @classmethod
    def from_awkward(cls, array: ak.Array) -> "Jagged":
        offsets, content = list_offsets(ak.to_layout(array))
        return cls(numpy_content(content), offsets[:-1], np.diff(offsets))

    def to_awkward(self) -> ak.Array:
        compact = self.compact()
        return ak.unflatten(compact.content, compact.counts)

    def compact(self) -> "Jagged":
        """The same lists in a content array of their own, back to back. A view keeps its whole source
        array alive (and a pickle would carry all of it); this copies only the selected values."""
        offsets = np.zeros(len(self.counts) + 1, np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        if len(self.content) == offsets[-1] and np.array_equal(self.starts, offsets[:-1]):
            return self
        flat = self.content[np.repeat(self.starts - offsets[:-1], self.counts) + np.arange(offsets[-1])]
        return Jagged(flat, offsets[:-1], np.asarray(self.counts, np.int64))

    @classmethod
    def concat(cls, parts: list["Jagged"]) -> "Jagged":
        parts = [p.compact() for p in parts]
        counts = np.concatenate([p.counts for p in parts]).astype(np.int64)
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(np.concatenate([p.content for p in parts]), offsets[:-1], counts)


@dataclass
class RowBatch:
    """Jets read from one entry range of one input file.

    `branches` holds input quantities by branch name while they are being transformed (awkward arrays
    while jagged, numpy once padded); `data` holds the output datasets by name (`constituents`, `mask`,
    `jets`, `labels`, `weights`, `event_number`, `source`) plus routing columns whose names start with
    `_`. `stats` counts what happened to the jets of this range (read, not leading, cut ...), for the
    run's exact accounting.
    """

    sample: int
    file: int
    branches: dict[str, Any] = field(default_factory=dict)
    data: dict[str, np.ndarray] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)
    path: str = ""  # the input file, for error messages

    def __len__(self) -> int:
        for column in (*self.data.values(), *self.branches.values()):
            return len(column)
        return 0

    def split(self, size: int) -> list["RowBatch"]:
        """Consecutive pieces of at most `size` jets (views, not copies); `stats` go with the first."""
        n = len(self)
        if n <= size:
            return [self]
        pieces = [self.take(slice(start, start + size)) for start in range(0, n, size)]
        for piece in pieces[1:]:
            piece.stats = Counter()
        return pieces

    def take(self, index) -> "RowBatch":
        """Keep the jets selected by a boolean mask, an index array or a slice, in every column."""
        if not isinstance(index, slice):
            index = np.asarray(index)
        return RowBatch(
            self.sample,
            self.file,
            {name: _take(col, index) for name, col in self.branches.items()},
            {name: col[index] for name, col in self.data.items()},
            Counter(self.stats),
            self.path,
        )


def compact_batch(batch: "RowBatch") -> "RowBatch":
    """The batch with its jagged branches compacted (see Jagged.compact), before it travels."""
    batch.branches = {name: col.compact() if isinstance(col, Jagged) else col for name, col in batch.branches.items()}
    return batch


def concat_batches(parts: list["RowBatch"]) -> "RowBatch":
    """Rows of several batches of one file back to back (sample, file and path of the first), stats summed."""
    first = parts[0]
    if len(parts) == 1:
        return first
    stats = Counter()
    for part in parts:
        stats.update(part.stats)
    branches = {}
    for name, column in first.branches.items():
        columns = [p.branches[name] for p in parts]
        if isinstance(column, Jagged):
            branches[name] = Jagged.concat(columns)
        elif isinstance(column, ak.Array):
            branches[name] = ak.concatenate(columns)
        else:
            branches[name] = np.concatenate(columns)
    data = {name: np.concatenate([p.data[name] for p in parts]) for name in first.data}
    return RowBatch(first.sample, first.file, branches, data, stats, first.path)


def _take(column, index):
    if isinstance(column, Jagged):
        return column.take(index)
    if isinstance(column, ak.Array) and not isinstance(index, slice):
        return column[ak.Array(index) if index.dtype == bool else index]
    return column[index]


# ------------------------------------------------------------------------------------------ byte form
#
# A header (JSON: name, dtype, shape, offset of each array) followed by the raw buffers. Arrays decode as
# zero-copy views of the payload; no pickling of numpy objects, no per-jet framing.

_LEN = struct.Struct("<I")


def _framed(columns: Columns) -> list:
    header, buffers, offset = [], [], 0
    for name, array in columns.items():
        array = np.ascontiguousarray(array)
        header.append([name, array.dtype.str, list(array.shape), offset])
        buffers.append(array.data.cast("B") if array.size else b"")
        offset += array.nbytes
    head = json.dumps(header).encode()
    return [_LEN.pack(len(head)), head, *buffers]


def encode_columns(columns: Columns) -> bytes:
    return b"".join(_framed(columns))


def write_columns(handle, columns: Columns) -> int:
    """Write the byte form of `columns` to a file object without assembling it in memory first."""
    written = 0
    for part in _framed(columns):
        written += handle.write(part)
    return written


def _decode_block(payload, start: int) -> tuple[Columns, int]:
    (size,) = _LEN.unpack_from(payload, start)
    header = json.loads(bytes(payload[start + _LEN.size:start + _LEN.size + size]))
    base = start + _LEN.size + size
    columns, end = {}, base
    for name, dtype, shape, offset in header:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        columns[name] = np.frombuffer(payload, dtype, count, base + offset).reshape(shape)
        end = max(end, base + offset + count * dtype.itemsize)
    return columns, end


def decode_columns(payload: bytes) -> Columns:
    return _decode_block(payload, 0)[0]


def decode_blocks(payload: bytes) -> list[Columns]:
    """Every block of a byte string holding several encoded Columns back to back."""
    blocks, start = [], 0
    while start < len(payload):
        block, start = _decode_block(payload, start)
        blocks.append(block)
    return blocks


class ColumnsCoder(coders.Coder):
    """Beam coder for `Columns` (a dict of numpy arrays) using the byte form above."""

    def encode(self, value: Columns) -> bytes:
        return encode_columns(value)

    def decode(self, encoded: bytes) -> Columns:
        return decode_columns(encoded)

    def is_deterministic(self) -> bool:
        return True


class RowBatchCoder(coders.Coder):
    """Pickles a RowBatch when a runner must move one between workers (fused stages never do), and
    estimates its size from the array sizes: Beam samples element sizes for its metrics, and the
    default estimate would pickle megabytes of arrays just to measure them."""

    def encode(self, value: "RowBatch") -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> "RowBatch":
        return pickle.loads(encoded)

    def estimate_size(self, value: "RowBatch") -> int:
        return sum(_nbytes(column) for column in (*value.branches.values(), *value.data.values()))

    def is_deterministic(self) -> bool:
        return False


def _nbytes(column) -> int:
    if isinstance(column, Jagged):
        return 8 * len(column.starts) * 2 + column.content.itemsize * int(column.counts.sum())
    return int(getattr(column, "nbytes", 0))


coders.registry.register_coder(RowBatch, RowBatchCoder)


def concat_columns(parts: list[Columns]) -> Columns:
    """Concatenate pieces that have the same columns."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
