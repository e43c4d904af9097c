"""Progress of a local run, shown on the driver while the workers run.

Workers leave empty marker files in `<run tmp>/progress/` whose names carry the numbers: a file planned
(`plan-<sample>-<file>-<entries>-<ranges>`), an entry range read (`read-<sample>-<file>-<start>-<entries>`),
a shard written (`shard-<output set>-<split index>-<shard>`). The driver lists the folder every few seconds
and logs one line.
Files rather than Beam metrics, because runners report metrics to the driver only at the end; names
rather than contents, because a retried bundle rewrites the same name, so nothing is counted twice.

Markers are best effort: a marker that cannot be written costs a progress line, never the run.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("root2hdf5")

FOLDER = "progress"


def mark(folder: str | None, *parts) -> None:
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "-".join(str(p) for p in parts)), "wb"):
            pass
    except OSError:
        pass


@dataclass
class Snapshot:
    files_planned: int = 0
    entries_planned: int = 0
    ranges_planned: int = 0
    ranges_read: int = 0
    entries_read: int = 0
    shards_written: int = 0


def snapshot(folder: str) -> Snapshot:
    s = Snapshot()
    try:
        names = os.listdir(folder)
    except OSError:
        return s
    for name in names:
        kind, *numbers = name.split("-")
        try:
            values = [int(x) for x in numbers]
        except ValueError:
            continue
        if kind == "plan" and len(values) == 4:
            s.files_planned += 1
            s.entries_planned += values[2]
            s.ranges_planned += values[3]
        elif kind == "read" and len(values) == 4:
            s.ranges_read += 1
            s.entries_read += values[3]
        elif kind == "shard":
            s.shards_written += 1
    return s


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def describe(s: Snapshot, files: int, shards: int, elapsed: float) -> str:
    """One progress line. While some files are not yet planned, their entries are estimated from the
    planned ones (an estimate is marked with ~)."""
    if s.files_planned == 0:
        return f"progress: starting; {files} input files to open [{duration(elapsed)}]"
    estimate = s.files_planned < files
    total = s.entries_planned * files / s.files_planned if estimate else s.entries_planned
    rate = s.entries_read / elapsed if elapsed > 0 else 0.0
    parts = [f"progress: read {s.entries_read:,} of {'~' if estimate else ''}{total:,.0f} entries "
             f"({s.entries_read / max(total, 1):.0%}; {s.ranges_read} of {s.ranges_planned}"
             f"{'+' if estimate else ''} ranges, {s.files_planned} of {files} files planned)"]
    if s.entries_read < total:
        eta = f", ETA {duration((total - s.entries_read) / rate)}" if rate > 0 else ""
        parts.append(f"{rate:,.0f} entries/s{eta}")
    else:
        parts.append(f"shuffling and writing: {s.shards_written} of {shards} shards written")
    return ", ".join(parts) + f" [{duration(elapsed)}]"


class Watcher:
    """Logs a progress line every `interval` seconds while the pipeline runs (a daemon thread)."""

    def __init__(self, folder: str, files: int, shards: int, interval: float = 10.0):
        self.folder, self.files, self.shards, self.interval = folder, files, shards, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="root2hdf5-progress", daemon=True)
        self._begin = time.perf_counter()
        self._seen = Snapshot()
        self.lines: list[str] = []

    def __enter__(self) -> "Watcher":
        self._begin = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # no line here: finalize has removed the markers with the run's temporary directory; the caller
        # reports the totals from the run's accounting instead
        self._stop.set()
        self._thread.join()

    def _emit(self) -> None:
        # counts only grow; markers vanish when finalize removes the temporary directory
        now = snapshot(self.folder)
        self._seen = Snapshot(*(max(a, b) for a, b in zip(vars(self._seen).values(), vars(now).values())))
        line = describe(self._seen, self.files, self.shards, time.perf_counter() - self._begin)
        self.lines.append(line)
        log.info("%s", line)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()
