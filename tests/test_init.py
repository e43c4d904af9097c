"""`root2hdf5 init`: the starter config detects the layout and branches, loads, and runs."""
from __future__ import annotations

import os

import awkward as ak
import numpy as np
import uproot

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.config import config_from_dict, load_config
from root2hdf5.pipelines.run import run
from root2hdf5.pipelines.tools.init_config import PEEK_ENTRIES, guess
from root2hdf5.transforms.physics.kinematics import infer_roles
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
    assert g.events == ["rho", "NPV", "actualInteractionsPerCrossing"]
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


# ------------------------------------------------------------------------- the formats physicists have


def test_delphes_event_number_is_a_real_one():
    """Seen 1 (Delphes): init picked `Event`, a TClonesArray size that is 1 in every entry."""
    g = guess(str(shared_file("uproot-issue513.root")))
    assert g.event_number == "Event/Event.Number"
    assert any("Event (1 distinct value in 10 entries)" in note for note in g.notes)
    assert g.jets[:3] == ["Jet/Jet.PT", "Jet/Jet.Eta", "Jet/Jet.Phi"] and "Jet/Jet.Mass" in g.jets
    assert not any("[" in name for name in g.jets + g.constituents)  # Tau[5], FracPt[5]: fixed-size arrays
    assert any("Jet/Jet.Constituents" in note and "TRefArray" in note for note in g.notes)


def test_physlite_tree_roles_and_units():
    """Seen 1 and 3 (PHYSLITE): the tree with most entries is `##Links`; the pT role went to the constituent
    scale; per-vertex NumTrkPt1000 and link records were proposed as constituents."""
    g = guess(str(shared_file("uproot-issue-123a.root")))
    assert g.tree == "CollectionTree" and "##Links" in g.metadata_trees and "POOLContainer" in g.metadata_trees
    assert infer_roles(g.jets)["pt"] == "AnalysisJetsAuxDyn.pt"
    assert g.event_number == "EventInfoAuxDyn.mcEventNumber"
    assert g.weight is None and any("EventInfoAuxDyn.mcEventWeights" in note for note in g.notes)
    assert g.constituents == [] and any("NumTrkPt1000" in note and "vertex" in note for note in g.notes)
    assert all(n.startswith("AnalysisJetsAuxDyn.") and "Link" not in n and "GhostTrack" not in n for n in g.jets)
    assert any("AnalysisLargeRJetsAuxDyn (kinematics only from JetConstitScaleMomentum_pt" in note for note in g.notes)
    assert g.jet_pt_median > 1000  # MeV


def test_physlite_unit_scale_reaches_dotted_names():
    """Seen 1 (PHYSLITE): unit_scale's suffix rules knew only `_pt`; `.pt` and `:m` stayed in MeV."""
    cfg = config_from_dict({"samples": [{"name": "p", "files": ["x.root"], "tree": "t"}],
                            "input": {"jet_branches": ["AnalysisJetsAuxDyn.pt", "Coll:m", "AnalysisJetsAuxDyn.eta",
                                                       "AK4CHS/AK4CHS.ptRaw"]},
                            "preprocess": {"unit_scale": 0.001}})
    assert cfg.preprocess.scaled_branches == ["AnalysisJetsAuxDyn.pt", "Coll:m"]


def test_nanoaod_with_isotracks_is_an_event_tree(tmp_path):
    """Seen 3 (NanoAOD): `IsoTrack_*` made init choose layout jets, with ~200 event scalars as jet branches."""
    path = tmp_path / "nano_isotrack.root"
    rng = np.random.default_rng(3)
    n_jet, n_trk = rng.integers(0, 6, 300), rng.integers(0, 4, 300)
    branches = {"event": np.arange(300, dtype=np.uint64) + 10**6, "run": np.ones(300, np.int32),
                "genWeight": rng.normal(1, 0.1, 300).astype(np.float32),
                **{f"HLT_path{i}": rng.random(300) > 0.5 for i in range(20)}}
    lists = {f"Jet_{k}": [rng.random(n).astype(np.float32) for n in n_jet] for k in ("pt", "eta", "phi", "mass")}
    lists.update({f"IsoTrack_{k}": [rng.random(n).astype(np.float32) for n in n_trk]
                  for k in ("pt", "eta", "phi", "dxy", "dz")})
    arrays = {**branches, **{k: ak.Array(v) for k, v in lists.items()}}
    with uproot.recreate(path) as handle:
        handle.mktree("Events", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in arrays.items()})
        handle["Events"].extend(arrays)
    g = guess(str(path))
    assert (g.layout, g.event_number, g.weight) == ("events", "event", "genWeight")
    assert g.jets == ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"] and g.constituents == []


