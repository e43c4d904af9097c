"""The HDF5 sink: shuffled shards written to temporary names, moved into place only when all succeeded.

Layout of an output directory:

    train.h5  val.h5  test.h5         one file per split; each dataset is an HDF5 virtual dataset over the
                                      split's shards (relative paths), so users open one file
    shards/train-00000-of-00006.h5    the shards, with the same datasets stored for real
    summary.json                      the exact accounting of the run (transforms.report)

Like Beam's `FileBasedSink`: every shard is written under the run's temporary directory with a unique name
(a retried bundle writes a new name; leftovers are deleted), and a single finalize step, which runs only
after every shard succeeded, checks the accounting, moves shards into `shards/`, writes the split files
and `summary.json`, and removes the temporary directory. A failed run leaves no file that looks complete.
All file operations go through Beam's FileSystems; HDF5 files are written locally and copied when the
destination is not a local path.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import apache_beam as beam
import h5py
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.batch import Columns
from transforms.composition import Composition, WritePlan, apply_quotas, make_plan
from transforms.report import ShardResult, build_report
from transforms.shuffle import ShuffleIntoShards, gather_shard

log = logging.getLogger("root2hdf5")
SUMMARY = "summary.json"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class DatasetSpec:
    """One output dataset: per-jet shape (after the jet axis), dtype, attributes, VDS fill value."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()

    @property
    def fill(self):
        kind = np.dtype(self.dtype).kind
        return {"f": np.nan, "b": False}.get(kind, -1)


@dataclass
class SinkSpec:
    """Where and how the sink writes.

    out_dir / tmp_dir: final and temporary directories (any Beam filesystem path).
    datasets: output datasets in file order.
    shards: number of shards per split, for splits that get jets.
    file_attrs: attributes written on every file (resolved config, versions ...).
    """

    out_dir: str
    tmp_dir: str
    datasets: list[DatasetSpec]
    shards: dict[str, int]
    split_names: list[str]
    sample_names: list[str]
    files: list = field(default_factory=list)
    file_attrs: dict = field(default_factory=dict)
    compression: str = "lzf"
    compression_level: int | None = None
    chunk_jets: int = 256
    overwrite: bool = False
    selection: str | None = None

    @property
    def spill_dir(self) -> str:
        return FileSystems.join(self.tmp_dir, "pieces")


def shard_name(split: str, shard: int, count: int) -> str:
    return f"{split}-{shard:05d}-of-{count:05d}.h5"


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def write_via_local(destination: str, write) -> None:
    """Call write(local_path); copy the result to `destination` if that is not a local path."""
    if is_local(destination):
        write(destination)
        return
    fd, local = tempfile.mkstemp(suffix=".h5")
    os.close(fd)
    try:
        write(local)
        with open(local, "rb") as src, FileSystems.create(destination, compression_type="uncompressed") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
    finally:
        os.unlink(local)


def _storage(spec: SinkSpec, n: int, shape: tuple[int, ...]) -> dict:
    if n == 0 or 0 in shape:  # nothing to chunk (HDF5 chunks must be non-empty)
        return {}
    options = {"chunks": (min(n, spec.chunk_jets), *shape)}
    if spec.compression == "gzip":
        options.update(compression="gzip", compression_opts=spec.compression_level or 4, shuffle=True)
    elif spec.compression == "lzf":
        options.update(compression="lzf", shuffle=True)
    return options


def _file_attrs(handle: h5py.File, spec: SinkSpec, n: int, extra: dict):
    for key, value in {**spec.file_attrs, **extra, "num_jets": n}.items():
        handle.attrs[key] = value


def write_jets_file(path: str, columns: Columns, spec: SinkSpec, extra_attrs: dict) -> None:
    """A regular (non-virtual) HDF5 file with every dataset of `spec`, chunked by jets."""
    n = len(columns["labels"]) if columns else 0
    with h5py.File(path, "w") as handle:
        _file_attrs(handle, spec, n, extra_attrs)
        for ds in spec.datasets:
            data = columns[ds.name] if columns else np.zeros((0, *ds.shape), ds.dtype)
            dataset = handle.create_dataset(ds.name, data=np.asarray(data, ds.dtype),
                                            **_storage(spec, n, ds.shape))
            for key, value in ds.attrs:
                dataset.attrs[key] = value


