"""Flattening events to leading jets, with event branches repeated and each jet's identity."""
import apache_beam as beam
import awkward as ak
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read.flatten import FlattenJets, flatten_events, flatten_jets
from root2hdf5.transforms.read.ranges import EntryRange, EventsChunk
from root2hdf5.transforms.read.sources import InputFile


def random_events(n, seed, start=0):
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(0, 5, n)
    pt = [list(rng.choice([10.0, 20.0, 30.0, 40.0], k)) for k in n_jets]  # ties on purpose
    eta = [list(rng.normal(0, 1, k)) for k in n_jets]
    const = [[list(rng.random(rng.integers(0, 4))) for _ in range(k)] for k in n_jets]
    arrays = ak.Array({"evt": np.arange(start, start + n) * 10, "rho": rng.random(n), "jet_pt": pt,
                       "jet_eta": eta, "c_pt": const})
    return arrays, (pt, eta, const)


def chunk(arrays, start=100, sample=1, file=2):
    spec = InputFile(sample, file, "f.root", "t")
    return EventsChunk(EntryRange(spec, start, start + len(arrays), 0, 1), arrays)


def reference(arrays, raw, leading, start):
    pt, eta, const = raw
    rows = []
    for e in range(len(arrays)):
        order = sorted(range(len(pt[e])), key=lambda j: -pt[e][j])[:leading]  # stable: ties keep order
        for j in order:
            rows.append((start + e, j, pt[e][j], eta[e][j], const[e][j], float(arrays["rho"][e]),
                         int(arrays["evt"][e])))
    return rows


@pytest.mark.parametrize("leading", [1, 2, 3])
def test_leading_jets_match_a_per_event_loop(leading):
    arrays, raw = random_events(300, seed=leading)
    batch = flatten_events(chunk(arrays), leading, "jet_pt", "evt")
    expected = reference(arrays, raw, leading, 100)
    assert len(batch) == len(expected)
    got = list(zip(batch.data["source"][:, 2], batch.data["source"][:, 3], batch.branches["jet_pt"],
                   batch.branches["jet_eta"], batch.branches["c_pt"].to_awkward().tolist(), batch.branches["rho"],
                   batch.data["event_number"]))
    for g, e in zip(got, expected):
        assert g[:4] == pytest.approx(e[:4]) and g[4] == pytest.approx(e[4]) and g[5:] == pytest.approx(e[5:])
    assert np.all(batch.data["source"][:, :2] == [1, 2])
    n_jets = sum(len(p) for p in raw[0])
    assert batch.stats == {"events": 300, "jets": n_jets, "not_leading": n_jets - len(expected)}


def test_ntuple_order_when_no_ranking_branch():
    arrays = ak.Array({"jet_pt": [[1.0, 5.0, 3.0], [], [2.0]]})
    batch = flatten_events(chunk(arrays, start=0), 2, None, None)
    assert batch.branches["jet_pt"].tolist() == [1.0, 5.0, 2.0]
    assert batch.data["source"][:, 3].tolist() == [0, 1, 0]
    assert batch.data["event_number"].tolist() == [-1, -1, -1]


def test_inconsistent_jet_counts_name_the_entry():
    arrays = ak.Array({"jet_pt": [[1.0, 2.0], [3.0]], "jet_eta": [[1.0, 2.0], [3.0, 4.0]]})
    with pytest.raises(InputError, match=r"f.root: tree 't': branches 'jet_pt' and 'jet_eta' have different "
                                         r"numbers of jets at entry 8 \(1 vs 2\)"):
        flatten_events(chunk(arrays, start=7), 2, "jet_pt", None)


def test_inconsistent_constituent_counts():
    arrays = ak.Array({"jet_pt": [[1.0]], "a": [[[1.0, 2.0]]], "b": [[[1.0]]]})
    with pytest.raises(InputError, match="numbers of constituents in a jet"):
        flatten_events(chunk(arrays), 2, "jet_pt", None)


def test_jets_layout_passes_entries_through():
    arrays = ak.Array({"pt": [3.0, 1.0, 2.0], "evt": [5, 5, 6], "c": [[1.0], [], [2.0, 3.0]]})
    batch = flatten_jets(chunk(arrays, start=10), "evt")
    assert batch.data["source"].tolist() == [[1, 2, 10, 0], [1, 2, 11, 0], [1, 2, 12, 0]]
    assert batch.data["event_number"].tolist() == [5, 5, 6]
    assert batch.branches["c"].to_awkward().tolist() == [[1.0], [], [2.0, 3.0]]
    assert batch.stats == {"jets": 3, "not_leading": 0}


def test_flatten_dofn_in_a_pipeline():
    chunks = [chunk(random_events(50, seed=s, start=100 * s)[0], start=100 * s, file=s) for s in range(3)]
    expected = []
    for s in range(3):
        arrays, raw = random_events(50, seed=s, start=100 * s)
        expected += [(s, r[0], r[1]) for r in reference(arrays, raw, 2, 100 * s)]
    with TestPipeline() as p:
        rows = (p | beam.Create(chunks) | beam.ParDo(FlattenJets("events", 2, "jet_pt", "evt"))
                | beam.FlatMap(lambda b: [(int(s[1]), int(s[2]), int(s[3])) for s in b.data["source"]]))
        assert_that(rows, equal_to(expected))
