"""The element that flows through the pipeline: a batch of jets as columns, and its compact byte form.

Semantics are per jet, but a Beam element carries thousands of jets from one entry range of one file, so
every step is a handful of array operations instead of a Python call per jet.
"""
from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
from apache_beam import coders

Columns = dict[str, np.ndarray]


@dataclass
class JetBatch:
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

    def take(self, index) -> "JetBatch":
        """Keep the jets selected by a boolean mask or an index array, in every column."""
        index = np.asarray(index)
        return JetBatch(
            self.sample,
            self.file,
            {name: _take(col, index) for name, col in self.branches.items()},
            {name: col[index] for name, col in self.data.items()},
            Counter(self.stats),
            self.path,
        )


def _take(column, index):
    if isinstance(column, ak.Array):
        return column[ak.Array(index) if index.dtype == bool else index]
    return column[index]


# ------------------------------------------------------------------------------------------ byte form
#
# A header (JSON: name, dtype, shape, offset of each array) followed by the raw buffers. Arrays decode as
# zero-copy views of the payload; no pickling of numpy objects, no per-jet framing.

_LEN = struct.Struct("<I")


def encode_columns(columns: Columns) -> bytes:
    header, buffers, offset = [], [], 0
    for name, array in columns.items():
        array = np.ascontiguousarray(array)
        header.append([name, array.dtype.str, list(array.shape), offset])
        buffers.append(array.data.cast("B") if array.size else b"")
        offset += array.nbytes
    head = json.dumps(header).encode()
    return b"".join([_LEN.pack(len(head)), head, *buffers])


def decode_columns(payload: bytes) -> Columns:
    (size,) = _LEN.unpack_from(payload, 0)
    header = json.loads(bytes(payload[_LEN.size:_LEN.size + size]))
    base = _LEN.size + size
    columns = {}
    for name, dtype, shape, offset in header:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        columns[name] = np.frombuffer(payload, dtype, count, base + offset).reshape(shape)
    return columns


class ColumnsCoder(coders.Coder):
    """Beam coder for `Columns` (a dict of numpy arrays) using the byte form above."""

    def encode(self, value: Columns) -> bytes:
        return encode_columns(value)

    def decode(self, encoded: bytes) -> Columns:
        return decode_columns(encoded)

    def is_deterministic(self) -> bool:
        return True


def concat_columns(parts: list[Columns]) -> Columns:
    """Concatenate pieces that have the same columns."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