def test_bacon_event_number_and_jets():
    """Seen 3 (BaconProd): layout jets without an event number, although Info/evtNum exists."""
    g = guess(str(shared_file("uproot-mc10events.root")))
    assert (g.layout, g.event_number, g.weight) == ("events", "Info/evtNum", "GenEvtInfo/weight")
    assert g.jets[:4] == ["AK4CHS/AK4CHS.pt", "AK4CHS/AK4CHS.eta", "AK4CHS/AK4CHS.phi", "AK4CHS/AK4CHS.mass"]
    assert not any("hltMatchBits" in n for n in g.jets) and "AK4CHS/AK4CHS.hltMatchBits" in g.skipped
    assert any("AK8CHS" in note and "CA15CHS" in note for note in g.notes)


def test_nanoaod_names_the_other_collections_and_weights():
    """Seen 3: FatJet/GenJet collections and vector weights were never mentioned."""
    g = guess(str(shared_file("nanoAOD_2015_CMS_Open_Data_ttbar.root")))
    collections = next(note for note in g.notes if note.startswith("other jet collections"))
    assert "FatJet" in collections and "GenJet (truth)" in collections
    assert any("PSWeight" in note and "list per event" in note for note in g.notes)


def test_tlorentzvector_jets_are_proposed_as_components():
    """Seen 2 (HZZ-objects): init proposed the record branch `jetp4`, which crashed the workers."""
    g = guess(str(shared_file("uproot-HZZ-objects.root")))
    assert g.jets == ["jetp4.pt", "jetp4.px", "jetp4.py", "jetp4.pz", "jetp4.E", "jetbtag", "jetid"]
    assert g.weight == "eventweight"


def test_pfnano_constituents_come_through_the_links():
    g = guess(str(shared_file("pfnano_zprime.root")))
    assert g.jets == ["FatJet_pt", "FatJet_eta", "FatJet_phi", "FatJet_mass"]
    assert g.constituents[:3] == ["PFCands_pt", "PFCands_eta", "PFCands_phi"]
    assert g.links == {"jet_index": "FatJetPFCands_jetIdx", "index": "FatJetPFCands_pFCandsIdx"}


def test_equal_trees_make_init_unsure_and_list_them(tmp_path, capsys):
    path = tmp_path / "two.root"
    with uproot.recreate(path) as handle:
        for name in ("a", "b"):
            handle.mktree(name, {"Jet_pt": "var * float32"})
            handle[name].extend({"Jet_pt": ak.Array([[1.0, 2.0], [3.0]])})
    assert main(["init", str(path), "-o", str(tmp_path / "c.yaml")]) == 0
    assert "unsure: tree 'a' was chosen among trees with as many entries: b; pass --tree" in capsys.readouterr().err
    assert "# other trees in the file: b (root2hdf5 init --tree NAME)" in (tmp_path / "c.yaml").read_text()


def test_init_reads_an_rntuple_in_a_few_requests(monkeypatch):
    """Seen 5: init made 1,314 separate per-field reads of the NanoAOD RNTuple (31 s)."""
    calls = []
    real = uproot.behaviors.RNTuple.HasFields.arrays
    monkeypatch.setattr(uproot.behaviors.RNTuple.HasFields, "arrays",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    g = guess(str(shared_file("cmsopendata2015_ttbar_19980_NANOAOD_RNTupleImporter_rntuple_v1-0-0-1.root")))
    assert g.event_number == "event" and g.jets[:3] == ["Jet_pt", "Jet_eta", "Jet_phi"]
    assert len(calls) <= 2


def test_the_written_files_entry_is_relative_to_the_config(tmp_path):
    path = shared_file("uproot-HZZ.root")
    (tmp_path / "configs").mkdir()
    assert main(["init", str(path), "-o", str(tmp_path / "configs" / "c.yaml")]) == 0
    cfg = load_config(tmp_path / "configs" / "c.yaml")
    assert os.path.samefile(cfg.samples[0].files[0], path)
