"""Opening trees, checking branches, planning entry ranges."""

import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read.trees import BranchPlan, check_branches, cluster_starts, open_tree, plan_ranges

EVENTS = BranchPlan("events", ("jet_pt", "jet_eta"), ("jet_constit_pt",), ("rho",), "eventNumber", "jet_pt",
                    "jet_pt > 1 & NPV > 2")


@pytest.mark.parametrize("n, boundaries, step", [
    (5000, [0, 5000], 1000), (10, [0, 3, 6, 9, 10], 4), (100, [0, 100], 30), (7, [0, 7], 100),
    (1000, list(range(0, 1001, 7)), 50), (1000, [0, 10, 990, 1000], 100), (1, [0, 1], 1),
])
def test_ranges_cover_every_entry_once(n, boundaries, step):
    ranges = plan_ranges(n, boundaries, step)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))


def test_ranges_prefer_cluster_boundaries():
    boundaries = list(range(0, 1001, 10))
    ranges = plan_ranges(1000, boundaries, 95)
    assert all(a in boundaries for a, _ in ranges)
    assert all(80 <= b - a <= 100 for a, b in ranges[:-1])


def test_a_big_single_cluster_is_still_split():
    assert len(plan_ranges(5000, [0, 5000], 1000)) == 5


def test_cluster_starts_of_ttree_and_rntuple(ntuples):
    rnt = open_tree(ntuples["events_sig_0"], synthetic.EVENTS_TREE)
    assert cluster_starts(rnt, ["jet_pt"]) == [0, 100, 200, 300]
    ttree = open_tree(ntuples["jets_sig"], synthetic.JETS_TREE)
    starts = cluster_starts(ttree, ["fjet_pt", "fjet_clus_pt"])
    assert starts[0] == 0 and starts[-1] == ttree.num_entries and len(starts) == 4


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_tree(str(tmp_path / "nope.root"), "t")


def test_not_a_root_file(tmp_path):
    path = tmp_path / "notes.root"
    path.write_text("these are not the jets you are looking for\n" * 10)
    with pytest.raises(InputError, match=r"notes.root: cannot be opened as a ROOT file"):
        open_tree(str(path), "t")


@pytest.mark.parametrize("fixture, tree, keep", [("events_bkg", synthetic.EVENTS_TREE, 0.3),
                                                 ("events_bkg", synthetic.EVENTS_TREE, 0.9),
                                                 ("jets_sig", synthetic.JETS_TREE, 0.5)])
def test_truncated_file_fails_naming_it(ntuples, tmp_path, fixture, tree, keep):
    from root2hdf5.transforms.read.ranges import ReadRange, SplitIntoRanges
    from root2hdf5.transforms.read.sources import InputFile

    path = tmp_path / "cut.root"
    data = open(ntuples[fixture], "rb").read()
    path.write_bytes(data[: int(len(data) * keep)])
    plan = BranchPlan("events", ("jet_pt",), ("jet_constit_pt",)) if tree == synthetic.EVENTS_TREE else \
        BranchPlan("jets", ("fjet_pt",), ("fjet_clus_pt",))
    with pytest.raises(InputError, match=r"cut.root"):
        for entry_range in SplitIntoRanges(plan, 100).process(InputFile(0, 0, str(path), tree)):
            list(ReadRange(plan).process(entry_range))


def test_missing_tree_lists_the_trees(ntuples):
    with pytest.raises(InputError, match=r"no tree 'Jets'; trees in this file: IsolatedJet_tree"):
        open_tree(ntuples["events_bkg"], "Jets")


def test_object_that_is_not_a_tree(tmp_path):
    path = tmp_path / "h.root"
    with uproot.recreate(path) as handle:
        handle["h"] = np.histogram(np.arange(10), bins=3)
    with pytest.raises(InputError, match="not a TTree or RNTuple"):
        open_tree(str(path), "h")


def test_good_branches_pass(ntuples):
    check_branches(open_tree(ntuples["events_bkg"], synthetic.EVENTS_TREE), EVENTS, "f")


@pytest.mark.parametrize("plan, message", [
    (BranchPlan("events", ("jet_ptt",)), r"jet branch 'jet_ptt' does not exist; did you mean 'jet_pt'"),
    (BranchPlan("events", ("jet_pt",), event=("rhoo",)), r"event branch 'rhoo' does not exist"),
    (BranchPlan("events", ("jet_pt",), selection="jet_mass > 3"), r"branch in input.selection 'jet_mass'"),
    (BranchPlan("jets", ("jet_pt",)), r"jet branch 'jet_pt' holds a list per entry .* layout 'jets' needs one value"),
    (BranchPlan("events", ("jet_pt",), ("jet_eta",)), r"constituent branch 'jet_eta' holds a list per entry"),
    (BranchPlan("events", ("rho",)), r"jet branch 'rho' holds one value per entry"),
    (BranchPlan("events", ("jet_pt",), selection="jet_constit_pt > 3"), r"holds a list of lists"),
])
def test_bad_branches_are_named(ntuples, plan, message):
    with pytest.raises(InputError, match=message):
        check_branches(open_tree(ntuples["events_bkg"], synthetic.EVENTS_TREE), plan, ntuples["events_bkg"])
