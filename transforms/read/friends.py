"""Friend trees: values from a second set of files joined to each event on key branches (`events.friends`).

Typical use: matrix-element-method or other per-event outputs written by a separate job, matched on
(run, luminosityBlock, event). Each sample names its own friend files, and keys are matched within the
sample, so two MC samples with the same (run, lumi, event) numbers cannot be mixed up.

The join is a Beam CoGroupByKey, vectorized: every batch of events (and of friend rows) is cut into
sub-batches by a hash of (sample, keys) modulo `groups`, both sides are grouped by that number, and within a
group the rows are matched with numpy (one sort of all keys, no loop per event). Memory per group is about
1/`groups` of the selected events plus their friend rows.

Events without a partner are dropped (`unmatched: drop`, counted as `unmatched` in the report) or kept with
`fill_value` in every friend branch (`unmatched: fill`, counted as `unmatched_filled`). A key that occurs
twice among a sample's friend rows is an error naming both files and entries.

Deterministic: an event keeps its identity (sample, file, entry of the main tree), so its split and shuffle
keys are those it had before the join, and the rows leave each group ordered by file and entry whatever
order the runner delivered them in.
"""
from __future__ import annotations

import typing
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.batch import Jagged, RowBatch, compact_batch, concat_batches
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.hashing import hash_columns
from root2hdf5.transforms.read.finite import CheckFinite
from root2hdf5.transforms.read.flatten import FlattenEvents
from root2hdf5.transforms.read.ranges import ReadRootRanges

_GROUP_SALT = 0xF41E4D


@dataclass(frozen=True)
class FriendSpec:
    """One friend tree, resolved from the config.

    keys / friend_keys: the key branches in the main tree / in the friend tree (same order).
    branches: friend branches (one value per entry) added to each event.
    paths: the friend files of each sample (for messages).
    """

    name: str
    keys: tuple[str, ...]
    friend_keys: tuple[str, ...]
    branches: tuple[str, ...]
    unmatched: str = "drop"
    fill_value: float = -999.0
    groups: int = 32
    paths: tuple[tuple[str, ...], ...] = ()
    sample_names: tuple[str, ...] = ()


def key_matrix(batch: RowBatch, names: tuple[str, ...], what: str) -> np.ndarray:
    """int64 (n, 1 + keys): the sample, then each key. Integer keys of any width compare by value; float
    keys must hold integers (event numbers stored as doubles)."""
    columns = [batch.data["source"][:, 0]]
    for name in names:
        values = batch.branches[name]
        if isinstance(values, Jagged):
            raise InputError(f"{batch.path}: {what} key {name!r} holds a list per event; keys need one value")
        values = np.asarray(values)
        if values.dtype.kind == "f" and not np.all(values == np.trunc(values)):
            bad = int(np.flatnonzero(values != np.trunc(values))[0])
            raise InputError(f"{batch.path}: {what} key {name!r} is {values[bad]} at entry "
                             f"{batch.data['source'][bad, 2]}; keys must be integers")
        columns.append(values.astype(np.int64))  # uint64 wraps around: equal values stay equal
    return np.stack(columns, axis=1) if len(columns[0]) else np.zeros((0, len(columns)), np.int64)


def group_of(keys: np.ndarray, groups: int) -> np.ndarray:
    return (hash_columns(_GROUP_SALT, *keys.T) % np.uint64(groups)).astype(np.int64)


def split_by_group(batch: RowBatch, keys: np.ndarray, groups: int) -> list[tuple[int, RowBatch]]:
    """(group, compacted sub-batch) for each group the rows fall in; `stats` go with the first piece (an
    empty batch goes whole to group 0, so that its counts still reach the report)."""
    if len(batch) == 0:
        return [(0, compact_batch(batch))]
    group = group_of(keys, groups)
    order = np.argsort(group, kind="stable")
    values, starts = np.unique(group[order], return_index=True)
    pieces = []
    for i, (g, start) in enumerate(zip(values, starts)):
        stop = starts[i + 1] if i + 1 < len(starts) else len(order)
        piece = compact_batch(batch.take(order[start:stop]))
        if i:
            piece.stats = Counter()
        pieces.append((int(g), piece))
    return pieces


def duplicated_rows(keys: np.ndarray) -> np.ndarray | None:
    """The rows holding the smallest key that occurs more than once (the same on every run), or None."""
    if len(keys) < 2:
        return None
    _, ident, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    if counts.max() < 2:
        return None
    return np.flatnonzero(ident.ravel() == int(np.flatnonzero(counts > 1)[0]))


def match_rows(main: np.ndarray, friend: np.ndarray) -> np.ndarray:
    """For each main row, the index of the friend row with the same key, or -1. One sort of all keys (no
    loop per event); the friend keys must be unique (duplicated_rows)."""
    n_friend = len(friend)
    _, ident = np.unique(np.concatenate([friend, main]), axis=0, return_inverse=True)
    ident = ident.ravel()
    lookup = np.full(int(ident.max(initial=-1)) + 1, -1, np.int64)
    lookup[ident[:n_friend]] = np.arange(n_friend)
    return lookup[ident[n_friend:]]


