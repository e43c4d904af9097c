"""The real ROOT files in ../shared/data (written by ROOT, not by us); skipped when absent."""
import awkward as ak
import numpy as np
import pytest
import uproot

from tests.conftest import IN_MEMORY, run_config, shared_file
from tests.reference import read_output, reference_jets
from tests.test_pipeline import _by_source, _check_against_reference

SPLITS = ("train", "val", "test")


def pythia_events_config(out):
    return {
        "samples": [
            {"name": "zprime", "files": [str(shared_file("jets_events_zprime.root"))], "tree": "IsolatedJet_tree",
             "label": 1},
            {"name": "dijet", "files": [str(shared_file("jets_events_dijet.root"))], "tree": "IsolatedJet_tree",
             "label": 0},
        ],
        "input": {"layout": "events", "leading_jets": 2, "event_number": "eventNumber",
                  "jet_branches": ["jet_pt", "jet_eta", "jet_phi", "jet_E"],
                  "constituent_branches": ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"],
                  "event_branches": ["rho", "NPV"], "selection": "jet_pt > 600e3 & abs(jet_eta) < 1.5",
                  "step_size": 1500},
        "constituents": {"max": 60, "min_pt": 1000.0},
        "preprocess": {"constituents": "cartesian", "jets": "raw", "unit_scale": 0.001},
        "split": {"train": 0.8, "val": 0.1, "test": 0.1},
        "shuffle": {"seed": 42, "shards": 6},
        "output": {"dir": str(out)},
    }


def test_pythia_per_event_ttree_with_vector_of_vectors(tmp_path):
    """ROOT-written TTrees: jets as vector<float>, constituents as vector<vector<float>>, not pT-ordered."""
    cfg = pythia_events_config(tmp_path / "out")
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    expected = reference_jets(cfg, lambda j: j["jet_pt"] > 600e3 and abs(j["jet_eta"]) < 1.5)
    assert report["total"]["events"] == 10000 and len(expected) > 1000
    _check_against_reference(cfg, output, expected)
    # constituents come out sorted by pT although the file stores them in random order
    train = output["train"]
    pt = np.hypot(train["constituents"][..., 0], train["constituents"][..., 1])
    assert np.all(np.diff(np.where(train["mask"], pt, -1), axis=1) <= 1e-3)


def test_pythia_per_jet_ttree(tmp_path):
    cfg = {
        "samples": [
            {"name": "zprime", "files": [str(shared_file("jets_flat_zprime.root"))],
             "tree": "FlatSubstructureJetTree", "label": 1},
            {"name": "dijet", "files": [str(shared_file("jets_flat_dijet.root"))],
             "tree": "FlatSubstructureJetTree", "label": 0},
        ],
        "input": {"layout": "jets", "event_number": "EventInfo_mcEventNumber",
                  "jet_branches": ["fjet_pt", "fjet_eta", "fjet_phi", "fjet_m"],
                  "constituent_branches": ["fjet_clus_pt", "fjet_clus_eta", "fjet_clus_phi", "fjet_clus_E"],
                  "event_branches": ["EventInfo_mcEventWeight"], "selection": "fjet_pt > 700e3", "step_size": 3000},
        "constituents": {"max": 50},
        "preprocess": {"constituents": "raw", "jets": "cartesian"},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "shuffle": {"seed": 1, "shards": 4},
        "output": {"dir": str(tmp_path / "out")},
    }
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    expected = reference_jets(cfg, lambda j: j["fjet_pt"] > 700e3)
    assert report["total"]["jets"] == 9736 + 9914
    _check_against_reference(cfg, output, expected)


def test_hzz_jets_without_constituents(tmp_path):
    path = shared_file("uproot-HZZ.root")
    cfg = {"samples": [{"name": "hzz", "files": [str(path)], "tree": "events", "label": 3}],
           "input": {"layout": "events", "leading_jets": 2, "jet_branches": ["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E"],
                     "event_branches": ["EventWeight", "NPrimaryVertices"], "selection": "Jet_E > 40",
                     "step_size": 800},
           "shuffle": {"shards": 3}, "output": {"dir": str(tmp_path / "out")}}
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    arrays = uproot.open(path)["events"].arrays(["Jet_E", "Jet_Px", "EventWeight"])
    lead_e = arrays.Jet_E[:, :2].tolist()  # no pT branch: the ntuple's own order decides the leading jets
    expected = {(0, 0, e, j) for e in range(len(lead_e)) for j in range(len(lead_e[e])) if lead_e[e][j] > 40}
    assert set(_by_source(output)) == expected
    assert report["total"]["jets"] == int(ak.sum(ak.num(arrays.Jet_E)))
    assert "constituents" not in output["train"] and output["train"]["jets"].shape[1] == 6
    assert set(output["train"]["labels"]) == {3} and np.all(output["train"]["event_number"] == -1)
    rows = _by_source(output)
    for (s, f, e, j), (split, i) in list(rows.items())[:200]:
        assert output[split]["jets"][i][0] == pytest.approx(arrays.Jet_Px[e][j])
        assert output[split]["jets"][i][4] == pytest.approx(arrays.EventWeight[e])


