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

1. stage: rename the committed shards to their final names and write the split files, norm.yaml,
   the manifest (.root2hdf5-manifest.json: every file the run publishes) and summary.json, all inside the
   temporary directory; then a journal (journal.json there) lists what will be moved away and what in;
2. swap: with --overwrite, move the previous run's files (exactly those its manifest lists; files written
   before manifests existed: those with the names this tool gives) into the temporary directory, its
   summary.json first; then the journal records the commit point: from here the new set is the result;
3. publish: rename the staged files into the output directory, shards first, summary.json last (its
   presence means the output is complete);
4. delete the temporary directory (with the previous outputs and every piece or shard written by a failed
   or repeated attempt; with --overwrite also the temporary directories of interrupted runs).
A repeated call after step 4 finds the summary and returns it. A finalize interrupted between steps 1 and 4
(the process killed) is completed or undone by `recover`, which the next run (or the interrupted run's
driver, on Ctrl-C) calls: before the commit point the previous files go back, after it the rest of the new
ones are published. At every instant the old or the new complete set is in the output directory or, moved,
in the journal's temporary directory, from where `recover` puts it back.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field

import apache_beam as beam
import yaml
from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core import faults
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
MANIFEST = ".root2hdf5-manifest.json"
JOURNAL = "journal.json"
# held while a finalize swaps and publishes, so that a driver stopping an in-process run (on Ctrl-C) waits
# for the renames under way before it completes or undoes them
PUBLISHING = threading.Lock()


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
            yield _read_summary(spec.out_dir)  # committed by an earlier attempt
            return
        journal = _read_journal(spec.tmp_dir)
        report = None
        if journal is None:  # not staged yet (a repeated attempt after the journal goes straight to the swap)
            results = self._with_empty_shards(list(results))
            report = build_report(stats, results, spec.files, spec.sample_names, spec.split_names, spec.selection,
                                  plan, skipped, spec.record, spec.friends)
            names, published = self._stage(results, report, moments)
            staged = [f"commit/{SHARDS_DIR}/{name.replace('/', '--')}" for name in names]
            staged += [f"commit/{name}" for name in published]
            journal = {"step": "swap", "old": self._previous(), "new": list(zip(staged, names + published))}
            _write_journal(spec.tmp_dir, journal)
        faults.step("staged")
        with PUBLISHING:
            _swap_and_publish(spec.out_dir, spec.tmp_dir, journal, faults.step)
            self._clean_up()
        log.info("finalized %d shards in %.1f s", sum(spec.shards.values()), time.perf_counter() - begin)
        yield report if report is not None else _read_summary(spec.out_dir)

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
        manifest = {"written_by": "root2hdf5", "files": sorted(names + published + [SUMMARY])}
        _write_text(FileSystems.join(staging, MANIFEST), json.dumps(manifest, indent=1))
        _write_text(FileSystems.join(staging, SUMMARY), json.dumps(report, indent=1))
        published += [MANIFEST, SUMMARY]  # published in this order: the manifest before summary.json
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

    def _previous(self) -> list[str]:
        """What step 2 moves away: the previous run's own files (with --overwrite); refused when the directory
        holds a result this run may not replace, or files it did not write where it would write."""
        spec = self.spec
        own, foreign = previous_outputs(spec.out_dir, spec.split_names)
        if (own or foreign) and not spec.overwrite:
            raise OutputError(f"{spec.out_dir} received results from another run while this one was writing "
                              f"(e.g. {(own or foreign)[0]}); nothing was replaced")
        if foreign:
            raise OutputError(foreign_files_message(spec.out_dir, foreign))
        return own


def previous_outputs(out: str, split_names) -> tuple[list[str], list[str]]:
    """What an earlier run left in `out`, relative to it: (its own files: those its manifest lists, or, for a
    result written before manifests existed, those with the names this tool gives; summary.json first),
    (files it did not write in the places a run writes to: shards/, the split folders, the split files'
    names)."""
    base = out.rstrip("/") + "/"
    names = [f"{split}.h5" for split in split_names] + [NORM, SUMMARY]
    present = [name for name in names if exists(FileSystems.join(out, name))]
    for folder in [SHARDS_DIR, *split_names]:
        present += [p[len(base):] for p in files_in(FileSystems.join(out, folder)) if p.startswith(base)]
    manifest = _read_manifest(out)
    if manifest is None:
        splits = "|".join(map(re.escape, split_names))
        ours = re.compile(rf"({'|'.join(map(re.escape, names))}|{SHARDS_DIR}/({splits})-\d{{5}}-of-\d{{5}}\.h5|"
                          rf"({splits})/part-\d{{5}}-of-\d{{5}}\.parquet)")
        own = [p for p in present if ours.fullmatch(p)]
    else:
        own = [p for p in manifest if exists(FileSystems.join(out, *p.split("/")))] + [MANIFEST]
    foreign = sorted(set(present) - set(own) - set(manifest or ()))
    first = [p for p in (SUMMARY, MANIFEST) if p in own]  # the old set stops looking complete first
    return first + sorted(set(own) - set(first)), foreign


