"""Output formats: the FTAG structured layout and Parquet hold exactly the jets of the plain layout, and the
tools users train with (atlas-ftag-tools, pandas, polars, awkward) read them."""
from __future__ import annotations

import glob
import os

import h5py
import numpy as np
import pytest

from root2hdf5.transforms.output.formats import ColumnSpec, Hdf5Format, ParquetFormat
from root2hdf5.transforms.output.hdf5_files import DatasetSpec, Storage
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import read_output

SPLITS = ("train", "val", "test")
# standardization makes the second pass read every shard back through the format and rewrite it
STANDARDIZED = {"stats": {"apply": True}}


def _run(ntuples, tmp_path_factory, name, output):
    out = tmp_path_factory.mktemp(name) / "out"
    cfg = events_config(ntuples, out, **STANDARDIZED)
    cfg["output"].update(output)
    report = run_config(cfg, IN_MEMORY)
    return cfg, report, str(out)


@pytest.fixture(scope="module")
def plain(ntuples, tmp_path_factory):
    cfg, report, out = _run(ntuples, tmp_path_factory, "plain", {})
    return cfg, report, read_output(out)


@pytest.fixture(scope="module")
def ftag(ntuples, tmp_path_factory):
    return _run(ntuples, tmp_path_factory, "ftag", {"layout": "ftag", "constituents_name": "tracks"})


def _parquet(ntuples, tmp_path_factory, how):
    return _run(ntuples, tmp_path_factory, f"parquet-{how}", {"format": "parquet", "parquet_constituents": how})


# -------------------------------------------------------------------------------------------------- FTAG

def test_ftag_layout_holds_the_plain_columns(plain, ftag):
    _, plain_report, expected = plain
    _, report, out = ftag
    assert report["samples"] == plain_report["samples"]
    for split in SPLITS:
        want = expected[split]
        with h5py.File(os.path.join(out, f"{split}.h5")) as handle:
            assert sorted(handle) == ["jets", "tracks"]
            jets, tracks = handle["jets"][...], handle["tracks"][...]
        assert jets.shape == (len(want["labels"]),) and tracks.shape == want["mask"].shape
        for i, name in enumerate(want["_features"]["jets"]):
            np.testing.assert_array_equal(jets[name], want["jets"][:, i])
        for i, name in enumerate(want["_features"]["constituents"]):
            np.testing.assert_array_equal(tracks[name], want["constituents"][..., i])
        np.testing.assert_array_equal(tracks["valid"], want["mask"])
        np.testing.assert_array_equal(jets["flavour_label"], want["labels"])
        np.testing.assert_array_equal(jets["weight"], want["weights"])
        np.testing.assert_array_equal(jets["eventNumber"], want["event_number"])
        for i, name in enumerate(("sample", "file", "entry", "jet_index")):
            np.testing.assert_array_equal(jets[name], want["source"][:, i])


