"""End to end: both layouts against the naive reference converter; determinism across workers and modes."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from tests.conftest import IN_MEMORY, TWO_PROCESSES, events_config, jets_config, run_config
from tests.reference import expected_split, read_output, reference_jets

SPLITS = ("train", "val", "test")


def _by_source(output):
    rows = {}
    for split, data in output.items():
        for i, key in enumerate(map(tuple, data["source"])):
            assert key not in rows, f"jet {key} written twice"
            rows[key] = (split, i)
    return rows


def _check_against_reference(cfg, output, expected):
    rows = _by_source(output)
    assert set(rows) == set(expected), "the selected jets, each exactly once"
    fractions = [cfg["split"][s] for s in SPLITS]
    for key, exp in expected.items():
        split, i = rows[key]
        data = output[split]
        np.testing.assert_allclose(data["constituents"][i], exp["constituents"], rtol=2e-5, atol=1e-4)
        np.testing.assert_array_equal(data["mask"][i], exp["mask"])
        np.testing.assert_allclose(data["jets"][i], exp["jets"], rtol=2e-5, atol=1e-4)
        assert data["labels"][i] == exp["label"]
        assert data["weights"][i] == 1.0
        assert data["event_number"][i] == exp["event_number"]
        assert SPLITS.index(split) == expected_split(cfg["shuffle"]["seed"], exp["event_number"], fractions)


@pytest.fixture(scope="module")
def events_run(default_run):
    cfg, report, out = default_run
    return cfg, report, read_output(out)


def test_events_layout_matches_reference(events_run):
    cfg, report, output = events_run
    expected = reference_jets(cfg, lambda j: j["jet_pt"] > 500e3 and abs(j["jet_eta"]) < 2)
    assert len(expected) > 300  # the fixture is big enough for the checks to mean something
    _check_against_reference(cfg, output, expected)


def test_events_layout_contract(events_run):
    cfg, report, output = events_run
    train = output["train"]
    n = len(train["labels"])
    assert train["constituents"].shape == (n, 40, 4) and train["constituents"].dtype == np.float32
    assert train["mask"].dtype == bool and train["mask"].shape == (n, 40)
    assert train["jets"].shape == (n, 6) and train["jets"].dtype == np.float32
    assert train["labels"].dtype == np.int32 and train["weights"].dtype == np.float32
    assert train["event_number"].dtype == np.int64 and train["source"].shape == (n, 4)
    assert train["_features"]["constituents"] == ["jet_constit_px", "jet_constit_py", "jet_constit_pz",
                                                  "jet_constit_E"]
    assert train["_features"]["jets"] == ["jet_pt", "jet_eta", "jet_phi", "jet_E", "rho", "NPV"]
    assert train["_attrs"]["num_jets"] == n and train["_attrs"]["max_constituents"] == 40
    assert json.loads(train["_attrs"]["config"])["input"]["selection"] == cfg["input"]["selection"]
    assert "uproot" in json.loads(train["_attrs"]["versions"])
    # padding is zero and sits after the real constituents
    assert np.all(train["constituents"][~train["mask"]] == 0)
    assert np.all(np.diff(train["mask"].astype(int), axis=1) <= 0)


def test_splits_are_disjoint_by_event(events_run):
    _, _, output = events_run
    events = {s: set(output[s]["event_number"]) for s in SPLITS}
    assert not events["train"] & events["val"] and not events["train"] & events["test"] \
        and not events["val"] & events["test"]
    n = {s: len(output[s]["labels"]) for s in SPLITS}
    assert n["train"] > n["val"] > 0 and n["test"] > 0


def test_report_adds_up(events_run):
    cfg, report, output = events_run
    expected = reference_jets(cfg, lambda j: j["jet_pt"] > 500e3 and abs(j["jet_eta"]) < 2)
    total = report["total"]
    assert total["events"] == 300 + 200 + 400
    assert total["jets"] == total["not_leading"] + total["cut"] + total["written"]
    assert total["written"] == len(expected) == sum(len(output[s]["labels"]) for s in SPLITS)
    for name, sample in report["samples"].items():
        assert sum(sample["written"].values()) + sample["cut"] + sample["not_leading"] == sample["jets"]
    with open(os.path.join(cfg["output"]["dir"], "summary.json")) as handle:
        assert json.load(handle)["total"] == {k: v for k, v in total.items()}


def test_shuffled_order_is_not_input_order(events_run):
    _, _, output = events_run
    source = output["train"]["source"]
    keys = source[:, 0] * 10**9 + source[:, 1] * 10**6 + source[:, 2] * 10 + source[:, 3]
    assert not np.all(np.diff(keys) > 0)
    # both samples spread through the file: labels are mixed within the first and last quarter
    labels = output["train"]["labels"]
    quarter = len(labels) // 4
    assert 0 < labels[:quarter].mean() < 1 and 0 < labels[-quarter:].mean() < 1


def test_jets_layout_matches_reference(ntuples, tmp_path):
    cfg = jets_config(ntuples, tmp_path / "out")
    run_config(cfg, IN_MEMORY)
    output = read_output(cfg["output"]["dir"])
    expected = reference_jets(cfg, lambda j: j["fjet_pt"] > 400e3)
    assert len(expected) > 300
    _check_against_reference(cfg, output, expected)
    # one event's two jets are separate entries here; they must still share a split
    split_of = {}
    for split in SPLITS:
        for event in output[split]["event_number"]:
            assert split_of.setdefault(event, split) == split


def _digests(out_dir):
    digests = {}
    for root, _, files in os.walk(out_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                digests[os.path.relpath(path, out_dir)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def test_identical_bytes_for_any_workers_and_shuffle_mode(ntuples, events_run, tmp_path):
    cfg, _, _ = events_run
    reference = _digests(cfg["output"]["dir"])
    assert {"train.h5", "val.h5", "test.h5", "summary.json"} <= set(reference)
    variants = {
        "two_processes": (events_config(ntuples, tmp_path / "a"), TWO_PROCESSES),
        "engine_shuffle": (events_config(ntuples, tmp_path / "b", **{"shuffle.mode": "engine"}),
                           ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]),
        "other_step_size": (events_config(ntuples, tmp_path / "c", **{"input.step_size": 1000}), IN_MEMORY),
    }
    for name, (variant, args) in variants.items():
        run_config(variant, args)
        assert _digests(variant["output"]["dir"]) == reference, name


def test_lzf_bytes_identical_for_one_and_two_workers(ntuples, tmp_path):
    """lzf (the default codec) gives the same bytes run after run: chunks are encoded by a deterministic
    LZF (transforms/output/lzf_chunks.py), not by h5py's, whose hash table starts uninitialised."""
    pytest.importorskip("_lzf")
    one = jets_config(ntuples, tmp_path / "one", **{"output.chunk_jets": 16})
    two = jets_config(ntuples, tmp_path / "two", **{"output.chunk_jets": 16})
    assert one["output"]["compression"] == "lzf"
    run_config(one, IN_MEMORY)
    run_config(two, TWO_PROCESSES)
    digests = _digests(one["output"]["dir"])
    assert len([name for name in digests if name.endswith(".h5")]) == 7
    assert digests == _digests(two["output"]["dir"])


