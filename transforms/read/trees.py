"""Opening trees and checking their branches before any jet is read.

TTrees and RNTuples are both read through uproot, so a per-event ntuple may hold its constituents as
`std::vector<std::vector<float>>` in either format. Every failure names the file, the tree and the branch.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.rows.expressions import Expression

# Depth of a branch, as the number of dimensions of the awkward array uproot returns for it.
_DEPTH_WORDS = {
    1: "one value per entry",
    2: "a list per entry (like vector<float>)",
    3: "a list of lists per entry (like vector<vector<float>>)",
}


def _describe(ndim: int) -> str:
    return _DEPTH_WORDS.get(ndim, f"{ndim - 1} levels of nesting per entry")


@dataclass(frozen=True)
class BranchPlan:
    """Which branches a job reads, and the depth each must have for the configured layout."""

    layout: str
    jet: tuple[str, ...] = ()
    constituent: tuple[str, ...] = ()
    event: tuple[str, ...] = ()
    event_number: str | None = None
    leading_by: str | None = None
    selection: str | None = None
    categories: tuple[str, ...] = ()  # category selections
    weight: str | None = None  # per-event or per-jet weight branch
    collections: tuple[str, ...] = ()  # branches of stacked jet collections (jet level)
    extra: tuple[tuple[str, str, tuple[int, ...]], ...] = ()  # (branch, what it is for, allowed ndims)

    @property
    def selection_symbols(self) -> tuple[str, ...]:
        return tuple(Expression(self.selection, "input.selection").symbols) if self.selection else ()

    @property
    def category_symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for text in self.categories for s in Expression(text, "category").symbols))

    def roles(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(branch, what it is for, allowed ndims), in reading order."""
        per_event = self.layout == "events"
        jet_ndim = 2 if per_event else 1
        items = [(b, "jet branch", (jet_ndim,)) for b in self.jet]
        items += [(b, "constituent branch", (jet_ndim + 1,)) for b in self.constituent]
        items += [(b, "event branch", (1,)) for b in self.event]
        if self.event_number:
            items.append((self.event_number, "event number", (1,)))
        if self.leading_by:
            items.append((self.leading_by, "input.leading_by", (jet_ndim,)))
        items += [(b, "jet collection branch", (jet_ndim,)) for b in self.collections]
        if self.weight:
            items.append((self.weight, "weights.branch", (1, jet_ndim)))
        items += [(b, "branch in input.selection", (1, jet_ndim)) for b in self.selection_symbols]
        items += [(b, "branch in a category selection", (1, jet_ndim)) for b in self.category_symbols]
        return items + list(self.extra)

    def to_read(self) -> list[str]:
        return list(dict.fromkeys(branch for branch, _, _ in self.roles()))


def read_arrays(tree, names: list[str], **options):
    """`tree.arrays` of exactly `names`, in that order. Plain names go through `filter_name`, which skips
    uproot's expression parser: that parser uses `ast`, which CPython 3.11 can break with "AST constructor
    recursion depth mismatch" when threads parse at once (the multi-threaded DirectRunner does)."""
    if any(ch in name for name in names for ch in "*?[]/"):  # glob or regex characters: not a plain name
        return tree.arrays(names, array_cache=None, **options)
    return tree.arrays(filter_name=names, array_cache=None, **options)[names]


def open_tree(path: str, tree: str):
    """Open `tree` in `path` (TTree or RNTuple). The caller closes `tree.file` (or uses `closing`)."""
    try:
        handle = uproot.open(path, object_cache=None, array_cache=None)
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except Exception as err:  # uproot raises many types for damaged files
        raise InputError(f"{path}: cannot be opened as a ROOT file ({type(err).__name__}: {err})") from None
    try:
        keys = handle.keys(cycle=False)
    except Exception as err:
        handle.close()
        raise InputError(f"{path}: the ROOT file is damaged; its directory cannot be read "
                         f"({type(err).__name__}: {err})") from None
    if tree not in keys:
        handle.close()
        trees = [k for k, cls in handle.classnames(cycle=False).items() if cls in ("TTree", "ROOT::RNTuple")]
        if not keys:
            raise InputError(f"{path}: the file holds no objects (it may be truncated or was not closed "
                             f"properly), so tree {tree!r} is missing")
        raise InputError(f"{path}: no tree {tree!r}; trees in this file: {', '.join(trees) or 'none'}")
    try:
        obj = handle[tree]
        if not isinstance(obj, (uproot.behaviors.TTree.TTree, uproot.behaviors.RNTuple.RNTuple)):
            handle.close()
            raise InputError(f"{path}: {tree!r} is a {type(obj).__name__}, not a TTree or RNTuple")
        obj.num_entries, obj.keys()  # metadata is read lazily: make a damaged header fail here
    except InputError:
        raise
    except Exception as err:
        handle.close()
        raise InputError(f"{path}: tree {tree!r} cannot be read; the file may be truncated or damaged "
                         f"({type(err).__name__}: {err})") from None
    return obj


def check_branches(tree, plan: BranchPlan, path: str) -> None:
    """Raise InputError unless every planned branch exists with the depth the layout needs."""
    where = f"{path}: tree {tree.name!r}"
    keys = list(tree.keys())
    known = set(keys)
    for branch, what, _ in plan.roles():
        if branch not in known:
            close = difflib.get_close_matches(branch, keys, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InputError(f"{where}: {what} {branch!r} does not exist{hint}")
    try:
        empty = read_arrays(tree, plan.to_read(), entry_stop=0)
    except Exception as err:
        raise InputError(f"{where}: cannot interpret the branches {plan.to_read()} "
                         f"({type(err).__name__}: {err})") from None
    for branch, what, ndims in plan.roles():
        ndim = empty[branch].ndim
        if ndim not in ndims:
            raise InputError(
                f"{where}: {what} {branch!r} holds {_describe(ndim)}, but layout {plan.layout!r} needs "
                f"{' or '.join(_describe(n) for n in ndims)}")


def cluster_starts(tree, branches: list[str]) -> list[int]:
    """Entry numbers where all `branches` start a new basket/cluster, including 0 and num_entries."""
    try:
        if hasattr(tree, "common_entry_offsets"):
            return list(tree.common_entry_offsets(filter_name=branches))
        if hasattr(tree, "cluster_summaries"):
            return [c.num_first_entry for c in tree.cluster_summaries] + [tree.num_entries]
    except Exception:  # boundaries are only an optimisation
        pass
    return [0, tree.num_entries]


def plan_ranges(num_entries: int, boundaries: list[int], step: int) -> list[tuple[int, int]]:
    """Split [0, num_entries) into ranges of about `step` entries that start and end on boundaries.

    Neighbouring clusters are merged until a range reaches `step`; a cluster much larger than `step`
    is cut evenly, since parallelism matters more than alignment there.
    """
    edges = sorted({0, num_entries, *(b for b in boundaries if 0 < b < num_entries)})
    ranges, start = [], 0
    for low, high in zip(edges, edges[1:]):
        if high - start > step and low > start:  # this cluster would overflow the range: close it
            ranges.append((start, low))
            start = low
        if high - start > step:  # one cluster larger than a step
            pieces = max(1, round((high - start) / step))
            cuts = [start + (high - start) * k // pieces for k in range(pieces + 1)]
            ranges.extend(zip(cuts[:-1], cuts[1:]))
            start = high
    if start < num_entries:
        ranges.append((start, num_entries))
    return ranges
