"""The per-stage timer of bench/run.py --stages: inert unless ROOT2HDF5_STAGE_TIMES is set, and then every
process of a run (driver and Beam workers) leaves its CPU seconds per stage."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from root2hdf5.transforms.core import stage_times
from root2hdf5.transforms.physics import padding
from tests.conftest import TWO_PROCESSES, events_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_inert_by_default():
    assert os.environ.get(stage_times.ENV) is None
    assert not stage_times._installed
    assert not getattr(padding.pad_constituents, "_stage_timed", False)


def test_every_process_of_a_run_reports_its_stages(ntuples, tmp_path):
    import yaml

    folder = tmp_path / "stages"
    folder.mkdir()
    cfg = events_config(ntuples, tmp_path / "out")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, **{stage_times.ENV: str(folder)})
    subprocess.run([sys.executable, "-m", "root2hdf5", "run", str(tmp_path / "c.yaml"), "-q", *TWO_PROCESSES],
                   cwd=REPO, env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (folder / "stages.jsonl").read_text().splitlines()]
    # the workers are forked from the fork server (pipelines/runners/forks.py), which only imports and forks
    assert sorted(r["role"] for r in records) == ["driver", "fork server", "worker", "worker"]
    assert [r["stages"] for r in records if r["role"] == "fork server"] == [{}]
    stages = {label for r in records for label in r["stages"]}
    assert {"read", "padding", "HDF5 write", "statistics (shard_moments)", "accounting (_count_rows)",
            "driver: run", "driver: stop workers"} <= stages
    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import stages as table
    finally:
        sys.path.pop(0)
    rows, _ = table.table(records)
    assert rows[-1][1] == sum(r["cpu"] for r in records) and all(value >= 0 for _, value in rows)
