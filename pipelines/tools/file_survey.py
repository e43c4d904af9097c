"""What a ROOT file holds, for `root2hdf5 init`: its event tree, and per branch its depth, type and first values.

The event tree is the candidate with most entries after metadata trees (`##*`, `MetaData*`,
`POOLContainer*`, `*Form`) are set aside. One metadata pass decides from each branch's type alone (no data
read) whether it holds numbers, objects, records or something uproot cannot read, and its depth; `peek`
then reads the first entries of the branches a guess needs in one request (a request that fails is
retried on halves of the list, so one bad branch costs a few reads, not one per branch). RNTuple handles
are primed when opened (transforms/read/rntuple.py).
"""
from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass

import awkward as ak
import numpy as np
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.layouts import list_offsets, numpy_content
from root2hdf5.transforms.read.objects import LORENTZ_COMPONENTS, branch_kind, is_numeric_form
from root2hdf5.transforms.read.rntuple import is_rntuple
from root2hdf5.transforms.read.trees import open_tree, read_arrays

PEEK_ENTRIES = 500
# trees that describe the file, not its events (ATLAS xAOD/PHYSLITE bookkeeping)
METADATA_TREES = ("##*", "MetaData*", "POOLContainer*", "*Form")
TREE_CLASSES = ("TTree", "ROOT::RNTuple")


@dataclass
class Branch:
    """One numeric branch (or a TLorentzVector component): its depth and type from metadata, and, once
    peeked, its list lengths and values over the first entries."""

    name: str
    depth: int  # 1: one value per entry, 2: a list, 3: a list of lists
    regular: bool = False  # a fixed-size array level (Jet.Tau[5]): per-jet values, not constituents
    integer: bool = False
    peeked: bool = False
    counts: np.ndarray | None = None  # outer list lengths per entry (depth >= 2)
    inner: np.ndarray | None = None  # inner list lengths (depth 3), all jets of the peeked entries
    median: float | None = None
    finite: bool = True
    single: bool = False  # depth 2 with exactly one value per entry (Delphes' Event/Event.Number)
    values: np.ndarray | None = None  # the values of a depth-1 (or single) branch
    distinct: int = 0
    flat: np.ndarray | None = None  # all values peeked, flat
    lorentz: str | None = None  # the TLorentzVector branch this is a component of


class Survey:
    """An open event tree of a file, its numeric branches from metadata, and peeks at their first entries.
    Use as a context manager (it closes the file)."""

    def __init__(self, path: str, tree_name: str | None = None, relevant=None):
        """`relevant(name)`: which branches to type first (typing costs ~1 ms a branch on a TTree of 1500);
        `widen()` types the others when the guess needs them."""
        self.path = path
        self.tree, self.other_trees, self.metadata_trees, self.unsure_tree = pick_tree(path, tree_name)
        self._tree = open_tree(path, self.tree)
        self.entries = self._tree.num_entries
        self.peeked = min(self.entries, PEEK_ENTRIES)
        self.rntuple = is_rntuple(self._tree)
        self.skipped: dict[str, str] = {}  # name -> why it is not a training input
        self.branches: dict[str, Branch] = {}
        self.complete = relevant is None  # every branch typed
        self._type(relevant)
        if not self.branches and not self.complete:
            self.widen()
        if not self.branches:
            self.close()
            raise InputError(f"{path}: tree {self.tree!r} has no numeric branches"
                             + (f"; other trees: {', '.join(self.other_trees)} (choose one with --tree)"
                                if self.other_trees else ""))

    def _type(self, select) -> None:
        for name, depth, regular, integer, lorentz in _numeric(self._tree, self.skipped, select):
            self.branches.setdefault(name, Branch(name, depth, regular, integer, lorentz=lorentz))

    def widen(self) -> None:
        """Type the branches left out by `relevant`."""
        if not self.complete:
            typed = set(self.branches) | set(self.skipped)
            self._type(lambda name: name not in typed)
            self.complete = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._tree.file.close()

    def peek(self, names) -> None:
        """Read the first entries of `names` (one request; a failing one is retried on halves) and describe
        them; a branch that cannot be read is dropped, with the reason in `skipped`."""
        names = [n for n in dict.fromkeys(names) if n in self.branches and not self.branches[n].peeked]
        for name, values in _read(self._tree, names, self.peeked, self.skipped).items():
            _describe(self.branches[name], values)
        for name in names:
            if name in self.skipped:
                del self.branches[name]


def is_metadata(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in METADATA_TREES)


