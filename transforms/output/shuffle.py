"""The global shuffle: jets -> (split, shard) groups with GroupByKey, and the in-shard order.

Each RowBatch is cut into one piece per (split, shard) it has jets for. Only pieces travel through
`GroupByKey`, in one of two modes:

* `spill` (default): the piece is written to a temporary file under the output's temporary directory and
  only its path goes through the shuffle: on the DirectRunner several times faster and far leaner than
  pushing the arrays through the runner (BENCHMARKS.md, "Global shuffle"). It needs the output location to
  be reachable from every worker, which it must be anyway for the sink.
* `engine`: the piece's arrays go through the runner's own shuffle (compact raw-buffer coder), for
  clusters whose workers share no filesystem.

Both give the same bytes: a shard's jets are ordered by their shuffle key, a hash of (seed, jet identity),
with the jet identity as tie-break, so neither the grouping into pieces nor arrival order matters.
"""
from __future__ import annotations

import typing
import uuid
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam import coders
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from root2hdf5.transforms.core.batch import (
    Columns,
    RowBatch,
    concat_columns,
    decode_blocks,
    decode_columns,
    encode_columns,
    write_columns,
)
from root2hdf5.transforms.core.errors import output_errors


@dataclass
class Piece:
    """Jets of one (split, shard) from one bundle: in memory (`columns`) or spilled to `path` (as
    one or more blocks of columns)."""

    columns: Columns | None = None
    path: str | None = None

    def load(self) -> list[Columns]:
        if self.columns is not None:
            return [self.columns]
        with FileSystems.open(self.path, compression_type="uncompressed") as handle:
            return decode_blocks(handle.read())


class PieceCoder(coders.Coder):
    """A path as b'P' + utf-8, in-memory columns as b'C' + the raw-buffer byte form."""

    def encode(self, piece: Piece) -> bytes:
        if piece.path is not None:
            return b"P" + piece.path.encode()
        return b"C" + encode_columns(piece.columns)

    def decode(self, encoded: bytes) -> Piece:
        if encoded[:1] == b"P":
            return Piece(path=encoded[1:].decode())
        return Piece(columns=decode_columns(memoryview(encoded)[1:]))

    def is_deterministic(self) -> bool:
        return True


coders.registry.register_coder(Piece, PieceCoder)


class CutIntoPieces(beam.DoFn):
    """RowBatch -> ((split, shard), Piece) for every shard the batches of a bundle have jets for.

    Pieces are buffered per bundle (up to `buffer_bytes`) and concatenated, so a shard receives a few
    large pieces rather than one per batch: fewer files, fewer shuffle elements.

    Args:
        datasets: names of the output columns to keep (routing columns are kept too).
        spill_dir: where spilled pieces go (mode 'spill'), or None to keep them in memory (mode 'engine').
        buffer_bytes: flush the buffer when it holds this much.
    """

    def __init__(self, datasets: list[str], spill_dir: str | None, buffer_bytes: int = 256 << 20):
        self.datasets = list(datasets)
        self.spill_dir = spill_dir
        self.buffer_bytes = buffer_bytes
        self.spilled_bytes = Metrics.counter("root2hdf5", "shuffle_bytes")

    def start_bundle(self):
        self._buffer: dict[tuple[int, int], list[Columns]] = {}
        self._buffered = 0

    def process(self, batch: RowBatch):
        data = batch.data
        if len(batch) == 0:
            return
        key = data["_split"].astype(np.int64) << 32 | data["_shard"].astype(np.int64)
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        bounds = [*starts[1:], len(order)]
        columns = {name: data[name] for name in (*self.datasets, "_order")}
        for k, start, stop in zip(keys, starts, bounds):
            index = order[start:stop]
            piece = {name: values[index] for name, values in columns.items()}
            self._buffer.setdefault((int(k >> 32), int(k & 0xFFFFFFFF)), []).append(piece)
            self._buffered += sum(v.nbytes for v in piece.values())
        if self._buffered >= self.buffer_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for element in self._flush():
            yield GlobalWindows.windowed_value(element)

    def _flush(self):
        buffer, self._buffer, self._buffered = self._buffer, {}, 0
        for key in sorted(buffer):
            yield key, self._piece(buffer.pop(key))

    def _piece(self, blocks: list[Columns]) -> Piece:
        if self.spill_dir is None:
            return Piece(columns=concat_columns(blocks))
        path = FileSystems.join(self.spill_dir, f"{uuid.uuid4().hex}.piece")
        with output_errors(path), FileSystems.create(path, compression_type="uncompressed") as handle:
            for block in blocks:  # back to back: no copy to join them here
                self.spilled_bytes.inc(write_columns(handle, block))
        return Piece(path=path)


def gather_shard(pieces) -> Columns:
    """All pieces of a shard, concatenated and put in the shard's deterministic order."""
    columns = concat_columns([block for piece in pieces for block in piece.load()])
    source = columns["source"]
    # lexsort: last key is primary. The hash decides; the jet identity breaks (astronomically rare) ties.
    order = np.lexsort((source[:, 3], source[:, 2], source[:, 1], source[:, 0], columns.pop("_order")))
    return {name: values[order] for name, values in columns.items()}


class ShuffleIntoShards(beam.PTransform):
    """RowBatch elements with routing columns -> ((split, shard), iterable of Piece).

    Args:
        datasets: the output datasets the pieces carry.
        spill_dir: temporary directory for spilled pieces, or None for the runner's shuffle ('engine').
    """

    def __init__(self, datasets: list[str], spill_dir: str | None):
        super().__init__()
        self.datasets = datasets
        self.spill_dir = spill_dir

    def expand(self, batches):
        return (
            batches
            | "CutIntoPieces" >> beam.ParDo(CutIntoPieces(self.datasets, self.spill_dir))
            .with_output_types(typing.Tuple[typing.Tuple[int, int], Piece])
            | "GroupByShard" >> beam.GroupByKey()
        )
