"""Dataset-wide statistics: standardization, pT reweighting, resampling, scores from an ONNX model."""
from __future__ import annotations

import os

import apache_beam as beam
import h5py
import numpy as np
import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from root2hdf5.transforms.stats.moments import MomentsCombineFn, dataset_moments, merge
from root2hdf5.transforms.stats.reweight import ReweightSpec, allocate, draw, factors, shard_histograms
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import read_output
from tests.test_pipeline import _by_source, _digests

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------------------------- moments


def test_merged_moments_equal_numpy_on_the_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.normal(1e3, 5, (n, 3)) for n in (1, 17, 400, 0, 1000)]  # offset: a naive Σx² would lose digits
    total = dataset_moments("jets", parts[0])
    for part in parts[1:]:
        total = merge(total, dataset_moments("jets", part))
    allx = np.concatenate(parts)
    np.testing.assert_allclose(total.mean, allx.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(total.std, allx.std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(total.minimum, allx.min(axis=0))
    assert total.count.tolist() == [len(allx)] * 3


def test_masked_constituents_are_left_out():
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[True, False, True], [False, False, True]])
    m = dataset_moments("constituents", values, mask)
    np.testing.assert_allclose(m.mean, values[mask].mean(axis=0))
    assert m.count.tolist() == [3, 3, 3, 3]


def test_moments_combiner_gives_the_same_bits_in_any_order():
    rng = np.random.default_rng(1)
    partials = [((i,), {"jets": dataset_moments("jets", rng.normal(i, 3, (50 + i, 2)))}) for i in range(20)]
    results = []
    for order in (partials, partials[::-1], partials[7:] + partials[:7]):
        with TestPipeline() as p:
            out = p | beam.Create(order, reshuffle=True) | beam.CombineGlobally(MomentsCombineFn())
            assert_that(out, lambda got: results.append(got[0]["jets"]))
    assert all(np.array_equal(r.mean, results[0].mean) and np.array_equal(r.m2, results[0].m2) for r in results)


@pytest.fixture(scope="module")
def stats_run(default_run):
    cfg, _, out = default_run
    return cfg, read_output(out)


def test_norm_file_and_attributes_match_numpy_on_the_training_split(stats_run):
    cfg, output = stats_run
    with open(os.path.join(cfg["output"]["dir"], "norm.yaml")) as handle:
        norm = yaml.safe_load(handle)
    train = output["train"]
    valid = train["constituents"][train["mask"]]  # masked slots excluded
    for f, name in enumerate(train["_features"]["constituents"]):
        assert norm["constituents"][name]["mean"] == pytest.approx(valid[:, f].astype(np.float64).mean(), rel=1e-9)
        assert norm["constituents"][name]["std"] == pytest.approx(valid[:, f].astype(np.float64).std(), rel=1e-9)
        assert norm["constituents"][name]["count"] == len(valid)
    for f, name in enumerate(train["_features"]["jets"]):
        assert norm["jets"][name]["mean"] == pytest.approx(train["jets"][:, f].astype(np.float64).mean(), rel=1e-9)
    with h5py.File(os.path.join(cfg["output"]["dir"], "val.h5")) as handle:  # every split carries train's numbers
        np.testing.assert_allclose(handle["jets"].attrs["std"],
                                   [norm["jets"][n]["std"] for n in train["_features"]["jets"]])
        assert not handle.attrs["standardized"]


