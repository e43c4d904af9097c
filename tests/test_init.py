"""`root2hdf5 init`: the starter config detects the layout and branches, loads, and runs."""
from __future__ import annotations

import awkward as ak
import numpy as np
import uproot

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.config import load_config
from root2hdf5.pipelines.run import run
from root2hdf5.pipelines.tools.init_config import PEEK_ENTRIES, guess
from tests.conftest import IN_MEMORY, shared_file

CONSTITUENT_KINEMATICS = ("pt", "eta", "phi")


def _by_depth(path: str, tree: str) -> dict[int, set[str]]:
    """Branch names by jagged depth, straight from uproot (the independent view)."""
    with uproot.open(path) as handle:
        arrays = handle[tree].arrays(entry_stop=50)
    depths: dict[int, set[str]] = {}
    for name in arrays.fields:
        depths.setdefault(arrays[name].ndim, set()).add(name)
    return depths


def _expected_slots(path: str, tree: str, branch: str) -> int:
    with uproot.open(path) as handle:
        values = handle[tree][branch].array(entry_stop=PEEK_ENTRIES)
    counts = ak.to_numpy(ak.flatten(ak.num(values, axis=-1), axis=None))
    return max(10, int(np.ceil(np.percentile(counts, 95) / 10) * 10))


def _write_and_run(path: str, tmp_path, extra: list[str] = ()) -> dict:
    config = tmp_path / "starter.yaml"
    assert main(["init", path, "-o", str(config), *extra]) == 0
    cfg = load_config(str(config), overrides={"output.dir": str(tmp_path / "out")})
    return cfg, run(cfg, IN_MEMORY)


def test_events_layout_is_detected_and_the_config_runs(ntuples, tmp_path):
    path = ntuples["events_sig_0"]
    from root2hdf5.pipelines.tools import synthetic

    depths = _by_depth(path, synthetic.EVENTS_TREE)
    g = guess(path)
    assert g.tree == synthetic.EVENTS_TREE and g.layout == "events"
    assert set(g.constituents) == depths[3]  # every vector<vector<float>> branch
    assert set(g.jets) | set(g.truth) <= depths[2] and "jet_pt" in g.jets
    assert g.event_number == "eventNumber"
    cfg, report = _write_and_run(path, tmp_path)
    assert cfg.constituents.max == _expected_slots(path, synthetic.EVENTS_TREE, "jet_constit_pt")
    assert cfg.constituents.sort_by == "jet_constit_pt"
    with uproot.open(path) as handle:
        events = handle[synthetic.EVENTS_TREE].num_entries
    assert report["total"]["events"] == events
    assert report["total"]["written"] > 0


def test_jets_layout_is_detected_and_the_config_runs(ntuples, tmp_path):
    path = ntuples["jets_sig"]
    from root2hdf5.pipelines.tools import synthetic

    depths = _by_depth(path, synthetic.JETS_TREE)
    g = guess(path)
    assert g.layout == "jets"
    assert set(g.constituents) == depths[2]
    assert "fjet_pt" in g.jets and not set(g.jets) & depths[2]
    cfg, report = _write_and_run(path, tmp_path)
    with uproot.open(path) as handle:
        entries = handle[synthetic.JETS_TREE].num_entries
    assert report["total"]["jets"] == entries  # one jet per entry, none lost
    assert cfg.input.layout == "jets"


def test_real_per_event_jets(tmp_path):
    path = str(shared_file("jets_events_zprime.root"))
    g = guess(path)
    assert (g.tree, g.layout, g.event_number, g.weight) == \
        ("IsolatedJet_tree", "events", "eventNumber", "mcEventWeight")
    assert g.constituents == ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"]
    assert g.jets == ["jet_pt", "jet_eta", "jet_phi", "jet_E", "jet_m"]
    assert g.truth == ["jet_true_pt", "jet_true_eta", "jet_true_phi", "jet_true_e"]
    assert g.jet_pt_median > 1000  # MeV: the config scales to GeV
    cfg, report = _write_and_run(path, tmp_path)
    assert cfg.preprocess.unit_scale == 0.001 and cfg.weights.branch == "mcEventWeight"
    assert report["total"]["events"] == 5000


def test_real_per_jet_ntuple():
    g = guess(str(shared_file("jets_flat_dijet.root")))
    assert (g.layout, g.event_number) == ("jets", "EventInfo_mcEventNumber")
    assert g.constituents == ["fjet_clus_pt", "fjet_clus_eta", "fjet_clus_phi", "fjet_clus_E"]
    assert g.jets[:5] == ["fjet_pt", "fjet_eta", "fjet_phi", "fjet_m", "fjet_E"]
    assert g.truth == ["fjet_truthJet_pt", "fjet_truthJet_m"]


def test_real_event_trees_without_constituents(tmp_path):
    nano = guess(str(shared_file("nanoAOD_2015_CMS_Open_Data_ttbar.root")))
    assert (nano.tree, nano.layout, nano.event_number, nano.weight) == ("Events", "events", "event", "genWeight")
    assert nano.constituents == [] and "Jet_pt" in nano.jets and all(n.startswith("Jet_") for n in nano.jets)
    hzz = guess(str(shared_file("uproot-HZZ.root")))
    assert (hzz.layout, hzz.event_number, hzz.weight) == ("events", None, "EventWeight")
    assert hzz.jets == ["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E", "Jet_btag", "Jet_ID"]


def test_cli_refuses_to_overwrite_and_names_bad_input(ntuples, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("mine")
    assert main(["init", ntuples["jets_sig"], "-o", str(config)]) == 2
    assert "--force" in capsys.readouterr().err and config.read_text() == "mine"
    assert main(["init", str(tmp_path / "nope.root")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["init", ntuples["jets_sig"], "--tree", "nope"]) == 2
    assert "no tree 'nope'" in capsys.readouterr().err
    flat = tmp_path / "scalars.root"
    with uproot.recreate(flat) as handle:
        handle["t"] = {"x": np.arange(5.0)}
    assert main(["init", str(flat)]) == 2
    assert "no list branches" in capsys.readouterr().err
