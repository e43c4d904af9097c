"""`root2hdf5 init` then `root2hdf5 run` on every real file in ../shared/data: the starter config runs, the training
split is not empty, and the rows are what uproot gives: for every event the leading jets by the config's
ranking branch, each row's jet features equal to the branch values at its `source` (entry, jet), unit-scaled
where the config scales."""
import logging

import awkward as ak
import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.config import load_config
from root2hdf5.pipelines.run import run
from root2hdf5.transforms.read.objects import lorentz_component
from tests.conftest import IN_MEMORY, shared_file
from tests.reference import read_output

FILES = [
    "uproot-HZZ.root", "uproot-HZZ-objects.root", "nanoAOD_2015_CMS_Open_Data_ttbar.root",
    "cmsopendata2015_ttbar_19980_NANOAOD_RNTupleImporter_rntuple_v1-0-0-1.root",
    "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root", "uproot-issue-123a.root", "uproot-issue513.root",
    "uproot-mc10events.root", "pfnano_zprime.root", "pfnano_dijet.root", "jets_events_zprime.root",
    "jets_events_dijet.root", "jets_flat_zprime.root", "jets_flat_dijet.root", "uproot-vectorVectorDouble.root",
]


def uproot_values(tree, name: str):
    """A branch as uproot reads it; a TLorentzVector component from its record; a list of one as the value."""
    if name in tree.keys():
        values = tree[name].array()
    else:
        base, component = name.rsplit(".", 1)
        values = lorentz_component(tree[base].array(), component)
    if values.ndim == 2 and name.startswith("Event/"):
        values = ak.flatten(values)
    return values


def _at(values, entry: np.ndarray, jet: np.ndarray | None) -> np.ndarray:
    """values[entry][jet] for every row, through the flat content."""
    if jet is None or values.ndim == 1:
        return np.asarray(ak.to_numpy(values))[entry]
    starts = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(values, axis=1)))])
    return np.asarray(ak.to_numpy(ak.flatten(values)))[starts[entry] + jet]


@pytest.mark.parametrize("name", FILES)
def test_init_then_run_gives_what_uproot_gives(name, tmp_path):
    path = shared_file(name)
    config = tmp_path / "starter.yaml"
    assert main(["init", str(path), "-o", str(config)]) == 0
    cfg = load_config(config, overrides={"output.dir": str(tmp_path / "out")})
    report = run(cfg, IN_MEMORY)
    assert report["splits"]["train"]["jets"] > 0
    output = read_output(str(tmp_path / "out"))
    source = np.concatenate([output[s]["source"] for s in output])
    jets = np.concatenate([output[s]["jets"] for s in output]) if cfg.input.jet_branches else None
    entry, index = source[:, 2], source[:, 3]
    tree = uproot.open(path)[cfg.samples[0].tree]
    inp = cfg.input
    if inp.layout == "events":  # the leading jets of every event, by the ranking branch (ntuple order without)
        reference = inp.leading_by or (inp.jet_branches or inp.constituent_branches)[0]
        ranking = uproot_values(tree, reference)
        if inp.leading_by is None:  # ntuple order
            order = ak.local_index(ak.num(ranking, axis=2) if ranking.ndim == 3 else ranking, axis=1)
        else:
            order = ak.argsort(ranking, axis=1, ascending=False, stable=True)
        order = order[:, :inp.leading_jets]
        expected = {(e, int(j)) for e, jets_of in enumerate(order.tolist()) for j in jets_of}
        assert set(zip(entry.tolist(), index.tolist())) == expected
        assert len(source) == len(expected)
    else:
        assert sorted(entry.tolist()) == list(range(tree.num_entries)) and not index.any()
    names = inp.jet_branches + inp.event_branches
    scaled = set(cfg.preprocess.scaled_branches or ())
    for k, branch in enumerate(names):
        values = _at(uproot_values(tree, branch), entry, index if inp.layout == "events" else None)
        factor = cfg.preprocess.unit_scale if branch in scaled else 1.0
        np.testing.assert_allclose(jets[:, k], (values.astype(np.float64) * factor).astype(np.float32), rtol=1e-6,
                                   err_msg=branch)
    if inp.constituent_branches and inp.constituent_links is None:
        counts = ak.num(uproot_values(tree, inp.constituent_branches[0]), axis=-1)
        n = _at(counts, entry, index if inp.layout == "events" else None)
        mask = np.concatenate([output[s]["mask"] for s in output])
        assert np.array_equal(mask.sum(axis=1), np.minimum(n, cfg.constituents.max))


def test_physlite_rows_are_the_leading_calibrated_jets_in_gev(tmp_path, caplog):
    """Seen 1 (PHYSLITE): 11 of 172 training jets were not the two leading ones and pT stayed in MeV."""
    path = shared_file("uproot-issue-123a.root")
    config = tmp_path / "starter.yaml"
    assert main(["init", str(path), "-o", str(config)]) == 0
    cfg = load_config(config, overrides={"output.dir": str(tmp_path / "out")})
    with caplog.at_level(logging.INFO, logger="root2hdf5"):
        run(cfg, IN_MEMORY)
    log = caplog.text
    assert "kinematic roles of the jets: pt=AnalysisJetsAuxDyn.pt, eta=AnalysisJetsAuxDyn.eta" in log
    assert "preprocess.unit_scale 0.001 applies to AnalysisJetsAuxDyn.pt, AnalysisJetsAuxDyn.m, " in log
    train = read_output(str(tmp_path / "out"))["train"]
    pt = uproot.open(path)["CollectionTree"]["AnalysisJetsAuxDyn.pt"].array()
    leading = ak.argsort(pt, axis=1, ascending=False, stable=True)[:, :2]
    expected = {(e, j) for e, js in enumerate(leading.tolist()) for j in js}
    rows = {(int(e), int(j)) for e, j in train["source"][:, 2:]}
    assert rows <= expected and len(rows) > 150
    column = train["_features"]["jets"].index("AnalysisJetsAuxDyn.pt")
    got = {(int(e), int(j)): v for (e, j), v in zip(train["source"][:, 2:], train["jets"][:, column])}
    for (e, j), v in got.items():
        assert v == pytest.approx(pt[e][j] * 1e-3, rel=1e-6)  # GeV
