"""RNTuple reading: the primed field tree equals uproot's own, and a range costs one request on a shared handle.

Priming sets a private attribute of uproot's fields (transforms/read/rntuple.py), so these tests compare
what a primed and an unprimed handle answer, on the ~1300-field NanoAOD RNTuple and the muon RNTuple."""
import awkward as ak
import pytest
import uproot

from root2hdf5.transforms.read import trees
from root2hdf5.transforms.read.ranges import EntryRange, ReadRange
from root2hdf5.transforms.read.rntuple import prime_fields
from root2hdf5.transforms.read.sources import InputFile
from root2hdf5.transforms.read.trees import BranchPlan
from tests.conftest import shared_file

NANO = "cmsopendata2015_ttbar_19980_NANOAOD_RNTupleImporter_rntuple_v1-0-0-1.root"
MUONS = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"


def _fresh(name: str):
    return uproot.open(shared_file(name))["Events"]


@pytest.mark.parametrize("name", [NANO, MUONS])
def test_primed_keys_equal_unprimed_keys(name):
    plain, primed = _fresh(name), _fresh(name)
    assert prime_fields(primed)
    assert primed.keys() == plain.keys()
    assert primed.keys(recursive=False) == plain.keys(recursive=False)
    assert [f.name for f in primed.fields] == [f.name for f in plain.fields]


def test_primed_arrays_equal_unprimed_arrays():
    plain, primed = _fresh(NANO), _fresh(NANO)
    prime_fields(primed)
    names = [k for k in plain.keys(recursive=False) if k.startswith(("Jet_", "FatJet_", "nJet"))] + ["event"]
    a = plain.arrays(filter_name=names)[names]
    b = primed.arrays(filter_name=names)[names]
    assert a.fields == b.fields == names
    for name in names:
        assert ak.to_list(a[name]) == ak.to_list(b[name]), name


def test_a_range_is_one_request_on_one_shared_handle(monkeypatch):
    """Seen 5: 1,314 separate per-field reads in init and a fresh open (and field walk) per range."""
    path = str(shared_file(NANO))
    calls = {"open": 0, "arrays": 0}
    real_open, real_arrays = trees.uproot.open, uproot.behaviors.RNTuple.HasFields.arrays

    def counting_open(*args, **kwargs):
        calls["open"] += 1
        return real_open(*args, **kwargs)

    def counting_arrays(self, *args, **kwargs):
        calls["arrays"] += 1
        return real_arrays(self, *args, **kwargs)

    monkeypatch.setattr(trees.uproot, "open", counting_open)
    monkeypatch.setattr(uproot.behaviors.RNTuple.HasFields, "arrays", counting_arrays)
    names = ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2")
    plan = BranchPlan("events", names, event_number="event")
    read = ReadRange(plan)
    spec = InputFile(0, 0, path, "Events")
    ranges = [(0, 3), (3, 7), (7, 10)]
    chunks = [next(iter(read.process(EntryRange(spec, a, b, i, 3)))) for i, (a, b) in enumerate(ranges)]
    read.teardown()
    assert calls == {"open": 1, "arrays": 3}
    expected = _fresh(NANO).arrays(filter_name=list(names) + ["event"])
    for chunk, (a, b) in zip(chunks, ranges):
        assert chunk.arrays.fields == list(plan.to_read())
        for name in plan.to_read():
            assert ak.to_list(chunk.arrays[name]) == ak.to_list(expected[name][a:b])
