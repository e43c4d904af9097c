"""The numpy join of vector<vector<T>> baskets (transforms/read/basket_join.py) builds exactly uproot's arrays:
every TTree branch of lists of lists of numbers (what the join takes on) in every shared and generated
file, whole and in ranges that start and end inside baskets."""
from __future__ import annotations

import awkward as ak
import pytest
import uproot
from uproot.interpretation.objects import AsObjects

from root2hdf5.transforms.read import basket_join
from tests.conftest import SHARED_DATA

SHARED = sorted(p.name for p in SHARED_DATA.glob("*.root")) if SHARED_DATA.is_dir() else []


def _ranges(branch) -> list[tuple[int, int]]:
    n = branch.num_entries
    edges = [int(e) for e in branch.entry_offsets]
    inside = [(a + b) // 2 for a, b in zip(edges, edges[1:]) if b - a > 1]  # a point inside each basket
    ranges = [(0, n)]
    if len(inside) >= 2:
        ranges.append((inside[0], inside[1]))  # two baskets, each cut
    if edges[1] - edges[0] > 2:
        ranges.append((1, edges[1] - 1))  # inside the first basket only
    return ranges


def _read(tree, branches, start, stop):
    arrays = tree.arrays(branches, entry_start=start, entry_stop=stop)  # the file has no array cache
    return {name: ak.to_buffers(ak.to_packed(arrays[name])) for name in branches}


def _compare(path) -> int:
    """Joined by numpy and by uproot, the same forms, lengths and buffers; how many joins took the fast path."""
    joins = []
    join = basket_join.join
    counting = lambda parts: joins.append(1) or join(parts)  # noqa: E731
    try:
        with uproot.open(path, array_cache=None) as handle:
            for name, cls in handle.classnames().items():
                tree = handle[name] if cls == "TTree" else None
                branches = [b.name for b in tree.branches if isinstance(b.interpretation, AsObjects)
                            and not b.branches and _lists_of_lists(b) and _readable(tree, b.name)] if tree else []
                for start, stop in _ranges(tree[branches[0]]) if branches else ():
                    basket_join.uninstall()
                    theirs = _read(tree, branches, start, stop)
                    basket_join.install()
                    basket_join.join = counting
                    ours = _read(tree, branches, start, stop)
                    basket_join.join = join
                    for branch in branches:
                        (form_a, length_a, buffers_a), (form_b, length_b, buffers_b) = theirs[branch], ours[branch]
                        assert (form_a, length_a) == (form_b, length_b), (path, name, branch, start, stop)
                        assert {k: bytes(v) for k, v in buffers_a.items()} == \
                            {k: bytes(v) for k, v in buffers_b.items()}, (path, name, branch, start, stop)
    finally:
        basket_join.join = join
        basket_join.install()
    return len(joins)


def _lists_of_lists(branch) -> bool:
    """What the join takes on (any other object is uproot's own path, untouched): lists of lists of numbers."""
    try:
        form = branch.interpretation.awkward_form(branch.file)
    except uproot.interpretation.objects.CannotBeAwkward:
        return False
    return isinstance(form, ak.forms.ListOffsetForm) and isinstance(form.content, ak.forms.ListOffsetForm) and \
        isinstance(form.content.content, ak.forms.NumpyForm)


def _readable(tree, branch) -> bool:
    try:
        tree[branch].array(entry_stop=1)
        return True
    except Exception:  # noqa: BLE001 - branches uproot cannot read at all are not ours to compare
        return False


@pytest.mark.parametrize("name", SHARED or ["(none)"])
def test_the_join_is_uproots_on_every_shared_file(name):
    if not SHARED:
        pytest.skip(f"no shared ROOT files in {SHARED_DATA} (set ROOT2HDF5_SHARED_DATA to their folder)")
    joins = _compare(SHARED_DATA / name)
    if name.startswith(("jets_events_", "uproot-vectorVectorDouble")):
        assert joins, "vector<vector> branches were not joined by numpy"


def test_the_join_is_uproots_on_the_generated_files(ntuples):
    for path in ntuples.values():
        if str(path).endswith(".root"):
            _compare(path)
