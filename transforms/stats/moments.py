"""Mean and standard deviation of every output feature over the training split (standardization).

Each training shard contributes its per-feature count, mean and sum of squared deviations (two passes over
the shard in float64, which is numerically stable); `MomentsCombineFn` merges them with Chan's parallel
formula. Merges are applied in shard order whatever order the runner combines in, so the statistics, and
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
    rows = np.asarray(rows, np.float64)
    shape = rows.shape[1:]
    k = len(rows)
    if k == 0:
        zeros = np.zeros(shape)
        return Moments(np.zeros(shape, np.int64), zeros, zeros.copy(), np.full(shape, np.inf), np.full(shape, -np.inf))
    mean = rows.mean(axis=0)
    m2 = ((rows - mean) ** 2).sum(axis=0)
    return Moments(np.full(shape, k, np.int64), mean, m2, rows.min(axis=0), rows.max(axis=0))


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
