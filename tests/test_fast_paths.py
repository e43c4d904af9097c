"""The fast statistics, accounting and padding kernels give the results of the straightforward code they
replaced, bit for bit: each reference below is that code, kept here independent of the package."""
from __future__ import annotations

import glob
import os

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from root2hdf5.transforms.core.batch import Jagged
from root2hdf5.transforms.output.sink import _count_rows
from root2hdf5.transforms.physics.padding import pad_constituents
from root2hdf5.transforms.stats.moments import dataset_moments
from tests.conftest import shared_file

# ----------------------------------------------------------------------------------------------- references


def reference_moments(name, values, mask=None):
    """numpy's axis-0 reductions in float64, as transforms/stats/moments.py computed them before."""
    rows = np.asarray(values[mask] if name == "constituents" else values, np.float64)
    mean = rows.mean(axis=0)
    return mean, ((rows - mean) ** 2).sum(axis=0), rows.min(axis=0), rows.max(axis=0)


def _reference_groups(sample, file, label, weights=None):
    if len(sample) == 0:
        return {}
    keys, group = np.unique(np.stack([sample, file, label.astype(np.int64)], axis=1), axis=0, return_inverse=True)
    counts = np.bincount(group.ravel(), weights=weights, minlength=len(keys)).astype(np.int64)
    return {tuple(int(v) for v in key): int(c) for key, c in zip(keys, counts)}


def reference_count_rows(before, keep, unreadable, written):
    """np.unique(axis=0) on the stacked (sample, file, label) rows, as output/sink.py counted before."""
    unread = _reference_groups(*before, weights=unreadable)
    limited = _reference_groups(*before, weights=~keep & ~unreadable)
    out = _reference_groups(*written)
    return [(*key, out.get(key, 0), limited.get(key, 0), unread.get(key, 0))
            for key in sorted(_reference_groups(*before))]


def _reference_bits(values):
    bits = values.view(np.uint32).astype(np.uint64)
    if not (values < 0).any():
        return np.uint64(0xFFFFFFFF) - bits
    negative = bits >> np.uint64(31) == 1
    return np.uint64(0xFFFFFFFF) - np.where(negative, ~bits & np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))


def reference_pad(jagged, sort_by, max_len, pt=None, min_pt=0.0):
    """One sort of (jet | key bits | position) over the whole batch, then a scatter: physics/padding.py before."""
    key = jagged[sort_by]
    n, counts, starts = len(key), key.counts, key.starts
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    jet = np.repeat(np.arange(n, dtype=np.int64), counts)
    within = np.arange(offsets[-1], dtype=np.int64) - offsets[:-1][jet]
    packed = (jet.astype(np.uint64) << np.uint64(42)) | (_reference_bits(key.content[starts[jet] + within])
                                                         << np.uint64(10)) | within.astype(np.uint64)
    packed.sort()
    position = (packed & np.uint64(1023)).astype(np.int64)
    keep = within < max_len
    target = jet[keep] * max_len + within[keep]
    mask = np.zeros(n * max_len, bool)
    mask[target] = True
    padded = {}
    for name, values in jagged.items():
        out = np.zeros(n * max_len, np.float32)
        out[target] = values.content[values.starts[jet[keep]] + position[keep]]
        padded[name] = out.reshape(n, max_len)
    mask = mask.reshape(n, max_len)
    if min_pt > 0 and pt is not None:
        soft = mask & (padded[pt] < min_pt)
        mask &= ~soft
        for values in padded.values():
            values[soft] = 0
    return padded, mask


