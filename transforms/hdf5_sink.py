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
from transforms import faults
from transforms.composition import Composition, WritePlan, apply_quotas, make_plan
from transforms.errors import OutputError, Root2Hdf5Error, output_errors
from transforms.report import ShardResult, build_report
from transforms.shuffle import ShuffleIntoShards, gather_shard

log = logging.getLogger("root2hdf5")
SUMMARY = "summary.json"
TMP_PREFIX = ".root2hdf5-tmp-"
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
    with output_errors(destination):
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
        unreadable = np.zeros(len(label), bool)
        for s_index, f_index in plan.skipped:  # files skipped with on_error: skip count whole or not at all
            unreadable |= (sample == s_index) & (file == f_index)
        keep = (apply_quotas(columns, split_index, shard, plan.quotas) if plan.quotas is not None
                else np.ones(len(label), bool)) & ~unreadable
        if not keep.all():
            columns = {name: values[keep] for name, values in columns.items()}
        if plan.factors:
            factors = np.asarray(plan.factors, np.float64)[columns["source"][:, 0]]
            columns["weights"] = (columns["weights"] * factors).astype(np.float32)
        count = self.spec.shards[split]
        name = shard_name(split, shard, count)
        path = FileSystems.join(self.spec.tmp_dir, SHARDS_DIR, f"{name}.{uuid.uuid4().hex[:12]}")
        attrs = {"split": split, "shard": shard, "num_shards": count}
        if faults.lose_jet() and len(columns["labels"]):  # test hook: a bug that loses a jet
            columns = {key: values[1:] for key, values in columns.items()}
        write_via_local(path, lambda local: write_jets_file(local, columns, self.spec, attrs))
        faults.fail_once("write_shard", name)  # test hook: fail after writing, before committing
        n = len(columns["labels"])
        self.written.inc(n)
        Metrics.counter("root2hdf5", f"written_{split}").inc(n)
        log.info("wrote shard %s: %d jets in %.1f s", name, n, time.perf_counter() - begin)
        written = columns["source"][:, 0], columns["source"][:, 1], columns["labels"]
        yield ShardResult(split, shard, path, n, _count_rows((sample, file, label), keep, unreadable, written))


def _group_counts(sample, file, label, weights=None) -> dict[tuple[int, int, int], int]:
    if len(sample) == 0:
        return {}
    keys, group = np.unique(np.stack([sample, file, label.astype(np.int64)], axis=1), axis=0, return_inverse=True)
    counts = np.bincount(group.ravel(), weights=weights, minlength=len(keys)).astype(np.int64)
    return {tuple(int(v) for v in key): int(c) for key, c in zip(keys, counts)}


def _count_rows(before, keep, unreadable, written) -> list[tuple[int, int, int, int, int, int]]:
    """(sample, file, label, written, dropped by limits, dropped as unreadable) per group in a shard.

    `written` is counted from the columns that went into the file, not derived from `keep`, so that any
    jet lost on the way shows up as a mismatch in the run's accounting."""
    unread = _group_counts(*before, weights=unreadable)
    limited = _group_counts(*before, weights=~keep & ~unreadable)
    out = _group_counts(*written)
    return [(*key, out.get(key, 0), limited.get(key, 0), unread.get(key, 0)) for key in sorted(_group_counts(*before))]


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def _rename(source: str, target: str) -> None:
    """Move `source` to `target` unless an earlier attempt already did (then only `target` exists)."""
    if _exists(source):
        FileSystems.rename([source], [target])
    elif not _exists(target):
        raise Root2Hdf5Error(f"finalize: neither {source} nor {target} exists; the temporary output was lost")


def _listing(directory: str) -> list[str]:
    """The files directly in `directory`."""
    if not _exists(directory):
        return []
    return sorted(m.path for m in FileSystems.match([FileSystems.join(directory, "*")])[0].metadata_list)


def children(directory: str) -> list[str]:
    """Files and subdirectories directly in `directory` (object stores have no directories: there, the
    first path components below it)."""
    if is_local(directory):
        return sorted(os.path.join(directory, name) for name in os.listdir(directory)) if os.path.isdir(directory) else []
    if not _exists(directory):
        return []
    base = directory.rstrip("/") + "/"
    names = {m.path[len(base):].split("/", 1)[0]
             for m in FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list if m.path.startswith(base)}
    return sorted(FileSystems.join(directory, name) for name in names if name)


