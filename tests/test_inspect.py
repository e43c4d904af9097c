"""`root2hdf5 inspect`: counts, feature statistics and plots agree with the files, whatever the layout."""
from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.tools.inspection import feature_stats, open_output
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import read_output

SPLITS = ("train", "val", "test")
LAYOUTS = {
    "plain": {},
    "ftag": {"layout": "ftag"},
    "parquet": {"format": "parquet"},
    "parquet-padded": {"format": "parquet", "parquet_constituents": "padded"},
}


@pytest.fixture(scope="module")
def outputs(ntuples, tmp_path_factory) -> dict[str, str]:
    made = {}
    for name, output in LAYOUTS.items():
        out = tmp_path_factory.mktemp(f"inspect-{name}") / "out"
        cfg = events_config(ntuples, out, **{"weights": {"branch": "mcEventWeight"}})
        cfg["output"].update(output)
        run_config(cfg, IN_MEMORY)
        made[name] = str(out)
    return made


@pytest.fixture(scope="module")
def expected(outputs):
    """What the plain HDF5 files hold, read with h5py: every layout holds the same jets in the same order."""
    return read_output(outputs["plain"])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_counts_per_split_and_label_match_the_files(outputs, expected, layout):
    views = open_output(outputs[layout], max_jets=50)
    assert [v.name for v in views] == list(SPLITS)
    for view in views:
        labels, weights = expected[view.name]["labels"], expected[view.name]["weights"].astype(np.float64)
        assert view.rows == len(labels)
        values, counts = np.unique(labels, return_counts=True)
        assert view.counts == dict(zip(values.tolist(), counts.tolist()))
        for value in values:
            assert view.weight_sums[int(value)] == pytest.approx(weights[labels == value].sum(), rel=1e-9)
        assert view.label_names == {0: "bkg", 1: "sig"}
        np.testing.assert_array_equal(view.labels, labels[:50])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_feature_samples_are_the_first_rows(outputs, expected, layout):
    train = expected["train"]
    k = 40
    view = open_output(outputs[layout], max_jets=k)[0]
    features = train["_features"]
    assert list(view.jets) == list(features["jets"])
    for i, name in enumerate(features["jets"]):
        np.testing.assert_array_equal(view.jets[name], train["jets"][:k, i])
    mask = train["mask"][:k]
    assert list(view.constituents) == list(features["constituents"])
    for i, name in enumerate(features["constituents"]):
        np.testing.assert_array_equal(view.constituents[name], train["constituents"][:k, :, i][mask])
    np.testing.assert_array_equal(view.constituent_counts, mask.sum(axis=1))
    assert view.slots == mask.shape[1]


def test_feature_stats_match_numpy():
    rng = np.random.default_rng(3)
    values = rng.normal(2.0, 3.0, 1000).astype(np.float32)
    values[[5, 17]] = [np.nan, np.inf]
    finite = values[np.isfinite(values)].astype(np.float64)
    lo, mean, std, hi, bad = feature_stats(values)
    assert (lo, hi, bad) == (finite.min(), finite.max(), 2)
    assert mean == pytest.approx(finite.mean()) and std == pytest.approx(finite.std())


@pytest.mark.parametrize("layout", ["plain", "ftag", "parquet"])
def test_cli_prints_the_table_and_writes_a_plot_per_feature(outputs, expected, layout, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["inspect", outputs[layout], "--plots", str(plots)]) == 0
    text = capsys.readouterr().out
    total = sum(len(expected[s]["labels"]) for s in SPLITS)
    assert next(line for line in text.splitlines() if line.startswith("total")).split()[1] == f"{total:,}"
    train = expected["train"]
    padding = 1 - train["mask"].sum() / train["mask"].size
    assert f"{padding:.1%} padding" in text
    features = train["_features"]
    for name in features["jets"]:
        assert (plots / f"jet_{name}.png").stat().st_size > 1000
        assert name in text
    for name in features["constituents"]:
        assert (plots / f"constituent_{name}.png").stat().st_size > 1000
    assert (plots / "n_constituents.png").exists() and (plots / "overview.png").exists()
    assert len(list(plots.glob("*.png"))) == len(features["jets"]) + len(features["constituents"]) + 2


def test_one_split_file_and_default_plot_folder(outputs, expected, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(outputs["plain"], copy)
    assert main(["inspect", str(copy / "train.h5")]) == 0
    assert f"{len(expected['train']['labels']):,}" in capsys.readouterr().out
    assert (copy / "train-plots" / "overview.png").exists()


def test_missing_shard_files_are_reported_and_fail(outputs, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(outputs["plain"], copy)
    victim = sorted(glob.glob(str(copy / "shards" / "train-*.h5")))[0]
    os.remove(victim)
    assert main(["inspect", str(copy), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and os.path.basename(victim) in out


def test_not_an_output_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no train/val/test outputs" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "notes.txt")]) == 2
    assert "neither HDF5 nor Parquet" in capsys.readouterr().err
