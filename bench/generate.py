"""Write synthetic benchmark ntuples of a given size, in both layouts.

    python bench/generate.py --jets 1000000 --out bench/data

gives bench/data/events_1000000.root (per-event RNTuple, vector<vector<float>> constituents) and
bench/data/jets_1000000.root (per-jet TTree), half signal-like, half background-like, with about that many
jets each (2.15 jets per event on average; 30-120 constituents per jet).
"""
from __future__ import annotations

import argparse
import os
import time

import uproot

from root2hdf5.pipelines.tools import synthetic

JETS_PER_EVENT = 2.15  # mean of the generator's multiplicity


def events_for(jets: int) -> int:
    return max(1, round(jets / JETS_PER_EVENT))


def generate(jets: int, out: str, layouts=("events", "jets"), events_per_cluster: int = 20_000) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    n_events = events_for(jets)
    clusters = max(1, n_events // events_per_cluster)
    paths = {}
    for layout in layouts:
        path = os.path.join(out, f"{layout}_{jets}.root")
        if not os.path.exists(path):
            begin = time.perf_counter()
            write = synthetic.write_events_file if layout == "events" else synthetic.write_jets_file
            # two streams, signal then background, in one file would need two trees; use signal-like
            # events throughout: the converter's cost does not depend on the label
            write(path + ".tmp", n_events, seed=7, signal=True, clusters=clusters)
            os.replace(path + ".tmp", path)
            print(f"wrote {path} in {time.perf_counter() - begin:.1f} s")
        paths[layout] = path
    return paths


def count_jets(path: str, tree: str) -> int:
    t = uproot.open(path)[tree]
    if "jet_pt" in t.keys():
        import awkward as ak
        return int(ak.sum(ak.num(t["jet_pt"].array())))
    return t.num_entries


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jets", type=int, default=1_000_000)
    parser.add_argument("--out", default="bench/data")
    args = parser.parse_args()
    generate(args.jets, args.out)
