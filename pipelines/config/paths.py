"""Relative paths in a config file are taken from the file's folder, so a config runs from any directory.

This applies to what the YAML names on disk: `samples[].files`, `samples[].friends`, `model.path` and the
`map` of variation sizes. Absolute paths and URLs (`root://`, `s3://` ...) stay as written; values given with
`--set` are taken from the working directory, as a shell user expects. `output.dir` is where the results go,
not an input, and stays relative to the working directory.
"""
from __future__ import annotations

import os

from root2hdf5.transforms.read.sources import is_url


def _resolved(base: str, path):
    if not isinstance(path, str) or not path or is_url(path) or os.path.isabs(path) or path.startswith("~"):
        return path
    return os.path.normpath(os.path.join(base, path))


def _map(base: str, size):
    """A variation size's `map: file.root:hist` (also under eta/phi of a position size)."""
    if isinstance(size, dict):
        if isinstance(size.get("map"), str) and ":" in size["map"].strip(":"):
            path, hist = size["map"].rsplit(":", 1)
            size["map"] = f"{_resolved(base, path)}:{hist}"
        for key in ("eta", "phi"):
            _map(base, size.get(key))


def relative_to(data: dict, config_file: str) -> dict:
    """`data` (the YAML of `config_file`, changed in place) with its relative input paths joined to the
    config file's folder."""
    base = os.path.dirname(os.path.abspath(config_file))
    for sample in data.get("samples") or []:
        if not isinstance(sample, dict):
            continue
        files = sample.get("files")
        if isinstance(files, (str, list)):
            sample["files"] = [_resolved(base, f) for f in ([files] if isinstance(files, str) else files)]
        friends = sample.get("friends")
        if isinstance(friends, dict):
            sample["friends"] = {name: [_resolved(base, f) for f in ([v] if isinstance(v, str) else v or [])]
                                 for name, v in friends.items()}
    model = data.get("model")
    if isinstance(model, dict) and "path" in model:
        model["path"] = _resolved(base, model["path"])
    for variation in data.get("variations") or []:
        if isinstance(variation, dict):
            _map(base, variation.get("size"))
    return data
