"""HDF5 files: the shard contract, split files as virtual datasets, reproducible bytes."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from root2hdf5.transforms.output.finalize import SinkSpec
from root2hdf5.transforms.output.formats import ColumnSpec, Hdf5Format, _fill
from root2hdf5.transforms.output.hdf5_files import (
    DatasetSpec,
    Storage,
    read_jets_file,
    write_jets_file,
    write_split_file,
)

DATASETS = [DatasetSpec("constituents", "float32", (5, 2), (("features", ["a", "b"]),)),
            DatasetSpec("mask", "bool", (5,)), DatasetSpec("labels", "int32"),
            DatasetSpec("source", "int64", (4,)), DatasetSpec("weights", "float32")]


STORE = Storage(chunk_jets=4)
ATTRS = {"config": "{}"}


def columns(n, seed):
    rng = np.random.default_rng(seed)
    return {"constituents": rng.random((n, 5, 2)).astype(np.float32), "mask": rng.random((n, 5)) > 0.5,
            "labels": rng.integers(0, 3, n).astype(np.int32), "source": rng.integers(0, 100, (n, 4)),
            "weights": rng.random(n).astype(np.float32)}


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none", "blosc-lz4", "blosc-zstd"])
def test_shard_contract(tmp_path, compression):
    if compression.startswith("blosc"):
        pytest.importorskip("hdf5plugin")
    cols = columns(10, 0)
    path = tmp_path / "s.h5"
    write_jets_file(str(path), cols, DATASETS, Storage(compression, chunk_jets=4), {**ATTRS, "split": "train"})
    with h5py.File(path) as f:
        assert f.attrs["num_jets"] == 10 and f.attrs["split"] == "train" and f.attrs["config"] == "{}"
        assert list(f["constituents"].attrs["features"]) == ["a", "b"]
        assert f["constituents"].chunks == (4, 5, 2)
        if compression.startswith("blosc"):  # filter 32001, and the file says what a reader needs
            plist = f["constituents"].id.get_create_plist()
            assert plist.get_filter(0)[0] == 32001 and f.attrs["compression"] == compression
            assert "import hdf5plugin" in f.attrs["hdf5plugin"]
        else:
            assert f["constituents"].compression == (None if compression == "none" else compression)
            assert "hdf5plugin" not in f.attrs
        for name, values in cols.items():
            assert f[name].dtype == values.dtype
            np.testing.assert_array_equal(f[name][...], values)


def test_split_file_reads_as_one_dataset_and_survives_a_move(tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    parts = [columns(7, 1), columns(0, 2), columns(5, 3)]
    members = []
    for i, cols in enumerate(parts):
        write_jets_file(str(out / "shards" / f"p{i}.h5"), cols, DATASETS, STORE, ATTRS)
        members.append((f"shards/p{i}.h5", len(cols["labels"])))
    write_split_file(str(out / "train.h5"), members, DATASETS, STORE, {**ATTRS, "split": "train"})
    moved = tmp_path / "elsewhere"
    shutil.move(str(out), str(moved))
    cwd = os.getcwd()
    os.chdir("/")  # relative sources resolve against the split file, not the working directory
    try:
        with h5py.File(moved / "train.h5") as f:
            assert f["constituents"].is_virtual and f.attrs["num_jets"] == 12
            for name in parts[0]:
                np.testing.assert_array_equal(f[name][...], np.concatenate([p[name] for p in parts]))
    finally:
        os.chdir(cwd)


def test_a_missing_shard_reads_as_fill_values_not_numbers(tmp_path):
    (tmp_path / "shards").mkdir()
    write_jets_file(str(tmp_path / "shards" / "p0.h5"), columns(3, 1), DATASETS, STORE, ATTRS)
    write_split_file(str(tmp_path / "train.h5"), [("shards/p0.h5", 3), ("shards/gone.h5", 2)], DATASETS, STORE, ATTRS)
    with h5py.File(tmp_path / "train.h5") as f:
        assert np.all(np.isnan(f["constituents"][3:]))
        assert np.all(f["labels"][3:] == -1)


def test_empty_split_file(tmp_path):
    write_split_file(str(tmp_path / "val.h5"), [], DATASETS, STORE, ATTRS)
    with h5py.File(tmp_path / "val.h5") as f:
        assert f["constituents"].shape == (0, 5, 2) and f.attrs["num_jets"] == 0


def test_same_content_same_bytes(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "shards").mkdir(parents=True)
        write_jets_file(str(tmp_path / name / "shards" / "p.h5"), columns(9, 4), DATASETS, STORE, ATTRS)
        write_split_file(str(tmp_path / name / "train.h5"), [("shards/p.h5", 9)], DATASETS, STORE, ATTRS)
    for rel in ("shards/p.h5", "train.h5"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    back = read_jets_file(str(tmp_path / "a" / "train.h5"), ["labels", "constituents"])
    np.testing.assert_array_equal(back["labels"], columns(9, 4)["labels"])


def test_sink_in_a_pipeline_writes_shards_then_finalizes(tmp_path):
    """WriteShuffledShards alone: routed batches in, a finished directory and an exact report out."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from root2hdf5.transforms.core.batch import RowBatch
    from root2hdf5.transforms.core.records import RangeStats
    from root2hdf5.transforms.output.sink import WriteShuffledShards
    from root2hdf5.transforms.read.sources import InputFile

    out, tmp = tmp_path / "out", tmp_path / "out" / ".tmp"
    for sub in ("shards", "pieces"):
        (tmp / sub).mkdir(parents=True)
    sink = SinkSpec(out_dir=str(out), tmp_dir=str(tmp), datasets=DATASETS, shards={"train": 2, "test": 1},
                    split_names=["train", "val", "test"], sample_names=["s"],
                    files=[InputFile(0, 0, "a.root", "t"), InputFile(0, 1, "b.root", "t")],
                    format=Hdf5Format(ColumnSpec(tuple(DATASETS), {"constituents": ["a", "b"]}), STORE),
                    features={"constituents": ["a", "b"]})
    batches, stats, expected = [], [], {}
    for f in range(2):
        cols = columns(20, f)
        cols["source"][:, :2] = [0, f]
        cols["source"][:, 2] = np.arange(20)
        b = RowBatch(0, f, data=dict(cols))
        b.data["_split"] = np.where(np.arange(20) % 4 == 0, 2, 0).astype(np.int8)
        b.data["_shard"] = np.where(b.data["_split"] == 0, np.arange(20) % 2, 0).astype(np.int32)
        b.data["_order"] = np.random.default_rng(f).integers(0, 2**63, 20).astype(np.uint64)
        batches.append(b)
        stats.append(RangeStats(0, f, {"events": 20, "jets": 20, "not_leading": 0, "cut": 0, "train": 15, "val": 0,
                                       "test": 5}))
        for i in range(20):
            expected[(f, i)] = "test" if b.data["_split"][i] == 2 else "train"

    def check(reports):
        (report,) = reports
        assert report["samples"]["s"]["written"] == {"train": 30, "val": 0, "test": 10}

    with TestPipeline() as p:
        s = p | "Stats" >> beam.Create(stats)
        assert_that(p | beam.Create(batches) | WriteShuffledShards(sink, s, spill=True), check)
    assert sorted(os.listdir(out)) == [".root2hdf5-manifest.json", "norm.yaml", "shards", "summary.json", "test.h5",
                                       "train.h5"]
    assert sorted(os.listdir(out / "shards")) == ["test-00000-of-00001.h5", "train-00000-of-00002.h5",
                                                  "train-00001-of-00002.h5"]
    for split in ("train", "test"):
        with h5py.File(out / f"{split}.h5") as handle:
            got = {(int(s[1]), int(s[2])) for s in handle["source"][...]}
            assert got == {k for k, v in expected.items() if v == split}


