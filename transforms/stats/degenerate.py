"""Degenerate input made loud: what makes a training set unusable although every count adds up.

* an event number with (almost) one value: every event hashes to the same split (Delphes' `Event` is the
  size of a TClonesArray, 1 in every entry); checked on the driver, on the first file of every sample;
* a configured split (fraction > 0) that ends up with no row;
* `norm.yaml` without a single value: the training split is empty;
* a feature that is constant (or entirely the default) over the training split: a warning only, since
  a constant input can be on purpose, but it is in `summary.json` and the log.

The first three stop the run with exit code != 0 unless the config lists them under `checks.allow`
(`few_event_numbers`, `empty_split`, `empty_norm`); they are then warnings.
"""
from __future__ import annotations

import numpy as np

MIN_DISTINCT_FRACTION = 0.01  # an event number with fewer distinct values than 1% of the entries read


def event_number_problem(values: np.ndarray, branch: str, where: str) -> str | None:
    """A message when `values` (the event numbers of the first entries of a file) have too few values."""
    n = len(values)
    if n < 2:
        return None
    distinct = len(np.unique(values))
    if distinct > 1 and distinct >= MIN_DISTINCT_FRACTION * n:
        return None
    return (f"{where}: input.event_number {branch!r} has {distinct} distinct value{'s' if distinct > 1 else ''} in "
            f"the first {n:,} entries (fewer than {MIN_DISTINCT_FRACTION:.0%} of them): the split hashes the event "
            "number, so (nearly) all events would go to one split; choose a branch that numbers the events")


def feature_warnings(norm: dict) -> list[str]:
    """One line per feature that has a single value over the training split (norm.yaml's min == max)."""
    out = []
    for dataset, features in (norm or {}).items():
        for name, entry in features.items():
            if entry.get("count") and entry.get("min") == entry.get("max"):
                out.append(f"feature {name!r} of {dataset!r} is {entry['min']:g} for every value in the training "
                           "split (constant, or entirely a default): it cannot help the training")
    return out


def split_problems(report: dict, configured: list[str], norm: dict | None, rows: str) -> list[dict]:
    """[{check, message}] for configured splits without rows and an empty norm.yaml."""
    out = []
    for split in configured:
        if report["splits"].get(split, {}).get(rows, 0) == 0:
            out.append({"check": "empty_split", "message": f"split {split!r} is configured but no {rows[:-1]} went "
                        "to it (too few events, or an event number with few values?)"})
    if norm is not None and not any(entry.get("count") for features in norm.values() for entry in features.values()):
        out.append({"check": "empty_norm", "message": "norm.yaml holds no statistics: the training split is empty"})
    return out
