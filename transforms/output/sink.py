"""The sink: shuffled shards (HDF5 or Parquet, see transforms.output.formats) written to temporary names, an
optional second pass over them, and the finalize step that publishes everything at once
(transforms.output.finalize).

    batches -> GroupByKey by shard (transforms.output.shuffle) -> WriteShard: limits, sample weight factors,
               per-shard statistics -> [model scores, reweighting, resampling, standardization: FinishShard]
            -> Finalize

All file operations go through Beam's FileSystems.
"""
from __future__ import annotations

import logging
import time
import uuid
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core import faults, progress
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.core.records import ShardResult
from root2hdf5.transforms.output.finalize import SHARDS_DIR, Finalize, SinkSpec, shard_name
from root2hdf5.transforms.output.finish import FinishShard, FinishSpec
from root2hdf5.transforms.output.finish import make_plan as make_finish_plan
from root2hdf5.transforms.output.shuffle import ShuffleIntoShards, gather_shard
from root2hdf5.transforms.stats.composition import Composition, WritePlan, apply_quotas, make_plan
from root2hdf5.transforms.stats.model_scores import ModelScores, ModelSpec
from root2hdf5.transforms.stats.moments import MomentsCombineFn, shard_moments
from root2hdf5.transforms.stats.reweight import shard_histograms

log = logging.getLogger("root2hdf5")


def _temporary_shard(spec: SinkSpec, split: str, shard: int) -> str:
    name = shard_name(split, shard, spec.shards[split], spec.format.extension)
    return FileSystems.join(spec.tmp_dir, SHARDS_DIR, f"{name}.{uuid.uuid4().hex[:12]}")


def _write_shard(spec: SinkSpec, path: str, columns, attrs: dict) -> None:
    spec.format.write(path, columns, {**spec.file_attrs, **attrs, "num_shards": spec.shards[attrs["split"]]})


class WriteShard(beam.DoFn):
    """((split index, shard), pieces) -> ShardResult, the shard written to a unique temporary name.

    The WritePlan side input applies limits (quotas), sample weight factors and skipped files before
    writing. With `finish`, the result also carries the shard's reweighting histograms and, for the
    training split, its feature statistics.
    """

    def __init__(self, spec: SinkSpec, finish: FinishSpec):
        self.spec = spec
        self.finish = finish
        self.written = Metrics.counter("root2hdf5", "jets_written")

    def process(self, element, plan: WritePlan):
        begin = time.perf_counter()
        (split_index, shard), pieces = element
        split = self.spec.split_names[split_index]
        columns = gather_shard(pieces)
        sample, file, label = columns["source"][:, 0], columns["source"][:, 1], columns["labels"]
        unreadable = np.zeros(len(label), bool)
        for s_index, f_index in plan.skipped:  # files skipped with on_error: skip count whole or not at all
            unreadable |= (sample == s_index) & (file == f_index)
        keep = (apply_quotas(columns, split_index, shard, plan.quotas) if plan.quotas is not None
                else np.ones(len(label), bool)) & ~unreadable
        if not keep.all():
            columns = {name: values[keep] for name, values in columns.items()}
        if plan.factors:
            factors = np.asarray(plan.factors, np.float64)[columns["source"][:, 0]]
            with np.errstate(over="ignore"):
                columns["weights"] = (columns["weights"] * factors).astype(np.float32)
            self._check_weights(columns["weights"], factors, columns["source"])
        path = _temporary_shard(self.spec, split, shard)
        if faults.lose_jet() and len(columns["labels"]):  # test hook: a bug that loses a jet
            columns = {key: values[1:] for key, values in columns.items()}
        _write_shard(self.spec, path, columns, {"split": split, "shard": shard})
        faults.fail_once("write_shard", shard_name(split, shard, self.spec.shards[split]))  # test hook
        n = len(columns["labels"])
        self.written.inc(n)
        Metrics.counter("root2hdf5", f"written_{split}").inc(n)
        # one marker per output set and shard (a variation's shards are other shards)
        progress.mark(self.spec.progress_dir, "shard", zlib.crc32(self.spec.out_dir.encode()), split_index, shard)
        log.info("wrote shard %s/%d: %d jets in %.1f s", split, shard, n, time.perf_counter() - begin)
        written = columns["source"][:, 0], columns["source"][:, 1], columns["labels"]
        result = ShardResult(split, shard, path, n, _count_rows((sample, file, label), keep, unreadable, written))
        if self.finish.needs_histograms:
            result.histograms = shard_histograms(self.finish.reweight, columns["labels"], columns["jets"],
                                                 columns["weights"])
        if self.spec.stats and split == "train":
            result.moments = shard_moments(columns)
        yield result

    def _check_weights(self, weights: np.ndarray, factors: np.ndarray, source: np.ndarray) -> None:
        """A finite weight times its sample's factor can still overflow float32: fail naming the jet."""
        if np.isfinite(weights).all():
            return
        jet = int(np.argmin(np.isfinite(weights)))
        sample, file, entry, index = (int(v) for v in source[jet])
        path = next((f.path for f in self.spec.files if (f.sample, f.file) == (sample, file)), f"file {file}")
        raise InputError(f"{path}: the weight of entry {entry}, jet {index} times the factor {factors[jet]:g} of "
                         f"sample {self.spec.sample_names[sample]!r} (cross_section x luminosity / sum of weights) "
                         f"is {weights[jet]} in float32; check the sample's cross_section and weights.luminosity")


