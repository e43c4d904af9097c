"""Non-finite values (NaN, ±Inf) in the branches a job reads: fail, drop the jet, or replace the value.

`input.on_nonfinite`: `fail` (default) stops the run naming the file, entry, jet and branch; `drop` removes
the jets that hold one (counted as `nonfinite` in the report); `replace` sets each such value to
`input.nonfinite_value` (counted as `replaced`). Checked per entry range, before the selection, on every
floating-point branch read; constituents of jets that were not kept (beyond the leading ones) do not count.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core.batch import Jagged, RowBatch
from root2hdf5.transforms.core.errors import InputError


def _bad_jets(column) -> np.ndarray | None:
    """Boolean per jet: holds a non-finite value; None when the column has none (the common case)."""
    values = column.content if isinstance(column, Jagged) else np.asarray(column)
    if values.dtype.kind != "f":
        return None
    finite = np.isfinite(values)
    if finite.all():
        return None
    if not isinstance(column, Jagged):
        return ~finite
    bad = np.flatnonzero(~finite)  # positions in the flat content; jets are [start, start + count)
    return np.searchsorted(bad, column.starts + column.counts) > np.searchsorted(bad, column.starts)


def _replaced(column, value: float):
    if isinstance(column, Jagged):
        content = np.where(np.isfinite(column.content), column.content, column.content.dtype.type(value))
        return Jagged(content, column.starts, column.counts), int((~np.isfinite(column.content)).sum())
    values = np.asarray(column)
    return np.where(np.isfinite(values), values, values.dtype.type(value)), int((~np.isfinite(values)).sum())


@beam.typehints.with_output_types(RowBatch)
class CheckFinite(beam.DoFn):
    """RowBatch -> RowBatch with the non-finite policy applied.

    Args:
        policy: 'fail', 'drop' or 'replace'.
        value: the replacement for 'replace'.
    """

    def __init__(self, policy: str = "fail", value: float = 0.0):
        self.policy = policy
        self.value = value
        self.dropped = Metrics.counter("root2hdf5", "jets_nonfinite")

    def process(self, batch: RowBatch):
        drop = np.zeros(len(batch), bool)
        for name, column in list(batch.branches.items()):
            bad = _bad_jets(column)
            if bad is None or not bad.any():
                continue
            if self.policy == "fail":
                jet = int(np.flatnonzero(bad)[0])
                entry, index = batch.data["source"][jet, 2:]
                raise InputError(f"{batch.path}: branch {name!r} has a non-finite value (NaN or Inf) at entry "
                                 f"{entry}, jet {index}; set input.on_nonfinite to drop or replace to go on")
            if self.policy == "replace":
                batch.branches[name], count = _replaced(column, self.value)
                batch.stats["replaced"] += count
            else:
                drop |= bad
        if drop.any():
            batch = batch.take(~drop)
            batch.stats["nonfinite"] += int(drop.sum())
            self.dropped.inc(int(drop.sum()))
        yield batch


@beam.typehints.with_output_types(RowBatch)
class SplitBatches(beam.DoFn):
    """RowBatch -> pieces of at most `batch_jets` jets. Ranges are read and checked whole (cheapest for
    the file), then processed in smaller batches, whose temporary arrays the allocator can reuse instead
    of mapping fresh memory each time (page faults dominated padding otherwise)."""

    def __init__(self, batch_jets: int = 16384):
        self.batch_jets = batch_jets

    def process(self, batch: RowBatch):
        yield from batch.split(self.batch_jets)
