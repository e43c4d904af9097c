"""Systematic variations in a run: each is a complete output set whose constituents differ from the nominal
ones exactly as intended, reproducibly for any number of workers, without touching the nominal set."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.core.errors import ConfigError
from tests.conftest import IN_MEMORY, TWO_PROCESSES, events_config, run_config
from tests.reference import read_output
from tests.test_pipeline import _digests

SCALE = {"name": "ces_up", "kind": "energy_scale", "size": 0.05, "recompute_jets": True}
EFFICIENCY = {"name": "eff", "kind": "efficiency", "size": 0.2}
RESOLUTION = {"name": "res", "kind": "energy_resolution", "size": 0.1}
SPLITS = ("train", "val", "test")


def _config(ntuples, out, variations=(SCALE, EFFICIENCY, RESOLUTION)):
    # raw constituents, no min_pt and enough slots that no jet is truncated: slots hold exactly the jet's
    # constituents, so nominal and varied sets compare constituent by constituent
    cfg = events_config(ntuples, out, **{"preprocess.constituents": "raw", "constituents.max": 200,
                                         "constituents.min_pt": 0.0})
    cfg["variations"] = [dict(v) for v in variations]
    return cfg


@pytest.fixture(scope="module")
def runs(ntuples, tmp_path_factory):
    out = tmp_path_factory.mktemp("variations") / "out"
    report = run_config(_config(ntuples, out), IN_MEMORY)
    return report, str(out)


def _by_jet(output) -> dict[tuple, tuple[dict, int]]:
    rows = {}
    for split in SPLITS:
        data = output[split]
        for i, source in enumerate(map(tuple, data["source"])):
            rows[source] = (data, i)
    return rows


def _constituent(data, i, name):
    names = list(data["_features"]["constituents"])
    return data["constituents"][i, :, names.index(name)][data["mask"][i]]


def test_every_variation_is_a_complete_accounted_output_set(runs):
    report, out = runs
    for name in ("ces_up", "eff", "res"):
        folder = os.path.join(out, "variations", name)
        assert {"train.h5", "val.h5", "test.h5", "summary.json", "shards"} <= set(os.listdir(folder))
        varied = report["variations"][name]
        total = varied["total"]
        assert total["jets"] == total["not_leading"] + total["cut"] + total["written"]
        assert total["events"] == report["total"]["events"]  # the same input, read once
        attrs = read_output(folder)["train"]["_attrs"]
        assert json.loads(attrs["variation"])["name"] == name


def test_energy_scale_multiplies_constituents_and_the_recomputed_jet_pt(runs, ntuples):
    _, out = runs
    nominal, varied = _by_jet(read_output(out)), _by_jet(read_output(os.path.join(out, "variations", "ces_up")))
    common = set(nominal) & set(varied)
    assert len(common) > 0.9 * len(nominal)
    for key in common:
        (a, i), (b, j) = nominal[key], varied[key]
        np.testing.assert_allclose(_constituent(b, j, "jet_constit_pt"), 1.05 * _constituent(a, i, "jet_constit_pt"),
                                   rtol=1e-6)
        np.testing.assert_array_equal(_constituent(b, j, "jet_constit_eta"), _constituent(a, i, "jet_constit_eta"))
    # the recomputed jet pT is the vector sum of the scaled constituents, read here straight from the ntuple
    data = read_output(os.path.join(out, "variations", "ces_up"))["train"]
    sources = json.loads(data["_attrs"]["source_files"])
    pt_index = list(data["_features"]["jets"]).index("jet_pt")
    cache = {}
    for (sample, file, entry, jet), jet_pt in zip(data["source"][:200], data["jets"][:200, pt_index]):
        path = sources[sample][file]
        if path not in cache:
            with uproot.open(path) as handle:
                cache[path] = handle[synthetic.EVENTS_TREE].arrays(["jet_constit_pt", "jet_constit_phi"])
        pt = np.asarray(cache[path]["jet_constit_pt"][entry][jet], np.float64) * 1.05
        phi = np.asarray(cache[path]["jet_constit_phi"][entry][jet], np.float64)
        expected = np.hypot((pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum()) * 0.001  # unit_scale
        assert jet_pt == pytest.approx(expected, rel=1e-5)


def test_efficiency_drops_a_fifth_of_the_constituents_and_keeps_the_jets(runs):
    _, out = runs
    nominal, varied = _by_jet(read_output(out)), _by_jet(read_output(os.path.join(out, "variations", "eff")))
    assert set(nominal) == set(varied)  # no jet-level change: the same jets pass
    before = after = 0
    for key, (a, i) in nominal.items():
        b, j = varied[key]
        kept, original = _constituent(b, j, "jet_constit_pt"), _constituent(a, i, "jet_constit_pt")
        assert set(kept.tolist()) <= set(original.tolist())  # a subset, values unchanged
        before, after = before + len(original), after + len(kept)
    fraction = after / before
    sigma = np.sqrt(0.8 * 0.2 / before)
    assert abs(fraction - 0.8) < 5 * sigma, (fraction, sigma)


def test_resolution_smears_with_the_configured_width(runs):
    _, out = runs
    nominal, varied = _by_jet(read_output(out)), _by_jet(read_output(os.path.join(out, "variations", "res")))
    ratios = []
    for key in set(nominal) & set(varied):
        (a, i), (b, j) = nominal[key], varied[key]
        # resolution keeps each constituent's eta; match constituents by eta (pT order may change)
        ea, eb = _constituent(a, i, "jet_constit_eta"), _constituent(b, j, "jet_constit_eta")
        pa, pb = _constituent(a, i, "jet_constit_pt"), _constituent(b, j, "jet_constit_pt")
        oa, ob = np.argsort(ea, kind="stable"), np.argsort(eb, kind="stable")
        np.testing.assert_array_equal(ea[oa], eb[ob])
        ratios.append(pb[ob] / pa[oa])
    ratios = np.concatenate(ratios)
    n = len(ratios)
    assert abs(ratios.mean() - 1) < 5 * 0.1 / np.sqrt(n)
    assert abs(ratios.std() - 0.1) < 5 * 0.1 / np.sqrt(2 * n)


def test_nominal_set_and_variations_are_identical_for_any_workers(runs, ntuples, tmp_path):
    _, out = runs
    alone = tmp_path / "alone"
    run_config(_config(ntuples, alone, variations=()), IN_MEMORY)
    nominal = {k: v for k, v in _digests(out).items() if not k.startswith("variations")}
    assert nominal == _digests(alone)  # the variations leave the nominal set alone
    two = tmp_path / "two"
    run_config(_config(ntuples, two, variations=(EFFICIENCY,)), TWO_PROCESSES)
    assert _digests(two / "variations" / "eff") == _digests(os.path.join(out, "variations", "eff"))


@pytest.mark.parametrize("variations, message", [
    ([{"name": "nominal", "kind": "efficiency", "size": 0.1}], "'nominal' is the unvaried set"),
    ([{**SCALE, "recompute_jets": "yes"}], r"variations\[0\].recompute_jets"),
    ([{"name": "x", "kind": "energy_scale", "size": 0.1}, {"name": "x", "kind": "efficiency", "size": 0.1}],
     "already used"),
    ([{"name": "x", "kind": "energy_scal", "size": 0.1}], r"variations\[0\].kind"),
])
def test_config_errors(ntuples, tmp_path, variations, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_config(ntuples, tmp_path / "x", variations))
