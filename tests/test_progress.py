"""Progress display: markers count what was planned, read and written, once each, and a local run reports."""
from __future__ import annotations

import logging
import re
import time

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.run import run
from root2hdf5.pipelines.runners.args import runs_locally
from root2hdf5.transforms.core import progress
from tests.conftest import IN_MEMORY, events_config


def test_markers_are_counted_once_and_retries_do_not_double_count(tmp_path):
    folder = str(tmp_path / "p")
    progress.mark(folder, "plan", 0, 0, 1000, 4)
    progress.mark(folder, "plan", 0, 1, 500, 2)
    for start in (0, 250, 500):
        progress.mark(folder, "read", 0, 0, start, 250)
    progress.mark(folder, "read", 0, 0, 250, 250)  # a retried bundle rewrites its marker
    progress.mark(folder, "shard", 7, 0, 3)
    s = progress.snapshot(folder)
    assert (s.files_planned, s.entries_planned, s.ranges_planned) == (2, 1500, 6)
    assert (s.ranges_read, s.entries_read, s.shards_written) == (3, 750, 1)
    line = progress.describe(s, files=2, shards=8, elapsed=10.0)
    assert "read 750 of 1,500 entries (50%; 3 of 6 ranges, 2 of 2 files planned)" in line
    assert "75 entries/s, ETA 0:10" in line


def test_unplanned_files_are_estimated_from_the_planned_ones(tmp_path):
    folder = str(tmp_path / "p")
    progress.mark(folder, "plan", 0, 0, 1000, 4)
    progress.mark(folder, "read", 0, 0, 0, 250)
    line = progress.describe(progress.snapshot(folder), files=3, shards=8, elapsed=1.0)
    assert "read 250 of ~3,000 entries" in line and "1 of 3 files planned" in line
    done = progress.describe(progress.Snapshot(1, 1000, 4, 4, 1000, 5), files=1, shards=8, elapsed=2.0)
    assert "5 of 8 shards written" in done


def test_markers_never_fail_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    progress.mark(str(blocker), "read", 0, 0, 0, 1)  # cannot be written: ignored
    progress.mark(None, "read", 0, 0, 0, 1)
    assert progress.snapshot(str(tmp_path / "missing")) == progress.Snapshot()


def test_watcher_logs_growing_progress(tmp_path, caplog):
    folder = str(tmp_path / "p")
    caplog.set_level(logging.INFO, logger="root2hdf5")
    with progress.Watcher(folder, files=1, shards=2, interval=0.05) as watcher:
        progress.mark(folder, "plan", 0, 0, 100, 2)
        time.sleep(0.2)
        progress.mark(folder, "read", 0, 0, 0, 50)
        time.sleep(0.2)
    read = [int(m.group(1)) for line in watcher.lines if (m := re.search(r"read (\d+) of", line))]
    assert read and read == sorted(read) and read[-1] == 50
    assert any("progress: read 50 of 100 entries" in r.getMessage() for r in caplog.records)


def test_a_local_run_reports_progress_and_the_exact_total(ntuples, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="root2hdf5")
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["input"]["step_size"] = 50
    report = run(config_from_dict(cfg), IN_MEMORY, progress_every=0.05)
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    total = report["total"]["events"]
    read = [int(m.group(1).replace(",", "")) for line in messages if (m := re.search(r"read ([\d,]+) of", line))]
    assert read and max(read) <= total
    assert messages[-1].startswith(f"progress: done: read {total:,} entries of 3 files, "
                                   f"wrote {report['total']['written']:,} jets")


def test_progress_only_where_workers_share_the_disk():
    assert runs_locally([]) and runs_locally(["--runner=DirectRunner"])
    assert not runs_locally(["--runner", "FlinkRunner"]) and not runs_locally(["--runner=SparkRunner"])
