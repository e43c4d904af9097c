"""Flatten entries to per-jet records.

Layout `events`: one entry per event, jet branches hold a list per event and constituent branches a list
of lists. The `leading` jets of each event (highest `leading_by` first, ties in ntuple order) become rows;
event-level branches are repeated for each of them. Layout `jets`: one entry per jet, passed through.
`record: event` (flatten_event_rows): one row per event, list branches kept as lists (Jagged).

Every jet gets its identity: `source` = (sample, file, entry, jet index in the event as stored), and its
`event_number` (int64: an unsigned value from 2**63 up is refused, not wrapped to a negative number; without
input.event_number the column is NO_EVENT_NUMBER, and the `config` file attribute records that it is not set).
"""
from __future__ import annotations

import apache_beam as beam
import awkward as ak
import numpy as np

from root2hdf5.transforms.core import faults
from root2hdf5.transforms.core.batch import Jagged, RowBatch, list_offsets, numpy_content
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.exact import exact_sum
from root2hdf5.transforms.read.links import LinkSpec, gather_linked
from root2hdf5.transforms.read.ranges import EventsChunk

NO_EVENT_NUMBER = -1  # the event_number column when input.event_number is not set
_INT64_MAX = np.iinfo(np.int64).max


def _to_numpy(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array))


def _check_same_counts(counts: dict[str, np.ndarray], what: str, chunk: EventsChunk):
    names = list(counts)
    if not names:
        return
    for name in names[1:]:
        bad = np.flatnonzero(counts[name] != counts[names[0]])
        if bad.size:
            r = chunk.range
            raise InputError(
                f"{r.file.path}: tree {r.file.tree!r}: branches {names[0]!r} and {name!r} have different "
                f"numbers of {what} at entry {r.start + int(bad[0])} ({counts[names[0]][bad[0]]} vs "
                f"{counts[name][bad[0]]})")


def _sum_of_weights(chunk: EventsChunk, branch: str) -> int:
    values = chunk.arrays[branch]
    where = f"{chunk.range.file.path}: tree {chunk.range.file.tree!r}"
    if values.ndim != 1:
        raise InputError(f"{where}: sum_of_weights auto needs an event-level weights.branch; {branch!r} "
                         "holds one value per jet")
    try:
        return exact_sum(_to_numpy(values))
    except ValueError:
        raise InputError(f"{where}: weights.branch {branch!r} has non-finite values in entries "
                         f"{chunk.range.start}-{chunk.range.stop}") from None


def _levels(arrays: ak.Array) -> dict[str, int]:
    return {name: arrays[name].ndim for name in arrays.fields}  # 1 event, 2 jet, 3 constituent


def flatten_events(chunk: EventsChunk, leading: int, leading_by: str | None,
                   event_number: str | None, sum_weights: str | None = None) -> RowBatch:
    arrays = chunk.arrays
    spec = chunk.range.file
    levels = _levels(arrays)
    jet_level = [n for n, d in levels.items() if d == 2]
    constituent_level = [n for n, d in levels.items() if d == 3]
    reference = jet_level[0] if jet_level else constituent_level[0]

    # Work on the offsets and flat contents uproot returns: picking jets and their constituents is then
    # index arithmetic, and no constituent is copied until the padding gathers them.
    outer, inner, content = {}, {}, {}
    for name in jet_level + constituent_level:
        outer[name], jets = list_offsets(arrays[name].layout)
        if levels[name] == 3:
            inner[name], jets = list_offsets(jets)
        content[name] = numpy_content(jets)
    _check_same_counts({n: np.diff(outer[n]) for n in outer}, "jets", chunk)
    if len(constituent_level) > 1:
        _check_same_counts({n: np.diff(inner[n])[outer[n][0]:outer[n][-1]] for n in constituent_level},
                           "constituents in a jet", chunk)
    counts = np.diff(outer[reference])
    n_events = len(arrays)

    if leading_by is not None:
        order = ak.argsort(arrays[leading_by], axis=1, ascending=False, stable=True)[:, :leading]
        kept = _to_numpy(ak.num(order, axis=1))
        local = _to_numpy(ak.flatten(order)).astype(np.int64)
    else:
        kept = np.minimum(counts, leading)
        local = np.arange(kept.sum(), dtype=np.int64) - np.repeat(np.cumsum(kept) - kept, kept)
    event_of = np.repeat(np.arange(n_events, dtype=np.int64), kept)

    branches = {}
    for name, depth in levels.items():
        if depth == 1:
            branches[name] = np.repeat(_to_numpy(arrays[name]), kept)
            continue
        jet = outer[name][event_of] + local  # position of each kept jet in the branch's jet list
        if depth == 2:
            branches[name] = content[name][jet]
        else:
            starts = inner[name][jet]
            branches[name] = Jagged(content[name], starts, inner[name][jet + 1] - starts)

    batch = RowBatch(spec.sample, spec.file, branches, path=spec.path)
    _set_identity(batch, chunk.range.start + event_of, local, event_number)
    batch.stats.update(events=n_events, jets=int(counts.sum()), not_leading=int(counts.sum() - kept.sum()))
    if sum_weights:
        batch.stats["sum_weights"] = _sum_of_weights(chunk, sum_weights)
    return batch


def flatten_jets(chunk: EventsChunk, event_number: str | None) -> RowBatch:
    arrays = chunk.arrays
    spec = chunk.range.file
    branches, counts = {}, {}
    for name, depth in _levels(arrays).items():
        if depth == 1:
            branches[name] = _to_numpy(arrays[name])
        else:
            offsets, values = list_offsets(arrays[name].layout)
            counts[name] = np.diff(offsets)
            branches[name] = Jagged(numpy_content(values), offsets[:-1], counts[name])
    _check_same_counts(counts, "constituents", chunk)
    n = len(arrays)
    entry = chunk.range.start + np.arange(n, dtype=np.int64)
    batch = RowBatch(spec.sample, spec.file, branches, path=spec.path)
    _set_identity(batch, entry, np.zeros(n, np.int64), event_number)
    batch.stats.update(jets=n, not_leading=0)
    return batch


