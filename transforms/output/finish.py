"""The second pass over the written shards, when the job needs dataset-wide numbers.

After every shard was written, each shard is rewritten once with, in this order: model scores (or model
weights), the pT reweighting factors, resampling (for the configured splits) and standardization. The
numbers they need (reweighting histograms, the resampling allocation, the training statistics) come from
all shards as side inputs. Without any of these the pass does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.records import ShardResult
from root2hdf5.transforms.stats.moments import Moments, standardize
from root2hdf5.transforms.stats.reweight import Histograms, ReweightSpec, allocate, draw, factors


@dataclass(frozen=True)
class FinishSpec:
    reweight: ReweightSpec = field(default_factory=ReweightSpec)
    resample: tuple[tuple[str, int], ...] = ()  # (split, jets to draw)
    standardize: bool = False
    model_output: str | None = None
    model_as_weight: bool = False
    seed: int = 0

    @property
    def needs_histograms(self) -> bool:
        return bool(self.reweight.method or self.resample)

    @property
    def active(self) -> bool:
        return self.needs_histograms or self.standardize or self.model_output is not None


@dataclass
class FinishPlan:
    factors: dict[int, np.ndarray] | None = None  # label -> factor per bin
    allocation: dict[tuple[str, int], int] = field(default_factory=dict)  # (split, shard) -> draws


def make_plan(results: list[ShardResult], spec: FinishSpec, split_names: list[str]) -> FinishPlan:
    plan = FinishPlan()
    if spec.reweight.method:
        train = Histograms()
        for r in sorted(results, key=lambda r: r.shard):
            if r.split == "train" and r.histograms is not None:
                train.add(r.histograms)
        plan.factors = factors(spec.reweight, train)
    for split, target in spec.resample:
        shards = sorted((r for r in results if r.split == split), key=lambda r: r.shard)
        totals = [r.histograms.total_weight(plan.factors) if r.histograms else 0.0 for r in shards]
        counts = allocate(target, totals, spec.seed, split_names.index(split))
        plan.allocation.update({(split, r.shard): n for r, n in zip(shards, counts)})
    return plan


def apply_factors(columns: dict[str, np.ndarray], spec: ReweightSpec, table: dict[int, np.ndarray]) -> None:
    bins = spec.bin_index(columns["jets"])
    factor = np.ones(len(bins))
    for label, per_bin in table.items():
        rows = columns["labels"] == label
        factor[rows] = per_bin[bins[rows]]
    columns["weights"] = (columns["weights"] * factor).astype(np.float32)


class FinishShard(beam.DoFn):
    """ShardResult (or (key, {'result': [ShardResult], 'scores': [array]}) with a model) -> the ShardResult
    of the rewritten shard.

    Args:
        spec: what to apply.
        read: function (ShardResult, datasets or None) -> columns of a written shard.
        write: function (path, columns, attrs) writing a shard file.
        tmp_path: function (split, shard) -> a fresh temporary path for the rewritten shard.
    """

    def __init__(self, spec: FinishSpec, split_names: list[str], read, write, tmp_path):
        self.spec = spec
        self.split_names = split_names
        self.read, self.write, self.tmp_path = read, write, tmp_path

    def process(self, element, plan: FinishPlan, moments: dict[str, Moments]):
        scores = None
        if isinstance(element, tuple):
            _, joined = element
            (result,), scores = joined["result"], joined["scores"]
            scores = scores[0] if scores else None
        else:
            result = element
        columns = self.read(result, None)
        spec = self.spec
        if scores is not None:
            if len(scores) != len(columns["labels"]):
                raise InputError(f"model gave {len(scores)} scores for {len(columns['labels'])} jets")
            if spec.model_as_weight:
                columns["weights"] = (columns["weights"] * scores.reshape(len(scores), -1)[:, 0]).astype(np.float32)
            else:
                columns[spec.model_output] = scores
        if plan.factors is not None:
            apply_factors(columns, spec.reweight, plan.factors)
        drawn_from = None
        if (result.split, result.shard) in plan.allocation:
            weights = columns["weights"].astype(np.float64)
            if np.any(weights < 0):
                raise InputError(f"resample: shard {result.split}/{result.shard} has negative weights; resampling "
                                 "draws with probability proportional to the weight")
            rows = draw(weights, plan.allocation[(result.split, result.shard)], spec.seed,
                        self.split_names.index(result.split), result.shard)
            drawn_from = len(weights)
            columns = {name: values[rows] for name, values in columns.items()}
            columns["weights"] = np.ones(len(rows), np.float32)
        if spec.standardize:
            standardize(columns, moments)
        path = self.tmp_path(result.split, result.shard)
        self.write(path, columns, {"split": result.split, "shard": result.shard})
        yield ShardResult(result.split, result.shard, path, len(columns["labels"]), result.rows,
                          resampled_from=drawn_from)
