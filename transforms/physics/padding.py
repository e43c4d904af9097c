"""Constituents: sort each jet's constituents, truncate / zero-pad to a fixed length, build the mask.

Per jet: constituents ordered by `sort_by` descending (ties keep ntuple order), the first `max` kept, zeros
after the last one; constituents with pT below `min_pt` (in the ntuple's units) are zeroed and not valid.
`mask[j, k]` is True exactly where slot k of jet j holds a real constituent.
"""
from __future__ import annotations

import apache_beam as beam
import awkward as ak
import numpy as np

from root2hdf5.transforms.core.batch import Jagged, RowBatch

_POSITION_BITS = 10  # constituents per jet < 1024 for the one-sort path
_JET_BITS = 22  # jets per batch < 4M


def _descending_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> uint64 whose ascending order is the floats' descending order (IEEE 754 trick)."""
    bits = values.view(np.uint32).astype(np.uint64)
    if not (values < 0).any():  # pT and energies: the bits of non-negative floats already sort like them
        return np.uint64(0xFFFFFFFF) - bits
    negative = bits >> np.uint64(31) == 1
    ascending = np.where(negative, ~bits & np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))
    return np.uint64(0xFFFFFFFF) - ascending


def _sorted_positions(key: np.ndarray, jet: np.ndarray, within: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """For each slot (jet, rank), the position in the jet of its constituent, ranked by key descending with
    ties in ntuple order."""
    n_jets = len(offsets) - 1
    if key.dtype == np.float32 and n_jets < 1 << _JET_BITS and (len(within) == 0 or within.max() < 1 << _POSITION_BITS):
        # one in-place sort of (jet | key | position) packed in 64 bits: ~3x faster than a segmented argsort
        packed = (jet.astype(np.uint64) << np.uint64(64 - _JET_BITS)) \
            | (_descending_bits(key) << np.uint64(_POSITION_BITS)) | within.astype(np.uint64)
        packed.sort()
        return (packed & np.uint64((1 << _POSITION_BITS) - 1)).astype(np.int64)
    lists = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(key)))
    return np.asarray(ak.to_numpy(ak.flatten(ak.argsort(lists, axis=1, ascending=False, stable=True))), np.int64)


def pad_constituents(jagged: dict[str, Jagged], sort_by: str, max_len: int, pt: str | None = None,
                     min_pt: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-jet constituent values -> ({branch: float32 (n, max_len)}, bool mask (n, max_len))."""
    key = jagged[sort_by]
    n, counts, starts = len(key), key.counts, key.starts
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    # 32-bit indices halve the memory traffic of the index arithmetic whenever they suffice
    small = n * max_len < 1 << 31 and offsets[-1] < 1 << 31
    index = np.int32 if small else np.int64
    jet = np.repeat(np.arange(n, dtype=index), counts)
    within = np.arange(offsets[-1], dtype=index) - offsets[:-1].astype(index)[jet]  # position in its jet = rank
    position = _sorted_positions(key.content[starts[jet] + within], jet, within, offsets)
    keep = within < max_len
    source = starts[jet[keep]] + position[keep]  # flat index of the constituent in each kept slot
    target = jet[keep] * index(max_len) + within[keep]
    mask = np.zeros(n * max_len, bool)
    mask[target] = True
    padded = {}
    for name, values in jagged.items():
        # the branches hold the same lists but may lay them out differently (a variation rewrites some):
        # a check per jet is cheaper than a gather per constituent
        same = values.starts is starts or np.array_equal(values.starts, starts)
        where = source if same else values.starts[jet[keep]] + position[keep]
        out = np.zeros(n * max_len, np.float32)
        out[target] = values.content[where]
        padded[name] = out.reshape(n, max_len)
    mask = mask.reshape(n, max_len)
    if min_pt > 0 and pt is not None:
        soft = mask & (padded[pt] < min_pt)
        mask &= ~soft
        for values in padded.values():
            values[soft] = 0
    return padded, mask


@beam.typehints.with_output_types(RowBatch)
class PadConstituents(beam.DoFn):
    """RowBatch with jagged constituent branches -> the same branches as (n, max) arrays, plus `mask`.

    Args:
        names: the constituent branches.
        sort_by: branch ordering the constituents (descending).
        max_len: number of constituent slots per jet.
        pt: the constituent pT branch, for `min_pt`.
        min_pt: constituents below this pT are masked out (ntuple units).
    """

    def __init__(self, names: list[str], sort_by: str, max_len: int, pt: str | None, min_pt: float):
        self.names = list(names)
        self.sort_by = sort_by
        self.max_len = max_len
        self.pt = pt
        self.min_pt = min_pt

    def process(self, batch: RowBatch):
        if self.names:
            padded, mask = pad_constituents({n: batch.branches[n] for n in self.names}, self.sort_by,
                                            self.max_len, self.pt, self.min_pt)
            batch.branches.update(padded)
            batch.data["mask"] = mask
            batch.stats["no_constituents"] += int((~mask.any(axis=1)).sum())  # written, with an empty mask
        yield batch
