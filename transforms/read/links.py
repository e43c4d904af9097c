"""Constituents reached through an index: one gather per entry range turns per-event collections into per-jet lists.

Some formats store every constituent once per event and link the jets to them:

* rows of links (CMS PFNano): `FatJetPFCands_jetIdx[k]` is the jet and `FatJetPFCands_pFCandsIdx[k]` the
  candidate of link k, both indices within the event; the candidates are `PFCands_pt`, `PFCands_eta` ...
* a list of indices per jet (an ATLAS `ElementLink` list's `m_persIndex`), optionally with a branch that is
  0 where a link is null (`m_persKey`).

`gather_linked` replaces the configured constituent branches (one list per event) by one list per jet,
laid out exactly like a `vector<vector<float>>` branch, and drops the link branches; flattening, sorting,
padding, preprocessing and images then run unchanged. The gather is a handful of numpy operations over all
links of the range (offsets of each event's jets and candidates, one stable sort by jet): no loop over
events, jets or links. Within a jet, constituents keep the order of their links. A link to a jet or a
candidate the event does not have is an InputError naming the file, the entry and the branch.
"""
from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.layouts import list_offsets, numpy_content


@dataclass(frozen=True)
class LinkSpec:
    """How jets reach their constituents: `index` per link (rows form, with `jet_index`) or a list of
    indices per jet (without it); `valid`, if given, is non-zero for the links that are set."""

    index: str
    jet_index: str | None = None
    valid: str | None = None

    def branches(self) -> tuple[str, ...]:
        return tuple(b for b in (self.jet_index, self.index, self.valid) if b)


def _counts(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.num(array, axis=1)), np.int64)


def _flat(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array, axis=None)))


def _starts(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _links(arrays, spec: LinkSpec, jet_counts: np.ndarray, where: str, start: int):
    """(event, jet within the event, candidate within the event) of every link that is set."""
    index = arrays[spec.index]
    if spec.jet_index is not None:
        n_links = _counts(index)
        if not np.array_equal(_counts(arrays[spec.jet_index]), n_links):
            bad = int(np.flatnonzero(_counts(arrays[spec.jet_index]) != n_links)[0])
            raise InputError(f"{where}: links {spec.jet_index!r} and {spec.index!r} have different lengths at "
                             f"entry {start + bad}")
        event = np.repeat(np.arange(len(index), dtype=np.int64), n_links)
        jet = _flat(arrays[spec.jet_index]).astype(np.int64)
    else:  # a list of indices per jet
        n_jets = _counts(index)
        bad = np.flatnonzero(n_jets != jet_counts)
        if bad.size:
            raise InputError(f"{where}: {spec.index!r} holds {n_jets[bad[0]]} index lists at entry "
                             f"{start + int(bad[0])} but the event has {jet_counts[bad[0]]} jets")
        per_jet = np.asarray(ak.to_numpy(ak.flatten(ak.num(index, axis=2))), np.int64)
        jet_of_list = np.arange(len(per_jet), dtype=np.int64) - np.repeat(_starts(jet_counts)[:-1], jet_counts)
        event = np.repeat(np.repeat(np.arange(len(index), dtype=np.int64), jet_counts), per_jet)
        jet = np.repeat(jet_of_list, per_jet)
    candidate = _flat(index).astype(np.int64)
    if spec.valid is not None:
        valid = _flat(arrays[spec.valid])
        if len(valid) != len(candidate):
            raise InputError(f"{where}: {spec.valid!r} and {spec.index!r} have different lengths in entries "
                             f"{start}-{start + len(index)}")
        keep = valid != 0
        event, jet, candidate = event[keep], jet[keep], candidate[keep]
    return event, jet, candidate


def gather_linked(arrays: ak.Array, spec: LinkSpec, constituents: list[str], jets: str, where: str,
                  start: int = 0) -> ak.Array:
    """`arrays` (one entry per event) with each constituent branch turned from a list per event into a list
    per jet of `jets` (a jet branch), and the link branches dropped."""
    jet_counts = _counts(arrays[jets])
    candidate_counts = _counts(arrays[constituents[0]])
    for name in constituents[1:]:
        bad = np.flatnonzero(_counts(arrays[name]) != candidate_counts)
        if bad.size:
            raise InputError(f"{where}: constituent branches {constituents[0]!r} and {name!r} have different "
                             f"lengths at entry {start + int(bad[0])}")
    event, jet, candidate = _links(arrays, spec, jet_counts, where, start)
    for name, local, limit, what in ((spec.jet_index or spec.index, jet, jet_counts[event], "jets"),
                                     (spec.index, candidate, candidate_counts[event], "constituents")):
        bad = np.flatnonzero((local < 0) | (local >= limit))
        if bad.size:
            k = int(bad[0])
            raise InputError(f"{where}: link branch {name!r} points to index {local[k]} at entry "
                             f"{start + int(event[k])}, but that event has {limit[k]} {what}")
    jet_offsets = _starts(jet_counts)
    global_jet = jet_offsets[event] + jet
    global_candidate = _starts(candidate_counts)[event] + candidate
    order = np.argsort(global_jet, kind="stable")  # by jet; within a jet, in link order
    source = global_candidate[order]
    inner = _starts(np.bincount(global_jet, minlength=int(jet_offsets[-1])))
    out = {}
    linked = set(spec.branches())
    for name in arrays.fields:
        if name in linked and name not in constituents:
            continue
        if name not in constituents:
            out[name] = arrays[name]
            continue
        offsets, content = list_offsets(arrays[name].layout)
        values = numpy_content(content)[source + offsets[0]]
        out[name] = ak.Array(ak.contents.ListOffsetArray(
            ak.index.Index64(jet_offsets),
            ak.contents.ListOffsetArray(ak.index.Index64(inner), ak.contents.NumpyArray(values))))
    return ak.zip(out, depth_limit=1)
