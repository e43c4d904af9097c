"""Object, record and oddly named branches of real files: read as numbers, or refused in one line before the run.

Expectations come from uproot directly (and, for TLorentzVector, from the same events stored as plain
branches in uproot-HZZ.root)."""
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.physics.kinematics import infer_roles
from root2hdf5.transforms.read.trees import BranchPlan, check_branches, open_tree, read_arrays
from tests.conftest import shared_file

MATHLV = str(Path(__file__).parent / "data" / "mathlv.root")  # written by ROOT 6.40 (see tests/data/README.md)


def _tree(name: str, tree: str):
    return open_tree(str(shared_file(name)), tree)


def test_tlorentzvector_components_equal_the_plain_branches():
    objects = _tree("uproot-HZZ-objects.root", "events")
    names = ["jetp4.px", "jetp4.py", "jetp4.pz", "jetp4.E"]
    got = read_arrays(objects, names)
    plain = uproot.open(shared_file("uproot-HZZ.root"))["events"].arrays(["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E"])
    for name, expected in zip(names, ["Jet_Px", "Jet_Py", "Jet_Pz", "Jet_E"]):
        assert ak.all(ak.num(got[name]) == ak.num(plain[expected]))
        np.testing.assert_allclose(ak.flatten(got[name]), ak.flatten(plain[expected]), rtol=1e-6)
    assert infer_roles(names) == {"px": "jetp4.px", "py": "jetp4.py", "pz": "jetp4.pz", "e": "jetp4.E"}


def test_tlorentzvector_pt_eta_phi_m_follow_tlorentzvector():
    objects = _tree("uproot-HZZ-objects.root", "events")
    got = read_arrays(objects, ["jetp4.pt", "jetp4.eta", "jetp4.phi", "jetp4.m"], entry_stop=300)
    p4 = uproot.open(shared_file("uproot-HZZ-objects.root"))["events"]["jetp4"].array(entry_stop=300)
    px, py, pz, e = (ak.to_numpy(ak.flatten(x)) for x in (p4.fP.fX, p4.fP.fY, p4.fP.fZ, p4.fE))
    pt = np.sqrt(px**2 + py**2)
    np.testing.assert_allclose(ak.flatten(got["jetp4.pt"]), pt, rtol=1e-12)
    np.testing.assert_allclose(ak.flatten(got["jetp4.eta"]), np.arcsinh(pz / pt), rtol=1e-12)
    np.testing.assert_allclose(ak.flatten(got["jetp4.phi"]), np.arctan2(py, px), rtol=1e-12)
    m2 = e**2 - px**2 - py**2 - pz**2
    np.testing.assert_allclose(ak.flatten(got["jetp4.m"]), np.sign(m2) * np.sqrt(np.abs(m2)), rtol=1e-9)


def test_a_tlorentzvector_branch_is_refused_naming_its_components():
    """Seen 2: `jetp4` went through init into the run and crashed the workers with 'RecordArray has no
    attribute data'; now the check names the branch, its type and the components to list."""
    plan = BranchPlan("events", ("jetp4", "jetbtag"))
    with pytest.raises(InputError, match=r"jet branch 'jetp4' is std::vector<TLorentzVector> .* list its "
                                         r"components instead: jetp4.px, jetp4.py, jetp4.pz, jetp4.E"):
        check_branches(_tree("uproot-HZZ-objects.root", "events"), plan, "hzz")


def test_element_links_are_refused_naming_what_to_read():
    tree = _tree("uproot-issue-123a.root", "CollectionTree")
    with pytest.raises(InputError, match=r"'AnalysisJetsAuxDyn.btaggingLink' is vector<ElementLink.* split "
                                         r"object; list its leaf branches instead: AnalysisJetsAuxDyn.btaggingLink/"):
        check_branches(tree, BranchPlan("events", ("AnalysisJetsAuxDyn.pt", "AnalysisJetsAuxDyn.btaggingLink")), "p")
    with pytest.raises(InputError, match=r"'AnalysisJetsAuxDyn.GhostTrack' is .*ElementLink.* a record, not "
                                         r"numbers; read a numeric field instead: AnalysisJetsAuxDyn.GhostTrack"
                                         r".m_persKey, AnalysisJetsAuxDyn.GhostTrack.m_persIndex"):
        check_branches(tree, BranchPlan("events", (), ("AnalysisJetsAuxDyn.GhostTrack",)), "p")


def test_a_record_field_reads_as_numbers():
    tree = _tree("uproot-issue-123a.root", "CollectionTree")
    check_branches(tree, BranchPlan("events", (), ("AnalysisJetsAuxDyn.GhostTrack.m_persIndex",)), "p")
    got = read_arrays(tree, ["AnalysisJetsAuxDyn.GhostTrack.m_persIndex"], entry_stop=20)
    raw = uproot.open(shared_file("uproot-issue-123a.root"))["CollectionTree"][
        "AnalysisJetsAuxDyn.GhostTrack"].array(entry_stop=20)
    assert got["AnalysisJetsAuxDyn.GhostTrack.m_persIndex"].tolist() == raw.m_persIndex.tolist()


@pytest.mark.parametrize("file, tree, branch, message", [
    ("uproot-issue513.root", "Delphes", "Jet/Jet.Constituents", r"TRefArray.* references"),
    ("uproot-mc10events.root", "Events", "AK4CHS/AK4CHS.hltMatchBits", r"bitset.*cannot read std::bitset"),
])
def test_references_and_bitsets_are_refused_with_the_reason(file, tree, branch, message):
    with pytest.raises(InputError, match=rf"jet branch '{branch}' is .*{message}"):
        check_branches(_tree(file, tree), BranchPlan("events", (branch,)), file)