# ---------------------------------------------------------------------------------------- codecs, bytes


def _awkward_columns(n, seed):
    """Every kind of column the pipeline writes, with compressible and incompressible chunks and a partial
    last chunk: float32 with zero padding, bool, int32, int64, float16, a compound (FTAG) dtype."""
    rng = np.random.default_rng(seed)
    constituents = rng.normal(0, 1, (n, 40, 3)).astype(np.float32)
    constituents[:, 25:] = 0
    ftag = np.zeros(n, np.dtype([("pt", "f4"), ("eventNumber", "i8"), ("valid", "?")]))
    ftag["pt"], ftag["eventNumber"], ftag["valid"] = rng.exponential(1e5, n), rng.integers(0, 2**62, n), True
    return {"constituents": constituents, "mask": rng.random((n, 40)) < 0.6,
            "labels": rng.integers(0, 3, n).astype(np.int32), "source": rng.integers(0, 2**62, (n, 4)),
            "image": rng.normal(0, 1, (n, 4, 4)).astype(np.float16), "jets": ftag}


CODEC_DATASETS = [DatasetSpec("constituents", "float32", (40, 3)), DatasetSpec("mask", "bool", (40,)),
                  DatasetSpec("labels", "int32"), DatasetSpec("source", "int64", (4,)),
                  DatasetSpec("image", "float16", (4, 4)),
                  DatasetSpec("jets", np.dtype([("pt", "f4"), ("eventNumber", "i8"), ("valid", "?")]))]


