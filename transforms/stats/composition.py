"""Training-set composition: how many jets of each sample and class to keep, and sample weight factors.

Limits are applied when the shards are written, from counts gathered while the jets were routed, so no
second pass over the data is needed and the kept counts are exact:

1. per-sample caps (`samples[].max_jets`): sample s keeps a fraction min(1, cap / selected);
2. `limits.balance`: within each split, every class (label) is cut to the smallest class;
3. `limits.total_jets`: everything is scaled down to about that many jets;
4. the real-valued targets become integers: per sample (so caps hold exactly), or, when balancing, per
   (class, split) with the same count for every class; they are spread over (sample, label, split)
   groups and then over shards in proportion to what those hold (largest remainders).

Each shard keeps, of each (sample, label) group, its quota of jets with the smallest shuffle hash: a
uniformly random subset, so every file contributes in proportion to its selected jets.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.exact import to_float

Cell = tuple[int, int, int, int]  # (sample, label, split index, shard)


@dataclass(frozen=True)
class Composition:
    """Per-sample caps and weight factors, and the global limits, resolved from the config.

    factors: weight × cross_section × luminosity of each sample (weight alone without a cross-section).
    sum_of_weights: per sample a number, 'auto' (summed from the data), or None (no normalisation).
    """

    caps: tuple[int | None, ...] = ()
    total_jets: int | None = None
    balance: bool = False
    factors: tuple[float, ...] = ()
    sum_of_weights: tuple[float | str | None, ...] = ()
    sample_names: tuple[str, ...] = ()

    @property
    def limits(self) -> bool:
        return self.total_jets is not None or self.balance or any(c is not None for c in self.caps)


@dataclass
class WritePlan:
    """What the shard writers apply: jet quotas per cell (None: keep all) and per-sample weight factors."""

    quotas: dict[Cell, int] | None = None
    factors: list[float] = field(default_factory=list)
    sum_of_weights: list[float | None] = field(default_factory=list)
    skipped: frozenset = frozenset()  # (sample, file) of files skipped as unreadable: their jets are dropped


def apportion(total: int, weights: list[float]) -> list[int]:
    """Split the integer `total` in proportion to `weights` (largest remainders, ties to the first)."""
    weight_sum = math.fsum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [math.floor(x + 1e-9) for x in exact]
    remainders = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in remainders[: total - sum(parts)]:
        parts[i] += 1
    return parts


def plan_quotas(cells: dict[Cell, int], comp: Composition) -> dict[Cell, int]:
    """Jets to keep per (sample, label, split, shard) cell; see the module docstring."""
    groups: dict[tuple[int, int, int], int] = defaultdict(int)  # (sample, label, split) -> jets
    for (s, c, p, _), n in cells.items():
        groups[(s, c, p)] += n
    per_sample: dict[int, int] = defaultdict(int)
    for (s, _, _), n in groups.items():
        per_sample[s] += n
    target = {}
    for (s, c, p), n in groups.items():
        cap = comp.caps[s] if s < len(comp.caps) else None
        target[(s, c, p)] = n * (min(1.0, cap / per_sample[s]) if cap is not None else 1.0)

    classes = sorted({c for (_, c, _) in groups})
    splits = sorted({p for (_, _, p) in groups})
    class_total = defaultdict(float)
    for (s, c, p), t in target.items():
        class_total[(c, p)] += t
    if comp.balance:
        for p in splits:
            smallest = min(class_total[(c, p)] for c in classes)
            for key in target:
                if key[2] == p and class_total[(key[1], p)] > 0:
                    target[key] *= smallest / class_total[(key[1], p)]
            for c in classes:
                class_total[(c, p)] = smallest
    overall = math.fsum(target.values())
    if comp.total_jets is not None and overall > comp.total_jets:
        scale = comp.total_jets / overall
        target = {k: t * scale for k, t in target.items()}
        class_total = defaultdict(float, {k: t * scale for k, t in class_total.items()})

    shards_of = defaultdict(list)
    for s, c, p, k in sorted(cells):
        shards_of[(s, c, p)].append(k)
    quotas: dict[Cell, int] = {}

    def spread(keep: int, groups: list[tuple[int, int, int]]):
        """`keep` jets over (sample, label, split) groups by target, then over shards by content."""
        for g, k_g in zip(groups, apportion(keep, [target[g] for g in groups])):
            shards = shards_of[g]
            for k, q in zip(shards, apportion(k_g, [cells[(*g, k)] for k in shards])):
                quotas[(*g, k)] = q

    if comp.balance:  # every class gets the same integer count in each split
        for p in splits:
            equal = min(math.floor(class_total[(c, p)] + 1e-9) for c in classes)
            for c in classes:
                spread(equal, sorted(g for g in target if g[1] == c and g[2] == p))
    else:  # each sample gets its (capped, scaled) total, so caps hold exactly
        for s in sorted({g[0] for g in target}):
            groups = sorted(g for g in target if g[0] == s)
            spread(round(math.fsum(target[g] for g in groups)), groups)
    return quotas


def make_plan(stats, comp: Composition, skipped=()) -> WritePlan:
    """The WritePlan from all RangeStats of the run (and the SkippedFile records)."""
    cells: dict[Cell, int] = defaultdict(int)
    sums: dict[int, int] = defaultdict(int)
    for rs in stats:
        for (label, split, shard), n in rs.cells.items():
            cells[(rs.sample, label, split, shard)] += n
        sums[rs.sample] += rs.counts.get("sum_weights", 0)
    factors, sum_of_weights = [], []
    for s, factor in enumerate(comp.factors):
        spec = comp.sum_of_weights[s] if s < len(comp.sum_of_weights) else None
        total = to_float(sums[s]) if spec == "auto" else (float(spec) if spec is not None else None)
        if total is not None and total <= 0:
            name = comp.sample_names[s] if s < len(comp.sample_names) else s
            raise InputError(f"sample {name!r}: the sum of weights is {total}; cannot normalise by it")
        sum_of_weights.append(total)
        factors.append(factor / total if total is not None else factor)
    return WritePlan(plan_quotas(dict(cells), comp) if comp.limits else None, factors, sum_of_weights,
                     frozenset((r.sample, r.file) for r in skipped))


def apply_quotas(columns: dict[str, np.ndarray], split: int, shard: int, quotas: dict[Cell, int]) -> np.ndarray:
    """Boolean mask of the jets a shard keeps: of each (sample, label), the first `quota` in shard order."""
    sample = columns["source"][:, 0]
    label = columns["labels"].astype(np.int64)
    keys, group = np.unique(np.stack([sample, label], axis=1), axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], np.arange(len(keys)))
    rank = np.empty(len(group), np.int64)
    rank[order] = np.arange(len(group)) - first[group[order]]
    limit = np.array([quotas.get((int(s), int(c), split, shard), 0) for s, c in keys], np.int64)
    return rank < limit[group]
