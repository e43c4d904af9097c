"""`root2hdf5 init ROOTFILE`: a starter config from what a file holds, right or saying where it is unsure.

The event tree and its branches come from pipelines.tools.file_survey (metadata first, then one read of the
first entries of the branches that matter). Branches are grouped into collections by their names
(`Jet_pt` -> Jet, `AnalysisJetsAuxDyn.pt` -> AnalysisJetsAuxDyn, `Jet/Jet.PT` -> Jet) and a collection's
kinematics are read from the last component of its names (transforms.physics.kinematics). Then:

* jets: the jet collection with kinematics, preferring one that constituents are linked to (PFNano's
  FatJet), then the plain one (`Jet`, `AnalysisJets`, `AK4CHS`) over large-R, truth and special ones, which
  are named as comments;
* constituents: per-jet lists of lists with the jets' counts (not fixed-size arrays like `Jet.Tau[5]`, nor
  per-vertex values like PHYSLITE's `NumTrkPt500`, whose lists have the same length for every jet of an
  event), or a per-event collection reached through link rows (`FatJetPFCands_jetIdx` +
  `FatJetPFCands_pFCandsIdx` -> `PFCands_*`); with one entry per jet (`layout: jets`), the lists of a
  constituent-like collection beside per-jet scalars;
* the event number: a branch named like one (`eventNumber`, `event`, `evtNum`, `mcEventNumber`, Delphes'
  `Event/Event.Number`) whose values actually number the events (Delphes' `Event` is 1 in every entry);
* the weight: a scalar named like an event weight (`mcEventWeight`, `genWeight`, `weight`), never a
  variation (`weight_NNPDF...`) or a list.

Records (ElementLinks, TRefs) are never proposed. Every choice made from names is marked GUESS, every
choice with no good candidate UNSURE, and the alternatives not chosen are named in comments.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from root2hdf5.pipelines.tools.file_survey import PEEK_ENTRIES, Branch, Survey
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.physics.kinematics import infer_roles, leaf, role_of

CONSTITUENT_NAME = re.compile(r"constit|clus|pfcand|^part_|_pf_|tower|^eflow", re.I)
JET_NAME = re.compile(r"jet|^(ak|ca)\d+", re.I)
TRUTH_NAME = re.compile(r"true|truth|^gen|_gen", re.I)
PLAIN_JET = re.compile(r"^(analysis)?jets?(auxdyn)?$|^ak4(chs|puppi)?$", re.I)  # Jet, AnalysisJets, AK4CHS
EVENT_NUMBER_WORD = re.compile(r"^(mc)?event(number|num|nr|no)?$|^evt(num|number|no)?$", re.I)
WEIGHT_WORDS = ("mceventweight", "genweight", "eventweight", "evtweight", "mcweight", "weight")
EVENT_CONTEXT_NAME = re.compile(r"rho|npv|interactionspercrossing|pileup_npu|^mu$|^pv_npvs$", re.I)
INDEX_LEAF = re.compile(r"idx$", re.I)


def collection(name: str) -> str:
    """The collection a branch belongs to, from its name: `Jet/Jet.PT` -> Jet, `AnalysisJetsAuxDyn.pt` ->
    AnalysisJetsAuxDyn, `FatJet_pt` -> FatJet, `jetbtag` -> jetbtag."""
    if "/" in name:
        return name.split("/", 1)[0]
    if "." in name:
        return name.rsplit(".", 1)[0]
    return name.split("_", 1)[0]


def _words(name: str) -> list[str]:
    """The last component of a name and its part after the last underscore, lower-case."""
    word = leaf(name).lower()
    return [word, word.rsplit("_", 1)[-1]] if "_" in word else [word]


@dataclass
class Guess:
    tree: str
    entries: int
    layout: str
    jets: list[str] = field(default_factory=list)
    truth: list[str] = field(default_factory=list)
    constituents: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # event-level branches (context first)
    context: list[str] = field(default_factory=list)
    event_number: str | None = None
    weight: str | None = None
    links: dict[str, str] | None = None  # input.constituent_links
    multiplicity: np.ndarray | None = None
    jet_pt_median: float | None = None
    skipped: list[str] = field(default_factory=list)
    peeked: int = PEEK_ENTRIES
    notes: list[str] = field(default_factory=list)  # comments: alternatives not chosen, what was left out
    unsure: list[str] = field(default_factory=list)  # what the user must decide
    other_trees: list[str] = field(default_factory=list)
    metadata_trees: list[str] = field(default_factory=list)


@dataclass
class _Collection:
    name: str
    depth: int
    branches: list[Branch]

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.branches]

    def roles(self) -> dict[str, str]:
        return infer_roles(self.names)

    def exact_pt(self) -> bool:
        return any(role_of(b.name) == ("pt", True) for b in self.branches)

    def kinematic(self) -> bool:
        return bool({"pt", "px"} & set(self.roles()))


def _collections(branches: list[Branch], depth: int) -> list[_Collection]:
    groups: dict[str, list[Branch]] = {}
    for b in branches:
        if b.depth == depth and not b.regular:
            groups.setdefault(collection(b.name), []).append(b)
    return [_Collection(name, depth, bs) for name, bs in groups.items()]


def _constituent_like(c: _Collection) -> bool:
    return sum(bool(CONSTITUENT_NAME.search(b.name)) for b in c.branches) > len(c.branches) / 2


def _links(d2: list[_Collection]) -> tuple[_Collection, _Collection, dict[str, str]] | None:
    """PFNano-style link rows: a collection with a `jetIdx` branch and an `<X>Idx` branch naming another
    collection X; the jets are the collection whose name starts the link collection's (FatJet for
    FatJetPFCands). Returns (jets, constituents, links)."""
    by_name = {c.name.lower(): c for c in d2}
    for c in d2:
        jet_index = [b.name for b in c.branches if _words(b.name)[-1] == "jetidx"]
        if not jet_index:
            continue
        for b in c.branches:
            word = _words(b.name)[-1]
            target = by_name.get(word[:-3]) if INDEX_LEAF.search(word) and word != "jetidx" else None
            if target is None or target is c:
                continue
            jets = max((j for j in d2 if c.name.lower().startswith(j.name.lower()) and j is not c and j.kinematic()),
                       key=lambda j: len(j.name), default=None)
            if jets is not None:
                return jets, target, {"jet_index": jet_index[0], "index": b.name}
    return None


def _jet_score(c: _Collection) -> tuple:
    return (not TRUTH_NAME.search(c.name), bool(PLAIN_JET.search(c.name)), c.exact_pt(), len(c.branches))


def _per_vertex(inner: np.ndarray, counts: np.ndarray) -> bool:
    """Lists whose length is the same for every jet of an event (PHYSLITE's NumTrkPt500 has one value per
    primary vertex), in at least 90% of the events with two or more jets: not constituents."""
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    multi = counts >= 2
    if multi.sum() < 3:
        return False
    first = inner[starts[multi]]
    same = np.ones(int(multi.sum()), bool)
    for k in range(1, int(counts[multi].max())):  # a few jets per event: a loop over jet positions only
        has = counts[multi] > k
        same[has] &= inner[starts[multi][has] + k] == first[has]
    return same.mean() >= 0.9


def _event_number_candidates(s: Survey) -> list[Branch]:
    return [b for b in s.branches.values() if (b.depth == 1 or b.depth == 2) and b.integer and (
        any(EVENT_NUMBER_WORD.match(w) for w in _words(b.name))
        or (leaf(b.name).lower() == "number" and collection(b.name).lower() == "event"))]


def _weight_candidates(s: Survey) -> list[Branch]:
    return [b for b in s.branches.values() if b.depth == 1 and not b.integer
            and any(w in WEIGHT_WORDS for w in _words(b.name))]


def _event_number(s: Survey, g: Guess, candidates: list[Branch]) -> None:
    good, rejected = [], []
    for b in candidates:
        if b.name not in s.branches or not (b.depth == 1 or b.single):
            continue
        n = len(b.values)
        if n >= 2 and (b.distinct == 1 or b.distinct < 0.01 * n):
            rejected.append(f"{b.name} ({b.distinct} distinct value{'s' if b.distinct > 1 else ''} in {n} entries)")
        else:
            good.append(b)
    good.sort(key=lambda b: (b.single, -b.distinct / max(len(b.values), 1), not EVENT_NUMBER_WORD.match(
        leaf(b.name)), len(b.name)))
    if good:
        g.event_number = good[0].name
        if len(good) > 1:
            g.notes.append("other event-number branches: " + ", ".join(b.name for b in good[1:]))
    if rejected:
        g.notes.append("not an event number (too few distinct values): " + ", ".join(rejected))


def _weight(s: Survey, g: Guess, candidates: list[Branch]) -> None:
    named = [b for b in s.branches.values() if "weight" in leaf(b.name).lower()]
    candidates = [b for b in candidates if b.name in s.branches and b.finite]
    candidates.sort(key=lambda b: min(WEIGHT_WORDS.index(w) for w in _words(b.name) if w in WEIGHT_WORDS))
    if candidates:
        g.weight = candidates[0].name
    others = [b.name for b in named if b.name != g.weight and b.depth == 1]
    lists = [b.name for b in named if b.depth == 2 and not JET_NAME.search(collection(b.name))]
    if others:
        g.notes.append("other weight branches (variations?): " + ", ".join(others[:8])
                       + (f" ... ({len(others) - 8} more)" if len(others) > 8 else ""))
    if lists:
        g.notes.append("weights stored as a list per event (weights.branch needs one value per event; in "
                       "record: event write `name`[0]): " + ", ".join(lists[:6]))


def _finite_numeric(s: Survey, names: list[str], g: Guess) -> list[str]:
    """The names that were read, left out with a note if they hold NaN or Inf in the first entries."""
    bad = [n for n in names if n in s.branches and not s.branches[n].finite]
    if bad:
        g.notes.append("non-finite values (NaN/Inf) in the first entries, left out (or set input.on_nonfinite): "
                       + ", ".join(bad))
    return [n for n in names if n in s.branches and n not in bad]


def _kinematics_first(names: list[str]) -> list[str]:
    """pT, eta, phi first (the calibrated `.pt` before a prefixed `JetConstitScaleMomentum_pt`), then the rest
    in the file's order."""
    roles = infer_roles(names)
    first = [roles[r] for r in ("pt", "eta", "phi") if r in roles]
    return list(dict.fromkeys(first + names))