def test_lzf_chunks_are_what_h5pys_filter_compresses(tmp_path):
    """The reproducible encoder feeds LZF exactly the bytes HDF5's pipeline would (zero-padded last chunk,
    byte shuffle), marks chunks LZF cannot shrink as HDF5 does, and keeps h5py's filter pipeline."""
    lzf = pytest.importorskip("_lzf")
    cols = _awkward_columns(1000, 3)
    ours, theirs = tmp_path / "ours.h5", tmp_path / "theirs.h5"
    write_jets_file(str(ours), cols, CODEC_DATASETS, Storage("lzf", chunk_jets=256), ATTRS)
    with h5py.File(theirs, "w") as f:  # h5py's own filter
        for name, values in cols.items():
            f.create_dataset(name, data=values, chunks=(256, *values.shape[1:]), compression="lzf", shuffle=True)

    def raw(dataset, index):
        info = dataset.id.get_chunk_info(index)
        mask, data = dataset.id.read_direct_chunk(info.chunk_offset)
        if mask & 2:  # stored without lzf
            return bytes(data), True
        size = 256 * int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
        out = lzf.ffi.new("char[]", size)
        assert lzf.lib.lzf_decompress(lzf.ffi.from_buffer(data), len(data), out, size) == size
        return lzf.ffi.buffer(out, size)[:], False

    with h5py.File(ours) as a, h5py.File(theirs) as b:
        skipped = 0
        for name, values in cols.items():
            pa, pb = a[name].id.get_create_plist(), b[name].id.get_create_plist()
            assert [pa.get_filter(i) for i in range(pa.get_nfilters())] == \
                [pb.get_filter(i) for i in range(pb.get_nfilters())]
            assert a[name].dtype == values.dtype and a[name][...].tobytes() == values.tobytes()
            assert a[name].id.get_num_chunks() == b[name].id.get_num_chunks() == 4
            for i in range(4):
                (mine, mine_raw), (want, want_raw) = raw(a[name], i), raw(b[name], i)
                assert mine == want, (name, i)
                skipped += mine_raw
                if not mine_raw:
                    assert not want_raw, (name, i)  # what liblzf 3.6 shrinks, h5py's liblzf shrinks too
        assert skipped, "an incompressible chunk (random int64) is stored as HDF5 stores it"


def test_lzf_files_read_with_plain_h5py_and_are_reproducible(tmp_path):
    """Written by two fresh processes after different work (heap and stack in other states): the same
    bytes; read back by an interpreter that imports nothing but h5py."""
    pytest.importorskip("_lzf")
    script = (
        "import sys, numpy as np\n"
        "from tests.test_hdf5_sink import _awkward_columns, CODEC_DATASETS\n"
        "from root2hdf5.transforms.output.hdf5_files import Storage, write_jets_file\n"
        "junk = [np.random.default_rng(i).random(int(1e5 * (i + 1))) for i in range(int(sys.argv[2]))]\n"
        "write_jets_file(sys.argv[1], _awkward_columns(3000, 5), CODEC_DATASETS, Storage('lzf'), {'x': 1})\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name, junk in (("a.h5", "0"), ("b.h5", "7")):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name), junk], cwd=repo, check=True)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    check = ("import sys, h5py\n"
             "f = h5py.File(sys.argv[1])\n"
             "print(sorted(f), float(f['constituents'][...].sum()), int(f['mask'][...].sum()))\n"
             "assert 'hdf5plugin' not in sys.modules and 'root2hdf5' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", check, str(tmp_path / "a.h5")], check=True, capture_output=True,
                         text=True).stdout
    cols = _awkward_columns(3000, 5)
    assert out.split()[-1] == str(int(cols["mask"].sum()))


@pytest.mark.parametrize("compression", ["blosc-lz4", "blosc-zstd", "lzf", "gzip"])
def test_codecs_round_trip_exactly(tmp_path, compression):
    if compression.startswith("blosc"):
        pytest.importorskip("hdf5plugin")
    cols = _awkward_columns(777, 9)
    (tmp_path / "shards").mkdir()
    write_jets_file(str(tmp_path / "shards" / "s.h5"), cols, CODEC_DATASETS, Storage(compression, chunk_jets=100),
                    ATTRS)
    write_split_file(str(tmp_path / "train.h5"), [("shards/s.h5", 777)], CODEC_DATASETS,
                     Storage(compression, chunk_jets=100), ATTRS,
                     fills={d.name: _fill(np.dtype(d.dtype)) for d in CODEC_DATASETS})
    for path in (tmp_path / "shards" / "s.h5", tmp_path / "train.h5"):
        back = read_jets_file(str(path))
        assert back.keys() == cols.keys()
        for name, values in cols.items():
            assert back[name].dtype == values.dtype and back[name].tobytes() == values.tobytes(), name
        with h5py.File(path) as f:
            assert (f.attrs.get("compression") == compression) == compression.startswith("blosc")
