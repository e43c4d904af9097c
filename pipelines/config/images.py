"""Resolution of `images:`: each entry checked, its dense defaults filled in, and turned into an ImageSpec."""
from __future__ import annotations

import math

from root2hdf5.pipelines.config.loader import unique_names
from root2hdf5.pipelines.config.schema import Config, ImageConfig
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import DATASETS, NAME
from root2hdf5.transforms.physics.images import ImageSpec

_DENSE_DEFAULTS = {"channels": ["pt"], "normalize": False, "dtype": "float32"}


def resolve(cfg: Config) -> None:
    if not cfg.images:
        return
    specs = image_specs(cfg)
    if cfg.record == "event" or not cfg.input.constituent_branches:
        raise ConfigError("images: need input.constituent_branches (images are made of a jet's constituents)")
    roles = cfg.kinematics.constituents
    for i, spec in enumerate(specs):
        needed = {"eta", "phi"} | ({"pt"} if spec.frame == "angular" or "pt" in spec.channels or
                                   ("e" in spec.channels and "e" not in roles) else set())
        missing = sorted(needed - set(roles))
        if missing:
            raise ConfigError(f"images[{i}] ({spec.name}): needs the constituent {missing} branches; name them "
                              "under kinematics.constituents")
    if cfg.output.format != "hdf5":
        raise ConfigError("images: are written to HDF5 (output.format hdf5); Parquet has no n-dimensional columns")
    taken = {*DATASETS, cfg.output.constituents_name, cfg.model.output if cfg.model else "scores"}
    clash = sorted(spec.name for spec in specs if spec.name in taken)
    if clash:
        raise ConfigError(f"images: names {clash} are taken by other datasets; choose other names")


def image_specs(cfg: Config) -> tuple[ImageSpec, ...]:
    """Every entry of `images:` as a spec; names must be unique."""
    specs = tuple(image_spec(item, f"images[{i}]") for i, item in enumerate(cfg.images))
    unique_names(specs, "images")
    return specs


def image_spec(item: ImageConfig, where: str) -> ImageSpec:
    """One entry, checked; the dense-only keys get their defaults (and are refused for pixel images)."""
    if not NAME.fullmatch(item.name):
        raise ConfigError(f"{where}.name: {item.name!r} must be a non-empty string of letters, digits and _ . + - "
                          "(it names the output dataset)")
    for key, default in _DENSE_DEFAULTS.items():
        if item.kind == "pixels" and getattr(item, key) is not None:
            raise ConfigError(f"{where}.{key}: only for kind: dense (a pixels image stores pixel indices, not values)")
        if item.kind == "dense" and getattr(item, key) is None:
            setattr(item, key, list(default) if isinstance(default, list) else default)
    if len(item.bins) != 2 or any(b < 1 for b in item.bins):
        raise ConfigError(f"{where}.bins: expected two positive integers [n_eta, n_phi], got {item.bins!r}")
    if len(item.range) != 2 or any(len(r) != 2 for r in item.range):
        raise ConfigError(f"{where}.range: expected [[eta_lo, eta_hi], [phi_lo, phi_hi]] (numbers), got {item.range!r}")
    for axis, (lo, hi) in zip(("eta", "phi"), item.range):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"{where}.range: the {axis} range must be finite with lo < hi, got [{lo}, {hi}]")
    if item.kind == "dense":
        if not item.channels:
            raise ConfigError(f"{where}.channels: expected a non-empty list of pt, e, count, got {item.channels!r}")
        if len(set(item.channels)) != len(item.channels):
            raise ConfigError(f"{where}.channels: {item.channels!r} lists a channel twice")
        return ImageSpec(item.name, item.kind, tuple(item.bins), tuple(tuple(r) for r in item.range), item.frame,
                         tuple(item.channels), item.normalize, item.dtype)
    return ImageSpec(item.name, item.kind, tuple(item.bins), tuple(tuple(r) for r in item.range), item.frame)