def _group_counts(sample, file, label, weights=None) -> dict[tuple[int, int, int], int]:
    """{(sample, file, label): number of rows, or the sum of `weights`}."""
    if len(sample) == 0:
        return {}
    keys, sums = _grouped((sample, file, label), [weights])
    return dict(zip(keys, sums[0].tolist()))


def _grouped(columns, weights: list) -> tuple[list[tuple[int, ...]], list[np.ndarray]]:
    """The groups of rows with equal (sample, file, label) in key order, and per group the sum of each of
    `weights` (None: the row count). One int64 code per row whose order is the keys' order, then bincount:
    a hundred times faster than np.unique(axis=0) on a shard."""
    columns = [np.asarray(c, np.int64) for c in columns]
    lows = [int(c.min()) for c in columns]
    dims = [int(c.max()) - low + 1 for c, low in zip(columns, lows)]
    try:
        code = np.ravel_multi_index([c - low for c, low in zip(columns, lows)], dims)
    except ValueError:  # the key space does not fit in int64 (ids near 2**63): number the distinct rows
        rows, group = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
        group, size, present = group.ravel(), len(rows), None
        keys = [tuple(int(v) for v in row) for row in rows]
    else:
        size = int(np.prod(dims))
        if size <= 4 * len(code) + 1024:  # dense keys: count by code directly
            group = code
            present = np.flatnonzero(np.bincount(code, minlength=size))
            codes = present
        else:
            codes, group = np.unique(code, return_inverse=True)
            group, size, present = group.ravel(), len(codes), None
        keys = list(zip(*[(index + low).tolist() for index, low in zip(np.unravel_index(codes, dims), lows)]))
    sums = []
    for w in weights:
        total = np.bincount(group, weights=w, minlength=size)
        sums.append((total if present is None else total[present]).astype(np.int64))
    return keys, sums


def _count_rows(before, keep, unreadable, written) -> list[tuple[int, int, int, int, int, int]]:
    """(sample, file, label, written, dropped by limits, dropped as unreadable) per group in a shard.

    `written` is counted from the columns that went into the file, not derived from `keep`, so that any
    jet lost on the way shows up as a mismatch in the run's accounting."""
    if len(before[0]) == 0:
        return []
    keys, (unread, limited) = _grouped(before, [unreadable, ~keep & ~unreadable])
    out = _group_counts(*written)
    return [(*key, out.get(key, 0), d, u) for key, d, u in zip(keys, limited.tolist(), unread.tolist())]


