"""Expand a sample's `files:` entries into an ordered list of input files.

An entry is a local path or glob (a config file's relative paths are joined to its folder when it loads,
see pipelines.config.paths), a URL (`root://`, `https://`, `s3://` ... opened by uproot through
fsspec), or a text file (`.txt`/`.list`) listing one path or URL per line as the older tools used (blank
lines and `#` comments ignored; relative lines are relative to the list file). A local path that exists is
taken as it is written, also when it holds glob characters (`weird[1].root`); only then is it a glob. The
order is deterministic (globs sorted, lists in their order), because a file's position is part of every
jet's identity.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from root2hdf5.transforms.core.errors import InputError

LIST_SUFFIXES = (".txt", ".list")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class InputFile:
    """One input file of one sample; `sample` and `file` are indices that go into each jet's `source`."""

    sample: int
    file: int
    path: str
    tree: str
    sample_name: str = ""


def is_url(path: str) -> bool:
    return bool(_URL.match(path))


def _read_list(path: str) -> list[str]:
    base = os.path.dirname(path)
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line:
                entries.append(line if is_url(line) or os.path.isabs(line) else os.path.join(base, line))
    return entries


def _looked_in(path: str) -> str:
    """The directory a relative or absolute local path was looked for in, for error messages."""
    return f" (looked in {os.path.dirname(os.path.abspath(path))})"


def _expand_entry(entry: str, sample: str, remote_globs: bool = True) -> list[str]:
    if is_url(entry):
        if glob.has_magic(entry) and remote_globs:
            import fsspec  # only needed for remote globs

            fs, _, paths = fsspec.get_fs_token_paths(entry)
            matches = sorted(fs.unstrip_protocol(p) for p in paths)
            if not matches:
                raise InputError(f"sample {sample!r}: no files match {entry!r}")
            return matches
        return [entry]
    if entry.endswith(LIST_SUFFIXES):
        if not os.path.isfile(entry):
            raise InputError(f"sample {sample!r}: list file {entry!r} does not exist{_looked_in(entry)}")
        paths = []
        for line in _read_list(entry):
            paths.extend(_expand_entry(line, sample, remote_globs))
        if not paths:
            raise InputError(f"sample {sample!r}: list file {entry!r} names no files")
        return paths
    if glob.has_magic(entry) and not os.path.exists(entry):
        matches = sorted(glob.glob(entry))
        if not matches:
            raise InputError(f"sample {sample!r}: no files match {entry!r}{_looked_in(entry)}")
        return matches
    if not os.path.exists(entry):
        raise InputError(f"sample {sample!r}: input file {entry!r} does not exist{_looked_in(entry)}")
    return [entry]


def expand_files(samples) -> list[InputFile]:
    """All input files of all samples (config `SampleConfig`s), in a deterministic order."""
    result = []
    for s_index, sample in enumerate(samples):
        paths: list[str] = []
        for entry in sample.files:
            paths.extend(_expand_entry(entry, sample.name))
        seen = set()
        for path in paths:
            key = path if is_url(path) else os.path.realpath(path)
            if key in seen:
                raise InputError(f"sample {sample.name!r}: file {path!r} is listed twice; its jets would be "
                                 "written twice")
            seen.add(key)
        result.extend(InputFile(s_index, f_index, path, sample.tree, sample.name)
                      for f_index, path in enumerate(paths))
    return result


def shared_files(samples) -> list[tuple[str, str, str]]:
    """(file as written, sample, other sample) for each input file that two samples list, however it is spelled
    (relative or absolute, `./x`, through a symlink): its jets would be written once per sample, with both
    labels. Checked when the config loads; entries that do not expand yet (a missing file) are left to
    expand_files, remote globs are not listed."""
    owner: dict[str, str] = {}
    shared = []
    for sample in samples:
        for entry in sample.files:
            try:
                paths = _expand_entry(entry, sample.name, remote_globs=False)
            except (InputError, OSError):
                continue
            for path in paths:
                key = path if is_url(path) else os.path.realpath(path)
                first = owner.setdefault(key, sample.name)
                if first != sample.name:
                    shared.append((path if key == path else f"{path} ({key})", first, sample.name))
    return shared
