"""The per-stage CPU table of a run: python bench/stages.py FOLDER, after a run with ROOT2HDF5_STAGE_TIMES=FOLDER
(bench/run.py --stages does both). CPU seconds (user + system) summed over the driver and every worker.

Rows as in issue 19's profile: start-up (the driver until the runner starts, each worker until it first
imports root2hdf5, i.e. the interpreter, Beam and the harness; the fork server, whose workers start with
all that imported), reading (with uproot's inflate, decoding and
joining inside), the per-shard statistics and accounting, the HDF5 write, padding, the spill, the rest of
the per-jet work; "Beam and the rest" is what no stage claims (the runner, bundles, coders, the workers'
imports of uproot and awkward, the driver's planning and finalize waiting).
"""
from __future__ import annotations

import json
import os
import sys


def load(folder: str) -> list[dict]:
    with open(os.path.join(folder, "stages.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def table(records: list[dict]) -> tuple[list[tuple[str, float]], dict]:
    stages: dict[str, float] = {}
    for r in records:
        for label, (_, cpu, _) in r["stages"].items():
            stages[label] = stages.get(label, 0.0) + cpu
    total = sum(r["cpu"] for r in records)
    drivers = [r for r in records if r["role"] == "driver"]
    workers = [r for r in records if r["role"] == "worker"]
    startup = sum(r["marks"].get("driver: run (start)", r["cpu"]) for r in drivers)
    startup += sum(r["marks"].get("package imported", 0.0) for r in workers)
    startup += sum(r["cpu"] for r in records if r["role"] == "fork server")  # it imports, then only forks
    s = lambda *labels: sum(stages.get(label, 0.0) for label in labels)  # noqa: E731
    reading = s("read", "plan ranges")
    spill = s("spill: cut", "spill: write", "spill: read back and reorder")
    other = s("flatten", "non-finite check", "split batches", "select", "label", "features", "split and shard keys",
              "finalize")
    other += max(0.0, s("write shards") - s("HDF5 write", "accounting (_count_rows)", "statistics (shard_moments)",
                                            "spill: read back and reorder"))
    rows = [
        (f"start-up and imports ({len(records)} processes)", startup),
        (f"reading (inflate {s('read: inflate'):.2f}, vector<vector> decoding {s('read: vector<vector> decode'):.2f}"
         f", basket joining {s('read: basket join'):.2f})", reading),
        ("training statistics per shard (shard_moments)", s("statistics (shard_moments)")),
        ("HDF5 write", s("HDF5 write")),
        ("padding", s("padding")),
        ("per-shard accounting (_count_rows)", s("accounting (_count_rows)")),
        (f"spill (cut + write {s('spill: cut', 'spill: write'):.2f}, read back + reorder "
         f"{s('spill: read back and reorder'):.2f})", spill),
        ("features, flatten/select/label, hashing, finalize", other),
    ]
    rows.append(("Beam and the rest", total - sum(v for _, v in rows)))
    rows.append(("**total (all processes)**", total))
    extra = {"stop_workers_wall": sum(r["stages"].get("driver: stop workers", [0, 0, 0])[2] for r in drivers),
             "processes": len(records)}
    return rows, extra


def markdown(rows) -> str:
    return "\n".join(["| stage | CPU s |", "|---|---|"] + [f"| {label} | {value:.2f} |" for label, value in rows])


if __name__ == "__main__":
    rows, extra = table(load(sys.argv[1]))
    print(markdown(rows))
    print(f"\nworkers stopped in {extra['stop_workers_wall']:.2f} s (driver wall)")