def write_split_file(path: str, shards: list[tuple[str, int]], spec: SinkSpec, extra_attrs: dict) -> None:
    """One file presenting the shards [(relative path, jets)] as one dataset each (HDF5 virtual datasets).

    Source paths are relative to the split file, so the output directory can be moved or copied whole;
    missing shards read as the fill value (NaN / -1 / False), never as plausible numbers.
    """
    shards = [(rel, n) for rel, n in shards if n > 0]
    total = sum(n for _, n in shards)
    if total == 0:
        write_jets_file(path, {}, spec, extra_attrs)
        return
    with h5py.File(path, "w") as handle:
        _file_attrs(handle, spec, total, extra_attrs)
        for ds in spec.datasets:
            layout = _UntimedLayout(shape=(total, *ds.shape), dtype=ds.dtype)
            start = 0
            for rel, n in shards:
                layout[start:start + n] = h5py.VirtualSource(rel, ds.name, shape=(n, *ds.shape))
                start += n
            dataset = handle.create_virtual_dataset(ds.name, layout, fillvalue=ds.fill)
            for key, value in ds.attrs:
                dataset.attrs[key] = value


class _UntimedLayout(h5py.VirtualLayout):
    """h5py stamps virtual datasets with their creation time; without it the file is reproducible."""

    def _get_dcpl(self, dst_filename):
        dcpl = super()._get_dcpl(dst_filename)
        dcpl.set_obj_track_times(False)
        return dcpl


class WriteShard(beam.DoFn):
    """((split index, shard), pieces) -> ShardResult, the shard written to a unique temporary name.

    The WritePlan side input applies limits (quotas) and sample weight factors before writing.
    """

    def __init__(self, spec: SinkSpec):
        self.spec = spec
        self.written = Metrics.counter("root2hdf5", "jets_written")

    def process(self, element, plan: WritePlan):
        begin = time.perf_counter()
        (split_index, shard), pieces = element
        split = self.spec.split_names[split_index]
        columns = gather_shard(pieces)
        sample, file, label = columns["source"][:, 0], columns["source"][:, 1], columns["labels"]
        keep = (apply_quotas(columns, split_index, shard, plan.quotas) if plan.quotas is not None
                else np.ones(len(label), bool))
        if not keep.all():
            columns = {name: values[keep] for name, values in columns.items()}
        if plan.factors:
            factors = np.asarray(plan.factors, np.float64)[columns["source"][:, 0]]
            columns["weights"] = (columns["weights"] * factors).astype(np.float32)
        count = self.spec.shards[split]
        name = shard_name(split, shard, count)
        path = FileSystems.join(self.spec.tmp_dir, SHARDS_DIR, f"{name}.{uuid.uuid4().hex[:12]}")
        attrs = {"split": split, "shard": shard, "num_shards": count}
        write_via_local(path, lambda local: write_jets_file(local, columns, self.spec, attrs))
        n = len(columns["labels"])
        self.written.inc(n)
        Metrics.counter("root2hdf5", f"written_{split}").inc(n)
        log.info("wrote shard %s: %d jets in %.1f s", name, n, time.perf_counter() - begin)
        yield ShardResult(split, shard, path, n, _count_rows(sample, file, label, keep))


def _count_rows(sample, file, label, keep) -> list[tuple[int, int, int, int, int]]:
    """(sample, file, label, written, dropped) for each group present in a shard."""
    if len(sample) == 0:
        return []
    keys, group = np.unique(np.stack([sample, file, label.astype(np.int64)], axis=1), axis=0, return_inverse=True)
    group = group.ravel()
    kept = np.bincount(group, weights=keep, minlength=len(keys)).astype(np.int64)
    total = np.bincount(group, minlength=len(keys))
    return [(int(s), int(f), int(l), int(k), int(t - k)) for (s, f, l), k, t in zip(keys, kept, total)]


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


