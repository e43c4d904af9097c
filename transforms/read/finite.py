"""Non-finite values (NaN, ±Inf) in the branches a job reads: fail, drop the jet, or replace the value.

`input.on_nonfinite`: `fail` (default) stops the run naming the file, entry, jet and branch; `drop` removes
the jets that hold one (counted as `nonfinite` in the report); `replace` sets each such value to
`input.nonfinite_value` (counted as `replaced`). Checked per entry range, before the selection, on every
floating-point branch read; constituents of jets that were not kept (beyond the leading ones) do not count.

The same policy applies once more to the float32 features as they will be written (CheckWrittenFinite,
after the preprocessing): a finite float64 beyond float32's range (about 3.4e38) becomes Inf in the cast,
and a preprocessing function can overflow (pz = pT sinh(eta) for |eta| near 90), so what is written is
checked, not only what was read.
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


FEATURE_DATASETS = ("constituents", "jets", "jet_collections")  # the float32 features a row is written with


def _first_bad(values: np.ndarray) -> tuple[int, ...]:
    """Index (row, ..., feature) of the first non-finite value of a feature dataset."""
    return np.unravel_index(int(np.argmin(np.isfinite(values).ravel())), values.shape)


@beam.typehints.with_output_types(RowBatch)
class CheckWrittenFinite(beam.DoFn):
    """RowBatch after the preprocessing -> the same, with the non-finite policy applied to its float32 features
    (`constituents`, `jets`, `jet_collections`): dropped jets are counted as `nonfinite`, replaced values as
    `replaced`, as for the branches read.

    Args:
        policy: 'fail', 'drop' or 'replace'.
        value: the replacement for 'replace'.
        features: dataset -> feature names (the last axis of each dataset), for the messages.
        collections: the jet collection names (the middle axis of `jet_collections`).
    """

    def __init__(self, policy: str = "fail", value: float = 0.0, features: dict | None = None,
                 collections: tuple[str, ...] = ()):
        self.policy = policy
        self.value = value
        self.features = dict(features or {})
        self.collections = tuple(collections)
        self.dropped = Metrics.counter("root2hdf5", "jets_nonfinite")

    def _name(self, dataset: str, where: tuple[int, ...]) -> str:
        names = self.features.get(dataset, [])
        name = names[where[-1]] if where[-1] < len(names) else f"#{where[-1]}"
        if dataset == "jet_collections" and where[1] < len(self.collections):
            return f"{self.collections[where[1]]}_{name}"
        return name

    def process(self, batch: RowBatch):
        drop = None
        for dataset in FEATURE_DATASETS:
            values = batch.data.get(dataset)
            if values is None or values.dtype.kind != "f" or np.isfinite(values).all():
                continue  # one vectorized pass over the values: the common case ends here
            bad = ~np.isfinite(values)
            if self.policy == "fail":
                where = _first_bad(values)
                entry, index = batch.data["source"][where[0], 2:]
                raise InputError(
                    f"{batch.path}: feature {self._name(dataset, where)!r} of {dataset!r} is {values[where]} at "
                    f"entry {entry}, jet {index}: the value read is beyond float32's range (about 3.4e38) or the "
                    "preprocessing overflowed; set input.on_nonfinite to drop or replace to go on")
            if self.policy == "replace":
                batch.data[dataset] = np.where(bad, values.dtype.type(self.value), values)
                batch.stats["replaced"] += int(bad.sum())
            else:
                rows = bad.reshape(len(bad), -1).any(axis=1)
                drop = rows if drop is None else drop | rows
        if drop is not None and drop.any():
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
