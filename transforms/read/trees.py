"""Opening trees, checking their branches before any jet is read, and reading them.

TTrees and RNTuples are both read through uproot, so a per-event ntuple may hold its constituents as
`std::vector<std::vector<float>>` in either format. Every failure names the file, the tree and the branch.
Branch names may hold any character (`Jet/Jet.PT`, `Jet/Jet.Tau[5]`); names that are components of object
branches (`jetp4.px`) are read through their branch (transforms.read.objects). An event-level value stored
as a list of one per entry (Delphes' `Event/Event.Number`) is read as that one value.
"""
from __future__ import annotations

import difflib
import keyword
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import awkward as ak
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read import basket_join, inflate
from root2hdf5.transforms.read.links import LinkSpec
from root2hdf5.transforms.read.objects import Derived, check_readable, derive, derived_name
from root2hdf5.transforms.read.rntuple import is_rntuple, prime_fields
from root2hdf5.transforms.rows.expressions import Expression

inflate.install()  # libdeflate for ZLIB baskets when installed, in every process that reads
basket_join.install()  # vector<vector> baskets joined by numpy

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
    links: LinkSpec | None = None  # constituents listed per event, reached through an index (read/links.py)

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
        if self.links is None:
            items += [(b, "constituent branch", (jet_ndim + 1,)) for b in self.constituent]
        else:  # one list per event, gathered into lists per jet through the links
            items += [(b, "linked constituent branch", (2,)) for b in self.constituent]
            per_link = (2,) if self.links.jet_index else (3,)
            items += [(b, f"constituent_links.{key}", (2,) if key == "jet_index" else per_link)
                      for key, b in (("jet_index", self.links.jet_index), ("index", self.links.index),
                                     ("valid", self.links.valid)) if b]
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

    def one_value(self) -> list[str]:
        """Branches that must hold one value per entry in every role they play: a list of exactly one per
        entry (Delphes' `Event/Event.Number`) is read as that value."""
        allowed: dict[str, set] = {}
        for branch, _, ndims in self.roles():
            allowed.setdefault(branch, set()).update(ndims)
        return [b for b, ndims in allowed.items() if ndims == {1}]


# uproot's filter_name takes glob and regex characters as such (`Jet/Jet.Tau[5]` silently matches nothing,
# `Jet/Jet.PT` comes back as `Jet.PT`), and reads a matched branch whose name is not a Python identifier
# (`AnalysisJetsAuxDyn.pt`) through get("...") and its expression parser. Such names are passed as exact
# keys, which uproot looks up without parsing.


