"""Constituents reached through an index (input.constituent_links): PFNano's link rows and per-jet index lists.

The end-to-end test compares the PFNano rewrite of the Pythia samples with the original per-jet constituent
lists read straight from jets_events_*.root with uproot (in MeV, so x 0.001): the events and jets are in
the same order in both files."""
import awkward as ak
import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.transforms.core.errors import ConfigError, InputError
from root2hdf5.transforms.read.links import LinkSpec, gather_linked
from tests.conftest import IN_MEMORY, run_config, shared_file
from tests.reference import read_output

CANDIDATES = ["PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"]


def pfnano_config(out, samples=("zprime", "dijet")):
    return {
        "samples": [{"name": s, "files": [str(shared_file(f"pfnano_{s}.root"))], "tree": "Events", "label": i}
                    for i, s in enumerate(samples)],
        "input": {"layout": "events", "leading_jets": 10, "event_number": "event",
                  "jet_branches": ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass"],
                  "constituent_branches": CANDIDATES,
                  "constituent_links": {"jet_index": "FatJetPFCands_jetIdx", "index": "FatJetPFCands_pFCandsIdx"},
                  "step_size": 1700},
        "constituents": {"max": 256},
        "split": {"train": 0.7, "val": 0.3, "test": 0.0},
        "shuffle": {"shards": 3},
        "output": {"dir": str(out)},
    }


def _sorted_flat(jet_id, pt, eta, phi):
    order = np.lexsort((phi, eta, -pt, jet_id))  # by jet, then pT descending (ties: eta, phi)
    return jet_id[order], pt[order], eta[order], phi[order]


def test_pfnano_constituents_equal_the_original_jets_constituents(tmp_path):
    cfg = pfnano_config(tmp_path / "out")
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    assert report["total"]["jets"] == report["total"]["written"] == 2 * 10408  # every jet, none left out
    for sample_index, sample in enumerate(("zprime", "dijet")):
        original = uproot.open(shared_file(f"jets_events_{sample}.root"))["IsolatedJet_tree"].arrays(
            ["eventNumber", "jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"])
        n_jets = ak.to_numpy(ak.num(original.jet_constit_pt, axis=1))
        jet_start = np.concatenate([[0], np.cumsum(n_jets)])
        counts = ak.to_numpy(ak.flatten(ak.num(original.jet_constit_pt, axis=2)))
        expected_id = np.repeat(np.arange(counts.size), counts)
        flat = {k: ak.to_numpy(ak.flatten(original[f"jet_constit_{k}"], axis=None)).astype(np.float64)
                for k in ("pt", "eta", "phi", "e")}
        rows = [(split, i) for split in output for i in range(len(output[split]["source"]))
                if output[split]["source"][i, 0] == sample_index]
        source = np.array([output[s]["source"][i] for s, i in rows])
        jet_id = jet_start[source[:, 2]] + source[:, 3]
        assert sorted(jet_id.tolist()) == list(range(counts.size))  # each original jet exactly once
        assert np.array_equal(np.array([output[s]["event_number"][i] for s, i in rows]),
                              ak.to_numpy(original.eventNumber)[source[:, 2]])
        mask = np.array([output[s]["mask"][i] for s, i in rows])
        values = np.array([output[s]["constituents"][i] for s, i in rows], np.float64)
        assert np.array_equal(mask.sum(axis=1), counts[jet_id])  # counts per jet are exact
        got = _sorted_flat(np.repeat(jet_id, mask.sum(axis=1)), *(values[..., k][mask] for k in range(3)))
        want = _sorted_flat(expected_id, flat["pt"] * 1e-3, flat["eta"], flat["phi"])
        assert np.array_equal(got[0], want[0])
        for a, b in zip(got[1:], want[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        # PFCands_mass is 0, so E = pT cosh(eta), which is jet_constit_e in GeV
        e = _sorted_flat(expected_id, flat["pt"] * 1e-3, flat["eta"], flat["e"] * 1e-3)[3]
        np.testing.assert_allclose(got[1] * np.cosh(got[2]), e, rtol=1e-6, atol=1e-6)
        assert np.all(values[..., 3][mask] == 0) and np.all(values[~mask] == 0)


def _reference_gather(index, valid, constituents, n_jets):
    """Per event and jet, a Python loop: the constituents its (valid) links point to, in link order."""
    out = {name: [] for name in constituents}
    for e in range(len(n_jets)):
        for name, values in constituents.items():
            out[name].append([[values[e][k] for k, ok in zip(index[e][j], valid[e][j]) if ok]
                              for j in range(n_jets[e])])
    return out


def test_per_jet_index_lists_with_null_links_against_a_loop():
    rng = np.random.default_rng(5)
    n_jets = rng.integers(0, 4, 200)
    n_cands = rng.integers(1, 30, 200)
    index = [[rng.integers(0, n_cands[e], rng.integers(0, 12)).tolist() for _ in range(n_jets[e])]
             for e in range(200)]
    valid = [[(rng.random(len(links)) > 0.3).astype(int).tolist() for links in jets] for jets in index]
    cands = {"c_pt": [rng.random(n).tolist() for n in n_cands], "c_eta": [rng.normal(size=n).tolist() for n in n_cands]}
    arrays = ak.Array({"jet_pt": [rng.random(n).tolist() for n in n_jets], "links": index, "keys": valid, **cands})
    got = gather_linked(arrays, LinkSpec("links", valid="keys"), ["c_pt", "c_eta"], "jet_pt", "f")
    expected = _reference_gather(index, valid, cands, n_jets)
    assert got.fields == ["jet_pt", "c_pt", "c_eta"]
    for name in cands:
        assert got[name].tolist() == expected[name]


def test_a_link_past_the_collection_names_the_entry_and_branch():
    arrays = ak.Array({"jet_pt": [[1.0], [2.0, 3.0]], "jidx": [[0], [1, 0]], "cidx": [[0], [0, 2]],
                       "c_pt": [[5.0], [6.0, 7.0]]})
    with pytest.raises(InputError, match=r"f: link branch 'cidx' points to index 2 at entry 11, but that event has "
                                         r"2 constituents"):
        gather_linked(arrays, LinkSpec("cidx", "jidx"), ["c_pt"], "jet_pt", "f", start=10)
    arrays["jidx"] = ak.Array([[0], [2, 0]])
    with pytest.raises(InputError, match=r"link branch 'jidx' points to index 2 at entry 1, but that event has 2 jets"):
        gather_linked(arrays, LinkSpec("cidx", "jidx"), ["c_pt"], "jet_pt", "f")


def test_links_need_per_event_jets_and_constituents(tmp_path):
    cfg = pfnano_config(tmp_path / "out", samples=("zprime",))
    cfg["input"]["layout"] = "jets"
    with pytest.raises(ConfigError, match=r"constituent_links: .* need record: jet and layout: events"):
        config_from_dict(cfg)
    cfg = pfnano_config(tmp_path / "out", samples=("zprime",))
    cfg["input"]["constituent_branches"].append("FatJetPFCands_jetIdx")
    with pytest.raises(ConfigError, match=r"read as links; list each branch once"):
        config_from_dict(cfg)
