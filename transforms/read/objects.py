"""Object and record branches: what a name in the config reads, and one line for what cannot be read.

Training inputs are numbers (or lists of numbers). A branch holding objects is handled here, from the
tree's metadata (no data is read to decide):

* `TLorentzVector` (alone, in a `vector<>` or a TClonesArray): its components are named `X.px`, `X.py`,
  `X.pz`, `X.E` (and, computed from them, `X.pt`, `X.eta`, `X.phi`, `X.m`). The kinematic roles follow
  from those leaf names. The branch is read once for all its components, and each is a projection of its
  record array (or an element-wise formula), never a loop.
* any other record (`ElementLink`'s `{m_persKey, m_persIndex}`, `TVector2` ...): a numeric field is named
  `X.field` (`AnalysisJetsAuxDyn.GhostTrack.m_persIndex`); the record itself is refused.
* a split object (ROOT's `AsGrouped`: a split `Math::LorentzVector`, a split `ElementLink`): refused, naming
  its leaf branches (`jets/jets.fCoordinates.fPt` ...), which are plain branches.
* references and types uproot cannot read as arrays (`TRef`, `TRefArray`, `std::bitset`, an unsplit
  `Math::LorentzVector`): refused, saying what to use instead.

Refusals are InputErrors naming the file, the tree, the branch and its C++ type; the driver meets them when
it checks the first file of every sample, before the run.
"""
from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from root2hdf5.transforms.core.errors import InputError

# TLorentzVector: component -> how it is computed from the record (fP.fX, fP.fY, fP.fZ, fE)
LORENTZ_COMPONENTS = ("px", "py", "pz", "E", "pt", "eta", "phi", "m")
_LISTS = (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm)


def _strip_lists(form):
    while isinstance(form, _LISTS):
        form = form.content
    return form


def is_numeric_form(form) -> bool:
    """Numbers, or lists (of lists ...) of numbers; strings and records are not."""
    while isinstance(form, _LISTS):
        if form.parameter("__array__") in ("string", "bytestring"):
            return False
        form = form.content
    return isinstance(form, ak.forms.NumpyForm)


def _field_names(form) -> list[str]:
    """Dotted paths of a record form's numeric fields (`fP.fX` ...)."""
    form = _strip_lists(form)
    if not isinstance(form, ak.forms.RecordForm):
        return []
    out = []
    for name, content in zip(form.fields, form.contents):
        if is_numeric_form(content):
            out.append(name)
        else:
            out.extend(f"{name}.{sub}" for sub in _field_names(content))
    return out


@dataclass(frozen=True)
class BranchKind:
    """What a branch holds: `numeric`, `lorentz` (TLorentzVector records), `record`, `grouped` (a split
    object: read its leaves), or `unreadable`; with its C++ type and, for records, the numeric fields."""

    kind: str
    typename: str = ""
    fields: tuple[str, ...] = ()
    leaves: tuple[str, ...] = ()
    reason: str = ""


def branch_kind(tree, name: str) -> BranchKind:
    """The kind of the branch `name` of a TTree or RNTuple, from its metadata."""
    try:
        branch = tree[name]
    except Exception as err:  # e.g. Delphes' second `Particle` collection, listed but not reachable by name
        return BranchKind("unreadable", reason=f"uproot cannot reach it by name ({type(err).__name__})")
    interpretation = getattr(branch, "interpretation", None)
    if interpretation is None:  # an RNTuple field
        try:
            form = branch.to_akform()[0].content(branch.name)
        except Exception:
            return BranchKind("numeric")  # decided by the read itself
        return _kind_of_form(form, str(getattr(branch, "typename", "") or ""))
    if _plain_numbers(interpretation):  # the common case, decided without the (costly) C++ type name
        return BranchKind("numeric")
    typename = str(getattr(branch, "typename", "") or "")
    if "bitset" in typename:
        return BranchKind("unreadable", typename, reason="uproot cannot read std::bitset values")
    if "TRef" in typename:
        return BranchKind("unreadable", typename, reason="it holds references (TRef/TRefArray) to objects of other "
                          "collections, which uproot reads only as Python objects, not as arrays")
    if type(interpretation).__name__ == "AsGrouped":
        leaves = tuple(f"{name}/{k}" for k in branch.keys() if not branch[k].branches)
        return BranchKind("grouped", typename, leaves=leaves)
    if "LorentzVector<" in typename:  # ROOT::Math::LorentzVector written unsplit
        return BranchKind("unreadable", typename, reason="an unsplit ROOT::Math::LorentzVector, which uproot cannot "
                          "read; write the branch split (split level 99) so its fCoordinates leaves are branches")
    try:
        form = interpretation.awkward_form(branch.file)
    except Exception as err:
        return BranchKind("unreadable", typename, reason=f"uproot cannot read it as arrays ({type(err).__name__})")
    return _kind_of_form(form, typename)


def _plain_numbers(interpretation) -> bool:
    """Numbers or a list of numbers per entry (uproot's AsDtype, AsJagged of AsDtype)."""
    kind = type(interpretation).__name__
    if kind == "AsJagged":
        interpretation = interpretation.content
        kind = type(interpretation).__name__
    return kind == "AsDtype"


