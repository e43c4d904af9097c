"""Reading ROOT files as parallel entry ranges: files -> ranges -> redistributed -> arrays.

`ReadRootRanges` is the source of the pipeline. Each file is opened once on a worker to plan its ranges
(about `step_size` entries, aligned to cluster boundaries), the ranges are redistributed so that one big
file becomes many parallel work units, and each range is read with uproot, only the needed branches.
"""
from __future__ import annotations

import logging
import pickle
import time
from contextlib import closing
from dataclasses import dataclass

import apache_beam as beam
import awkward as ak
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from root2hdf5.transforms.core import progress
from root2hdf5.transforms.core.errors import InputError, Root2Hdf5Error
from root2hdf5.transforms.core.records import SkippedFile
from root2hdf5.transforms.read.sources import InputFile
from root2hdf5.transforms.read.trees import (
    BranchPlan,
    OpenTrees,
    check_branches,
    cluster_starts,
    one_value_per_entry,
    open_tree,
    plan_ranges,
    read_arrays,
)

log = logging.getLogger("root2hdf5")


@dataclass(frozen=True)
class EntryRange:
    """Entries [start, stop) of one input file; `index` of `count` ranges of that file."""

    file: InputFile
    start: int
    stop: int
    index: int
    count: int


@dataclass
class EventsChunk:
    """The needed branches of one entry range, as uproot returns them (one row per entry)."""

    range: EntryRange
    arrays: ak.Array


class EventsChunkCoder(beam.coders.Coder):
    """Pickles an EventsChunk; estimates its size from the arrays without pickling them (see
    transforms.core.batch.RowBatchCoder)."""

    def encode(self, value: EventsChunk) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> EventsChunk:
        return pickle.loads(encoded)

    def estimate_size(self, value: EventsChunk) -> int:
        return int(value.arrays.nbytes)

    def is_deterministic(self) -> bool:
        return False


beam.coders.registry.register_coder(EventsChunk, EventsChunkCoder)


def _skip(spec: InputFile, err: InputError, skip: bool, entries: int = 0, layout: str = "events"):
    """With `input.on_error: skip`, a file that cannot be read becomes a SkippedFile record, with the entries
    of the range that failed (never read, but counted in the report)."""
    if not skip:
        raise err
    log.warning("skipping %s: %s", spec.path, err)
    Metrics.counter("root2hdf5", "files_skipped").inc()
    entry = "jets" if layout == "jets" else "events"
    return pvalue.TaggedOutput("skipped", SkippedFile(spec.sample, spec.file, spec.path, str(err), entries, entry))


class SplitIntoRanges(beam.DoFn):
    """InputFile -> EntryRange elements, after checking the tree and its branches.

    With skip=True an unreadable file yields a SkippedFile on output 'skipped' instead of failing.
    """

    def __init__(self, plan: BranchPlan, step_size: int, skip: bool = False, progress_dir: str | None = None):
        self.plan = plan
        self.step_size = step_size
        self.skip = skip
        self.progress_dir = progress_dir
        self.files_opened = Metrics.counter("root2hdf5", "files_opened")

    def process(self, spec: InputFile):
        try:
            tree = open_tree(spec.path, spec.tree)
            with closing(tree.file):
                check_branches(tree, self.plan, spec.path)
                entries = tree.num_entries
                if entries == 0:
                    raise InputError(f"{spec.path}: tree {spec.tree!r} is empty (0 entries)")
                ranges = plan_ranges(entries, cluster_starts(tree, self.plan.to_read()), self.step_size)
        except InputError as err:
            yield _skip(spec, err, self.skip)
            return
        self.files_opened.inc()
        progress.mark(self.progress_dir, "plan", spec.sample, spec.file, entries, len(ranges))
        for i, (start, stop) in enumerate(ranges):
            yield EntryRange(spec, start, stop, i, len(ranges))


