"""Training-set composition: categories, weights, limits (unit and end to end), jet collections."""
import math
import os
from collections import Counter

import numpy as np
import pytest
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.exact import exact_sum
from root2hdf5.transforms.core.records import RangeStats
from root2hdf5.transforms.stats.composition import Composition, apply_quotas, apportion, make_plan, plan_quotas
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import expand, read_output
from tests.test_pipeline import _by_source

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("total, weights", [(10, [1, 1, 1]), (7, [5, 0, 2, 9]), (0, [3, 4]), (5, [1]),
                                            (100, [33, 33, 34])])
def test_apportion(total, weights):
    parts = apportion(total, weights)
    assert sum(parts) == (total if sum(weights) else 0)
    for p, w in zip(parts, weights):
        assert abs(p - total * w / sum(weights)) < 1
        assert p <= math.ceil(total * w / sum(weights))


def random_cells(seed=0, samples=3, labels=(0, 1), shards=4):
    rng = np.random.default_rng(seed)
    cells = {}
    for s in range(samples):
        for c in labels:
            for p in range(3):
                for k in range(shards if p == 0 else 1):
                    cells[(s, c, p, k)] = int(rng.integers(0, 500) * (1 if c == s % 2 or s == 2 else 0.2))
    return cells


def totals(quotas, key):
    out = Counter()
    for cell, q in quotas.items():
        out[key(cell)] += q
    return out


def test_quotas_never_exceed_what_a_cell_holds():
    cells = random_cells()
    for comp in (Composition(caps=(100, None, 50)), Composition(balance=True), Composition(total_jets=900),
                 Composition(caps=(100, None, 50), balance=True, total_jets=400)):
        quotas = plan_quotas(cells, comp)
        assert set(quotas) == set(cells)
        assert all(0 <= quotas[c] <= n for c, n in cells.items())


def test_caps_are_exact_without_balance():
    cells = random_cells(1)
    quotas = plan_quotas(cells, Composition(caps=(100, None, 7)))
    by_sample = totals(quotas, lambda c: c[0])
    held = totals(cells, lambda c: c[0])
    assert by_sample[0] == 100 and by_sample[2] == 7 and by_sample[1] == held[1]


def test_balance_gives_exactly_equal_classes_per_split():
    cells = random_cells(2)
    quotas = plan_quotas(cells, Composition(balance=True))
    per = totals(quotas, lambda c: (c[2], c[1]))
    held = totals(cells, lambda c: (c[2], c[1]))
    for p in range(3):
        assert per[(p, 0)] == per[(p, 1)] == min(held[(p, 0)], held[(p, 1)])


def test_total_is_met_within_rounding_and_proportional():
    cells = random_cells(3)
    quotas = plan_quotas(cells, Composition(total_jets=1000))
    assert abs(sum(quotas.values()) - 1000) <= 3
    fraction = 1000 / sum(cells.values())
    for s, held in totals(cells, lambda c: c[0]).items():
        assert abs(totals(quotas, lambda c: c[0])[s] - fraction * held) <= 1.5


def test_apply_quotas_keeps_the_first_of_each_group():
    source = np.array([[0, 0, i, 0] for i in range(6)] + [[1, 0, i, 0] for i in range(4)])
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    keep = apply_quotas({"source": source, "labels": labels}, 0, 2, {(0, 0, 0, 2): 2, (0, 1, 0, 2): 1, (1, 0, 0, 2): 3})
    assert keep.tolist() == [True, True, True, False, False, False, True, True, True, False]