def test_standardized_output(ntuples, tmp_path, stats_run):
    raw_cfg, raw = stats_run
    cfg = events_config(ntuples, tmp_path / "out", **{"stats": {"apply": True}})
    run_config(cfg, IN_MEMORY)
    std = read_output(str(tmp_path / "out"))
    with open(tmp_path / "out" / "norm.yaml") as handle:
        norm = yaml.safe_load(handle)
    train = std["train"]
    valid = train["constituents"][train["mask"]].astype(np.float64)
    np.testing.assert_allclose(valid.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(valid.std(axis=0), 1, atol=1e-5)
    assert np.all(train["constituents"][~train["mask"]] == 0)  # padding stays zero
    raw_rows, std_rows = _by_source(raw), _by_source(std)
    assert raw_rows.keys() == std_rows.keys()
    names = raw["val"]["_features"]["jets"]
    mean = np.array([norm["jets"][n]["mean"] for n in names])
    sd = np.array([norm["jets"][n]["std"] for n in names])
    for key, (split, i) in list(raw_rows.items())[:300]:  # val/test standardized with the training numbers
        s2, j = std_rows[key]
        np.testing.assert_allclose(std[s2]["jets"][j], (raw[split]["jets"][i] - mean) / np.where(sd > 0, sd, 1),
                                   rtol=1e-5, atol=1e-5)
    with h5py.File(tmp_path / "out" / "test.h5") as handle:
        assert handle.attrs["standardized"]


# ----------------------------------------------------------------------------------------- reweighting


def test_flat_factors_by_hand():
    spec = ReweightSpec("flat", (0,), ((0.0, 1.0, 2.0, 3.0),), (False,))
    jets = np.array([[0.5], [0.5], [1.5], [9.0], [-4.0]])  # 9 and -4 count in the edge bins
    h = shard_histograms(spec, np.zeros(5, np.int32), jets, np.ones(5, np.float32))
    assert h.counts[0].tolist() == [3, 1, 1]
    f = factors(spec, h)[0]
    # r = 1/W = (1/3, 1, 1); mean weight 1 over 5 jets: scale = 5 / (3*1/3 + 1 + 1) = 5/3
    np.testing.assert_allclose(f, [5 / 9, 5 / 3, 5 / 3])
    assert np.all(np.isfinite(f))


def test_match_factors_and_empty_bins():
    spec = ReweightSpec("match", (0,), ((0.0, 1.0, 2.0, 3.0),), (False,), target_label=1)
    jets = np.array([[0.5], [1.5], [1.5], [2.5], [0.5], [0.5], [1.5]])
    labels = np.array([1, 1, 1, 1, 0, 0, 0], np.int32)
    f = factors(spec, shard_histograms(spec, labels, jets, np.ones(7, np.float32)))
    # target density (1/4, 2/4, 1/4); class 0 density (2/3, 1/3, 0): r = (3/8, 3/2, 0): bin 3 is empty for
    # class 0, so its factor is 0, never infinite; scale = 3 / (2*3/8 + 3/2) = 4/3
    np.testing.assert_allclose(f[0], [0.5, 2.0, 0.0])
    np.testing.assert_allclose(f[1], [1.0, 1.0, 1.0])


def _binned_weight(output, split, label, column, edges, absolute=False):
    data = output[split]
    rows = data["labels"] == label
    x = data["jets"][rows, column]
    x = np.abs(x) if absolute else x
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    return (np.bincount(index, weights=data["weights"][rows], minlength=len(edges) - 1),
            np.bincount(index, minlength=len(edges) - 1))


PT_EDGES = [500.0, 600.0, 700.0, 800.0, 900.0, 1100.0, 1400.0]


def test_flat_reweighting_end_to_end(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out", **{"weights": {"method": "flat", "variables": ["jet_pt"],
                                                                  "bins": [PT_EDGES]}})
    run_config(cfg, IN_MEMORY)
    output = read_output(str(tmp_path / "out"))
    for label in (0, 1):
        summed, counts = _binned_weight(output, "train", label, 0, PT_EDGES)
        occupied = counts > 0
        np.testing.assert_allclose(summed[occupied], summed[occupied][0], rtol=1e-4)  # flat on the training split
        weights = output["train"]["weights"][output["train"]["labels"] == label]
        assert weights.mean() == pytest.approx(1.0, rel=1e-5) and np.all(np.isfinite(weights))
        # val/test use the training factors: flat within statistics (chi2 over occupied bins)
        summed, counts = _binned_weight(output, "val", label, 0, PT_EDGES)
        occupied = counts > 0
        expected = summed[occupied].sum() / occupied.sum()
        sigma2 = np.array([np.sum(output["val"]["weights"][(output["val"]["labels"] == label)] ** 2)]) / occupied.sum()
        chi2 = np.sum((summed[occupied] - expected) ** 2 / sigma2)
        assert chi2 < occupied.sum() + 5 * np.sqrt(2 * occupied.sum())