@beam.typehints.with_output_types(EventsChunk)
class ReadRange(beam.DoFn):
    """EntryRange -> EventsChunk: the planned branches of those entries, as awkward arrays, in one uproot
    request per range. The worker keeps the last few files open, so the ranges of a file share one handle.

    With skip=True a range that cannot be read yields a SkippedFile on output 'skipped'; the jets of
    that file's other ranges are then dropped when the shards are written, so a file counts whole or not.
    """

    def __init__(self, plan: BranchPlan, skip: bool = False, progress_dir: str | None = None):
        self.plan = plan
        self.skip = skip
        self.progress_dir = progress_dir
        self.entries_read = Metrics.counter("root2hdf5", "entries_read")
        self.ranges_read = Metrics.counter("root2hdf5", "ranges_read")
        self._trees = None

    def setup(self):
        self._trees = OpenTrees()

    def teardown(self):
        if self._trees is not None:
            self._trees.close()

    def process(self, entry_range: EntryRange):
        spec = entry_range.file
        begin = time.perf_counter()
        try:
            arrays = self._read(entry_range)
        except InputError as err:
            yield _skip(spec, err, self.skip, entry_range.stop - entry_range.start, self.plan.layout)
            return
        self.entries_read.inc(len(arrays))
        self.ranges_read.inc()
        progress.mark(self.progress_dir, "read", spec.sample, spec.file, entry_range.start, len(arrays))
        log.debug("read %s [%s] entries %d-%d (range %d/%d of the file) in %.2f s", spec.path, spec.sample_name,
                  entry_range.start, entry_range.stop, entry_range.index + 1, entry_range.count,
                  time.perf_counter() - begin)
        yield EventsChunk(entry_range, arrays)

    def _read(self, entry_range: EntryRange):
        spec = entry_range.file
        if self._trees is None:  # used outside a runner (tests)
            self.setup()
        tree = self._trees.get(spec.path, spec.tree)
        where = f"{spec.path}: tree {spec.tree!r}"
        try:
            arrays = read_arrays(tree, self.plan.to_read(), entry_start=entry_range.start,
                                 entry_stop=entry_range.stop, library="ak")
        except Root2Hdf5Error:
            raise
        except Exception as err:
            self._trees.drop(spec.path, spec.tree)
            raise InputError(
                f"{where}: reading entries {entry_range.start}-{entry_range.stop} of the branches "
                f"{self.plan.to_read()} failed ({type(err).__name__}: {err}); the file may be truncated or "
                "damaged") from None
        if len(arrays) != entry_range.stop - entry_range.start:
            raise InputError(f"{where}: asked for entries {entry_range.start}-"
                             f"{entry_range.stop} but got {len(arrays)}; the file may be truncated")
        return one_value_per_entry(arrays, self.plan.one_value(), where, entry_range.start)


class ReadRootRanges(beam.PTransform):
    """Read the planned branches of `files` as EventsChunk elements, one per entry range.

    Returns (chunks, skipped): EventsChunk elements, and SkippedFile records (only with skip=True).

    Args:
        files: InputFile specs (from `transforms.read.sources.expand_files`).
        plan: the branches to read and their required depths.
        step_size: about how many entries one work unit reads.
        skip: skip unreadable files (`input.on_error: skip`) instead of failing.
        progress_dir: where workers leave progress markers (local runs; see transforms.core.progress).
    """

    def __init__(self, files: list[InputFile], plan: BranchPlan, step_size: int, skip: bool = False,
                 progress_dir: str | None = None):
        super().__init__()
        self.files = files
        self.plan = plan
        self.step_size = step_size
        self.skip = skip
        self.progress_dir = progress_dir

    def expand(self, pbegin):
        ranges = (
            pbegin
            | "Files" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "EntryRanges" >> beam.ParDo(SplitIntoRanges(self.plan, self.step_size, self.skip, self.progress_dir))
            .with_outputs("skipped", main="ranges")
        )
        chunks = (
            ranges.ranges
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadRanges" >> beam.ParDo(ReadRange(self.plan, self.skip, self.progress_dir))
            .with_outputs("skipped", main="chunks")
        )
        skipped = (ranges.skipped, chunks.skipped) | "Skipped" >> beam.Flatten()
        return chunks.chunks, skipped