def test_plan_weight_factors():
    weights = np.random.default_rng(0).normal(1, 0.3, 1000).astype(np.float32)
    stats = [RangeStats(0, 0, {"sum_weights": exact_sum(weights[:300])}),
             RangeStats(0, 1, {"sum_weights": exact_sum(weights[300:])}),
             RangeStats(1, 0, {})]
    comp = Composition(factors=(6.0, 0.5, 2.0), sum_of_weights=("auto", 4.0, None), sample_names=("a", "b", "c"))
    plan = make_plan(stats, comp)
    assert plan.sum_of_weights[0] == math.fsum(weights.astype(float))
    assert plan.factors == [6.0 / plan.sum_of_weights[0], 0.125, 2.0] and plan.quotas is None
    with pytest.raises(InputError, match="sample 'b': the sum of weights is 0.0"):
        make_plan([RangeStats(1, 0, {"sum_weights": 0})], Composition(factors=(1.0, 1.0), sum_of_weights=(None, "auto"),
                                                                       sample_names=("a", "b")))


# ------------------------------------------------------------------------------------- end to end


def truth_labels(cfg):
    """(sample, file, entry, jet index) -> truth label, read independently from the files."""
    out = {}
    for s_i, sample in enumerate(cfg["samples"]):
        for f_i, path in enumerate(p for entry in sample["files"] for p in expand(entry)):
            labels = uproot.open(path)[sample["tree"]]["jet_truth_label"].array().tolist()
            for e, row in enumerate(labels):
                for j, label in enumerate(row):
                    out[(s_i, f_i, e, j)] = label
    return out


def test_categories_assign_labels_and_count_the_rest(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][0].pop("label")
    cfg["samples"][0]["categories"] = [{"name": "top", "label": 1, "selection": "jet_truth_label == 6"}]
    cfg["samples"][1].pop("label")
    cfg["samples"][1]["categories"] = [{"name": "gluon", "label": 2, "selection": "jet_truth_label == 21"},
                                       {"name": "light", "label": 3, "selection": "jet_truth_label == 1 & NPV >= 0"}]
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    truth = truth_labels(cfg)
    expected_label = {0: {6: 1}, 1: {21: 2, 1: 3}}
    rows = _by_source(output)
    for key, (split, i) in rows.items():
        assert output[split]["labels"][i] == expected_label[key[0]][truth[key]]
    assert report["samples"]["sig"]["uncategorized"] > 0 and report["samples"]["bkg"]["uncategorized"] == 0
    written_sig = sum(report["samples"]["sig"]["written"].values())
    assert written_sig == sum(1 for k in rows if k[0] == 0)
    labels = Counter(int(output[s]["labels"][i]) for s, i in rows.values())
    assert {l: n for l, n in labels.items()} == {
        int(l): sum(report["splits"][s]["labels"].get(l, 0) for s in SPLITS) for l in ("1", "2", "3")}


def test_overlapping_categories_are_an_error(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][1].pop("label")
    cfg["samples"][1]["categories"] = [{"name": "a", "label": 0, "selection": "jet_pt > 0"},
                                       {"name": "b", "label": 1, "selection": "jet_truth_label == 1"}]
    with pytest.raises(InputError, match=r"bkg_0.root: entry \d+ jet \d matches categories \['a', 'b'\]"):
        run_config(cfg, IN_MEMORY)
    assert not os.path.exists(tmp_path / "out")