def take_or_fill(column: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """Rows `index` of a friend column; -1 gives `fill`."""
    values = np.asarray(column)
    missing = index < 0
    if not missing.any():
        return values[index]
    if not len(values):  # no friend row fell into this group
        return np.full(len(index), fill, np.float64)
    values = values[np.where(missing, 0, index)]
    if values.dtype.kind != "f":  # an integer or boolean branch cannot hold an arbitrary fill value
        values = values.astype(np.float64)
    values[missing] = fill
    return values


def _first_entry(batch: RowBatch) -> int:
    return int(batch.data["source"][0, 2]) if len(batch) else -1


class KeyByGroup(beam.DoFn):
    """RowBatch -> (group, sub-batch) pairs, by a hash of (sample, key branches)."""

    def __init__(self, keys: tuple[str, ...], groups: int, what: str):
        self.keys = tuple(keys)
        self.groups = groups
        self.what = what

    def process(self, batch: RowBatch):
        yield from split_by_group(batch, key_matrix(batch, self.keys, self.what), self.groups)


class JoinGroup(beam.DoFn):
    """(group, {'main': [event batches], 'friend': [friend batches]}) -> one joined RowBatch per main file."""

    def __init__(self, spec: FriendSpec):
        self.spec = spec

    def process(self, element):
        _, sides = element
        spec = self.spec
        order = lambda b: (b.sample, b.file, _first_entry(b))  # arrival order must not matter
        friends = sorted(sides["friend"], key=order)
        by_file: dict[tuple[int, int], list[RowBatch]] = {}
        for batch in sorted(sides["main"], key=order):
            by_file.setdefault((batch.sample, batch.file), []).append(batch)
        table = concat_batches(friends) if friends else None
        friend_keys = (key_matrix(table, spec.friend_keys, f"friend {spec.name!r}") if table is not None
                       else np.zeros((0, 1 + len(spec.keys)), np.int64))
        duplicate = duplicated_rows(friend_keys)  # checked whether or not an event asks for that key
        if duplicate is not None:
            raise InputError(self._duplicate_message(table, friend_keys, duplicate))
        for parts in by_file.values():
            yield self._join(concat_batches(parts), table, friend_keys)

    def _join(self, batch: RowBatch, table: RowBatch | None, friend_keys: np.ndarray) -> RowBatch:
        spec = self.spec
        index = match_rows(key_matrix(batch, spec.keys, "event"), friend_keys)
        missing = int((index < 0).sum())
        if missing and spec.unmatched == "drop":
            batch = batch.take(index >= 0)
            index = index[index >= 0]
            batch.stats["unmatched"] += missing
            batch.stats[f"unmatched/{spec.name}"] += missing
        elif missing:
            batch.stats["unmatched_filled"] += missing
            batch.stats[f"unmatched_filled/{spec.name}"] += missing
        for name in spec.branches:
            column = table.branches[name] if table is not None else np.zeros(0, np.float64)
            batch.branches[name] = take_or_fill(column, index, spec.fill_value)
        return batch

    def _duplicate_message(self, table: RowBatch, keys: np.ndarray, rows: np.ndarray) -> str:
        spec = self.spec
        a, b = (table.data["source"][r] for r in rows[:2])
        sample = int(a[0])
        paths = spec.paths[sample] if sample < len(spec.paths) else ()
        path = lambda source: paths[int(source[1])] if int(source[1]) < len(paths) else f"file {int(source[1])}"
        key = ", ".join(f"{n}={v}" for n, v in zip(spec.friend_keys, keys[rows[0], 1:]))
        name = spec.sample_names[sample] if sample < len(spec.sample_names) else sample
        return (f"friend {spec.name!r}: key ({key}) occurs twice in the friend files of sample {name!r}: "
                f"{path(a)} entry {int(a[2])} and {path(b)} entry {int(b[2])}; each event may have one partner")


class FriendRows(beam.PTransform):
    """Read a friend's files: keys and branches, one row per entry, non-finite values per `input.on_nonfinite`
    (a dropped friend row leaves its event unmatched)."""

    def __init__(self, files, plan, step_size: int, on_nonfinite: str = "fail", nonfinite_value: float = 0.0):
        super().__init__()
        self.files, self.plan, self.step_size = files, plan, step_size
        self.on_nonfinite, self.nonfinite_value = on_nonfinite, nonfinite_value

    def expand(self, pbegin):
        chunks, _ = pbegin | "Read" >> ReadRootRanges(self.files, self.plan, self.step_size)
        return (chunks
                | "Rows" >> beam.ParDo(FlattenEvents(None))
                | "CheckFinite" >> beam.ParDo(CheckFinite(self.on_nonfinite, self.nonfinite_value)))


class JoinFriend(beam.PTransform):
    """Event batches -> the same events with the friend's branches (CoGroupByKey on hashed key groups).

    Args:
        spec: the FriendSpec.
        friend_rows: PCollection of the friend's rows (FriendRows).
    """

    def __init__(self, spec: FriendSpec, friend_rows):
        super().__init__()
        self.spec = spec
        self.friend_rows = friend_rows

    def expand(self, events):
        spec = self.spec
        keyed = typing.Tuple[int, RowBatch]
        main = events | "KeyEvents" >> beam.ParDo(KeyByGroup(spec.keys, spec.groups, "event")).with_output_types(keyed)
        friend = self.friend_rows | "KeyFriendRows" >> beam.ParDo(
            KeyByGroup(spec.friend_keys, spec.groups, f"friend {spec.name!r}")).with_output_types(keyed)
        return ({"main": main, "friend": friend}
                | "CoGroupByKey" >> beam.CoGroupByKey()
                | "Match" >> beam.ParDo(JoinGroup(spec)).with_output_types(RowBatch))