def test_cms_nanoaod_jets(tmp_path):
    path = shared_file("nanoAOD_2015_CMS_Open_Data_ttbar.root")
    cfg = {"samples": [{"name": "ttbar", "files": [str(path)], "tree": "Events", "label": 1}],
           "input": {"layout": "events", "leading_jets": 4, "event_number": "event",
                     "jet_branches": ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepB"],
                     "event_branches": ["run", "luminosityBlock"], "selection": "Jet_pt > 30 & abs(Jet_eta) < 2.4",
                     "step_size": 64},
           "preprocess": {"jets": "cartesian"},
           "output": {"dir": str(tmp_path / "out")}}
    run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    arrays = uproot.open(path)["Events"].arrays(["Jet_pt", "Jet_eta", "event"])
    expected = set()
    for e in range(len(arrays)):
        pts = arrays.Jet_pt[e].tolist()
        for j in sorted(range(len(pts)), key=lambda k: -pts[k])[:4]:
            if pts[j] > 30 and abs(arrays.Jet_eta[e][j]) < 2.4:
                expected.add((0, 0, e, j))
    assert set(_by_source(output)) == expected
    assert output["train"]["_features"]["jets"] == ["Jet_px", "Jet_py", "Jet_pz", "Jet_E", "Jet_mass",
                                                     "Jet_btagDeepB", "run", "luminosityBlock"]


def test_vector_of_vector_double_with_empty_lists(tmp_path):
    """Outer lists as jets, inner lists as constituents; empty events and empty jets included."""
    path = shared_file("uproot-vectorVectorDouble.root")
    cfg = {"samples": [{"name": "v", "files": [str(path)], "tree": "t"}],
           "input": {"layout": "events", "leading_jets": 5, "constituent_branches": ["x"]},
           "constituents": {"max": 2}, "split": {"train": 1.0, "val": 0.0, "test": 0.0},
           "shuffle": {"shards": 1}, "output": {"dir": str(tmp_path / "out")}}
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    rows = _by_source(output)
    x = uproot.open(path)["t"]["x"].array().tolist()
    assert set(rows) == {(0, 0, e, j) for e in range(len(x)) for j in range(len(x[e]))}
    for (s, f, e, j), (split, i) in rows.items():
        values = sorted(x[e][j], reverse=True)[:2]
        assert output[split]["constituents"][i, :, 0].tolist() == values + [0.0] * (2 - len(values))
        assert output[split]["mask"][i].tolist() == [True] * len(values) + [False] * (2 - len(values))
    assert report["total"]["events"] == 5 and list(output) == ["train"]


def test_pythia_reco_and_truth_collections_with_tagger_inputs(tmp_path):
    """The calibration layout on ROOT-written files (jet_E vs jet_true_e naming), with the tagger preset."""
    cfg = pythia_events_config(tmp_path / "out")
    cfg["samples"] = cfg["samples"][:1]
    cfg["jet_collections"] = {"fields": ["pt", "eta", "phi", "e"], "preprocess": ["raw"],
                              "collections": {"reco": ["jet_pt", "jet_eta", "jet_phi", "jet_E"],
                                              "truth": ["jet_true_pt", "jet_true_eta", "jet_true_phi", "jet_true_e"]}}
    cfg["preprocess"]["constituents"] = ["lognorm_angular"]
    run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    train = output["train"]
    assert train["_features"]["constituents"] == ["jet_constit_log_pt_over_sumpt", "jet_constit_log_e_over_sume",
                                                  "jet_constit_eta_rot", "jet_constit_phi_rot", "jet_constit_dr"]
    assert np.all(np.isfinite(train["constituents"])) and np.all(train["constituents"][~train["mask"]] == 0)
    arrays = uproot.open(cfg["samples"][0]["files"][0])["IsolatedJet_tree"].arrays(
        ["jet_pt", "jet_true_pt", "jet_true_e"])
    for i, (s, f, e, j) in enumerate(train["source"][:300]):
        assert train["jet_collections"][i, 0, 0] == pytest.approx(arrays.jet_pt[e][j] * 1e-3, rel=1e-6)
        assert train["jet_collections"][i, 1, 0] == pytest.approx(arrays.jet_true_pt[e][j] * 1e-3, rel=1e-6)
        assert train["jet_collections"][i, 1, 3] == pytest.approx(arrays.jet_true_e[e][j] * 1e-3, rel=1e-6)