def flatten_event_rows(chunk: EventsChunk, event_number: str | None, sum_weights: str | None = None,
                       same_length: tuple[str, ...] = ()) -> RowBatch:
    """`record: event`: one row per entry. Branches with one value per entry become numpy columns, lists
    (Jet_pt ...) Jagged views on uproot's flat content; `same_length` branches (one collection kept padded)
    must have lists of equal length in every entry."""
    arrays = chunk.arrays
    spec = chunk.range.file
    branches = {}
    for name, depth in _levels(arrays).items():
        if depth == 1:
            branches[name] = _to_numpy(arrays[name])
        else:
            offsets, values = list_offsets(arrays[name].layout)
            branches[name] = Jagged(numpy_content(values), offsets[:-1], np.diff(offsets))
    _check_same_counts({n: branches[n].counts for n in same_length if n in branches}, "values", chunk)
    n = len(arrays)
    batch = RowBatch(spec.sample, spec.file, branches, path=spec.path)
    _set_identity(batch, chunk.range.start + np.arange(n, dtype=np.int64), np.zeros(n, np.int64), event_number)
    batch.stats.update(events=n)
    if sum_weights:
        batch.stats["sum_weights"] = _sum_of_weights(chunk, sum_weights)
    return batch


def _event_numbers(values, branch: str, path: str, entry: np.ndarray) -> np.ndarray:
    """The event numbers as int64; uint64 values that int64 cannot hold are refused (they would wrap to
    negative numbers, 2**64 - 1 to -1, and look like another event or like no event number at all)."""
    values = np.asarray(values)
    if values.dtype.kind == "u" and values.dtype.itemsize == 8 and len(values) and values.max() > _INT64_MAX:
        row = int(np.argmax(values > _INT64_MAX))
        raise InputError(f"{path}: input.event_number {branch!r} is {int(values[row])} at entry {int(entry[row])}, "
                         f"beyond the int64 event_number dataset (largest {_INT64_MAX}); values from 2**63 up are "
                         "refused rather than stored as negative numbers")
    return values.astype(np.int64)


def _set_identity(batch: RowBatch, entry: np.ndarray, jet_index: np.ndarray, event_number: str | None):
    """`source` and `event_number` of every row; `event_number` names the branch (None: not configured)."""
    n = len(entry)
    values = batch.branches.get(event_number) if event_number else None
    batch.data["event_number"] = (np.full(n, NO_EVENT_NUMBER, np.int64) if values is None
                                  else _event_numbers(values, event_number, batch.path, entry))
    batch.data["source"] = np.column_stack([
        np.full(n, batch.sample, np.int64), np.full(n, batch.file, np.int64), entry, jet_index])


@beam.typehints.with_output_types(RowBatch)
class FlattenJets(beam.DoFn):
    """EventsChunk -> RowBatch with one row per kept jet.

    Args:
        layout: 'events' (one entry per event) or 'jets' (one entry per jet).
        leading: how many jets of each event to keep (events layout).
        leading_by: jet branch ranking the jets (highest first); None keeps ntuple order.
        event_number: branch with the event number, or None (events layout: identity by entry).
        sum_weights: event-level weight branch to sum exactly over all events read (stats 'sum_weights').
        links: constituents listed per event and reached through an index (transforms.read.links), or None.
        constituents: the constituent branches (gathered per jet when `links` is given).
        jets: with `links`, the jet branch whose lists count the jets of an event.
    """

    def __init__(self, layout: str, leading: int, leading_by: str | None, event_number: str | None,
                 sum_weights: str | None = None, links: LinkSpec | None = None, constituents: tuple[str, ...] = (),
                 jets: str | None = None):
        self.layout = layout
        self.leading = leading
        self.leading_by = leading_by
        self.event_number = event_number
        self.sum_weights = sum_weights
        self.links = links
        self.constituents = list(constituents)
        self.jets = jets

    def process(self, chunk: EventsChunk):
        r = chunk.range
        faults.fail_once("flatten", f"{r.file.sample}/{r.file.file}/{r.start}")  # test hook, inert by default
        if self.links is not None:  # constituents per event -> per jet, through the links
            arrays = gather_linked(chunk.arrays, self.links, self.constituents, self.jets,
                                   f"{r.file.path}: tree {r.file.tree!r}", r.start)
            chunk = EventsChunk(r, arrays)
        if self.layout == "events":
            yield flatten_events(chunk, self.leading, self.leading_by, self.event_number, self.sum_weights)
        else:
            yield flatten_jets(chunk, self.event_number)


@beam.typehints.with_output_types(RowBatch)
class FlattenEvents(beam.DoFn):
    """EventsChunk -> RowBatch with one row per event (`record: event`); see flatten_event_rows.

    Args:
        event_number: branch with the event number, or None (identity by entry).
        sum_weights: event-level weight branch to sum exactly over all events read (stats 'sum_weights').
        same_length: list branches that must have equal lengths in each event (a padded collection).
    """

    def __init__(self, event_number: str | None, sum_weights: str | None = None, same_length: tuple[str, ...] = ()):
        self.event_number = event_number
        self.sum_weights = sum_weights
        self.same_length = tuple(same_length)

    def process(self, chunk: EventsChunk):
        yield flatten_event_rows(chunk, self.event_number, self.sum_weights, self.same_length)