def same_bytes(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------------------------- statistics


def check_moments(name, values, mask=None):
    got = dataset_moments(name, values, mask)
    for mine, theirs in zip((got.mean, got.m2, got.minimum, got.maximum), reference_moments(name, values, mask)):
        assert same_bytes(mine, np.asarray(theirs))


@pytest.mark.parametrize("seed", range(6))
def test_moments_bit_for_bit_on_random_data(seed):
    rng = np.random.default_rng(seed)
    for k in (1, 2, 7, 9, 1000, 16_383, 16_385, 40_000):
        for shape in ((1,), (2,), (4,), (13,), (2, 3), (1, 1)):
            values = rng.normal(rng.uniform(-1e3, 1e3), rng.uniform(1e-2, 1e3), (k, *shape)).astype(np.float32)
            if seed % 2:  # zeros of both signs: the sign of a zero sum or extreme depends on the order
                values[rng.random(values.shape) < 0.2] = 0.0
                values[rng.random(values.shape) < 0.2] = -0.0
            if seed == 5:
                values[:] = -0.0
            check_moments("jets", values)
    values = rng.normal(0, 1, (3000, 20, 4)).astype(np.float32)
    check_moments("constituents", values, rng.random((3000, 20)) < 0.7)


def test_moments_bit_for_bit_on_real_shards(default_run):
    _, _, out = default_run
    shards = sorted(glob.glob(os.path.join(out, "shards", "train-*.h5")))
    assert shards
    for path in shards:
        with h5py.File(path) as handle:
            mask = handle["mask"][...]
            check_moments("constituents", handle["constituents"][...], mask)
            check_moments("jets", handle["jets"][...])


# --------------------------------------------------------------------------------------------- accounting


@pytest.mark.parametrize("seed", range(8))
def test_count_rows_equal_on_random_shards(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 50, 5000):
        ids = [3, 10**6, 10**9, 2**62][seed % 4]
        sample = rng.integers(0, 4, n)
        file = rng.integers(0, ids, n) if seed % 3 else rng.choice([0, 2**62, -(2**62)], n)  # > int64 key space
        label = rng.integers(-3, 4, n).astype(np.int32)
        unreadable = rng.random(n) < 0.1
        keep = (rng.random(n) < 0.7) & ~unreadable
        written = keep.copy()
        written[np.flatnonzero(written)[:1]] = False  # a jet lost on the way must show
        cols = (sample, file, label)
        assert _count_rows(cols, keep, unreadable, tuple(c[written] for c in cols)) == \
            reference_count_rows(cols, keep, unreadable, tuple(c[written] for c in cols))


def test_count_rows_equal_on_real_shards(default_run):
    _, _, out = default_run
    for path in sorted(glob.glob(os.path.join(out, "shards", "*.h5"))):
        with h5py.File(path) as handle:
            source, labels = handle["source"][...], handle["labels"][...]
        cols = (source[:, 0], source[:, 1], labels)
        keep = np.arange(len(labels)) % 3 > 0
        unreadable = source[:, 1] == source[0, 1] if len(labels) else keep
        keep &= ~unreadable
        assert _count_rows(cols, keep, unreadable, tuple(c[keep] for c in cols)) == \
            reference_count_rows(cols, keep, unreadable, tuple(c[keep] for c in cols))


# ---------------------------------------------------------------------------------------------- padding


def check_pad(jagged, sort_by, max_len, pt=None, min_pt=0.0):
    got, got_mask = pad_constituents(jagged, sort_by, max_len, pt, min_pt)
    want, want_mask = reference_pad(jagged, sort_by, max_len, pt, min_pt)
    assert same_bytes(got_mask, want_mask)
    assert got.keys() == want.keys() and all(same_bytes(got[k], want[k]) for k in got)


@pytest.mark.parametrize("seed", range(10))
def test_padding_byte_identical_on_random_jets(seed):
    """Ties, negative keys, zeros of both signs, NaN, jets of 0 to 1024 constituents in any order over one
    content (with elements outside every jet), a branch laid out differently, every slot count."""
    rng = np.random.default_rng(seed)
    for trial in range(12):
        n = int(rng.integers(0, 300))
        counts = rng.integers(0, int(rng.choice([5, 70, 150, 300, 1024])) + 1, n)
        if n and trial % 3 == 0:
            counts[-1] = 0  # an empty jet whose start is the content's end
        extra = int(rng.integers(0, 5))
        size = int(counts.sum()) + extra
        key = [rng.integers(0, 6, size).astype(np.float32), rng.normal(0, 1, size).astype(np.float32),
               rng.exponential(10, size).astype(np.float32),
               rng.choice(np.array([0.0, -0.0, 1.0, -1.0, np.nan], np.float32), size)][trial % 4]
        if trial % 4 == 2 and seed % 2:
            key[rng.random(size) < 0.1] = -0.0
        order = rng.permutation(n)
        starts = np.zeros(n, np.int64)
        starts[order] = np.cumsum(counts[order]) - counts[order] + extra
        other = rng.normal(0, 1, size).astype(np.float32)
        jagged = {"pt": Jagged(key, starts, counts), "eta": Jagged(other, starts.copy(), counts)}
        if trial % 2:
            jagged["eta"] = Jagged(np.concatenate([np.ones(3, np.float32), other]), starts + 3, counts)
        for max_len in (1, 8, 80, 300):
            check_pad(jagged, "pt", max_len, "pt", [0.0, 2.0][trial % 2])
            check_pad(jagged, "eta", max_len)


def test_padding_byte_identical_on_the_shared_pythia_jets():
    path = shared_file("jets_events_zprime.root")
    branches = ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"]
    arrays = uproot.open(path)["IsolatedJet_tree"].arrays(branches)
    jagged = {b: Jagged.from_awkward(ak.flatten(arrays[b][:, :2], axis=1)) for b in branches}
    for max_len in (10, 80, 200):
        check_pad(jagged, "jet_constit_pt", max_len, "jet_constit_pt", 500.0)
        check_pad(jagged, "jet_constit_eta", max_len)
