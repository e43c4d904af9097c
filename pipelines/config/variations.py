"""Resolution of `variations:`: each entry checked against its kind, its maps read, and turned into a
VariationSpec; the constituent roles each kind needs are checked here, not on the workers."""
from __future__ import annotations

import math
import os

from root2hdf5.pipelines.config.loader import unique_names
from root2hdf5.pipelines.config.schema import Config, PositionSizeConfig, SizeMapConfig, VariationConfig
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import NAME
from root2hdf5.transforms.physics.size_maps import SizeMap
from root2hdf5.transforms.physics.variations import CARTESIAN_ROLES, LIMITS, VariationSpec


def resolve(cfg: Config) -> None:
    if not cfg.variations:
        return
    if cfg.record == "event" or not cfg.input.constituent_branches:
        raise ConfigError("variations: vary constituents, so they need input.constituent_branches (record: jet)")
    roles = cfg.kinematics.constituents
    for i, spec in enumerate(variation_specs(cfg)):
        where = f"variations[{i}] ({spec.name})"
        missing = sorted(set(spec.required_roles()) - set(roles))
        if missing:
            raise ConfigError(f"{where}: needs the constituent {missing} branches; name them under "
                              "kinematics.constituents")
        if spec.name == "nominal":
            raise ConfigError(f"variations[{i}].name: 'nominal' is the unvaried set; choose another name")
        cartesian = [roles[r] for r in CARTESIAN_ROLES if r in roles]
        if spec.kind == "position" and cartesian:
            raise ConfigError(f"{where}: smears eta and phi, but the constituents also have cartesian branches "
                              f"({', '.join(cartesian)}) it would leave stale; drop them from the constituent "
                              "branches or roles")


def variation_specs(cfg: Config, base_dir: str | None = None) -> tuple[VariationSpec, ...]:
    """Every entry of `variations:` as a spec, with unique names (each names its own output)."""
    specs = tuple(variation_spec(item, f"variations[{i}]", base_dir) for i, item in enumerate(cfg.variations))
    unique_names(specs, "variations")
    return specs


def variation_spec(item: VariationConfig, where: str = "variations[0]", base_dir: str | None = None) -> VariationSpec:
    """One entry, checked, with its maps read. Relative map paths are taken relative to `base_dir` when given
    (else the working directory)."""
    if not NAME.fullmatch(item.name):
        raise ConfigError(f"{where}.name: {item.name!r} must be a non-empty string of letters, digits and _ . + - "
                          "(it names the variation's output)")
    size = item.size
    if item.kind != "position":
        if isinstance(size, PositionSizeConfig):
            raise ConfigError(f"{where}.size: {{eta: ..., phi: ...}} is for kind: position; give a number or "
                              "{map: path/to/file.root:histname}")
        return VariationSpec(item.name, item.kind, _size(size, item.kind, f"{where}.size", base_dir))
    if isinstance(size, PositionSizeConfig):  # one size per coordinate
        return VariationSpec(item.name, item.kind, _size(size.eta, item.kind, f"{where}.size.eta", base_dir),
                             _size(size.phi, item.kind, f"{where}.size.phi", base_dir))
    both = _size(size, item.kind, f"{where}.size", base_dir)
    return VariationSpec(item.name, item.kind, both, both)


def _size(value: float | SizeMapConfig, kind: str, where: str, base_dir: str | None):
    """A constant or a map -> float | SizeMap, within the kind's limits."""
    low, high, meaning = LIMITS[kind]
    if not isinstance(value, SizeMapConfig):
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{where}: {kind} size must be {meaning}, got {value!r}")
        return value
    if ":" not in value.map.strip(":"):
        raise ConfigError(f"{where}.map: expected 'path/to/file.root:histname', got {value.map!r}")
    path, hist = value.map.rsplit(":", 1)  # the last colon: paths may hold one (root://host/..., C:\...)
    if not path or not hist:
        raise ConfigError(f"{where}.map: expected 'path/to/file.root:histname', got {value.map!r}")
    if base_dir is not None and "://" not in path and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    if not math.isfinite(value.times):
        raise ConfigError(f"{where}.times: expected a number, got {value.times!r}")
    if not (math.isfinite(value.pt_scale) and value.pt_scale > 0):
        raise ConfigError(f"{where}.pt_scale: expected a positive number, got {value.pt_scale!r}")
    size = SizeMap.load(path, hist, value.abs_eta, value.times, value.pt_scale, where)
    lo, hi = size.extreme()
    if lo < low or hi > high:
        raise ConfigError(f"{where}.map: {kind} size must be {meaning}; histogram {hist!r} in {path} (times "
                          f"{size.times:g}) gives values in [{lo:g}, {hi:g}]")
    return size