def relevant(name: str) -> bool:
    """Branches a guess may use, by name: jet, constituent and link collections, the event number, weights,
    pile-up. The others (electrons, triggers ...) are typed only when no jet collection turns up."""
    words = _words(name)
    return bool(JET_NAME.search(collection(name)) or CONSTITUENT_NAME.search(name) or INDEX_LEAF.search(words[-1])
                or "weight" in words[0] or any(EVENT_NUMBER_WORD.match(w) for w in words)
                or leaf(name).lower() == "number" or any(EVENT_CONTEXT_NAME.search(w) for w in words))


def guess(path: str, tree_name: str | None = None) -> Guess:
    with Survey(path, tree_name, relevant) as s:
        if not any(JET_NAME.search(collection(b.name)) and b.depth >= 2 for b in s.branches.values()):
            s.widen()  # no jets by name: any collection may play their part
        return _guess(s)


@dataclass
class _Plan:
    """What the names alone say, before any value is read."""

    kind: str  # linked, jets (one entry per jet), events, fallback (no jet collection), lists (lists of lists only)
    main: _Collection | None = None
    jet_like: list[_Collection] = field(default_factory=list)
    candidates: _Collection | None = None  # linked constituents, or the constituent lists of layout jets
    links: dict[str, str] | None = None
    constituent_lists: list[Branch] = field(default_factory=list)  # depth-3 candidates
    companions: list[str] = field(default_factory=list)  # single-branch jet collections (jetbtag beside jetp4)
    per_jet: list[str] = field(default_factory=list)  # layout jets: the scalars

    def names(self) -> list[str]:
        out = list(self.main.names) if self.main else []
        out += self.candidates.names if self.candidates else []
        out += [self.links["jet_index"]] if self.links else []
        return out + [b.name for b in self.constituent_lists] + self.companions + self.per_jet


