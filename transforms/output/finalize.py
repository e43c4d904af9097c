"""The finalize step: checks the accounting and publishes the output directory, once every shard is written.

Layout of an output directory:

    train.h5  val.h5  test.h5         one file per split; each dataset is an HDF5 virtual dataset over the
                                      split's shards (relative paths), so users open one file
    shards/train-00000-of-00006.h5    the shards, with the same datasets stored for real
    norm.yaml                         mean, std, min, max of every feature over the training split
    summary.json                      the exact accounting of the run (transforms.stats.report)

Like Beam's FileBasedSink: shards are written under the run's temporary directory with unique names, and
this single step, which runs only after every shard succeeded, moves them into place. It is idempotent,
since a runner may run it again:

1. stage: rename the committed shards to their final names and write the split files, norm.yaml and
   summary.json, all inside the temporary directory;
2. swap: with --overwrite, move the previous run's outputs into the temporary directory (a marker records
   that this step finished);
3. publish: rename the staged files into the output directory, shards first, summary.json last (its
   presence means the output is complete);
4. delete the temporary directory (with the previous outputs and every piece or shard written by a failed
   or repeated attempt; with --overwrite also the temporary directories of interrupted runs).
A repeated call after step 4 finds the summary and returns it.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import apache_beam as beam
import yaml
from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core.errors import OutputError, Root2Hdf5Error, output_errors
from root2hdf5.transforms.core.records import ShardResult
from root2hdf5.transforms.output.hdf5_files import DatasetSpec, children, exists, files_in
from root2hdf5.transforms.stats.degenerate import feature_warnings, split_problems
from root2hdf5.transforms.stats.moments import norm_dict
from root2hdf5.transforms.stats.report import build_report

log = logging.getLogger("root2hdf5")
SUMMARY = "summary.json"
NORM = "norm.yaml"
TMP_PREFIX = ".root2hdf5-tmp-"
SHARDS_DIR = "shards"


def shard_name(split: str, shard: int, count: int, extension: str = ".h5") -> str:
    return f"{split}-{shard:05d}-of-{count:05d}{extension}"


def published_shard(split: str, shard: int, count: int, fmt) -> str:
    """Where a shard ends up, relative to the output directory: shards/train-00000-of-00006.h5 next to
    the split files, or train/part-00000-of-00006.parquet in the split's directory."""
    if fmt.split_files:
        return f"{SHARDS_DIR}/{shard_name(split, shard, count, fmt.extension)}"
    return f"{split}/part-{shard:05d}-of-{count:05d}{fmt.extension}"


@dataclass
class SinkSpec:
    """Where and how the sink writes.

    out_dir / tmp_dir: final and temporary directories (any Beam filesystem path).
    datasets: the plain output columns, in order (what the pipeline produces).
    format: how they are written (transforms.output.formats).
    shards: number of shards per split, for splits that get jets.
    file_attrs: attributes written on every file (resolved config, versions ...).
    """

    out_dir: str
    tmp_dir: str
    datasets: list[DatasetSpec]
    format: object
    shards: dict[str, int]
    split_names: list[str]
    sample_names: list[str]
    files: list = field(default_factory=list)
    file_attrs: dict = field(default_factory=dict)
    overwrite: bool = False
    selection: str | None = None
    features: dict = field(default_factory=dict)  # dataset -> feature names
    collections: list = field(default_factory=list)  # jet collection names
    stats: bool = True  # write the training statistics
    standardized: bool = False
    record: str = "jet"  # what a row is: jet, or event (record: event)
    friends: tuple = ()  # names of the friend trees joined (record: event), for the report
    progress_dir: str | None = None  # local runs: where workers leave progress markers
    warnings: tuple = ()  # found on the driver (degenerate input that checks.allow accepts), for the report
    allow: tuple = ()  # checks.allow: degenerate-input checks that only warn

    @property
    def spill_dir(self) -> str:
        return FileSystems.join(self.tmp_dir, "pieces")


def _rename(source: str, target: str) -> None:
    """Move `source` to `target` unless an earlier attempt already did (then only `target` exists)."""
    if exists(source):
        FileSystems.rename([source], [target])
    elif not exists(target):
        raise Root2Hdf5Error(f"finalize: neither {source} nor {target} exists; the temporary output was lost")


def _write_text(path: str, text: str) -> None:
    with output_errors(path), FileSystems.create(path, compression_type="uncompressed") as handle:
        handle.write(text.encode())