class WriteShuffledShards(beam.PTransform):
    """RowBatch elements (with routing columns) -> the finalized output directory; yields the report.

    Args:
        spec: the SinkSpec.
        stats: PCollection of RangeStats from the per-range accounting.
        spill: spill shuffle pieces to temporary files (True) or move them through the runner (False).
        composition: limits and sample weight factors, applied when the shards are written.
        skipped: PCollection of SkippedFile records, or None.
        finish: what the second pass over the shards applies (nothing by default).
        model: the ONNX model giving scores or weights, or None.
    """

    def __init__(self, spec: SinkSpec, stats, spill: bool = True, composition: Composition | None = None,
                 skipped=None, finish: FinishSpec | None = None, model: ModelSpec | None = None):
        super().__init__()
        self.spec = spec
        self.stats = stats
        self.spill = spill
        self.composition = composition or Composition()
        self.skipped = skipped
        self.finish = finish or FinishSpec()
        self.model = model

    def expand(self, batches):
        spec, finish = self.spec, self.finish
        datasets = [ds.name for ds in spec.datasets if ds.name != (self.model.output if self.model else None)]
        all_stats = self.stats | "CollectStats" >> beam.combiners.ToList()
        skipped = self.skipped if self.skipped is not None else batches.pipeline | "NoSkipped" >> beam.Create([])
        all_skipped = skipped | "CollectSkipped" >> beam.combiners.ToList()
        plan = all_stats | "PlanComposition" >> beam.Map(make_plan, self.composition,
                                                         beam.pvalue.AsSingleton(all_skipped))
        results = (
            batches
            | "Shuffle" >> ShuffleIntoShards(datasets, spec.spill_dir if self.spill else None)
            | "WriteShards" >> beam.ParDo(WriteShard(spec, finish), plan=beam.pvalue.AsSingleton(plan))
        )
        moments = (
            results
            | "TrainingMoments" >> beam.FlatMap(lambda r: [((r.split, r.shard), r.moments)] if r.moments else [])
            | "CombineMoments" >> beam.CombineGlobally(MomentsCombineFn())
        )
        if finish.active:
            results = self._finish(results, moments)
        return (
            results
            | "CollectShards" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(Finalize(spec), stats=beam.pvalue.AsSingleton(all_stats),
                                       plan=beam.pvalue.AsSingleton(plan), skipped=beam.pvalue.AsSingleton(all_skipped),
                                       moments=beam.pvalue.AsSingleton(moments))
        )

    def _finish(self, results, moments):
        spec, finish = self.spec, self.finish
        finish_plan = (results | "CollectForPlan" >> beam.combiners.ToList()
                       | "PlanFinish" >> beam.Map(make_finish_plan, finish, spec.split_names))
        read = _Reader(spec)
        source = results
        if self.model is not None:
            scores = results | "Model" >> ModelScores(self.model, read)
            keyed = results | "KeyShards" >> beam.Map(lambda r: ((r.split, r.shard), r))
            source = {"result": keyed, "scores": scores} | "JoinScores" >> beam.CoGroupByKey()
        return source | "FinishShards" >> beam.ParDo(
            FinishShard(finish, spec.split_names, read, _Writer(spec), _TemporaryPath(spec)),
            plan=beam.pvalue.AsSingleton(finish_plan), moments=beam.pvalue.AsSingleton(moments))


class _Reader:
    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def __call__(self, result: ShardResult, names):
        columns = self.spec.format.read(result.path)
        return columns if names is None else {name: columns[name] for name in names}


class _Writer:
    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def __call__(self, path, columns, attrs):
        _write_shard(self.spec, path, columns, attrs)


class _TemporaryPath:
    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def __call__(self, split, shard):
        return _temporary_shard(self.spec, split, shard)