def pick_tree(path: str, tree: str | None) -> tuple[str, list[str], list[str], bool]:
    """(the event tree, the other candidates, the metadata trees skipped, whether the choice is unsure).
    A tree's header is read only when there is a choice to make (a 1500-branch header costs a second)."""
    try:
        handle = uproot.open(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except Exception as err:
        raise InputError(f"{path}: cannot be opened as a ROOT file ({type(err).__name__}: {err})") from None
    with handle:
        trees = list(dict.fromkeys(k for k, cls in handle.classnames(cycle=False).items() if cls in TREE_CLASSES))
        if tree:
            return tree, [t for t in trees if t != tree], [], False
        if not trees:
            raise InputError(f"{path}: holds no TTree or RNTuple")
        metadata = [t for t in trees if is_metadata(t)]
        candidates = [t for t in trees if t not in metadata] or trees
        if len(candidates) == 1:
            return candidates[0], [], metadata, False
        size = {t: _size(handle, t) for t in candidates}
        ranked = sorted(candidates, key=lambda t: size[t], reverse=True)
        unsure = size[ranked[1]][0] == size[ranked[0]][0]
        return ranked[0], ranked[1:], metadata, unsure


def _size(handle, name: str) -> tuple[int, int]:
    """(entries, top-level branches): the event tree has the most, ties broken by branches."""
    obj = handle[name]
    try:
        return obj.num_entries, len(obj.keys(recursive=False))
    except Exception:
        return -1, 0


def _depth(form) -> tuple[int, bool, bool]:
    """(depth, has a fixed-size level, integer values) of a numeric form."""
    depth, regular = 1, False
    while isinstance(form, (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm)):
        regular |= isinstance(form, ak.forms.RegularForm)
        depth += 1
        form = form.content
    return depth, regular, getattr(form, "primitive", "float").startswith(("int", "uint", "bool"))


def _dtype_shape(interpretation) -> tuple[int, bool, bool] | None:
    """(depth, fixed-size level, integer) of plain numbers (uproot's AsDtype, AsJagged of AsDtype), straight
    from the interpretation: the common case, without building an awkward form."""
    depth = 1
    if type(interpretation).__name__ == "AsJagged":
        interpretation, depth = interpretation.content, 2
    if type(interpretation).__name__ != "AsDtype":
        return None
    shape = tuple(interpretation.inner_shape)
    return depth + len(shape), bool(shape), interpretation.to_dtype.kind in "iub"


def _numeric(tree, skipped: dict[str, str], select=None):
    """(name, depth, fixed-size level, integer, TLorentzVector branch) of every branch (that `select` accepts)
    holding numbers, and of the components of TLorentzVector branches, from metadata alone."""
    if is_rntuple(tree):
        for f in tree.fields:
            if f.name.startswith("_collection") or (select and not select(f.name)):  # importer's records
                continue
            try:
                form = f.to_akform()[0].content(f.name)
            except Exception as err:
                skipped[f.name] = f"no awkward form ({type(err).__name__})"
                continue
            if is_numeric_form(form):
                yield (f.name, *_depth(form), None)
            else:
                skipped[f.name] = f"{f.typename or 'a record'}: not numbers"
        return
    seen = set()
    for name in tree.keys():
        if name in seen or (select and not select(name)):
            continue
        seen.add(name)
        leaf = name.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
        if leaf in ("fUniqueID", "fBits"):  # TObject bookkeeping of TClonesArray members
            continue
        kind = branch_kind(tree, name)
        if kind.kind in ("numeric", "lorentz"):
            try:
                branch = tree[name]
                shape = _dtype_shape(branch.interpretation)
                if shape is not None:
                    depth, regular, integer = shape
                else:
                    depth, regular, integer = _depth(branch.interpretation.awkward_form(branch.file))
            except Exception as err:
                skipped[name] = f"no awkward form ({type(err).__name__})"
                continue
            if kind.kind == "numeric":
                yield name, depth, regular, integer, None
            else:  # px, py, pz, E and pt (which ranks the jets)
                yield from ((f"{name}.{c}", depth, regular, False, name) for c in LORENTZ_COMPONENTS[:5])
        elif kind.kind != "grouped":  # a split object's leaves are branches of their own
            skipped[name] = (f"{kind.typename}: " if kind.typename else "") + (kind.reason or f"a {kind.kind}")


def _read(tree, names: list[str], stop: int, skipped: dict[str, str]) -> dict:
    """The first entries of `names`; a failing read is retried on halves, so bad branches are found in a
    few reads (each skipped with the reason)."""
    if not names:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arrays = read_arrays(tree, names, entry_stop=stop)
        return {name: arrays[name] for name in names}
    except Exception as err:
        if len(names) == 1:
            skipped[names[0]] = f"cannot be read ({type(err).__name__})"
            return {}
        half = len(names) // 2
        return {**_read(tree, names[:half], stop, skipped), **_read(tree, names[half:], stop, skipped)}


def _describe(b: Branch, values) -> None:
    """Fill a branch's peek from its first entries: offsets and flat values straight from the layout."""
    b.peeked = True
    layout = values.layout
    if b.depth >= 2:
        offsets, layout = list_offsets(layout)
        b.counts = np.diff(offsets)
        b.single = b.depth == 2 and len(b.counts) > 0 and bool(np.all(b.counts == 1))
        if b.depth == 3:
            inner, layout = list_offsets(layout)
            b.inner = np.diff(inner)[offsets[0]:offsets[-1]] if not b.regular else None
            flat = numpy_content(layout)[inner[offsets[0]]:inner[offsets[-1]]] if not b.regular else \
                np.asarray(ak.to_numpy(ak.flatten(values, axis=None)))
        else:
            flat = numpy_content(layout)[offsets[0]:offsets[-1]]
    else:
        flat = numpy_content(layout)
    flat = np.asarray(flat)
    if flat.ndim > 1:
        flat = flat.reshape(-1)
    b.flat = flat
    if flat.size and flat.dtype.kind == "f":
        finite = np.isfinite(flat)
        b.finite = bool(finite.all())
        flat_finite = flat[finite]
    else:
        flat_finite = flat
    b.median = float(np.median(flat_finite)) if flat_finite.size else None
    if b.depth == 1 or b.single:
        b.values = flat
        b.distinct = len(np.unique(flat))