def test_match_and_two_dimensional_reweighting(ntuples, tmp_path):
    eta_edges = [0.0, 0.7, 1.4, 2.0]
    cfg = events_config(ntuples, tmp_path / "out", **{"weights": {
        "method": "match", "variables": ["jet_pt", "jet_eta"], "bins": [PT_EDGES, eta_edges], "abs": [False, True],
        "target_label": 1}})
    run_config(cfg, IN_MEMORY)
    train = read_output(str(tmp_path / "out"))["train"]

    def density(label):
        rows = train["labels"] == label
        pt = np.clip(np.searchsorted(PT_EDGES, train["jets"][rows, 0], side="right") - 1, 0, len(PT_EDGES) - 2)
        eta = np.clip(np.searchsorted(eta_edges, np.abs(train["jets"][rows, 1]), side="right") - 1, 0, 2)
        h = np.bincount(pt * 3 + eta, weights=train["weights"][rows], minlength=(len(PT_EDGES) - 1) * 3)
        return h / h.sum()

    signal, background = density(1), density(0)
    both = (signal > 0) & (background > 0)
    np.testing.assert_allclose(background[both], signal[both] / signal[both].sum() * background[both].sum(), rtol=1e-4)
    assert train["weights"][train["labels"] == 0].mean() == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------------------------------- resampling


def test_draws_follow_the_weights():
    w = np.array([1.0, 2.0, 7.0, 0.0])
    rows = draw(w, 200_000, seed=3, split=0, shard=1)
    freq = np.bincount(rows, minlength=4) / len(rows)
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.005)  # ~5 sigma
    assert np.array_equal(rows, draw(w, 200_000, seed=3, split=0, shard=1))  # reproducible
    counts = allocate(10_000, [1.0, 3.0, 0.0], seed=1, split=0)
    assert sum(counts) == 10_000 and counts[2] == 0 and abs(counts[1] / 10_000 - 0.75) < 0.02


def test_resampling_to_a_flat_spectrum_end_to_end(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "a", **{
        "weights": {"method": "flat", "variables": ["jet_pt"], "bins": [PT_EDGES]}, "resample": {"target": 3000}})
    report = run_config(cfg, IN_MEMORY)
    output = read_output(str(tmp_path / "a"))
    train = output["train"]
    assert len(train["labels"]) == 3000 and np.all(train["weights"] == 1)
    assert report["splits"]["train"]["jets"] == 3000 and report["splits"]["train"]["resampled_from"] < 3000
    for label in (0, 1):  # each class is drawn flat in pT: chi2 of the counts per occupied bin
        _, counts = _binned_weight(output, "train", label, 0, PT_EDGES)
        occupied = counts[counts > 0]
        expected = occupied.mean()
        chi2 = np.sum((occupied - expected) ** 2 / expected)
        assert chi2 < len(occupied) + 5 * np.sqrt(2 * len(occupied)), (label, counts)
    assert len(output["val"]["labels"]) == report["samples"]["sig"]["written"]["val"] + \
        report["samples"]["bkg"]["written"]["val"]  # other splits untouched
    cfg_b = events_config(ntuples, tmp_path / "b", **{
        "weights": {"method": "flat", "variables": ["jet_pt"], "bins": [PT_EDGES]}, "resample": {"target": 3000}})
    run_config(cfg_b, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert _digests(str(tmp_path / "a")) == _digests(str(tmp_path / "b"))  # reproducible, any worker count


# ----------------------------------------------------------------------------------------------- model


def _linear_model(path, n_in, weights, bias):
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test model")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["jets", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["y"]),
         helper.make_node("Sigmoid", ["y"], ["score"])],
        "tagger",
        [helper.make_tensor_value_info("jets", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32).reshape(n_in, 1), "w"),
                     numpy_helper.from_array(np.array([bias], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return str(path)


def test_model_scores_with_run_inference(ntuples, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime runs the model")
    w = np.array([0.002, 0.1, 0.0, -0.001, 0.01, -0.02])
    model = _linear_model(tmp_path / "tagger.onnx", 6, w, -1.0)
    cfg = events_config(ntuples, tmp_path / "out", **{"model": {"path": model}})
    run_config(cfg, IN_MEMORY)
    output = read_output(str(tmp_path / "out"))
    for split in SPLITS:
        jets = output[split]["jets"].astype(np.float64)
        np.testing.assert_allclose(output[split]["scores"], 1 / (1 + np.exp(-(jets @ w - 1.0))), rtol=1e-5)
    with h5py.File(tmp_path / "out" / "train.h5") as handle:
        assert handle["scores"].attrs["model"] == "tagger.onnx" and len(handle["scores"].attrs["model_sha256"]) == 64

    cfg = events_config(ntuples, tmp_path / "weighted", **{"model": {"path": model, "as_weight": True}})
    run_config(cfg, IN_MEMORY)
    weighted = read_output(str(tmp_path / "weighted"))
    assert "scores" not in weighted["train"]
    np.testing.assert_allclose(weighted["train"]["weights"], output["train"]["scores"], rtol=1e-6)
