"""ReadRootRanges: files become many ranges whose union is exactly the file's entries."""
import apache_beam as beam
import awkward as ak
import numpy as np
import pytest
import uproot
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.read import inflate
from root2hdf5.transforms.read.ranges import ReadRootRanges
from root2hdf5.transforms.read.sources import InputFile
from root2hdf5.transforms.read.trees import BranchPlan
from tests.conftest import shared_file


def test_ranges_read_every_entry_exactly_once(ntuples):
    files = [InputFile(0, 0, ntuples["events_sig_0"], synthetic.EVENTS_TREE),
             InputFile(1, 0, ntuples["events_bkg"], synthetic.EVENTS_TREE)]
    plan = BranchPlan("events", ("jet_pt",), ("jet_constit_pt",), (), "eventNumber")
    expected = {}
    for spec in files:
        arrays = uproot.open(spec.path)[spec.tree].arrays(["eventNumber", "jet_constit_pt"])
        expected[spec.path] = (arrays["eventNumber"].to_numpy(), float(np.sum(np.asarray(
            __import__("awkward").flatten(arrays["jet_constit_pt"], axis=None)), dtype=np.float64)))

    def summarise(chunk):
        import awkward as ak
        r = chunk.range
        return (r.file.path, r.start, r.stop, chunk.arrays["eventNumber"].to_numpy().tolist(),
                float(np.sum(np.asarray(ak.flatten(chunk.arrays["jet_constit_pt"], axis=None)), dtype=np.float64)),
                sorted(chunk.arrays.fields))

    def check(rows):
        by_file = {}
        for path, start, stop, events, total, fields in rows:
            assert fields == sorted(plan.to_read()), "only the planned branches are read"
            assert len(events) == stop - start
            by_file.setdefault(path, []).append((start, stop, events, total))
        assert set(by_file) == set(expected)
        for path, parts in by_file.items():
            parts.sort()
            assert len(parts) > 1, "a file becomes several work units"
            assert parts[0][0] == 0 and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            events = np.concatenate([p[2] for p in parts])
            np.testing.assert_array_equal(events, expected[path][0])
            assert abs(sum(p[3] for p in parts) - expected[path][1]) < 1e-6 * expected[path][1]

    with TestPipeline() as p:
        chunks, skipped = p | ReadRootRanges(files, plan, step_size=90)
        assert_that(chunks | beam.Map(summarise), check)
        assert_that(skipped, equal_to([]), label="nothing skipped")


@pytest.mark.parametrize("name", ["jets_events_zprime.root", "jets_flat_dijet.root", "pfnano_zprime.root"])
def test_libdeflate_reads_the_same_arrays_as_zlib(name, ntuples):
    """libdeflate inflates the ZLIB baskets of TTrees (vector<vector<float>> included) and RNTuple pages to
    exactly what zlib gives, and is really used when installed."""
    deflate = pytest.importorskip("deflate")
    paths = [shared_file(name), ntuples["events_sig_0"]]
    calls = []
    original = deflate.zlib_decompress

    def read_all(path):
        with uproot.open(path) as handle:
            trees = [k for k, c in handle.classnames().items() if c in ("TTree", "ROOT::RNTuple")]
            return {tree: ak.to_buffers(ak.to_packed(handle[tree].arrays())) for tree in trees}

    try:
        inflate.uninstall()
        with_zlib = [read_all(p) for p in paths]
        assert inflate.install() == "libdeflate"
        deflate.zlib_decompress = lambda *a: calls.append(1) or original(*a)
        with_libdeflate = [read_all(p) for p in paths]
    finally:
        deflate.zlib_decompress = original
        inflate.install()
    assert calls, "libdeflate was not used"
    for a, b in zip(with_zlib, with_libdeflate):
        assert a.keys() == b.keys() and a
        for tree in a:
            form_a, length_a, buffers_a = a[tree]
            form_b, length_b, buffers_b = b[tree]
            assert form_a == form_b and length_a == length_b
            assert {k: bytes(v) for k, v in buffers_a.items()} == {k: bytes(v) for k, v in buffers_b.items()}


def test_without_libdeflate_zlib_is_kept(monkeypatch):
    import uproot.compression

    try:
        inflate.uninstall()
        monkeypatch.setenv(inflate.ENV, "zlib")
        assert inflate.install() == "zlib"
        assert getattr(uproot.compression._DecompressZLIB.decompress, "_root2hdf5", None) is None
    finally:
        monkeypatch.delenv(inflate.ENV)
        inflate.install()
