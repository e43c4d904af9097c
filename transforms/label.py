"""Labels and weights: each jet gets its sample's integer label and weight 1 (until reweighting)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from transforms.batch import JetBatch


class LabelJets(beam.DoFn):
    """Adds `data['labels']` (int32) and `data['weights']` (float32) to a JetBatch.

    Args:
        labels: the label of each sample, indexed like the config's samples.
    """

    def __init__(self, labels: list[int]):
        self.labels = list(labels)

    def process(self, batch: JetBatch):
        n = len(batch)
        batch.data["labels"] = np.full(n, self.labels[batch.sample], np.int32)
        batch.data["weights"] = np.ones(n, np.float32)
        yield batch