def test_ftag_tools_reads_the_output(plain, ftag):
    reader_module = pytest.importorskip("ftag.hdf5", reason="atlas-ftag-tools (test extra) reads FTAG files")
    _, _, expected = plain
    _, _, out = ftag
    train = expected["train"]
    reader = reader_module.H5Reader(os.path.join(out, "train.h5"), batch_size=64, shuffle=False)
    assert reader.num_global_objects == len(train["labels"])
    jet, constituent = train["_features"]["jets"][0], train["_features"]["constituents"][0]
    variables = {"jets": [jet, "flavour_label"], "tracks": [constituent, "valid"]}
    batches = list(reader.stream(variables))
    assert len(batches) == -(-len(train["labels"]) // 64)
    np.testing.assert_array_equal(np.concatenate([b["jets"][jet] for b in batches]), train["jets"][:, 0])
    np.testing.assert_array_equal(np.concatenate([b["tracks"][constituent] for b in batches]),
                                  train["constituents"][..., 0])
    np.testing.assert_array_equal(np.concatenate([b["jets"]["flavour_label"] for b in batches]), train["labels"])
    np.testing.assert_array_equal(np.concatenate([b["tracks"]["valid"] for b in batches]), train["mask"])


def test_ftag_shards_are_byte_identical_across_runs(ntuples, tmp_path_factory, ftag):
    _, _, first = ftag
    _, _, second = _run(ntuples, tmp_path_factory, "ftag-again", {"layout": "ftag", "constituents_name": "tracks"})
    shards = sorted(os.listdir(os.path.join(first, "shards")))
    assert shards == sorted(os.listdir(os.path.join(second, "shards")))
    for name in shards:
        with open(os.path.join(first, "shards", name), "rb") as a, \
                open(os.path.join(second, "shards", name), "rb") as b:
            assert a.read() == b.read(), name


# ----------------------------------------------------------------------------------------------- Parquet

@pytest.mark.parametrize("how", ["jagged", "padded"])
def test_parquet_holds_the_plain_columns(plain, ntuples, tmp_path_factory, how):
    pq = pytest.importorskip("pyarrow.parquet")
    _, plain_report, expected = plain
    _, report, out = _parquet(ntuples, tmp_path_factory, how)
    assert report["samples"] == plain_report["samples"]
    assert not glob.glob(os.path.join(out, "*.h5")) and not os.path.exists(os.path.join(out, "shards"))
    for split in SPLITS:
        want = expected[split]
        parts = sorted(os.listdir(os.path.join(out, split)))
        assert parts == [f"part-{k:05d}-of-{len(parts):05d}.parquet" for k in range(len(parts))]
        table = pq.read_table(os.path.join(out, split))  # the directory reads as one dataset, parts in order
        assert table.num_rows == len(want["labels"])
        for i, name in enumerate(want["_features"]["jets"]):
            np.testing.assert_array_equal(table[name].to_numpy(), want["jets"][:, i])
        mask = want["mask"]
        for i, name in enumerate(want["_features"]["constituents"]):
            values = table[name].combine_chunks()
            if how == "jagged":
                np.testing.assert_array_equal(np.diff(values.offsets.to_numpy()), mask.sum(axis=1))
                np.testing.assert_array_equal(values.flatten().to_numpy(), want["constituents"][..., i][mask])
            else:
                np.testing.assert_array_equal(values.flatten().to_numpy().reshape(mask.shape),
                                              want["constituents"][..., i])
        if how == "padded":
            np.testing.assert_array_equal(table["mask"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
                                          .reshape(mask.shape), mask)
        np.testing.assert_array_equal(table["label"].to_numpy(), want["labels"])
        np.testing.assert_array_equal(table["weight"].to_numpy(), want["weights"])
        np.testing.assert_array_equal(table["event_number"].to_numpy(), want["event_number"])
        np.testing.assert_array_equal(table["entry"].to_numpy(), want["source"][:, 2])


def test_parquet_reads_in_pandas_polars_and_awkward(plain, ntuples, tmp_path_factory):
    _, _, expected = plain
    _, _, out = _parquet(ntuples, tmp_path_factory, "jagged")
    train = expected["train"]
    jet, constituent = train["_features"]["jets"][0], train["_features"]["constituents"][0]
    counts = train["mask"].sum(axis=1)

    pd = pytest.importorskip("pandas", reason="pandas (test extra)")
    frame = pd.read_parquet(os.path.join(out, "train"))
    np.testing.assert_array_equal(frame[jet].to_numpy(), train["jets"][:, 0])
    np.testing.assert_array_equal(frame["label"].to_numpy(), train["labels"])

    pl = pytest.importorskip("polars", reason="polars (test extra)")
    lazy = pl.scan_parquet(os.path.join(out, "train", "*.parquet"))
    frame = lazy.select(pl.col("label"), pl.col(constituent).list.len().alias("n")).collect()
    np.testing.assert_array_equal(frame["label"].to_numpy(), train["labels"])
    np.testing.assert_array_equal(frame["n"].to_numpy(), counts)

    import awkward as ak

    array = ak.from_parquet(os.path.join(out, "train"))
    np.testing.assert_array_equal(ak.num(array[constituent]).to_numpy(), counts)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(array[constituent])),
                                  train["constituents"][..., 0][train["mask"]])


