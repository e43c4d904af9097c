"""LabelRows gives every jet its sample's label and unit weight."""
import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.rows.label import Labeling, LabelRows


def test_labels_follow_the_sample():
    batches = []
    for sample, n in [(0, 3), (1, 2), (2, 4), (1, 0)]:
        b = RowBatch(sample, 0)
        b.data["source"] = np.zeros((n, 4), np.int64)
        batches.append(b)
    with TestPipeline() as p:
        out = p | beam.Create(batches) | beam.ParDo(LabelRows([Labeling(7), Labeling(-1), Labeling(3)]))
        assert_that(out | beam.FlatMap(lambda b: [(b.sample, int(l), float(w), b.data["labels"].dtype.name)
                                                  for l, w in zip(b.data["labels"], b.data["weights"])]),
                    equal_to([(0, 7, 1.0, "int32")] * 3 + [(1, -1, 1.0, "int32")] * 2 + [(2, 3, 1.0, "int32")] * 4))
