"""The records the run's accounting is built from, carried with the data: what happened to the rows of each
entry range, which files were skipped, what each written shard holds (transforms.stats.report sums them)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RangeStats:
    """What happened to the jets of one entry range: counts (events, jets, not_leading, cut,
    uncategorized, sum_weights, and jets per split), and the jets per (label, split index, shard)."""

    sample: int
    file: int
    counts: dict
    cells: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedFile:
    """A file left out with `input.on_error: skip`, and why; one record per range that failed. `entries`: the
    entries of that range, never read (0 when the file could not be planned), each an event or (`layout: jets`)
    a jet as `entry` says."""

    sample: int
    file: int
    path: str
    reason: str
    entries: int = 0
    entry: str = "events"


@dataclass
class ShardResult:
    """One written shard: its temporary file, and per (sample, file, label) the jets written to it, the
    jets dropped by limits, and the jets dropped because their file was skipped."""

    split: str
    shard: int
    path: str
    num_jets: int
    rows: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    histograms: object = None  # transforms.stats.reweight.Histograms, for reweighting and resampling
    moments: dict | None = None  # transforms.stats.moments.Moments per dataset (training shards)
    resampled_from: int | None = None  # jets the shard held before resampling
