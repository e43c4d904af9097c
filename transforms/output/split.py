"""Train/val/test split by event, and the shard key of each jet for the global shuffle.

Split: u = hash(seed, event) in [0, 1), compared with the cumulative split fractions. The event is the
`event_number` value when configured (so jets of one event stored as separate entries stay together), else
(sample, file, entry). Jets of one event therefore never land in two splits. With `split.modulo` the split
is instead the one listing event_number % modulo (even/odd events for cross-training).

Shuffle key: h = hash(seed, sample, file, entry, jet index). The jet goes to shard h mod (shards of its
split), and within a shard the jets are ordered by h, so every split file is a uniformly random
permutation, and the same for every runner and worker count.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.hashing import hash_columns, to_unit_interval
from root2hdf5.transforms.core.records import RangeStats

_SPLIT_SALT = 0x5EED5B1D
_SHUFFLE_SALT = 0x5A11FE


def split_index(seed: int, event_id: np.ndarray, fractions: list[float]) -> np.ndarray:
    u = to_unit_interval(hash_columns(seed ^ _SPLIT_SALT, event_id))
    edges = np.cumsum(fractions)
    edges[-1] = 1.0  # guard against rounding: u < 1 always lands in the last non-empty split
    return np.searchsorted(edges, u, side="right").astype(np.int8)


def modulo_split_index(event_number: np.ndarray, modulo: int, residue_splits: list[int]) -> np.ndarray:
    """The split of each event from event_number % modulo (numpy's mod: never negative for modulo > 0)."""
    return np.asarray(residue_splits, np.int8)[np.mod(event_number, modulo)]


def event_ids(batch: RowBatch, by_event_number: bool) -> np.ndarray:
    if by_event_number:
        return batch.data["event_number"]
    source = batch.data["source"]
    return hash_columns(0, source[:, 0], source[:, 1], source[:, 2]).view(np.int64)


def shuffle_keys(seed: int, source: np.ndarray) -> np.ndarray:
    return hash_columns(seed ^ _SHUFFLE_SALT, source[:, 0], source[:, 1], source[:, 2], source[:, 3])


@beam.typehints.with_output_types(RowBatch)
class AssignSplits(beam.DoFn):
    """Adds routing columns `_split`, `_shard`, `_order` to each RowBatch, and emits its accounting.

    Main output: the RowBatch. Output 'stats': a RangeStats with the batch's counts (per split added) and
    its jets per (label, split, shard) cell, from which limits are planned.

    Args:
        seed: the shuffle seed.
        splits: split names in order (train, val, test).
        fractions: fraction of events per split.
        shards: number of shards of each split (0 for an empty split).
        by_event_number: split on the `event_number` column (else on the entry).
        sample_names: for the per-sample Beam counters (`<sample>/jets_read`, `<sample>/to_train` ...).
        modulo, residue_splits: split by event_number % modulo instead, residue r going to split
            residue_splits[r].
        rows: what a row is, 'jets' or 'events' (the stats key counting the rows read).
    """

    def __init__(self, seed: int, splits: list[str], fractions: list[float], shards: list[int],
                 by_event_number: bool, sample_names: list[str] | None = None, modulo: int | None = None,
                 residue_splits: list[int] | None = None, rows: str = "jets"):
        self.seed = seed
        self.splits = list(splits)
        self.fractions = list(fractions)
        self.shards = np.asarray(shards, np.uint64)
        self.by_event_number = by_event_number
        self.sample_names = list(sample_names or [])
        self.modulo = modulo
        self.residue_splits = list(residue_splits or [])
        self.rows = rows

    def _count(self, batch: RowBatch):
        name = self.sample_names[batch.sample] if batch.sample < len(self.sample_names) else str(batch.sample)
        for key in (self.rows, "not_leading", "cut", *self.splits):
            counter = f"{key}_read" if key == self.rows else key if key in ("not_leading", "cut") else f"to_{key}"
            Metrics.counter("root2hdf5", f"{name}/{counter}").inc(batch.stats[key])

    def process(self, batch: RowBatch):
        if self.modulo:
            split = modulo_split_index(batch.data["event_number"], self.modulo, self.residue_splits)
        else:
            split = split_index(self.seed, event_ids(batch, self.by_event_number), self.fractions)
        order = shuffle_keys(self.seed, batch.data["source"])
        batch.data["_split"] = split
        batch.data["_shard"] = (order % self.shards[split]).astype(np.int32)
        batch.data["_order"] = order
        counts = np.bincount(split, minlength=len(self.splits))
        for name, count in zip(self.splits, counts):
            batch.stats[name] += int(count)
        self._count(batch)
        # one int64 per (label, split, shard) cell: a 1-D unique is ~10x faster than unique(axis=0)
        cell = (batch.data["labels"].astype(np.int64) << 32) | (split.astype(np.int64) << 28) | batch.data["_shard"]
        keys, n = np.unique(cell, return_counts=True)
        cells = {(int(k >> 32), int((k >> 28) & 0xF), int(k & 0xFFFFFFF)): int(c) for k, c in zip(keys, n)}
        yield pvalue.TaggedOutput("stats", RangeStats(batch.sample, batch.file, dict(batch.stats), cells))
        yield batch
