"""`root2hdf5 init ROOTFILE`: a starter config from what a file holds.

The layout follows from the jagged depth of the branches, read from the first entries: lists of lists
(`vector<vector<float>>`) are constituents of jets stored per event (`layout: events`); with at most one list
level, list branches are the constituents of one jet per entry (`layout: jets`) when their names look like
constituents, else the jets of an event (an event tree without constituents, e.g. NanoAOD). Jet branches are
the list branches with the same jet counts as the constituents; names decide the rest (event number,
weight, truth). The result is a commented YAML the user finishes (labels, selection), never a silent
guess: every choice made from names is marked.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import awkward as ak
import numpy as np
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.physics.kinematics import infer_roles
from root2hdf5.transforms.read.trees import open_tree

PEEK_ENTRIES = 500
CONSTITUENT_NAME = re.compile(r"constit|clus|trk|track|pfcand|^part_|_pf_|tower", re.I)
EVENT_NUMBER_NAME = re.compile(r"event.?number|^event$|^evt$", re.I)
WEIGHT_NAME = re.compile(r"weight", re.I)
EVENT_WEIGHT_NAME = re.compile(r"^(mc|gen)?(event)?_?weight$|mcEventWeight|EventWeight$|^genWeight$", re.I)
TRUTH_NAME = re.compile(r"true|truth|^gen|_gen", re.I)
JET_NAME = re.compile(r"jet", re.I)
PLAIN_JET_NAME = re.compile(r"^jets?_", re.I)  # `Jet_pt` rather than `FatJet_pt` or `SoftActivityJet...`
# event-level quantities commonly fed to taggers beside the jets (pile-up conditions)
EVENT_CONTEXT_NAME = re.compile(r"rho|npv|interactions|pileup_npu|^mu$", re.I)


@dataclass
class Branch:
    name: str
    depth: int  # 1 scalar per entry, 2 list, 3 list of lists
    counts: tuple | None = None  # outer list lengths of the peeked entries, to group collections
    inner: np.ndarray | None = None  # lengths of the inner lists (depth 3)
    median: float | None = None  # of all values peeked (tells MeV from GeV for pT)


@dataclass
class Guess:
    tree: str
    entries: int
    layout: str
    jets: list[str] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)
    constituents: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    event_number: str | None = None
    weight: str | None = None
    multiplicity: np.ndarray | None = None
    jet_pt_median: float | None = None
    skipped: list[str] = field(default_factory=list)


def pick_tree(path: str, tree: str | None) -> str:
    if tree:
        return tree
    try:
        handle = uproot.open(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file does not exist") from None
    except Exception as err:
        raise InputError(f"{path}: cannot be opened as a ROOT file ({type(err).__name__}: {err})") from None
    with handle:
        trees = [k for k, cls in handle.classnames(cycle=False).items() if cls in ("TTree", "ROOT::RNTuple")]
        if not trees:
            raise InputError(f"{path}: holds no TTree or RNTuple")
        # the main tree is the one with the most entries (ties: the most branches)
        return max(trees, key=lambda k: (handle[k].num_entries, len(handle[k].keys())))


def _read(tree, names: list[str], stop: int) -> dict:
    """The first entries of `names`, in one read when every branch is readable, else one by one."""
    try:
        arrays = tree.arrays(names, entry_stop=stop, library="ak")
        return {name: arrays[name] for name in names}
    except Exception:
        out = {}
        for name in names:
            try:
                out[name] = tree.arrays([name], entry_stop=stop, library="ak")[name]
            except Exception:  # strings, objects, unsplit classes: not training inputs
                out[name] = None
        return out


def peek(tree, names: list[str]) -> tuple[list[Branch], list[str]]:
    """Depth and list lengths of every readable numeric branch over the first entries."""
    branches, skipped = [], []
    for name, values in _read(tree, names, min(tree.num_entries, PEEK_ENTRIES)).items():
        try:
            if values is None:
                raise TypeError("unreadable")
            leaf = ak.flatten(values, axis=None)
            if not isinstance(ak.to_layout(leaf), ak.contents.NumpyArray) or np.asarray(leaf).dtype.kind not in "fiub":
                raise TypeError("not numeric")
        except Exception:
            skipped.append(name)
            continue
        depth = values.ndim
        if depth > 3:
            skipped.append(name)
            continue
        counts = tuple(ak.to_numpy(ak.num(values, axis=1)).tolist()) if depth >= 2 else None
        inner = ak.to_numpy(ak.flatten(ak.num(values, axis=2))) if depth == 3 else None
        median = float(np.median(np.asarray(leaf))) if len(leaf) else None
        branches.append(Branch(name, depth, counts, inner, median))
    return branches, skipped


def _groups(branches: list[Branch]) -> list[list[Branch]]:
    """List branches sharing their list lengths and name prefix: one collection each."""
    groups: dict[tuple, list[Branch]] = {}
    for b in branches:  # collections with equal lengths by chance stay apart by their name prefix
        groups.setdefault((b.counts, b.name.split("_", 1)[0].lower()), []).append(b)
    return list(groups.values())


def _largest_group(branches: list[Branch], *prefer) -> list[Branch]:
    """The collection with the most names matching the `prefer` patterns (in order), then the largest."""
    groups = _groups(branches)
    if not groups:
        return []
    return max(groups, key=lambda g: (*(sum(bool(p.search(b.name)) for b in g) for p in prefer), len(g)))


def guess(path: str, tree_name: str | None = None) -> Guess:
    tree_name = pick_tree(path, tree_name)
    tree = open_tree(path, tree_name)
    try:
        branches, skipped = peek(tree, list(tree.keys()))
        entries = tree.num_entries
    finally:
        tree.file.close()
    if not branches:
        raise InputError(f"{path}: tree {tree_name!r} has no numeric branches")
    by_depth = {d: [b for b in branches if b.depth == d] for d in (1, 2, 3)}
    scalars = [b.name for b in by_depth[1]]
    event_number = next((n for n in scalars if EVENT_NUMBER_NAME.search(n)), None)
    weight = next((n for n in scalars if EVENT_WEIGHT_NAME.search(n)), None) or \
        next((n for n in scalars if WEIGHT_NAME.search(n)), None)
    bookkeeping = {event_number, weight}

    if by_depth[3]:
        constituents = _largest_group(by_depth[3], CONSTITUENT_NAME)
        jets = [b for b in by_depth[2] if b.counts == constituents[0].counts]
        g = Guess(tree_name, entries, "events", constituents=[b.name for b in constituents],
                  multiplicity=constituents[0].inner)
        g.jets = [b.name for b in jets if not TRUTH_NAME.search(b.name)]
        g.truth = [b.name for b in jets if TRUTH_NAME.search(b.name)]
        g.events = [n for n in scalars if n not in bookkeeping]
    elif constituent_like := [g for g in _groups(by_depth[2])
                              if sum(bool(CONSTITUENT_NAME.search(b.name)) for b in g) > len(g) / 2]:
        constituents = max(constituent_like, key=len)
        g = Guess(tree_name, entries, "jets", constituents=[b.name for b in constituents],
                  multiplicity=np.asarray(constituents[0].counts))
        per_jet = [n for n in scalars if n not in bookkeeping]
        g.jets = [n for n in per_jet if not TRUTH_NAME.search(n)]
        g.truth = [n for n in per_jet if TRUTH_NAME.search(n)]
    elif by_depth[2]:  # jets of an event, no constituents (NanoAOD, HZZ ...)
        jets = _largest_group(by_depth[2], PLAIN_JET_NAME, JET_NAME)
        g = Guess(tree_name, entries, "events")
        g.jets = [b.name for b in jets if not TRUTH_NAME.search(b.name)]
        g.truth = [b.name for b in jets if TRUTH_NAME.search(b.name)]
        g.events = [n for n in scalars if n not in bookkeeping]
    else:
        raise InputError(f"{path}: tree {tree_name!r} has no list branches (no jets or constituents to "
                         f"flatten); its branches: {', '.join(scalars[:10])}{' ...' if len(scalars) > 10 else ''}")
    g.event_number, g.weight, g.skipped = event_number, weight, skipped
    pt = infer_roles(g.jets).get("pt")
    g.jet_pt_median = next((b.median for b in branches if b.name == pt), None)
    return g


def _names(values: list[str], indent: int, width: int = 96) -> str:
    """A YAML flow list, wrapped."""
    if not values:
        return "[]"
    lines, line = [], "["
    for i, v in enumerate(values):
        item = json.dumps(v) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item) > width - indent and line != "[":
            lines.append(line.rstrip())
            line = " "
        line += item
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _comment(text: str, names: list[str], limit: int = 12) -> str:
    """`# text: a, b, c ... (N more)` wrapped into comment lines (a wrapped YAML comment stays a comment)."""
    shown = ", ".join(names[:limit]) + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")
    words, lines, line = f"{text}: {shown}".split(" "), [], "  #"
    for word in words:
        if len(line) + len(word) > 100 and line != "  #":
            lines.append(line)
            line = "  #  "
        line += " " + word
    return "\n".join([*lines, line])


def render(g: Guess, path: str) -> str:
    """The commented starter config."""
    sample = re.sub(r"[^A-Za-z0-9_.+-]", "_", os.path.splitext(os.path.basename(path))[0]) or "sample"
    mev = g.jet_pt_median is not None and g.jet_pt_median > 1000
    jet_roles = infer_roles(g.jets)
    const_roles = infer_roles(g.constituents)
    slots = 0
    if g.multiplicity is not None and len(g.multiplicity):
        slots = max(10, int(math.ceil(np.percentile(g.multiplicity, 95) / 10) * 10))
    out = [
        f"# Starter config written by `root2hdf5 init {path}` from the first {min(g.entries, PEEK_ENTRIES)} of",
        f"# {g.entries:,} entries of tree {g.tree!r}. Check every line marked GUESS, set the labels, then run",
        "#   root2hdf5 run THIS.yaml",
        "# Keys are described in README.md (\"Config reference\").",
        "",
        "samples:",
        f"  - name: {sample}",
        f"    files: [{json.dumps(path)}]     # paths, globs, list files or root:// URLs",
        f"    tree: {g.tree}",
        "    label: 0                # TODO: one integer class per sample; add your other samples below",
        "",
        "input:",
        f"  layout: {g.layout}" + ("             # GUESS: one entry per event (lists of jets)" if g.layout == "events"
                                  else "               # GUESS: one entry per jet"),
    ]
    if g.layout == "events":
        out.append("  leading_jets: 2           # jets kept per event, highest pT first")
    if g.event_number:
        out.append(f"  event_number: {g.event_number}     # GUESS: jets of one event go to the same split")
    else:
        out.append("  # event_number: ...        # no event-number branch found: splits are then per entry")
    out.append(f"  jet_branches: {_names(g.jets, 16)}")
    if g.truth:
        out.append(_comment("truth or alternative jets (regression targets? see jet_collections)", g.truth))
    out.append(f"  constituent_branches: {_names(g.constituents, 24)}")
    if g.layout == "events":
        context = [n for n in g.events if EVENT_CONTEXT_NAME.search(n)]
        out.append(f"  event_branches: {_names(context, 18)}   # GUESS: per-event values repeated per jet")
        others = [n for n in g.events if n not in context]
        if others:
            out.append(_comment("other event-level branches", others))
    pt, eta = jet_roles.get("pt"), jet_roles.get("eta")
    if pt:
        cut = "250e3" if mev else "250"
        selection = f"{pt} > {cut}" + (f" & abs({eta}) < 2" if eta else "")
        out.append(f"  # selection: \"{selection}\"   # per jet, in the ntuple's units")
    out.append("  step_size: 50000           # entries per work unit")
    if g.constituents:
        out += ["", "constituents:",
                f"  max: {slots}                   # ~95% of jets have at most this many constituents",
                f"  sort_by: {const_roles.get('pt', g.constituents[0])}"]
    out += ["", "preprocess:",
            f"  constituents: {'cartesian' if {'pt', 'eta', 'phi'} <= set(const_roles) else 'raw'}"
            "   # or raw, lognorm_angular, my_module:my_function (README: Preprocessing)",
            "  jets: raw"]
    if mev:
        out.append(f"  unit_scale: 0.001           # GUESS: the median jet pT is {g.jet_pt_median:,.0f}, so MeV -> GeV")
    if g.weight:
        out += ["", f"weights: {{branch: {g.weight}}}   # GUESS: per-event weight multiplied into `weights`"]
    out += ["", "split: {train: 0.8, val: 0.1, test: 0.1}",
            "shuffle: {seed: 42, shards: 8}",
            f"output: {{dir: out/{sample}, compression: gzip}}", ""]
    if g.skipped:
        out.insert(4, _comment("not numeric or not readable as arrays, left out", g.skipped)[2:])
    return "\n".join(out)
