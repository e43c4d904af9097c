"""Selection: keep the rows (jets, or events with `record: event`) for which `input.selection` and their
sample's `selection` are true (see transforms.rows.expressions and transforms.rows.event_expressions)."""
from __future__ import annotations

import apache_beam as beam
import awkward as ak
import numpy as np
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.rows.expressions import Expression


def selection_mask(expression: Expression, batch: RowBatch, where: str) -> np.ndarray:
    """One boolean per jet; the expression sees per-jet values (event branches repeated per jet)."""
    n = len(batch)
    result = expression.evaluate(batch.branches)
    if isinstance(result, ak.Array):
        if result.ndim != 1:
            raise InputError(f"{where}: selection {expression.text!r} gives a list per jet, not one value; "
                             "it must use jet-level or event-level branches only")
        result = ak.to_numpy(result)
    result = np.asarray(result)
    if result.dtype != bool:
        raise InputError(f"{where}: selection {expression.text!r} gives {result.dtype} values, not "
                         "true/false; write a condition such as 'jet_pt > 350e3'")
    return np.broadcast_to(result, (n,))


def expression_class(record: str):
    """Expressions over jets (record 'jet') or over events, with Jet_pt[0] and count(...) ('event')."""
    if record == "event":
        from root2hdf5.transforms.rows.event_expressions import EventExpression

        return EventExpression
    return Expression


@beam.typehints.with_output_types(RowBatch)
class SelectRows(beam.DoFn):
    """RowBatch -> RowBatch with only the selected rows; the cut ones are counted in `stats['cut']`.

    Args:
        selection: `input.selection`, for every sample, or None.
        sample_selections: per sample index, its own selection or None.
        record: 'jet' or 'event' (which expression language).
    """

    def __init__(self, selection: str | None, sample_selections=(), record: str = "jet"):
        self.selection = selection
        self.sample_selections = tuple(sample_selections)
        self.record = record
        self.expression = None
        self.per_sample = []
        self.cut = Metrics.counter("root2hdf5", "jets_cut")

    def setup(self):
        make = expression_class(self.record)
        self.expression = make(self.selection, "input.selection") if self.selection else None
        self.per_sample = [make(text, f"samples[{i}].selection") if text else None
                           for i, text in enumerate(self.sample_selections)]

    def process(self, batch: RowBatch):
        own = self.per_sample[batch.sample] if batch.sample < len(self.per_sample) else None
        if self.expression is not None or own is not None:
            mask = np.ones(len(batch), bool)
            for expression in (self.expression, own):
                if expression is not None:
                    mask &= selection_mask(expression, batch, batch.path)
            cut = int(len(mask) - mask.sum())
            if cut:
                batch = batch.take(mask)
            batch.stats["cut"] += cut
            self.cut.inc(cut)
        yield batch
