"""Jet selection: keep the jets for which `input.selection` is true (see transforms.expressions)."""
from __future__ import annotations

import apache_beam as beam
import awkward as ak
import numpy as np
from apache_beam.metrics import Metrics

from transforms.batch import JetBatch
from transforms.errors import InputError
from transforms.expressions import Expression


def selection_mask(expression: Expression, batch: JetBatch, where: str) -> np.ndarray:
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


@beam.typehints.with_output_types(JetBatch)
class SelectJets(beam.DoFn):
    """JetBatch -> JetBatch with only the selected jets; the cut ones are counted in `stats['cut']`."""

    def __init__(self, selection: str | None):
        self.selection = selection
        self.expression = None
        self.cut = Metrics.counter("root2hdf5", "jets_cut")

    def setup(self):
        self.expression = Expression(self.selection, "input.selection") if self.selection else None

    def process(self, batch: JetBatch):
        if self.expression is not None:
            mask = selection_mask(self.expression, batch, batch.path)
            cut = int(len(mask) - mask.sum())
            if cut:
                batch = batch.take(mask)
            batch.stats["cut"] += cut
            self.cut.inc(cut)
        yield batch
