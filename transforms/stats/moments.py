"""Mean and standard deviation of every output feature over the training split (standardization).

Each training shard contributes its per-feature count, mean and sum of squared deviations (two passes over
the shard in float64, which is numerically stable; added row after row exactly as numpy's axis-0 reductions
add them, but one contiguous column at a time, at memory speed); `MomentsCombineFn` merges them with Chan's
parallel formula. Merges are applied in shard order whatever order the runner combines in, so the statistics, and
everything standardized with them, are identical for every runner and worker count.

Masked constituent slots are left out; for `constituents` the statistics are per feature, for `jets` per
feature, for `jet_collections` per (collection, feature). std is the population standard deviation.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.names import FEATURE_DATASETS


@dataclass
class Moments:
    """Per-feature statistics of one dataset over some jets (arrays of the dataset's feature shape)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0))


def dataset_moments(name: str, values: np.ndarray, mask: np.ndarray | None = None) -> Moments:
    """Statistics over the jets (and, for constituents, the valid slots) of one shard."""
    rows = values[mask] if name == "constituents" else values  # (k, features...)
    shape = rows.shape[1:]
    k = len(rows)
    if k == 0:
        zeros = np.zeros(shape)
        return Moments(np.zeros(shape, np.int64), zeros, zeros.copy(), np.full(shape, np.inf), np.full(shape, -np.inf))
    flat = rows.reshape(k, -1)
    if flat.shape[1] < 2:  # numpy sums a single column pairwise, not row by row: keep exactly that
        return _moments_by_axis(rows)
    total, lo, hi = _sequential_sums(flat)
    mean = total / k
    m2, _, _ = _sequential_sums(flat, mean)
    if not (np.all(lo) and np.all(hi)):  # a zero extreme: +0.0 or -0.0 is decided by the reduction order
        _, _, _, lo, hi = _axis_reductions(np.asarray(flat, np.float64))
    return Moments(np.full(shape, k, np.int64), mean.reshape(shape), m2.reshape(shape), lo.reshape(shape),
                   hi.reshape(shape))


def _axis_reductions(rows: np.ndarray):
    """numpy's axis-0 reductions of a float64 (k, ...) array: what the statistics were defined by."""
    mean = rows.mean(axis=0)
    return len(rows), mean, ((rows - mean) ** 2).sum(axis=0), rows.min(axis=0), rows.max(axis=0)


def _moments_by_axis(rows: np.ndarray) -> Moments:
    k, mean, m2, lo, hi = _axis_reductions(np.asarray(rows, np.float64))
    return Moments(np.full(rows.shape[1:], k, np.int64), mean, m2, lo, hi)


def _sequential_sums(rows: np.ndarray, mean: np.ndarray | None = None, chunk: int = 1 << 14):
    """Per-column float64 sums of `rows` (k, F), or of (rows - mean)**2, added row after row: bit for bit what
    numpy's axis-0 reduction of a C-contiguous (k, F) array does (it adds whole rows, an inner loop of F),
    at memory speed. Each chunk is transposed to one contiguous float64 row per feature and summed with
    cumsum, which adds strictly in order; the running total is carried into the next chunk's first slot.
    Without `mean`, also the per-column min and max."""
    k, features = rows.shape
    buffer = np.empty((features, min(k, chunk) + 1))
    total = lo = hi = None
    if mean is None:
        lo, hi = np.full(features, np.inf), np.full(features, -np.inf)
    for start in range(0, k, chunk):
        block = rows[start:start + chunk]
        view = buffer[:, :len(block) + 1]
        body = view[:, 1:]
        body[...] = block.T
        if mean is None:
            np.minimum(lo, body.min(axis=1), out=lo)
            np.maximum(hi, body.max(axis=1), out=hi)
        else:
            body -= mean[:, None]
            np.square(body, out=body)
        if total is None:
            np.cumsum(body, axis=1, out=body)
        else:
            view[:, 0] = total
            np.cumsum(view, axis=1, out=view)
        total = view[:, -1].copy()
    # numpy's reduction starts from +0.0, cumsum from the first value: they differ only for a column of -0.0
    return total + 0.0, lo, hi


def merge(a: Moments, b: Moments) -> Moments:
    """Chan et al.'s pairwise update."""
    n = a.count + b.count
    safe = np.where(n > 0, n, 1)
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / safe
    m2 = a.m2 + b.m2 + delta**2 * a.count * b.count / safe
    return Moments(n, mean, m2, np.minimum(a.minimum, b.minimum), np.maximum(a.maximum, b.maximum))


def shard_moments(columns: dict[str, np.ndarray]) -> dict[str, Moments]:
    return {name: dataset_moments(name, columns[name], columns.get("mask"))
            for name in FEATURE_DATASETS if name in columns}


class MomentsCombineFn(beam.CombineFn):
    """(shard key, {dataset: Moments}) elements -> {dataset: Moments} over all of them.

    The accumulator keeps the partials by key and extract_output merges them in key order: Chan's update
    is stable but not associative in floating point, and the result must not depend on the runner."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, element):
        key, partial = element
        accumulator[key] = partial
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator):
        total: dict[str, Moments] = {}
        for key in sorted(accumulator):
            for name, partial in accumulator[key].items():
                total[name] = merge(total[name], partial) if name in total else partial
        return total


def norm_dict(moments: dict[str, Moments], features: dict[str, list[str]],
              collections: list[str] | None = None) -> dict:
    """{dataset: {feature: {mean, std, min, max, count}}}, the layout of UPP's norm_dict.yaml."""
    out = {}
    for name, m in moments.items():
        names = features[name]
        entries = {}
        if name == "jet_collections":
            for c, collection in enumerate(collections or []):
                for f, feature in enumerate(names):
                    entries[f"{collection}/{feature}"] = _entry(m, (c, f))
        else:
            for f, feature in enumerate(names):
                entries[feature] = _entry(m, (f,))
        out[name] = entries
    return out


def _entry(m: Moments, index) -> dict:
    count = int(m.count[index])
    return {"mean": float(m.mean[index]), "std": float(m.std[index]), "count": count,
            "min": float(m.minimum[index]) if count else None, "max": float(m.maximum[index]) if count else None}


def standardize(columns: dict[str, np.ndarray], moments: dict[str, Moments]) -> None:
    """(x - mean) / std in place for every feature dataset (std 0 counts as 1); padded slots stay 0."""
    for name, m in moments.items():
        if name not in columns:
            continue
        std = np.where(m.std > 0, m.std, 1.0)
        values = (columns[name] - m.mean) / std
        if name == "constituents":
            values = np.where(columns["mask"][..., None], values, 0.0)
        columns[name] = values.astype(np.float32)