def _plain(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


_NAME_PLANS: dict[int, dict] = {}  # id(open tree) -> names -> plan; uproot's trees are not hashable


def _name_plan(tree, names: tuple[str, ...]) -> tuple[list[str], list[Derived]]:
    """(branches to read, names derived from object branches), once per open tree and list of names."""
    if id(tree) not in _NAME_PLANS:
        _NAME_PLANS[id(tree)] = {}
        weakref.finalize(tree, _NAME_PLANS.pop, id(tree), None)
    plans = _NAME_PLANS[id(tree)]
    if names not in plans:
        if "" not in plans:  # the keys once per tree: a walk over every branch
            plans[""] = set(tree.keys())
        keys = plans[""]
        derived = [d for d in (derived_name(tree, n, keys) for n in names if n not in keys) if d is not None]
        bases = [d.base for d in derived]
        plain = {d.name for d in derived}
        plans[names] = (list(dict.fromkeys([n for n in names if n not in plain] + bases)), derived)
    return plans[names]


def read_arrays(tree, names: list[str], **options):
    """The arrays of exactly `names`, in that order (one record array with a field per name), in one uproot
    call. Identifiers go through `filter_name`, which skips uproot's expression parser: that parser uses
    `ast`, which CPython 3.11 can break with "AST constructor recursion depth mismatch" when threads parse
    at once (the multi-threaded DirectRunner does). Other names (`Jet/Jet.PT`, `AnalysisJetsAuxDyn.pt`) are
    passed as exact keys, which uproot looks up without parsing. RNTuple names always use filter_name."""
    branches, derived = _name_plan(tree, tuple(names))
    if is_rntuple(tree):  # a set lookup per field: uproot matches a list of names as globs, field by field
        wanted = frozenset(branches)
        arrays = tree.arrays(filter_name=lambda name: name in wanted, **options)
    elif all(_plain(name) for name in branches):
        arrays = tree.arrays(filter_name=branches, array_cache=None, **options)
    else:
        arrays = tree.arrays(branches, array_cache=None, **options)
    if not derived:
        return arrays[names]
    values = {name: arrays[name] for name in branches}
    values.update(derive(arrays, derived))
    return ak.zip({name: values[name] for name in names}, depth_limit=1)


def one_value_per_entry(arrays, names, where: str, start: int = 0):
    """`arrays` with each of `names` that comes as lists of exactly one value per entry replaced by those
    values; a list of another length is an InputError naming the entry."""
    fields = {}
    for name in names:
        values = arrays[name]
        if values.ndim != 2:
            continue
        counts = ak.to_numpy(ak.num(values, axis=1))
        bad = (counts != 1).nonzero()[0]
        if bad.size:
            raise InputError(f"{where}: branch {name!r} must hold one value per entry, but entry "
                             f"{start + int(bad[0])} holds {int(counts[bad[0]])}")
        fields[name] = ak.flatten(values, axis=1)
    if not fields:
        return arrays
    return ak.zip({name: fields.get(name, arrays[name]) for name in arrays.fields}, depth_limit=1)


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
        if is_rntuple(obj):
            prime_fields(obj)  # else every fresh handle pays seconds for its field tree (read/rntuple.py)
        obj.num_entries, obj.keys()  # metadata is read lazily: make a damaged header fail here
    except InputError:
        raise
    except Exception as err:
        handle.close()
        raise InputError(f"{path}: tree {tree!r} cannot be read; the file may be truncated or damaged "
                         f"({type(err).__name__}: {err})") from None
    return obj


def check_branches(tree, plan: BranchPlan, path: str) -> None:
    """Raise InputError unless every planned branch exists, holds numbers, and has the depth the layout
    needs."""
    where = f"{path}: tree {tree.name!r}"
    keys = list(tree.keys())
    known = set(keys)
    for branch, what, _ in plan.roles():
        if branch not in known and derived_name(tree, branch, known) is None:
            close = difflib.get_close_matches(branch, keys, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InputError(f"{where}: {what} {branch!r} does not exist{hint}")
    roles = {branch: what for branch, what, _ in reversed(plan.roles())}
    if is_rntuple(tree):  # its fields' forms come with a zero-entry read; per-field metadata costs more
        empty = _empty_read(tree, plan, where)
        check_readable(tree, roles, known, where, {name: empty[name].layout.form for name in empty.fields})
    else:  # a TTree's metadata says what a branch holds before anything (a record's basket) is read
        check_readable(tree, roles, known, where)
        empty = _empty_read(tree, plan, where)
    one_value = set(plan.one_value())
    for branch, what, ndims in plan.roles():
        ndim = empty[branch].ndim
        if ndim not in ndims and not (ndim == 2 and branch in one_value and _lists_of_one(tree, branch)):
            raise InputError(
                f"{where}: {what} {branch!r} holds {_describe(ndim)}, but layout {plan.layout!r} needs "
                f"{' or '.join(_describe(n) for n in ndims)}")


def _empty_read(tree, plan: BranchPlan, where: str):
    try:
        return read_arrays(tree, plan.to_read(), entry_stop=0)
    except Exception as err:
        raise InputError(f"{where}: cannot interpret the branches {plan.to_read()} "
                         f"({type(err).__name__}: {err})") from None


def _lists_of_one(tree, branch: str, entries: int = 100) -> bool:
    """Whether the first entries hold lists of exactly one value (an event-level value in a list)."""
    values = read_arrays(tree, [branch], entry_stop=min(entries, tree.num_entries))[branch]
    return bool(len(values)) and bool(ak.all(ak.num(values, axis=1) == 1))


def cluster_starts(tree, branches: list[str]) -> list[int]:
    """Entry numbers where all `branches` start a new basket/cluster, including 0 and num_entries."""
    try:
        if hasattr(tree, "common_entry_offsets"):
            wanted = {id(tree[name]) for name in _name_plan(tree, tuple(branches))[0]}
            return list(tree.common_entry_offsets(filter_branch=lambda b: id(b) in wanted))
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


class OpenTrees:
    """The last few trees a worker opened, kept open: the ranges of one file then share one handle (and,
    for an RNTuple, one field tree) instead of reopening the file for each range."""

    def __init__(self, size: int = 4):
        self.size = size
        self._open: OrderedDict = OrderedDict()

    def get(self, path: str, tree: str):
        key = (path, tree)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        obj = open_tree(path, tree)
        self._open[key] = obj
        while len(self._open) > self.size:
            _, old = self._open.popitem(last=False)
            old.file.close()
        return obj

    def drop(self, path: str, tree: str) -> None:
        """Close a handle that failed: the next range reopens the file."""
        obj = self._open.pop((path, tree), None)
        if obj is not None:
            obj.file.close()

    def close(self) -> None:
        while self._open:
            _, obj = self._open.popitem()
            obj.file.close()