def test_split_math_lorentzvector_leaves_have_roles_and_the_unsplit_one_is_refused():
    tree = open_tree(MATHLV, "t")
    leaves = [f"jets_ptetaphim/jets_ptetaphim.fCoordinates.f{c}" for c in ("Pt", "Eta", "Phi", "M")]
    check_branches(tree, BranchPlan("events", tuple(leaves)), MATHLV)
    assert infer_roles(leaves) == dict(zip(("pt", "eta", "phi", "m"), leaves))
    cartesian = [f"jets_pxpypze/jets_pxpypze.fCoordinates.f{c}" for c in "XYZT"]
    assert infer_roles(cartesian) == dict(zip(("px", "py", "pz", "e"), cartesian))
    np.testing.assert_allclose(ak.flatten(read_arrays(tree, leaves)[leaves[0]]),
                               ak.flatten(uproot.open(MATHLV)["t"][leaves[0]].array()))
    with pytest.raises(InputError, match=r"unsplit ROOT::Math::LorentzVector.*split level 99"):
        check_branches(tree, BranchPlan("events", ("jets_unsplit",)), MATHLV)


def test_names_with_brackets_are_read_as_exact_keys():
    """uproot's filter_name takes `[5]` as a glob class and returns nothing, silently; the read does not."""
    tree = _tree("uproot-issue513.root", "Delphes")
    names = ["Jet/Jet.Tau[5]", "Jet/Jet.PT", "EFlowPhoton/EFlowPhoton.Edges[4]"]
    got = read_arrays(tree, names)
    raw = uproot.open(shared_file("uproot-issue513.root"))["Delphes"]
    assert got.fields == names
    for name in names:
        assert got[name].tolist() == raw[name].array().tolist()


def test_an_event_value_in_a_list_of_one_is_read_as_the_value():
    """Delphes' Event/Event.Number holds [[0], [1], ...]; as input.event_number it is one value per event."""
    from root2hdf5.transforms.read.trees import one_value_per_entry

    tree = _tree("uproot-issue513.root", "Delphes")
    plan = BranchPlan("events", ("Jet/Jet.PT",), event_number="Event/Event.Number")
    check_branches(tree, plan, "delphes")
    values = one_value_per_entry(read_arrays(tree, plan.to_read()), plan.one_value(), "delphes")
    expected = uproot.open(shared_file("uproot-issue513.root"))["Delphes"]["Event/Event.Number"].array()
    assert values["Event/Event.Number"].tolist() == ak.flatten(expected).tolist()
    with pytest.raises(InputError, match=r"branch 'Jet/Jet.PT' must hold one value per entry, but entry 0 holds"):
        one_value_per_entry(read_arrays(tree, ["Jet/Jet.PT"]), ["Jet/Jet.PT"], "delphes")


def test_quoted_names_in_variables_categories_and_weights(tmp_path):
    """Seen 4: names with `/` and `.` could not be used in selections or expressions (invalid syntax,
    'uses Attribute'); here an event-level set of the Delphes file uses them everywhere."""
    from tests.conftest import IN_MEMORY, run_config
    from tests.reference import read_output

    path = shared_file("uproot-issue513.root")
    categories = [{"name": "btag", "label": 1, "selection": "count(`Jet/Jet.BTag` > 0) >= 1"},
                  {"name": "light", "label": 0, "selection": "count(get('Jet/Jet.BTag') > 0) == 0"}]
    cfg = {"samples": [{"name": "d", "files": [str(path)], "tree": "Delphes", "categories": categories}],
           "record": "event",
           "input": {"event_number": "Event/Event.Number", "selection": "`Jet/Jet.PT`[0] > 30"},
           "events": {"variables": ["`Jet/Jet.PT`[0]", "lead_eta = abs(`Jet/Jet.Eta`[0])",
                                    "ht = sum(`Jet/Jet.PT`)", "`Event/Event.Number`"]},
           "weights": {"branch": "`Event/Event.Weight`"},
           "split": {"train": 1.0, "val": 0.0, "test": 0.0}, "shuffle": {"shards": 1},
           "output": {"dir": str(tmp_path / "out")}}
    run_config(cfg, IN_MEMORY)
    train = read_output(str(tmp_path / "out"))["train"]
    a = uproot.open(path)["Delphes"].arrays(["Jet/Jet.PT", "Jet/Jet.Eta", "Jet/Jet.BTag", "Event/Event.Weight"])
    pt, eta, btag = a["Jet/Jet.PT"], a["Jet/Jet.Eta"], a["Jet/Jet.BTag"]
    lead = ak.to_numpy(ak.fill_none(ak.firsts(pt), -1))
    selected = np.flatnonzero(lead > 30)
    assert sorted(train["source"][:, 2].tolist()) == selected.tolist()
    assert train["_features"]["events"] == ["Jet/Jet.PT[0]", "lead_eta", "ht", "Event/Event.Number"]
    for row, entry in enumerate(train["source"][:, 2]):
        assert train["events"][row, 0] == pytest.approx(lead[entry])
        assert train["events"][row, 1] == pytest.approx(abs(eta[entry][0]))
        assert train["events"][row, 2] == pytest.approx(float(ak.sum(pt[entry])), rel=1e-6)
        assert train["events"][row, 3] == entry  # Event.Number counts the entries in this file
        assert train["labels"][row] == int(ak.sum(btag[entry] > 0) >= 1)
        assert train["weights"][row] == pytest.approx(a["Event/Event.Weight"][entry][0])