def test_weights_branch_cross_section_and_auto_sum_of_weights(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["weights"] = {"branch": "mcEventWeight", "luminosity": 3.0}
    cfg["samples"][0].update(cross_section=2.0, sum_of_weights="auto")
    cfg["samples"][1].update(weight=0.5, sum_of_weights=1000)
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    event_weight, sumw = {}, {0: [], 1: []}
    for s_i, sample in enumerate(cfg["samples"]):
        for f_i, path in enumerate(p for entry in sample["files"] for p in expand(entry)):
            w = uproot.open(path)[sample["tree"]]["mcEventWeight"].array().to_numpy()
            sumw[s_i] += w.astype(float).tolist()
            for e, value in enumerate(w):
                event_weight[(s_i, f_i, e)] = float(value)
    factor = {0: 2.0 * 3.0 / math.fsum(sumw[0]), 1: 0.5 / 1000}
    assert report["samples"]["sig"]["sum_of_weights"] == math.fsum(sumw[0])
    for key, (split, i) in _by_source(output).items():
        expected = np.float32(np.float32(event_weight[key[:3]]) * factor[key[0]])
        assert output[split]["weights"][i] == pytest.approx(expected, rel=1e-6)


def test_balance_and_caps_end_to_end(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "bal", **{"limits": {"balance": True}})
    report = run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    for split in SPLITS:
        counts = Counter(output[split]["labels"].tolist())
        assert counts[0] == counts[1] > 0, split
    assert report["total"]["limited"] > 0
    assert report["total"]["written"] + report["total"]["limited"] + report["total"]["cut"] + \
        report["total"]["not_leading"] == report["total"]["jets"]
    # the kept jets are a subset of the unlimited run's jets
    full = events_config(ntuples, tmp_path / "full")
    run_config(full, IN_MEMORY)
    assert set(_by_source(output)) < set(_by_source(read_output(full["output"]["dir"])))

    capped = events_config(ntuples, tmp_path / "cap")
    capped["samples"][0]["max_jets"] = 100
    report = run_config(capped, IN_MEMORY)
    assert sum(report["samples"]["sig"]["written"].values()) == 100
    assert report["samples"]["bkg"]["limited"] == 0


def test_total_jets_takes_from_each_file_in_proportion(ntuples, tmp_path):
    full_cfg = events_config(ntuples, tmp_path / "full", **{"input.selection": "jet_pt > 0"})
    full = run_config(full_cfg, IN_MEMORY)
    cfg = events_config(ntuples, tmp_path / "t", **{"input.selection": "jet_pt > 0", "limits": {"total_jets": 900}})
    report = run_config(cfg, IN_MEMORY)
    assert abs(report["total"]["written"] - 900) <= 3
    fraction = 900 / full["total"]["written"]
    for before, after in zip(full["files"], report["files"]):
        selected = sum(before["written"].values())
        kept = sum(after["written"].values())
        sigma = math.sqrt(selected * fraction * (1 - fraction))
        assert abs(kept - fraction * selected) < 4 * sigma + 1, after["path"]


def test_jet_collections_stack_reco_and_truth(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["jet_collections"] = {"fields": ["pt", "eta", "phi", "e"],
                              "collections": {"reco": ["jet_pt", "jet_eta", "jet_phi", "jet_E"], "truth": "jet_true_"},
                              "preprocess": ["cartesian", "mass"]}
    cfg["preprocess"]["scale"] = {"rho": 0.5}
    run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    train = output["train"]
    assert train["_features"]["jet_collections"] == ["px", "py", "pz", "E", "mass"]
    assert train["jet_collections"].shape == (len(train["labels"]), 2, 5)
    arrays = {}
    for s_i, sample in enumerate(cfg["samples"]):
        for f_i, path in enumerate(p for entry in sample["files"] for p in expand(entry)):
            arrays[(s_i, f_i)] = uproot.open(path)[sample["tree"]].arrays(
                ["jet_pt", "jet_eta", "jet_phi", "jet_E", "jet_true_pt", "jet_true_eta", "jet_true_phi", "jet_true_e",
                 "rho"])
    for i, (s, f, e, j) in enumerate(train["source"][:200]):
        a = arrays[(s, f)][e]
        for c, prefix in enumerate(["jet_", "jet_true_"]):
            pt, eta, phi = (float(a[prefix + x][j]) * (1e-3 if x == "pt" else 1) for x in ("pt", "eta", "phi"))
            energy = float(a[prefix + ("E" if c == 0 else "e")][j]) * 1e-3
            mass = math.sqrt(max(energy**2 - (pt * math.cosh(eta)) ** 2, 0))
            got = train["jet_collections"][i, c]
            np.testing.assert_allclose(got[:4], [pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta), energy],
                                       rtol=1e-5, atol=1e-3)
            # m² = E² - p² cancels: float32 inputs leave an error of about E² * 2**-23 / m
            assert abs(got[4] - mass) < 4 * energy**2 * 2.0**-23 / max(mass, 1.0)
        assert train["jets"][i, 4] == pytest.approx(float(a["rho"]) * 0.5)
