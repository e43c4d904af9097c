"""Padding kernel on real constituents: CPU ns per constituent of the per-jet row sort (the pipeline's path
for float32 keys) against the one-sort path it replaced, and a check that both give the same bytes.

    python bench/padding.py [--repeat 7] [--max 80] [FILE ...]     (default: the shared Pythia TTrees)

Jets are the two leading jets per event of the shared per-event files (jet_constit_pt/eta/phi/e), in
batches of up to 16,384 jets as the pipeline pads them; sorted by pT, min_pt 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import awkward as ak
import numpy as np
import uproot

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from root2hdf5.transforms.core.batch import Jagged  # noqa: E402
from root2hdf5.transforms.physics import padding  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")
BRANCHES = ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"]
BATCH = 16_384


def batches(files: list[str]) -> list[dict[str, Jagged]]:
    columns = {b: [] for b in BRANCHES}
    for path in files:
        arrays = uproot.open(path)["IsolatedJet_tree"].arrays(BRANCHES)
        for b in BRANCHES:
            columns[b].append(ak.flatten(arrays[b][:, :2], axis=1))  # leading two jets, one list per jet
    jets = {b: ak.concatenate(parts) for b, parts in columns.items()}
    n = len(jets[BRANCHES[0]])
    return [{b: Jagged.from_awkward(jets[b][i:i + BATCH]) for b in BRANCHES} for i in range(0, n, BATCH)]


def one_sort(jagged, max_len):
    return padding._pad_by_one_sort(jagged, jagged["jet_constit_pt"], max_len)


def row_sort(jagged, max_len):
    return padding.pad_constituents(jagged, "jet_constit_pt", max_len)


def cpu_ns(fn, data, max_len, repeat):
    best = []
    for _ in range(repeat):
        begin = time.process_time()
        for jagged in data:
            fn(jagged, max_len)
        best.append(time.process_time() - begin)
    return float(np.median(best))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--max", type=int, default=80)
    args = parser.parse_args()
    files = args.files or [os.path.join(SHARED, f"jets_events_{k}.root") for k in ("zprime", "dijet")]
    data = batches(files)
    constituents = sum(int(j["jet_constit_pt"].counts.sum()) for j in data)
    jets = sum(len(j["jet_constit_pt"]) for j in data)
    for jagged in data:
        a, am = row_sort(jagged, args.max)
        b, bm = one_sort(jagged, args.max)
        assert am.tobytes() == bm.tobytes() and all(a[k].tobytes() == b[k].tobytes() for k in a), "results differ"
    print(f"{jets:,} jets, {constituents:,} constituents ({constituents / jets:.1f} per jet), "
          f"{len(data)} batches, {args.max} slots; identical bytes: yes")
    for name, fn in (("one sort of the batch (before)", one_sort), ("per-jet row sort (now)", row_sort)):
        seconds = cpu_ns(fn, data, args.max, args.repeat)
        print(f"{name:32s} {seconds * 1e9 / constituents:6.1f} ns per constituent (CPU, median of {args.repeat})")


if __name__ == "__main__":
    main()