def _plan(s: Survey) -> _Plan:
    branches = list(s.branches.values())
    d2 = _collections(branches, 2)
    d3 = [b for b in branches if b.depth == 3 and not b.regular]
    scalars = [b.name for b in branches if b.depth == 1]
    jet_like = [c for c in d2 if JET_NAME.search(c.name) and c.kinematic() and not _constituent_like(c)]
    linked = _links(d2)
    per_jet_scalars = [n for n in scalars if JET_NAME.search(collection(n)) and role_of(n) and
                       role_of(n)[0] in ("pt", "px")]
    constituent_lists = [c for c in d2 if _constituent_like(c) and c.kinematic()]
    if linked is not None:
        jets, cands, links = linked
        return _Plan("linked", jets, jet_like, cands, links)
    if not jet_like and per_jet_scalars and constituent_lists:
        return _Plan("jets", candidates=max(constituent_lists, key=lambda c: len(c.branches)), per_jet=scalars)
    if jet_like or d2:
        kind = "events" if jet_like else "fallback"
        if jet_like:
            main = max(jet_like, key=_jet_score)
        else:
            main = max([c for c in d2 if c.kinematic()] or d2, key=lambda c: (c.exact_pt(), len(c.branches)))
        companions = [c.names[0] for c in d2 if c is not main and len(c.branches) == 1
                      and JET_NAME.search(c.name) and not c.kinematic()]
        lists = [b for b in d3 if collection(b.name) == main.name or CONSTITUENT_NAME.search(b.name)]
        return _Plan(kind, main, jet_like, constituent_lists=lists, companions=companions)
    if d3:
        return _Plan("lists", constituent_lists=d3)
    raise InputError(f"{s.path}: tree {s.tree!r} has no list branches (no jets or constituents to flatten); its "
                     f"branches: {', '.join(scalars[:10])}{' ...' if len(scalars) > 10 else ''}")


