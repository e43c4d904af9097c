"""pT (and |η|) reweighting and weighted resampling, from global histograms handed to the shard writers.

Histograms are built per shard over bins of one or two `jets` features (e.g. jet pT, then |η|), per
class, summing the jets' weights exactly (transforms.core.exact), and merged across shards. From the training
split's histograms each class c gets a factor per bin:

* `flat`:  r_c(b) = 1 / W_c(b)                      (every bin of the class carries the same total weight)
* `match`: r_c(b) = [W_t(b) / ΣW_t] / [W_c(b) / ΣW_c] (class c follows the target class t; r_t = 1)

where W_c(b) is the summed weight of class c's training jets in bin b. Empty bins give factor 0, never an
infinity; values outside the bin edges count in the first or last bin. Each class is then scaled so that
its training jets' weights average to 1. The factor applies to every split.

Resampling draws, for a split, `target` jets with replacement with probability proportional to their
weight: the number from each shard is multinomial in the shards' total weights (known from the same
histograms), and each shard draws its own with a generator seeded by (seed, split, shard); the drawn jets
get weight 1. Nothing is loaded beyond one shard at a time, and the draw is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.exact import exact_group_sums, to_float

_RESAMPLE_SALT = 0x2E5A


@dataclass(frozen=True)
class ReweightSpec:
    """method: 'flat', 'match' or None (no reweighting, one bin: weights only feed resampling).
    columns: indices of the binned features in `jets`; bins: edges per feature; absolute: |x| first."""

    method: str | None = None
    columns: tuple[int, ...] = ()
    bins: tuple[tuple[float, ...], ...] = ()
    absolute: tuple[bool, ...] = ()
    target_label: int | None = None

    @property
    def n_bins(self) -> int:
        return int(np.prod([len(edges) - 1 for edges in self.bins])) if self.method else 1

    def bin_index(self, jets: np.ndarray) -> np.ndarray:
        index = np.zeros(len(jets), np.int64)
        if not self.method:
            return index
        for column, edges, absolute in zip(self.columns, self.bins, self.absolute):
            x = jets[:, column].astype(np.float64)
            x = np.abs(x) if absolute else x
            inner = np.clip(np.searchsorted(np.asarray(edges), x, side="right") - 1, 0, len(edges) - 2)
            index = index * (len(edges) - 1) + inner
        return index


@dataclass
class Histograms:
    """Per class: summed weights (exact integers, see transforms.core.exact) and jet counts, per bin."""

    weights: dict[int, list[int]] = field(default_factory=dict)
    counts: dict[int, np.ndarray] = field(default_factory=dict)

    def add(self, other: "Histograms") -> "Histograms":
        for label, sums in other.weights.items():
            mine = self.weights.setdefault(label, [0] * len(sums))
            self.weights[label] = [a + b for a, b in zip(mine, sums)]
            self.counts[label] = self.counts.get(label, 0) + other.counts[label]
        return self

    def total_weight(self, factors: dict[int, np.ndarray] | None = None) -> float:
        """Σ over classes and bins of W(b) × factor(b)."""
        total = 0.0
        for label, sums in self.weights.items():
            w = np.array([to_float(s) for s in sums])
            total += float(np.sum(w * factors[label])) if factors and label in factors else float(w.sum())
        return total


def shard_histograms(spec: ReweightSpec, labels: np.ndarray, jets: np.ndarray, weights: np.ndarray) -> Histograms:
    bins = spec.bin_index(jets)
    out = Histograms()
    for label in np.unique(labels):
        rows = labels == label
        out.weights[int(label)] = exact_group_sums(weights[rows], bins[rows], spec.n_bins)
        out.counts[int(label)] = np.bincount(bins[rows], minlength=spec.n_bins)
    return out


def factors(spec: ReweightSpec, train: Histograms) -> dict[int, np.ndarray]:
    """Per class, the factor of each bin (reweighting times the class's normalisation)."""
    out = {}
    weight = {label: np.array([to_float(s) for s in sums]) for label, sums in train.weights.items()}
    if spec.method == "match":
        if spec.target_label not in weight or weight[spec.target_label].sum() <= 0:
            raise InputError(f"weights.method match: the target class {spec.target_label} has no training jets")
        target = weight[spec.target_label] / weight[spec.target_label].sum()
    for label, w in weight.items():
        if spec.method == "flat":
            r = np.divide(1.0, w, out=np.zeros_like(w), where=w > 0)
        elif spec.method == "match" and label != spec.target_label:
            density = w / w.sum() if w.sum() > 0 else w
            r = np.divide(target, density, out=np.zeros_like(w), where=density > 0)
        else:
            r = np.ones_like(w)
        reweighted = float(np.sum(w * r))
        n = int(train.counts[label].sum())
        out[label] = r * (n / reweighted) if reweighted > 0 else r
    return out


def allocate(target: int, shard_weights: list[float], seed: int, split: int) -> list[int]:
    """How many of `target` draws each shard makes: multinomial in the shards' total weights."""
    total = float(np.sum(shard_weights))
    if total <= 0:
        raise InputError("resample: the jets to resample have a total weight of 0")
    rng = np.random.default_rng([seed, _RESAMPLE_SALT, split])
    return [int(n) for n in rng.multinomial(target, np.asarray(shard_weights) / total)]


def draw(weights: np.ndarray, count: int, seed: int, split: int, shard: int) -> np.ndarray:
    """`count` row indices drawn with replacement, probability proportional to weight, in random order."""
    if count == 0:
        return np.zeros(0, np.int64)
    w = np.asarray(weights, np.float64)
    rng = np.random.default_rng([seed, _RESAMPLE_SALT, split, shard])
    return rng.choice(len(w), size=count, replace=True, p=w / w.sum())
