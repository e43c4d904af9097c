"""SelectRows keeps exactly the jets whose expression is true, and counts the rest."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.rows.expressions import Expression
from root2hdf5.transforms.rows.select import SelectRows, selection_mask


def batch(seed, n=100):
    rng = np.random.default_rng(seed)
    b = RowBatch(0, seed, {"jet_pt": rng.uniform(0, 1000, n), "jet_eta": rng.normal(0, 2, n),
                           "NPV": rng.integers(0, 60, n)}, path=f"f{seed}.root")
    b.data["source"] = np.column_stack([np.zeros(n, int), np.full(n, seed), np.arange(n), np.zeros(n, int)])
    return b


def test_selection_in_a_pipeline():
    batches = [batch(s) for s in range(4)]
    expected = [(b.file, int(i)) for b in batches for i in
                np.flatnonzero((b.branches["jet_pt"] > 300) & (np.abs(b.branches["jet_eta"]) < 2)
                               & (b.branches["NPV"] > 10))]
    cut = sum(100 - sum(1 for e in expected if e[0] == b.file) for b in batches)
    with TestPipeline() as p:
        out = p | beam.Create(batches) | beam.ParDo(SelectRows("jet_pt > 300 & abs(jet_eta) < 2 && NPV > 10"))
        assert_that(out | beam.FlatMap(lambda b: [(b.file, int(i)) for i in b.data["source"][:, 2]]),
                    equal_to(expected), label="kept")
        assert_that(out | beam.Map(lambda b: b.stats["cut"]) | beam.CombineGlobally(sum), equal_to([cut]),
                    label="cut")


def test_no_selection_keeps_everything():
    b = batch(1)
    (out,) = SelectRows(None).process(b)
    assert len(out) == 100 and out.stats["cut"] == 0


def test_non_boolean_selection_is_an_error():
    with pytest.raises(InputError, match=r"f1.root: selection 'jet_pt \* 2' gives float64 values"):
        selection_mask(Expression("jet_pt * 2"), batch(1), "f1.root")


def test_constant_selection_broadcasts():
    assert selection_mask(Expression("1 > 0"), batch(1), "f").shape == (100,)
