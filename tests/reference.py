"""A deliberately naive converter, one Python loop iteration per event, jet and constituent.

It shares no code with the pipeline (only uproot to read, and the config as a dict), so end-to-end tests
can compare the pipeline's output with expectations computed independently.
"""
from __future__ import annotations

import glob
import math
import os

import h5py
import numpy as np
import uproot

MASK64 = (1 << 64) - 1


def splitmix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def hash_ints(seed: int, *values: int) -> int:
    h = splitmix(seed & MASK64)
    for v in values:
        h = splitmix(h ^ (v & MASK64))
    return h


def expected_split(seed: int, event: int, fractions: list[float]) -> int:
    u = (hash_ints(seed ^ 0x5EED5B1D, event) >> 11) / float(1 << 53)
    edge = 0.0
    for i, f in enumerate(fractions):
        edge += f
        if u < edge and f > 0:
            return i
    return max(i for i, f in enumerate(fractions) if f > 0)


def expand(entry: str) -> list[str]:
    if entry.endswith(".txt"):
        base = os.path.dirname(entry)
        lines = [l.split("#")[0].strip() for l in open(entry)]
        return [os.path.join(base, l) for l in lines if l]
    return sorted(glob.glob(entry)) if any(c in entry for c in "*?[") else [entry]


def _cartesian(pt, eta, phi, e):
    return [pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta), e]


def reference_jets(cfg: dict, selection) -> dict[tuple, dict]:
    """(sample, file, entry, jet index) -> expected per-jet values, for layouts `events` and `jets`.

    `selection` is a Python function of {branch: value} for one jet (event branches included).
    Supports preprocessing raw/cartesian for constituents and jets, unit_scale on energy-like branches.
    """
    inp = cfg["input"]
    con = cfg.get("constituents", {})
    pre = cfg.get("preprocess", {})
    n_max = con.get("max", 80)
    min_pt = con.get("min_pt", 0.0)
    scale = pre.get("unit_scale", 1.0)
    jet_b, con_b, evt_b = inp["jet_branches"], inp["constituent_branches"], inp.get("event_branches", [])
    energy_like = lambda b: b.rsplit("_", 1)[-1].lower() in {"pt", "e", "m", "px", "py", "pz", "energy", "mass", "et"}
    sc = lambda b, v: v * scale if energy_like(b) else v
    out = {}
    for s_i, sample in enumerate(cfg["samples"]):
        paths = [p for entry in sample["files"] for p in expand(entry)]
        for f_i, path in enumerate(paths):
            tree = uproot.open(path)[sample["tree"]]
            needed = list(dict.fromkeys(jet_b + con_b + evt_b + [inp["event_number"]]))
            rows = tree.arrays(needed, library="ak").tolist()
            for entry, row in enumerate(rows):
                if inp["layout"] == "events":
                    n_jets = len(row[jet_b[0]])
                    order = sorted(range(n_jets), key=lambda j: -row["jet_pt"][j])[: inp.get("leading_jets", 2)]
                    jets = [(j, {b: row[b][j] for b in jet_b + con_b}) for j in order]
                else:
                    jets = [(0, {b: row[b] for b in jet_b + con_b})]
                for j_index, jet in jets:
                    values = dict(jet)
                    values.update({b: row[b] for b in evt_b})
                    if not selection(values):
                        continue
                    sort_key = jet[con.get("sort_by", con_b[0])]
                    order = sorted(range(len(sort_key)), key=lambda k: -sort_key[k])[:n_max]
                    pt_branch = con_b[0]
                    slots = []
                    for k in order:
                        if jet[pt_branch][k] < min_pt:
                            slots.append(None)
                        else:
                            slots.append([sc(b, jet[b][k]) for b in con_b])
                    feats = []
                    for slot in slots:
                        if slot is None:
                            feats.append(None)
                        elif pre.get("constituents", "raw") == "cartesian":
                            feats.append(_cartesian(*slot))
                        else:
                            feats.append(slot)
                    n_feat = 4 if pre.get("constituents", "raw") == "cartesian" else len(con_b)
                    constituents = np.zeros((n_max, n_feat))
                    mask = np.zeros(n_max, bool)
                    for k, f in enumerate(feats):
                        if f is not None:
                            constituents[k] = f
                            mask[k] = True
                    jet_values = [sc(b, values[b]) for b in jet_b] + [sc(b, values[b]) for b in evt_b]
                    if pre.get("jets", "raw") == "cartesian":
                        pt, eta, phi = (sc(b, values[b]) for b in jet_b[:3])
                        e = pt * math.cosh(eta)
                        rest = [sc(b, values[b]) for b in jet_b[3:]] + [sc(b, values[b]) for b in evt_b]
                        jet_values = _cartesian(pt, eta, phi, e) + rest
                    out[(s_i, f_i, entry, j_index)] = {
                        "constituents": constituents, "mask": mask, "jets": np.array(jet_values),
                        "label": sample.get("label", 0), "event_number": int(row[inp["event_number"]]),
                    }
    return out


def read_output(out_dir: str, splits=("train", "val", "test")) -> dict[str, dict[str, np.ndarray]]:
    """Every dataset of every split file, read through the split file (virtual datasets)."""
    result = {}
    for split in splits:
        path = os.path.join(out_dir, f"{split}.h5")
        if os.path.exists(path):
            with h5py.File(path) as handle:
                result[split] = {name: handle[name][...] for name in handle}
                result[split]["_attrs"] = dict(handle.attrs)
                result[split]["_features"] = {n: list(handle[n].attrs["features"]) for n in handle
                                              if "features" in handle[n].attrs}
    return result