def _kind_of_form(form, typename: str) -> BranchKind:
    if is_numeric_form(form):
        return BranchKind("numeric", typename)
    inner = _strip_lists(form)
    if isinstance(inner, ak.forms.RecordForm):
        kind = "lorentz" if inner.parameter("__record__") == "TLorentzVector" else "record"
        return BranchKind(kind, typename, fields=tuple(_field_names(form)))
    return BranchKind("unreadable", typename, reason="it holds neither numbers nor records of numbers")


def refusal(name: str, kind: BranchKind, what: str = "branch") -> str:
    """One line: the branch, its type, and what to use instead."""
    typed = f" is {kind.typename}" if kind.typename else ""
    if kind.kind == "lorentz":
        return (f"{what} {name!r}{typed} (a TLorentzVector per value); list its components instead: "
                f"{', '.join(f'{name}.{c}' for c in LORENTZ_COMPONENTS[:4])} (or {name}.pt, {name}.eta, {name}.phi, "
                f"{name}.m)")
    if kind.kind == "record":
        fields = ", ".join(f"{name}.{f}" for f in kind.fields[:6]) or "none"
        return f"{what} {name!r}{typed}, a record, not numbers; read a numeric field instead: {fields}"
    if kind.kind == "grouped":
        leaves = ", ".join(kind.leaves[:6]) + (" ..." if len(kind.leaves) > 6 else "")
        return f"{what} {name!r}{typed} is a split object; list its leaf branches instead: {leaves or 'none'}"
    return f"{what} {name!r}{typed} cannot be used: {kind.reason}"


@dataclass(frozen=True)
class Derived:
    """A name that is not a branch: a component of a TLorentzVector branch or a field of a record branch."""

    name: str
    base: str
    lorentz: bool
    path: tuple[str, ...]  # the component (lorentz) or the field path (record)


def derived_name(tree, name: str, keys) -> Derived | None:
    """`jetp4.px` -> Derived(base jetp4), when `jetp4` is a TLorentzVector branch; `X.a.b` -> the field
    a.b of the record branch X. None when no branch prefix of the name holds such objects."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        base = ".".join(parts[:cut])
        if base not in keys:
            continue
        kind = branch_kind(tree, base)
        rest = tuple(parts[cut:])
        if kind.kind == "lorentz" and len(rest) == 1 and rest[0] in LORENTZ_COMPONENTS:
            return Derived(name, base, True, rest)
        if kind.kind in ("record", "lorentz") and ".".join(rest) in kind.fields:
            return Derived(name, base, False, rest)
    return None


def lorentz_component(p4, component: str):
    """A TLorentzVector component from the record array, element-wise (same list structure). pt, eta,
    phi and m follow TLorentzVector: eta of a vector along the beam is +-1e11, m is negative for a
    spacelike vector (-sqrt(-m2))."""
    px, py, pz, e = (_field(p4, ("fP", "fX")), _field(p4, ("fP", "fY")), _field(p4, ("fP", "fZ")),
                     _field(p4, ("fE",)))
    if component in ("px", "py", "pz", "E"):
        return {"px": px, "py": py, "pz": pz, "E": e}[component]
    pt = np.hypot(px, py)
    if component == "pt":
        return pt
    if component == "phi":
        return np.arctan2(py, px)
    if component == "eta":
        along_beam = ak.where(pz > 0, 1e11, ak.where(pz < 0, -1e11, 0.0))
        return ak.where(pt > 0, np.arcsinh(pz / ak.where(pt > 0, pt, 1.0)), along_beam)
    m2 = e * e - (px * px + py * py + pz * pz)
    return ak.where(m2 >= 0, np.sqrt(abs(m2)), -np.sqrt(abs(m2)))


def _field(values, path: tuple[str, ...]):
    """A nested field of a record array. uproot returns a zero-entry read of a streamed object flattened,
    with fields named `fP/fX`: that form is accepted too."""
    fields = ak.fields(values)
    if path[0] in fields:
        return _field(values[path[0]], path[1:]) if len(path) > 1 else values[path[0]]
    return values["/".join(path)]


def derive(arrays, derived: list[Derived]) -> dict:
    """The derived names' arrays from the read base branches."""
    out = {}
    for d in derived:
        values = arrays[d.base]
        if d.lorentz:
            out[d.name] = lorentz_component(values, d.path[0])
        else:
            out[d.name] = _field(values, tuple(".".join(d.path).split(".")))
    return out


def check_readable(tree, names: dict[str, str], keys, where: str, forms: dict | None = None) -> list[Derived]:
    """Raise InputError for a planned name (name -> what it is for) that is an object or record branch;
    returns the derived names among them (a missing name is left to the caller). `forms`: the names' awkward
    forms when already known (an RNTuple's, from a zero-entry read): a numeric one needs no metadata."""
    derived = []
    for name, what in names.items():
        if name in keys:
            if forms is not None and name in forms and is_numeric_form(forms[name]):
                continue
            kind = branch_kind(tree, name)
            if kind.kind != "numeric":
                raise InputError(f"{where}: {refusal(name, kind, what)}")
        else:
            d = derived_name(tree, name, keys)
            if d is not None:
                derived.append(d)
    return derived