def _guess(s: Survey) -> Guess:
    g = Guess(s.tree, s.entries, "events", peeked=s.peeked, other_trees=s.other_trees,
              metadata_trees=s.metadata_trees)
    if s.unsure_tree:
        g.unsure.append(f"tree {s.tree!r} was chosen among trees with as many entries: {', '.join(s.other_trees)}; "
                        "pass --tree to choose")
    plan = _plan(s)
    numbers, weights = _event_number_candidates(s), _weight_candidates(s)
    context = [b.name for b in s.branches.values() if b.depth == 1 and not TRUTH_NAME.search(b.name)
               and any(EVENT_CONTEXT_NAME.search(w) for w in _words(b.name))]
    s.peek([b.name for b in numbers + weights] + context + plan.names())  # one read for every decision
    _event_number(s, g, numbers)
    _weight(s, g, weights)
    if plan.kind == "linked":
        g.links = plan.links
        _events_layout(s, g, plan)
        g.constituents = _kinematics_first(_finite_numeric(s, plan.candidates.names, g))
        jet_index = s.branches.get(plan.links["jet_index"])
        if jet_index is not None and jet_index.counts is not None and jet_index.counts.sum():  # links per jet
            event = np.repeat(np.arange(len(jet_index.counts), dtype=np.int64), jet_index.counts)
            _, g.multiplicity = np.unique(np.column_stack([event, jet_index.flat.astype(np.int64)]), axis=0,
                                          return_counts=True)
    elif plan.kind == "jets":
        _jets_layout(s, g, plan)
    elif plan.kind in ("events", "fallback"):
        if plan.kind == "fallback":
            g.unsure.append(f"no jet collection found; the {plan.main.name} collection plays the jets' part")
        _events_layout(s, g, plan)
    else:
        g.constituents = [b.name for b in plan.constituent_lists if b.name in s.branches]
        g.multiplicity = s.branches[g.constituents[0]].inner if g.constituents else None
    if g.layout == "events":
        g.context = _finite_numeric(s, [n for n in context if n not in (g.event_number, g.weight)], g)
    g.events = g.context
    if g.layout == "jets" and g.event_number is None:
        g.unsure.append("one entry per jet but no event-number branch: jets of one event may land in different "
                        "splits; set input.event_number")
    g.skipped = sorted(s.skipped)
    pt = infer_roles(g.jets).get("pt")
    g.jet_pt_median = s.branches[pt].median if pt in s.branches else None
    _delphes_constituents(s, g)
    return g