class Finalize(beam.DoFn):
    """[ShardResult] + per-range stats + the plans -> the published output directory; yields the report."""

    def __init__(self, spec: SinkSpec):
        self.spec = spec

    def process(self, results, stats, plan, skipped=(), moments=None):
        begin = time.perf_counter()
        spec = self.spec
        if not exists(spec.tmp_dir):
            with FileSystems.open(FileSystems.join(spec.out_dir, SUMMARY)) as handle:  # committed by an earlier attempt
                yield json.loads(handle.read())
            return
        results = self._with_empty_shards(list(results))
        report = build_report(stats, results, spec.files, spec.sample_names, spec.split_names, spec.selection, plan,
                              skipped, spec.record, spec.friends)
        names, published = self._stage(results, report, moments)
        self._move_previous_away(spec.out_dir, spec.tmp_dir)
        self._publish(names, published)
        self._clean_up()
        log.info("finalized %d shards in %.1f s", len(results), time.perf_counter() - begin)
        yield report

    def _stage(self, results: list[ShardResult], report: dict, moments) -> tuple[list[str], list[str]]:
        """Step 1: the shards under their final names, the split files, norm.yaml and summary.json, all in the
        staging directory. Returns the shards' and the other files' names relative to the output directory."""
        spec, fmt = self.spec, self.spec.format
        staging = FileSystems.join(spec.tmp_dir, "commit")
        staged_shards = FileSystems.join(staging, SHARDS_DIR)
        if not exists(staged_shards):
            FileSystems.mkdirs(staged_shards)
        norm = norm_dict(moments or {}, spec.features, spec.collections) if spec.stats else None
        if norm is not None:  # named as the datasets are on disk (record: event writes `jets` as `events`)
            norm = {fmt.public_name(name): values for name, values in norm.items()}
            report["stats"] = {"file": NORM, "over": "train", "standardized": spec.standardized}
        self._degenerate(report, norm)
        names = [published_shard(r.split, r.shard, spec.shards[r.split], fmt) for r in results]
        for result, name in zip(results, names):
            _rename(result.path, FileSystems.join(staged_shards, name.replace("/", "--")))
        statistics = {name: {"mean": moments[name].mean, "std": moments[name].std} for name in moments or {}} \
            if spec.stats else {}
        published = []
        if fmt.split_files:
            for split in spec.shards:
                members = [(name, r.num_jets) for r, name in zip(results, names) if r.split == split]
                attrs = {**spec.file_attrs, "split": split, "num_shards": spec.shards[split],
                         "standardized": spec.standardized}
                fmt.write_split(FileSystems.join(staging, f"{split}.h5"), members, attrs, statistics)
                published.append(f"{split}.h5")
        if norm is not None:
            _write_text(FileSystems.join(staging, NORM), yaml.safe_dump(norm, sort_keys=False))
            published.append(NORM)
        _write_text(FileSystems.join(staging, SUMMARY), json.dumps(report, indent=1))
        published.append(SUMMARY)
        return names, published

    def _degenerate(self, report: dict, norm: dict | None) -> None:
        """Warnings and problems of degenerate input into the report (transforms.stats.degenerate); the driver
        fails the run on a problem that checks.allow does not list."""
        spec = self.spec
        rows = "events" if spec.record == "event" else "jets"
        problems = split_problems(report, list(spec.shards), norm, rows)
        warnings = list(spec.warnings) + [p["message"] for p in problems if p["check"] in spec.allow]
        warnings += feature_warnings(norm)
        for text in warnings:
            log.warning("%s", text)
        if warnings:
            report["warnings"] = warnings
        failing = [p for p in problems if p["check"] not in spec.allow]
        if failing:
            report["problems"] = failing

    def _publish(self, names: list[str], published: list[str]) -> None:
        """Step 3: staged files into the output directory, shards first, summary.json last."""
        out, staging = self.spec.out_dir, FileSystems.join(self.spec.tmp_dir, "commit")
        for folder in sorted({name.rsplit("/", 1)[0] for name in names}):
            if not exists(FileSystems.join(out, folder)):
                FileSystems.mkdirs(FileSystems.join(out, folder))
        for name in names:
            _rename(FileSystems.join(staging, SHARDS_DIR, name.replace("/", "--")),
                    FileSystems.join(out, *name.split("/")))
        for name in published:  # summary.json last
            _rename(FileSystems.join(staging, name), FileSystems.join(out, name))

    def _clean_up(self) -> None:
        """Step 4: the temporary directory (and, with --overwrite, those of interrupted runs)."""
        out, tmp = self.spec.out_dir, self.spec.tmp_dir
        stale = [p for p in children(out) if p.rstrip("/").rsplit("/", 1)[-1].startswith(TMP_PREFIX)
                 and p.rstrip("/") != tmp.rstrip("/")] if self.spec.overwrite else []
        FileSystems.delete([tmp, *stale])

    def _with_empty_shards(self, results: list[ShardResult]) -> list[ShardResult]:
        """A shard no jet hashed to is still written, empty, so that every split has all its shards."""
        spec = self.spec
        present = {(r.split, r.shard) for r in results}
        for split, count in spec.shards.items():
            for shard in range(count):
                if (split, shard) not in present:
                    path = FileSystems.join(spec.tmp_dir, SHARDS_DIR,
                                            shard_name(split, shard, count, spec.format.extension) + ".empty")
                    attrs = {**spec.file_attrs, "split": split, "shard": shard, "num_shards": count}
                    spec.format.write_empty(path, attrs)
                    results.append(ShardResult(split, shard, path, 0, []))
        return sorted(results, key=lambda r: (spec.split_names.index(r.split), r.shard))

    def _move_previous_away(self, out: str, tmp: str) -> None:
        swapped = FileSystems.join(tmp, "swapped")
        if exists(swapped):
            return
        previous = [FileSystems.join(out, name) for name in
                    [f"{s}.h5" for s in self.spec.split_names] + [NORM, SUMMARY]]
        previous = [p for p in previous if exists(p)] + files_in(FileSystems.join(out, SHARDS_DIR))
        for split in self.spec.split_names:  # Parquet parts
            previous += [p for p in files_in(FileSystems.join(out, split)) if p.endswith(".parquet")]
        # plots `root2hdf5 inspect` made of the previous results would describe data that is gone
        previous += [p for p in files_in(FileSystems.join(out, "plots")) if p.endswith(".png")]
        if previous and not self.spec.overwrite:
            raise OutputError(f"{out} received results from another run while this one was writing "
                              f"(e.g. {previous[0]}); nothing was replaced")
        trash = FileSystems.join(tmp, "previous")
        if previous:
            FileSystems.mkdirs(trash)
        for i, path in enumerate(previous):
            FileSystems.rename([path], [FileSystems.join(trash, f"{i:06d}")])
        _write_text(swapped, "previous outputs moved away")