class Finalize(beam.DoFn):
    """[ShardResult] + per-range stats -> the final output directory and its summary (runs once)."""

    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def process(self, results, stats, plan: WritePlan):
        begin = time.perf_counter()
        spec = self.spec
        results = sorted(results, key=lambda r: (spec.split_names.index(r.split), r.shard))
        present = {(r.split, r.shard) for r in results}
        for split, count in spec.shards.items():  # a shard no jet hashed to is still written, empty
            for shard in range(count):
                if (split, shard) not in present:
                    path = FileSystems.join(spec.tmp_dir, SHARDS_DIR, shard_name(split, shard, count) + ".empty")
                    attrs = {"split": split, "shard": shard, "num_shards": count}
                    write_via_local(path, lambda local: write_jets_file(local, {}, spec, attrs))
                    results.append(ShardResult(split, shard, path, 0, []))
        results.sort(key=lambda r: (spec.split_names.index(r.split), r.shard))
        report = build_report(stats, results, spec.files, spec.sample_names, spec.split_names, spec.selection, plan)

        out = spec.out_dir
        shards_dir = FileSystems.join(out, SHARDS_DIR)
        if spec.overwrite:
            old = [FileSystems.join(out, f"{s}.h5") for s in spec.split_names] + [shards_dir,
                                                                                   FileSystems.join(out, SUMMARY)]
            old = [p for p in old if _exists(p)]
            if old:
                FileSystems.delete(old)
        if not _exists(shards_dir):
            FileSystems.mkdirs(shards_dir)
        finals = [FileSystems.join(shards_dir, shard_name(r.split, r.shard, spec.shards[r.split]))
                  for r in results]
        FileSystems.rename([r.path for r in results], finals)

        staged, targets = [], []
        for split in spec.shards:
            members = [(f"{SHARDS_DIR}/{shard_name(r.split, r.shard, spec.shards[split])}", r.num_jets)
                       for r in results if r.split == split]
            path = FileSystems.join(spec.tmp_dir, f"{split}.h5")
            attrs = {"split": split, "num_shards": spec.shards[split]}
            write_via_local(path, lambda local: write_split_file(local, members, spec, attrs))
            staged.append(path)
            targets.append(FileSystems.join(out, f"{split}.h5"))
        FileSystems.rename(staged, targets)

        summary = json.dumps(report, indent=1).encode()
        with FileSystems.create(FileSystems.join(out, SUMMARY), compression_type="uncompressed") as handle:
            handle.write(summary)
        FileSystems.delete([spec.tmp_dir])
        log.info("finalized %d shards in %.1f s", len(results), time.perf_counter() - begin)
        yield report


class WriteShuffledHdf5(beam.PTransform):
    """JetBatch elements (with routing columns) -> the finalized output directory; yields the report.

    Args:
        spec: the SinkSpec.
        stats: PCollection of RangeStats from the per-range accounting.
        spill: spill shuffle pieces to temporary files (True) or move them through the runner (False).
        composition: limits and sample weight factors, applied when the shards are written.
    """

    def __init__(self, spec: SinkSpec, stats, spill: bool = True, composition: Composition | None = None):
        super().__init__()
        self.spec = spec
        self.stats = stats
        self.spill = spill
        self.composition = composition or Composition()

    def expand(self, batches):
        datasets = [ds.name for ds in self.spec.datasets]
        all_stats = self.stats | "CollectStats" >> beam.combiners.ToList()
        plan = all_stats | "PlanComposition" >> beam.Map(make_plan, self.composition)
        return (
            batches
            | "Shuffle" >> ShuffleIntoShards(datasets, self.spec.spill_dir if self.spill else None)
            | "WriteShards" >> beam.ParDo(WriteShard(self.spec), plan=beam.pvalue.AsSingleton(plan))
            | "CollectShards" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(Finalize(self.spec), stats=beam.pvalue.AsSingleton(all_stats),
                                       plan=beam.pvalue.AsSingleton(plan))
        )
