"""Labels and per-jet weights.

A sample has either one integer `label`, or `categories`: named selections, each with a label. A jet gets
the label of the one category it matches; a jet matching none is dropped and counted (`uncategorized`);
a jet matching two is an error naming the file, entry and categories, since a silent choice would bias the
training set. The per-jet weight is `weights.branch` (or 1); sample factors (cross-section × luminosity /
sum of weights) are applied when the shards are written, once the sums are known.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.rows.select import expression_class, selection_mask


@dataclass(frozen=True)
class Labeling:
    """How one sample's jets are labelled: a fixed label, or (label, name, selection) categories."""

    label: int = 0
    categories: tuple[tuple[int, str, str], ...] = ()


@beam.typehints.with_output_types(RowBatch)
class LabelRows(beam.DoFn):
    """Adds `data['labels']` (int32) and `data['weights']` (float32) to a RowBatch.

    Args:
        samples: the Labeling of each sample, indexed like the config's samples.
        weight_branch: branch multiplied into the weight of each jet, or None.
        record: 'jet' or 'event' (rows are events: category selections use the event expression language).
    """

    def __init__(self, samples: list[Labeling], weight_branch: str | None = None, record: str = "jet"):
        self.samples = list(samples)
        self.weight_branch = weight_branch
        self.record = record
        self.uncategorized = Metrics.counter("root2hdf5", "jets_uncategorized")
        self._expressions = None

    def setup(self):
        make = expression_class(self.record)
        self._expressions = [[make(sel, f"category {name!r}") for _, name, sel in s.categories]
                             for s in self.samples]

    def process(self, batch: RowBatch):
        labeling = self.samples[batch.sample]
        if labeling.categories:
            batch = self._categorize(batch, labeling, self._expressions[batch.sample])
        else:
            batch.data["labels"] = np.full(len(batch), labeling.label, np.int32)
        if self.weight_branch:
            weights = np.asarray(batch.branches[self.weight_branch], np.float32)
            if not np.all(np.isfinite(weights)):
                bad = int(np.flatnonzero(~np.isfinite(weights))[0])
                raise InputError(f"{batch.path}: weights.branch {self.weight_branch!r} is {weights[bad]} at entry "
                                 f"{batch.data['source'][bad, 2]}")
            batch.data["weights"] = weights.copy()
        else:
            batch.data["weights"] = np.ones(len(batch), np.float32)
        yield batch

    def _categorize(self, batch: RowBatch, labeling: Labeling, expressions) -> RowBatch:
        matches = np.stack([selection_mask(e, batch, batch.path) for e in expressions])
        count = matches.sum(axis=0)
        if np.any(count > 1):
            jet = int(np.flatnonzero(count > 1)[0])
            names = [labeling.categories[k][1] for k in np.flatnonzero(matches[:, jet])]
            entry, index = batch.data["source"][jet, 2:]
            row = f"entry {entry} jet {index}" if self.record == "jet" else \
                f"entry {entry} (event number {batch.data['event_number'][jet]})"
            raise InputError(f"{batch.path}: {row} matches categories {names}; category selections must not overlap")
        labels = np.array([c[0] for c in labeling.categories], np.int32)
        keep = count == 1
        dropped = int(len(batch) - keep.sum())
        batch = batch.take(keep) if dropped else batch
        batch.stats["uncategorized"] += dropped
        self.uncategorized.inc(dropped)
        batch.data["labels"] = labels[np.argmax(matches[:, keep], axis=0)]
        return batch
