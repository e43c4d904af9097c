"""Images and integer branches in a pipeline run: the datasets hold what a per-jet reference computes from the
same jets, integers stay integers, and the layouts carry them."""
from __future__ import annotations

import json
import os

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.core.errors import ConfigError
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import read_output

PIXELS = {"name": "pixels", "kind": "pixels", "bins": [16, 16], "range": [[-1.5, 1.5], [-2, 2]], "frame": "raw"}
DENSE = {"name": "image", "kind": "dense", "bins": [12, 10], "range": [[-2.0, 2.0], [-np.pi, np.pi]],
         "frame": "raw", "channels": ["pt", "count"], "normalize": True, "dtype": "float16"}
SPLITS = ("train", "val", "test")


def _config(ntuples, out, **output):
    cfg = events_config(ntuples, out, **{"preprocess.constituents": "raw"})
    cfg["images"] = [PIXELS, DENSE]
    cfg["input"]["event_branches"] = ["rho"]
    cfg["input"]["integer_branches"] = ["jet_truth_label", "NPV"]
    cfg["output"].update(output)
    return cfg


@pytest.fixture(scope="module")
def plain(ntuples, tmp_path_factory):
    out = tmp_path_factory.mktemp("images") / "out"
    report = run_config(_config(ntuples, out), IN_MEMORY)
    return report, read_output(str(out)), str(out)


def _edges(spec):
    return [np.linspace(lo, hi, n + 1) for n, (lo, hi) in zip(spec["bins"], spec["range"])]


def test_pixels_and_images_match_a_per_jet_reference(plain):
    _, output, _ = plain
    for split in SPLITS:
        data = output[split]
        names = list(data["_features"]["constituents"])
        pt, eta, phi = (data["constituents"][..., names.index(f"jet_constit_{k}")] for k in ("pt", "eta", "phi"))
        mask = data["mask"]
        eta_edges, phi_edges = _edges(PIXELS)
        for j in range(len(mask)):
            want = np.full((mask.shape[1], 2), -1, np.int32)
            for k in np.flatnonzero(mask[j]):  # the old converter's clip into the edge pixels
                want[k] = [np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
                           for edges, x in ((eta_edges, eta[j, k]), (phi_edges, phi[j, k]))]
            np.testing.assert_array_equal(data["pixels"][j], want)
            valid = mask[j]
            counts, _, _ = np.histogram2d(eta[j, valid], phi[j, valid], bins=DENSE["bins"], range=DENSE["range"])
            sums, _, _ = np.histogram2d(eta[j, valid], phi[j, valid], bins=DENSE["bins"], range=DENSE["range"],
                                        weights=pt[j, valid].astype(np.float64))
            np.testing.assert_array_equal(data["image"][j, ..., 1], counts.astype(np.float16))
            expected = sums / sums.sum() if sums.sum() > 0 else sums
            np.testing.assert_allclose(data["image"][j, ..., 0].astype(np.float64), expected, rtol=2e-3, atol=1e-4)
        assert data["image"].dtype == np.float16 and data["pixels"].dtype == np.int32


def test_constituents_outside_are_counted_in_the_report(plain):
    report, output, _ = plain
    outside = {"pixels": 0, "image": 0}
    for split in SPLITS:
        data = output[split]
        names = list(data["_features"]["constituents"])
        eta = data["constituents"][..., names.index("jet_constit_eta")][data["mask"]]
        phi = data["constituents"][..., names.index("jet_constit_phi")][data["mask"]]
        for spec in (PIXELS, DENSE):
            (elo, ehi), (plo, phi_hi) = spec["range"]
            inside = (eta >= elo) & (eta <= ehi) & (phi >= plo) & (phi <= phi_hi)
            outside[spec["name"]] += int((~inside).sum())
    reported = {"pixels": 0, "image": 0}
    for entry in report["samples"].values():
        for name, count in entry.get("images_outside", {}).items():
            reported[name] += count
    assert reported == outside and outside["pixels"] > 0


def test_integer_branches_stay_integers_and_match_the_ntuple(plain, ntuples):
    _, output, _ = plain
    truth = {}
    for path in (ntuples["events_sig_0"], ntuples["events_sig_1"], ntuples["events_bkg"]):
        with uproot.open(path) as handle:
            truth[os.path.basename(path)] = handle[synthetic.EVENTS_TREE].arrays(["jet_truth_label", "NPV"])
    attrs = output["train"]["_attrs"]
    sources = json.loads(attrs["source_files"])
    for split in SPLITS:
        data = output[split]
        assert data["jets_int"].dtype == np.int64
        assert list(data["_features"]["jets_int"]) == ["jet_truth_label", "NPV"]
        for (sample, file, entry, jet), values in zip(data["source"], data["jets_int"]):
            arrays = truth[os.path.basename(sources[sample][file])]
            assert values[0] == arrays["jet_truth_label"][entry][jet] and values[1] == arrays["NPV"][entry]


def test_dense_images_are_stored_one_jet_per_chunk_compressed(plain):
    _, _, out = plain
    shard = sorted(p for p in os.listdir(os.path.join(out, "shards")) if p.startswith("train"))[0]
    with h5py.File(os.path.join(out, "shards", shard)) as handle:
        image = handle["image"]
        assert image.chunks == (1, 12, 10, 2) and image.compression == "gzip"
        assert handle["pixels"].chunks[0] == 32  # pixels follow output.chunk_jets
        assert image.attrs["kind"] == "dense" and list(image.attrs["bins"]) == [12, 10]
        np.testing.assert_allclose(image.attrs["phi_edges"], np.linspace(-np.pi, np.pi, 11))


def test_ftag_layout_carries_integers_as_fields_and_images_as_datasets(plain, ntuples, tmp_path):
    _, output, _ = plain
    out = tmp_path / "ftag"
    run_config(_config(ntuples, out, layout="ftag"), IN_MEMORY)
    with h5py.File(out / "train.h5") as handle:
        jets = handle["jets"][...]
        np.testing.assert_array_equal(jets["jet_truth_label"], output["train"]["jets_int"][:, 0])
        assert jets.dtype["NPV"] == np.int64
        np.testing.assert_array_equal(handle["image"][...], output["train"]["image"])
        np.testing.assert_array_equal(handle["pixels"][...], output["train"]["pixels"])


def test_parquet_carries_integer_columns(ntuples, tmp_path):
    cfg = _config(ntuples, tmp_path / "pq", format="parquet")
    cfg.pop("images")
    run_config(cfg, IN_MEMORY)
    table = ak.from_parquet(str(tmp_path / "pq" / "train"))
    assert str(ak.type(table["jet_truth_label"])).endswith("int64")


@pytest.mark.parametrize("change, message", [
    (lambda c: c["images"].append({**DENSE, "name": "jets"}), "names ['jets'] are taken"),
    (lambda c: c["output"].update(format="parquet"), "written to HDF5"),
    (lambda c: c["input"]["integer_branches"].append("rho"), "listed twice"),
    (lambda c: c["images"].append({**DENSE, "name": "x", "bins": [0, 3]}), "images[2].bins"),
])
def test_config_errors(ntuples, tmp_path, change, message):
    cfg = _config(ntuples, tmp_path / "x")
    change(cfg)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(cfg)