def test_blosc_output_holds_the_same_data_as_lzf(ntuples, tmp_path):
    pytest.importorskip("hdf5plugin")
    lzf = jets_config(ntuples, tmp_path / "lzf")
    blosc = jets_config(ntuples, tmp_path / "blosc", **{"output.compression": "blosc-lz4"})
    run_config(lzf, IN_MEMORY)
    run_config(blosc, IN_MEMORY)
    a, b = read_output(lzf["output"]["dir"]), read_output(blosc["output"]["dir"])
    for split in SPLITS:
        assert a[split].keys() == b[split].keys()
        for name, values in a[split].items():
            if isinstance(values, np.ndarray):
                assert values.dtype == b[split][name].dtype and values.tobytes() == b[split][name].tobytes()


def test_seed_changes_order_not_content(ntuples, events_run, tmp_path):
    cfg, _, output = events_run
    other = events_config(ntuples, tmp_path / "seed", **{"shuffle.seed": 8})
    run_config(other, IN_MEMORY)
    reshuffled = read_output(other["output"]["dir"])
    assert set(_by_source(reshuffled)) == set(_by_source(output))
    assert not np.array_equal(reshuffled["train"]["source"][:50], output["train"]["source"][:50])


def test_no_temporary_files_left(events_run):
    cfg, _, _ = events_run
    out = cfg["output"]["dir"]
    assert sorted(os.listdir(out)) == [".root2hdf5-manifest.json", "norm.yaml", "shards", "summary.json", "test.h5",
                                       "train.h5", "val.h5"]
    shards = sorted(os.listdir(os.path.join(out, "shards")))
    counts = cfg["shuffle"]["shards"]  # 5 shards spread 0.6/0.2/0.2 -> 3/1/1
    assert shards == ["test-00000-of-00001.h5", "train-00000-of-00003.h5", "train-00001-of-00003.h5",
                      "train-00002-of-00003.h5", "val-00000-of-00001.h5"] and counts == 5