def foreign_files_message(out: str, foreign: list[str]) -> str:
    shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
    return (f"--overwrite replaces only what an earlier run wrote, but {out} also holds {len(foreign)} files that "
            f"no run recorded as its own where this run writes: {shown}; move them away or choose another "
            f"output.dir")


def recover(out: str, tmp: str) -> str | None:
    """Complete or undo a finalize that was interrupted in `tmp`: "published" when it had passed its commit
    point, "rolled back" before; None when `tmp` holds no journal (nothing was moved). The caller deletes `tmp`."""
    journal = _read_journal(tmp)
    if journal is None:
        return None
    if journal["step"] == "publish":
        _swap_and_publish(out, tmp, journal)
        return "published"
    for i, name in reversed(list(enumerate(journal["old"]))):  # summary.json, moved first, back last
        moved = FileSystems.join(tmp, "previous", f"{i:06d}")
        if exists(moved):
            _make_parent(out, name)
            FileSystems.rename([moved], [FileSystems.join(out, *name.split("/"))])
    return "rolled back"


def _swap_and_publish(out: str, tmp: str, journal: dict, step=lambda point: None) -> None:
    """Steps 2 and 3, from wherever an earlier attempt stopped (every move is idempotent). `step`: the test
    hook of the finalize step (not of a recovery)."""
    if journal["step"] == "swap":
        trash = FileSystems.join(tmp, "previous")
        if journal["old"] and not exists(trash):
            FileSystems.mkdirs(trash)
        for i, name in enumerate(journal["old"]):
            _rename(FileSystems.join(out, *name.split("/")), FileSystems.join(trash, f"{i:06d}"))
        step("swapped")
        journal = {**journal, "step": "publish"}
        _write_journal(tmp, journal)  # the commit point
    for staged, name in journal["new"]:  # shards first, summary.json last
        _make_parent(out, name)
        _rename(FileSystems.join(tmp, *staged.split("/")), FileSystems.join(out, *name.split("/")))
        step("publish")
    step("published")


def _make_parent(out: str, name: str) -> None:
    if "/" in name and not exists(FileSystems.join(out, name.rsplit("/", 1)[0])):
        FileSystems.mkdirs(FileSystems.join(out, name.rsplit("/", 1)[0]))


def _read_summary(out: str) -> dict:
    with FileSystems.open(FileSystems.join(out, SUMMARY)) as handle:
        return json.loads(handle.read())


def _read_manifest(out: str) -> list[str] | None:
    path = FileSystems.join(out, MANIFEST)
    if not exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            return list(json.loads(handle.read())["files"])
    except (ValueError, KeyError, TypeError) as err:
        raise OutputError(f"{path} cannot be read ({err}); it lists what --overwrite may replace: remove the "
                          f"output directory by hand") from None


def record_files(out: str, names: list[str]) -> bool:
    """Add files written into an output directory after its run (`root2hdf5 inspect`'s plots) to its manifest,
    so that --overwrite replaces them with the rest. False when `out` has no manifest."""
    listed = _read_manifest(out)
    if listed is None:
        return False
    path = FileSystems.join(out, MANIFEST)
    _write_text(path + ".new", json.dumps({"written_by": "root2hdf5", "files": sorted(set(listed) | set(names))},
                                          indent=1))
    FileSystems.rename([path + ".new"], [path])
    return True


def _read_journal(tmp: str) -> dict | None:
    path = FileSystems.join(tmp, JOURNAL)
    if not exists(path):
        return None
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def _write_journal(tmp: str, journal: dict) -> None:
    """Written aside and renamed into place: a reader sees the old journal or the new one, never a part."""
    path = FileSystems.join(tmp, JOURNAL)
    _write_text(path + ".new", json.dumps(journal))
    FileSystems.rename([path + ".new"], [path])