def _events_layout(s: Survey, g: Guess, plan: _Plan) -> None:
    main = plan.main
    names = [n for n in main.names if n in s.branches]
    if not names:
        raise InputError(f"{s.path}: the branches of collection {main.name!r} cannot be read")
    counts = s.branches[names[0]].counts
    # per-jet branches of their own (jetbtag, jetid beside the TLorentzVector jetp4): the same counts
    companions = [n for n in plan.companions if n in s.branches and np.array_equal(s.branches[n].counts, counts)]
    secondary = [n for n in names if s.branches[n].lorentz not in (None, main.name)]  # Delphes: Jet.SoftDroppedJet
    if secondary:
        g.notes.append("other four-vectors of the jets, left out: "
                       + ", ".join(sorted({s.branches[n].lorentz for n in secondary})))
    names = _finite_numeric(s, [n for n in names if n not in secondary] + companions, g)
    g.jets = _kinematics_first([n for n in names if not TRUTH_NAME.search(leaf(n))])
    g.truth = [n for n in names if TRUTH_NAME.search(leaf(n))]
    others = [c for c in plan.jet_like if c is not main]
    if others:
        described = []
        for c in sorted(others, key=_jet_score, reverse=True):
            note = " (truth)" if TRUTH_NAME.search(c.name) else ""
            pt = c.roles().get("pt")
            if pt and not c.exact_pt() and leaf(pt) != pt:
                note += f" (kinematics only from {leaf(pt)}: another scale)"
            described.append(f"{c.name}{note}")
        g.notes.append("other jet collections (change the branch lists to use one): " + ", ".join(described))
    pt = main.roles().get("pt")
    if pt and not main.exact_pt() and leaf(pt) != pt:
        g.unsure.append(f"the jet pT is {pt}, whose last name component only ends in pt: check it is the scale "
                        "you want")
    if g.links is None:
        _constituents(s, g, plan, counts)


def _constituents(s: Survey, g: Guess, plan: _Plan, counts) -> None:
    same = [b for b in plan.constituent_lists if b.name in s.branches and np.array_equal(b.counts, counts)]
    per_vertex = [b for b in same if _per_vertex(b.inner, b.counts)]
    if per_vertex:
        g.notes.append("lists per jet with one value per vertex (the same length for every jet of an event), not "
                       "constituents: " + ", ".join(b.name for b in per_vertex))
    groups: dict[tuple, list[Branch]] = {}
    for b in same:
        if b not in per_vertex:
            groups.setdefault(tuple(b.inner.tolist()), []).append(b)
    if not groups:
        return
    best = max(groups.values(), key=lambda bs: (sum(bool(CONSTITUENT_NAME.search(b.name)) for b in bs), len(bs)))
    g.constituents = _kinematics_first(_finite_numeric(s, [b.name for b in best], g))
    g.multiplicity = best[0].inner


def _jets_layout(s: Survey, g: Guess, plan: _Plan) -> None:
    g.layout = "jets"
    g.constituents = _kinematics_first(_finite_numeric(s, plan.candidates.names, g))
    g.multiplicity = s.branches[g.constituents[0]].counts if g.constituents else None
    bookkeeping = {g.event_number, g.weight}
    names = _finite_numeric(s, [n for n in plan.per_jet if n not in bookkeeping], g)
    g.jets = _kinematics_first([n for n in names if not TRUTH_NAME.search(n)])
    g.truth = [n for n in names if TRUTH_NAME.search(n)]


def _delphes_constituents(s: Survey, g: Guess) -> None:
    refs = [n for n, why in s.skipped.items() if "TRef" in why and n.endswith(".Constituents")]
    if refs:
        g.notes.append(f"{', '.join(refs)}: TRefArray references into the EFlow* collections, which uproot reads "
                       "only as Python objects; not supported as constituents")