# ------------------------------------------------------------------------------------ round trip of a shard

def _columns(n, rng):
    return {"constituents": rng.random((n, 6, 2)).astype(np.float32), "mask": np.arange(6) < rng.integers(0, 7, (n, 1)),
            "jets": rng.random((n, 3)).astype(np.float32), "jet_collections": rng.random((n, 2, 2)).astype(np.float32),
            "labels": rng.integers(0, 3, n).astype(np.int32), "weights": rng.random(n).astype(np.float32),
            "event_number": rng.integers(0, 10**12, n), "source": rng.integers(0, 1000, (n, 4)),
            "scores": rng.random((n, 2)).astype(np.float32)}


def _spec():
    datasets = (DatasetSpec("constituents", "float32", (6, 2)), DatasetSpec("mask", "bool", (6,)),
                DatasetSpec("jets", "float32", (3,)), DatasetSpec("jet_collections", "float32", (2, 2)),
                DatasetSpec("labels", "int32"), DatasetSpec("weights", "float32"),
                DatasetSpec("event_number", "int64"), DatasetSpec("source", "int64", (4,)),
                DatasetSpec("scores", "float32", (2,)))
    features = {"constituents": ["c_pt", "c_eta"], "jets": ["pt", "eta", "mass"], "jet_collections": ["pt", "m"]}
    return ColumnSpec(datasets, features, ("akt10", "akt4"), "scores")


@pytest.mark.parametrize("make", [
    lambda c: Hdf5Format(c, Storage(chunk_jets=4)),
    lambda c: Hdf5Format(c, Storage(chunk_jets=4), "ftag", "consts"),
    lambda c: ParquetFormat(c),
    lambda c: ParquetFormat(c, padded=True),
], ids=["plain", "ftag", "parquet-jagged", "parquet-padded"])
def test_a_shard_reads_back_as_written(tmp_path, make):
    """The second pass (standardization, reweighting, scores) reads shards back; every column must survive."""
    fmt = make(_spec())
    cols = _columns(23, np.random.default_rng(5))
    # the pipeline's constituents are the valid ones first, then zero padding; jagged Parquet stores no padding
    cols["constituents"][~cols["mask"]] = 0
    path = str(tmp_path / f"shard{fmt.extension}")
    fmt.write(path, cols, {"split": "train"})
    back = fmt.read(path)
    assert sorted(back) == sorted(cols)
    for name, values in cols.items():
        assert back[name].dtype == values.dtype, name
        np.testing.assert_array_equal(back[name], values, err_msg=name)

    empty = str(tmp_path / f"empty{fmt.extension}")
    fmt.write_empty(empty, {"split": "val"})
    assert all(len(v) == 0 for v in fmt.read(empty).values())


def test_column_names_must_be_unique():
    from root2hdf5.transforms.core.errors import ConfigError

    spec = _spec()
    clash = ColumnSpec(spec.datasets, {**spec.features, "jets": ["pt", "weight", "mass"]}, spec.collections, None)
    with pytest.raises(ConfigError, match=r"ftag: field names \['weight'\]"):
        Hdf5Format(clash, Storage(), "ftag")
    with pytest.raises(ConfigError, match=r"parquet: column names \['weight'\]"):
        ParquetFormat(clash)
    same_name = ColumnSpec(spec.datasets, {**spec.features, "constituents": ["pt", "eta"]}, spec.collections, None)
    Hdf5Format(same_name, Storage(), "ftag")  # jets and constituents are separate datasets there
    with pytest.raises(ConfigError, match=r"\['eta', 'pt'\]"):
        ParquetFormat(same_name)
