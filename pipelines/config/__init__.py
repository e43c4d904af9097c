"""The YAML config: a schema (one dataclass per block), a loader that checks every value's type, and a
resolution that checks what spans keys and fills in what is inferred.

    load_config(path) -> Config:  read YAML -> loader.build (types, choices, unknown keys)
                                  -> resolve.resolve (cross-key checks, inferred keys, the output features)

Every key is documented in docs/config.md (a test keeps the two in step).
"""
from __future__ import annotations

import os
from pathlib import Path

from root2hdf5.pipelines.config.loader import build, read_yaml, with_overrides
from root2hdf5.pipelines.config.paths import relative_to
from root2hdf5.pipelines.config.resolve import resolve
from root2hdf5.pipelines.config.schema import Config
from root2hdf5.transforms.core.errors import ConfigError

__all__ = ["Config", "config_from_dict", "load_config"]


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read, check and resolve a YAML config file; `overrides` are dotted keys (`--set output.dir=...`).
    Relative input paths in the file are taken from its folder, those in `overrides` from the working
    directory (pipelines.config.paths)."""
    return config_from_dict(relative_to(read_yaml(path), os.fspath(path)), source=os.fspath(path),
                            overrides=overrides)


def config_from_dict(data: dict, source: str = "config", overrides: dict | None = None) -> Config:
    data = with_overrides(data, overrides)
    if "samples" not in data:
        raise ConfigError(f"{source}: missing required key 'samples' (a list of name/files/tree/label)")
    return resolve(build(Config, data))