class Finalize(beam.DoFn):
    """[ShardResult] + per-range stats -> the final output directory and its summary.

    Runs once after every shard was written, and is idempotent, since a runner may run it again:

    1. stage: rename the committed shards to their final names and write the split files and summary.json,
       all inside the temporary directory;
    2. swap: with --overwrite, move the previous run's outputs into the temporary directory (a marker
       records that this step finished);
    3. publish: rename the staged files into the output directory, shards first, summary.json last (its
       presence means the output is complete);
    4. delete the temporary directory (with the previous outputs and every piece or shard written by a
       failed or repeated attempt).
    A repeated call after step 4 finds the summary and returns it.
    """

    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def process(self, results, stats, plan: WritePlan, skipped=()):
        begin = time.perf_counter()
        spec = self.spec
        out, tmp = spec.out_dir, spec.tmp_dir
        if not _exists(tmp):
            with FileSystems.open(FileSystems.join(out, SUMMARY)) as handle:  # committed by an earlier attempt
                yield json.loads(handle.read())
            return
        staging = FileSystems.join(tmp, "commit")
        staged_shards = FileSystems.join(staging, SHARDS_DIR)
        if not _exists(staged_shards):
            FileSystems.mkdirs(staged_shards)

        results = sorted(results, key=lambda r: (spec.split_names.index(r.split), r.shard))
        present = {(r.split, r.shard) for r in results}
        for split, count in spec.shards.items():  # a shard no jet hashed to is still written, empty
            for shard in range(count):
                if (split, shard) not in present:
                    path = FileSystems.join(tmp, SHARDS_DIR, shard_name(split, shard, count) + ".empty")
                    attrs = {"split": split, "shard": shard, "num_shards": count}
                    write_via_local(path, lambda local: write_jets_file(local, {}, spec, attrs))
                    results.append(ShardResult(split, shard, path, 0, []))
        results.sort(key=lambda r: (spec.split_names.index(r.split), r.shard))
        report = build_report(stats, results, spec.files, spec.sample_names, spec.split_names, spec.selection, plan,
                              skipped)

        names = [shard_name(r.split, r.shard, spec.shards[r.split]) for r in results]
        for result, name in zip(results, names):
            _rename(result.path, FileSystems.join(staged_shards, name))
        for split in spec.shards:
            members = [(f"{SHARDS_DIR}/{name}", r.num_jets) for r, name in zip(results, names) if r.split == split]
            attrs = {"split": split, "num_shards": spec.shards[split]}
            write_via_local(FileSystems.join(staging, f"{split}.h5"),
                            lambda local: write_split_file(local, members, spec, attrs))
        with output_errors(staging), \
                FileSystems.create(FileSystems.join(staging, SUMMARY), compression_type="uncompressed") as handle:
            handle.write(json.dumps(report, indent=1).encode())

        swapped = FileSystems.join(tmp, "swapped")
        if not _exists(swapped):
            previous = [FileSystems.join(out, f"{s}.h5") for s in spec.split_names] + [FileSystems.join(out, SUMMARY)]
            previous = [p for p in previous if _exists(p)] + _listing(FileSystems.join(out, SHARDS_DIR))
            if previous and not spec.overwrite:
                raise OutputError(f"{out} received results from another run while this one was writing "
                                  f"(e.g. {previous[0]}); nothing was replaced")
            trash = FileSystems.join(tmp, "previous")
            if previous:
                FileSystems.mkdirs(trash)
            for i, path in enumerate(previous):
                FileSystems.rename([path], [FileSystems.join(trash, f"{i:06d}")])
            with FileSystems.create(swapped) as handle:
                handle.write(b"previous outputs moved away")

        if not _exists(FileSystems.join(out, SHARDS_DIR)):
            FileSystems.mkdirs(FileSystems.join(out, SHARDS_DIR))
        for name in names:
            _rename(FileSystems.join(staged_shards, name), FileSystems.join(out, SHARDS_DIR, name))
        for split in spec.shards:
            _rename(FileSystems.join(staging, f"{split}.h5"), FileSystems.join(out, f"{split}.h5"))
        _rename(FileSystems.join(staging, SUMMARY), FileSystems.join(out, SUMMARY))
        stale = [p for p in children(out) if p.rstrip("/").rsplit("/", 1)[-1].startswith(TMP_PREFIX)
                 and p.rstrip("/") != tmp.rstrip("/")] if spec.overwrite else []
        FileSystems.delete([tmp, *stale])  # with --overwrite, also what interrupted runs left behind
        log.info("finalized %d shards in %.1f s", len(results), time.perf_counter() - begin)
        yield report


class WriteShuffledHdf5(beam.PTransform):
    """JetBatch elements (with routing columns) -> the finalized output directory; yields the report.

    Args:
        spec: the SinkSpec.
        stats: PCollection of RangeStats from the per-range accounting.
        spill: spill shuffle pieces to temporary files (True) or move them through the runner (False).
        composition: limits and sample weight factors, applied when the shards are written.
        skipped: PCollection of SkippedFile records, or None.
    """

    def __init__(self, spec: SinkSpec, stats, spill: bool = True, composition: Composition | None = None,
                 skipped=None):
        super().__init__()
        self.spec = spec
        self.stats = stats
        self.spill = spill
        self.composition = composition or Composition()
        self.skipped = skipped

    def expand(self, batches):
        datasets = [ds.name for ds in self.spec.datasets]
        all_stats = self.stats | "CollectStats" >> beam.combiners.ToList()
        skipped = (self.skipped if self.skipped is not None else batches.pipeline | "NoSkipped" >> beam.Create([]))
        all_skipped = skipped | "CollectSkipped" >> beam.combiners.ToList()
        plan = all_stats | "PlanComposition" >> beam.Map(make_plan, self.composition,
                                                         beam.pvalue.AsSingleton(all_skipped))
        return (
            batches
            | "Shuffle" >> ShuffleIntoShards(datasets, self.spec.spill_dir if self.spill else None)
            | "WriteShards" >> beam.ParDo(WriteShard(self.spec), plan=beam.pvalue.AsSingleton(plan))
            | "CollectShards" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(Finalize(self.spec), stats=beam.pvalue.AsSingleton(all_stats),
                                       plan=beam.pvalue.AsSingleton(plan), skipped=beam.pvalue.AsSingleton(all_skipped))
        )
