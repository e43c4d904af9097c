"""The script a physicist would write: the same conversion in one process with uproot, awkward, numpy and
h5py, the idioms of the tools this project replaces. Everything is held in memory, shuffled with one
permutation per split, and written to train/val/test.h5.

    python bench/peer.py --out DIR --compression lzf FILE [FILE ...]     (per-event layout, synthetic names)
"""
from __future__ import annotations

import argparse
import json
import os
import time

import awkward as ak
import h5py
import numpy as np
import uproot

JET = ["jet_pt", "jet_eta", "jet_phi", "jet_E"]
CONSTIT = ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"]
EVENT = ["rho", "NPV"]


def convert_chunk(chunk, max_constituents: int):
    order = ak.argsort(chunk["jet_pt"], axis=1, ascending=False)[:, :2]
    jets = np.stack([ak.to_numpy(ak.flatten(chunk[b][order])) * (1e-3 if b in ("jet_pt", "jet_E") else 1)
                     for b in JET] + [np.repeat(ak.to_numpy(chunk[b]), ak.num(order)) for b in EVENT], axis=1)
    constituents = {b: ak.flatten(chunk[b][order], axis=1) for b in CONSTIT}
    by_pt = ak.argsort(constituents["jet_constit_pt"], axis=1, ascending=False)
    padded = {b: ak.to_numpy(ak.fill_none(ak.pad_none(c[by_pt], max_constituents, clip=True), 0.0))
              for b, c in constituents.items()}
    mask = ak.to_numpy(ak.fill_none(ak.pad_none(ak.ones_like(constituents["jet_constit_pt"], dtype=bool)[by_pt],
                                                max_constituents, clip=True), False))
    pt = padded["jet_constit_pt"] * 1e-3
    features = np.stack([pt * np.cos(padded["jet_constit_phi"]), pt * np.sin(padded["jet_constit_phi"]),
                         pt * np.sinh(padded["jet_constit_eta"]), padded["jet_constit_e"] * 1e-3], axis=-1)
    events = np.repeat(ak.to_numpy(chunk["eventNumber"]).astype(np.int64), ak.num(order))
    return features.astype(np.float32), mask, jets.astype(np.float32), events


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--tree", default="IsolatedJet_tree")
    parser.add_argument("--out", required=True)
    parser.add_argument("--compression", default="lzf")
    parser.add_argument("--max-constituents", type=int, default=80)
    parser.add_argument("--step", type=int, default=50_000)
    args = parser.parse_args()
    begin = time.perf_counter()
    parts = []
    for path in args.files:
        for chunk in uproot.iterate(f"{path}:{args.tree}", JET + CONSTIT + EVENT + ["eventNumber"],
                                    step_size=args.step):
            parts.append(convert_chunk(chunk, args.max_constituents))
    features, mask, jets, events = (np.concatenate(x) for x in zip(*parts))
    u = (events * 2654435761 % 2**32) / 2**32  # split by event
    split = np.where(u < 0.8, 0, np.where(u < 0.9, 1, 2))
    rng = np.random.default_rng(1)
    os.makedirs(args.out, exist_ok=True)
    options = {} if args.compression == "none" else {"compression": args.compression}
    for index, name in enumerate(("train", "val", "test")):
        rows = rng.permutation(np.flatnonzero(split == index))
        with h5py.File(os.path.join(args.out, f"{name}.h5"), "w") as handle:
            columns = (("constituents", features), ("mask", mask), ("jets", jets), ("event_number", events))
            for dataset, values in columns:
                handle.create_dataset(dataset, data=values[rows],
                                      chunks=(min(256, max(len(rows), 1)), *values.shape[1:]),
                                      **options)
    print(json.dumps({"jets": int(len(jets)), "seconds": time.perf_counter() - begin}))


if __name__ == "__main__":
    main()
