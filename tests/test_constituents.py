"""Sorting, truncating, padding and masking constituents against a per-jet loop."""
import apache_beam as beam
import awkward as ak
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.batch import Jagged, RowBatch
from root2hdf5.transforms.physics.padding import PadConstituents, pad_constituents


def random_jets(n, seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, n)
    counts[:3] = [0, 1, 11]  # empty, single, more than max
    total = counts.sum()
    pt = np.round(rng.uniform(0, 10, total), 0).astype(np.float32)  # integers: many ties
    eta = rng.normal(0, 1, total).astype(np.float32)
    return {"pt": Jagged.from_awkward(ak.unflatten(pt, counts)), "eta": Jagged.from_awkward(ak.unflatten(eta, counts))}


def reference(jets, max_len, min_pt):
    pts, etas = jets["pt"].to_awkward().tolist(), jets["eta"].to_awkward().tolist()
    out_pt, out_eta, out_mask = [], [], []
    for pt, eta in zip(pts, etas):
        order = sorted(range(len(pt)), key=lambda k: -pt[k])[:max_len]
        row_pt, row_eta, row_mask = [0.0] * max_len, [0.0] * max_len, [False] * max_len
        for slot, k in enumerate(order):
            if pt[k] >= min_pt:
                row_pt[slot], row_eta[slot], row_mask[slot] = pt[k], eta[k], True
        out_pt.append(row_pt), out_eta.append(row_eta), out_mask.append(row_mask)
    return np.array(out_pt), np.array(out_eta), np.array(out_mask)


@pytest.mark.parametrize("max_len, min_pt, dtype", [(8, 0.0, np.float32), (8, 3.0, np.float32), (1, 0.0, np.float32),
                                                    (20, 5.0, np.float32), (8, 0.0, np.float64)])
def test_matches_per_jet_loop(max_len, min_pt, dtype):
    """float32 keys take the packed-sort path, float64 the awkward argsort; both must agree with a loop."""
    jets = random_jets(500, seed=max_len)
    jets = {k: Jagged(v.content.astype(dtype), v.starts, v.counts) for k, v in jets.items()}
    padded, mask = pad_constituents(jets, "pt", max_len, "pt", min_pt)
    exp_pt, exp_eta, exp_mask = reference(jets, max_len, min_pt)
    np.testing.assert_array_equal(mask, exp_mask)
    np.testing.assert_allclose(padded["pt"], exp_pt, rtol=0, atol=1e-6)
    np.testing.assert_allclose(padded["eta"], exp_eta, rtol=0, atol=1e-6)
    assert padded["pt"].dtype == np.float32 and padded["pt"].shape == (500, max_len)


def test_sort_by_another_branch():
    jets = {"pt": Jagged.from_awkward(ak.Array([[1.0, 2.0, 3.0]])),
            "d": Jagged.from_awkward(ak.Array([[0.3, 0.1, 0.2]]))}
    padded, mask = pad_constituents(jets, "d", 4)
    assert padded["pt"].tolist() == [[1.0, 3.0, 2.0, 0.0]] and mask.tolist() == [[True, True, True, False]]


def test_dofn_adds_mask_and_pads():
    jets = random_jets(40, seed=3)
    b = RowBatch(0, 0, dict(jets))
    with TestPipeline() as p:
        out = p | beam.Create([b]) | beam.ParDo(PadConstituents(["pt", "eta"], "pt", 5, "pt", 2.0))
        exp_pt, _, exp_mask = reference(jets, 5, 2.0)
        assert_that(out | beam.Map(lambda x: (x.branches["pt"].tolist(), x.data["mask"].tolist())),
                    equal_to([(exp_pt.tolist(), exp_mask.tolist())]))


def test_negative_keys_and_subsets_of_a_shared_content():
    """Sorting by a signed branch (eta), on jets that view parts of one flat array in any order."""
    content = np.array([0.5, -1.0, 2.0, -0.25, 0.0, -3.0, 1.5], np.float32)
    jets = {"eta": Jagged(content, np.array([4, 0, 2]), np.array([3, 2, 0]))}
    padded, mask = pad_constituents(jets, "eta", 3)
    assert padded["eta"].tolist() == [[1.5, 0.0, -3.0], [0.5, -1.0, 0.0], [0.0, 0.0, 0.0]]
    assert mask.tolist() == [[True, True, True], [True, True, False], [False, False, False]]
