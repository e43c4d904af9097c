"""Preprocessing: turn padded branches into the output features `constituents` (n, max, F) and `jets` (n, J).

`preprocess.constituents` and `preprocess.jets` name one or more functions, built-in or `module:function`,
whose outputs are concatenated in order. A function takes `Inputs` and returns `{feature name: array}`:
(n, max) arrays for constituents, (n,) arrays for jets. Before any function runs, the branches named in
`preprocess.scaled_branches` are multiplied by `unit_scale` (e.g. 0.001 for MeV -> GeV); after, masked
constituent slots are set to 0 whatever the function did, so padding is always zero.

Built-ins (more in the physics library):
  raw        the branches as configured (constituents: sorted, padded, masked)
  cartesian  (pt, eta, phi[, E]) -> px = pt cos(phi), py = pt sin(phi), pz = pt sinh(eta),
             E (the E branch, or pt cosh(eta) for massless constituents); other branches passed as-is
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import apache_beam as beam
import numpy as np

from transforms import kinematics
from transforms.batch import JetBatch
from transforms.errors import ConfigError, InputError


@dataclass
class Inputs:
    """What a preprocessing function receives.

    arrays: branch name -> array, (n, max) for constituents or (n,) for jets, already unit-scaled.
    roles:  kinematic role ('pt', 'eta', 'phi', 'e', 'm', ...) -> branch name.
    mask:   (n, max) bool, True for real constituents (constituent functions only).
    jets:   jet-level arrays by branch name, unit-scaled (constituent functions only), e.g. for
            features relative to the jet axis.
    """

    arrays: dict[str, np.ndarray]
    roles: dict[str, str]
    mask: np.ndarray | None = None
    jets: dict[str, np.ndarray] = field(default_factory=dict)

    def role(self, name: str) -> np.ndarray:
        if name not in self.roles:
            raise ConfigError(f"this preprocessing needs the {name!r} branch; name it under kinematics: in the "
                              f"config (found roles: {', '.join(self.roles) or 'none'})")
        return self.arrays[self.roles[name]]


Function = Callable[[Inputs], dict[str, np.ndarray]]


def raw(inputs: Inputs) -> dict[str, np.ndarray]:
    return dict(inputs.arrays)


def cartesian(inputs: Inputs) -> dict[str, np.ndarray]:
    pt, eta, phi = inputs.role("pt"), inputs.role("eta"), inputs.role("phi")
    prefix = kinematics.feature_prefix(inputs.roles["pt"], "pt")
    energy = inputs.arrays[inputs.roles["e"]] if "e" in inputs.roles else pt * np.cosh(eta)
    out = {
        f"{prefix}px": pt * np.cos(phi),
        f"{prefix}py": pt * np.sin(phi),
        f"{prefix}pz": pt * np.sinh(eta),
        f"{prefix}E": energy,
    }
    used = {inputs.roles[r] for r in ("pt", "eta", "phi", "e") if r in inputs.roles}
    out.update((name, values) for name, values in inputs.arrays.items() if name not in used)
    return out


BUILTINS: dict[str, Function] = {"raw": raw, "cartesian": cartesian}


def resolve_function(spec: str) -> Function:
    """A built-in by name, or `package.module:function` imported from the Python path."""
    if spec in BUILTINS:
        return BUILTINS[spec]
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"preprocessing {spec!r}: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"preprocessing {spec!r}: module {module_name!r} has no function {attr!r}")
    return fn


def apply_functions(specs: list[str], inputs: Inputs, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Run the functions, check what they return, and merge their features in order."""
    features: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for spec in specs:
        result = resolve_function(spec)(inputs)
        if not isinstance(result, dict):
            raise ConfigError(f"preprocessing {spec!r} returned {type(result).__name__}, expected a dict of "
                              "feature name -> array")
        for name, values in result.items():
            if name in features:
                raise ConfigError(f"feature {name!r} is produced by both {origin[name]!r} and {spec!r}")
            values = np.asarray(values)
            if values.shape != shape:
                raise ConfigError(f"preprocessing {spec!r}: feature {name!r} has shape {values.shape}, "
                                  f"expected {shape}")
            features[name] = values
            origin[name] = spec
    return features


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything the Preprocess step needs, resolved from the config."""

    constituent_functions: tuple[str, ...]
    jet_functions: tuple[str, ...]
    constituent_branches: tuple[str, ...]
    jet_branches: tuple[str, ...]  # jet branches then event branches: all become per-jet features
    constituent_roles: dict
    jet_roles: dict
    unit_scale: float = 1.0
    scaled_branches: tuple[str, ...] = ()
    max_constituents: int = 0

    def _scaled(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scale = np.float32(self.unit_scale)
        return {name: (np.asarray(values, np.float32) * scale if name in self.scaled_branches
                       else np.asarray(values, np.float32))
                for name, values in arrays.items()}

    def _feature_dicts(self, branches: dict, mask: np.ndarray | None, n: int) -> dict[str, dict]:
        jets = self._scaled({name: branches[name] for name in self.jet_branches})
        out = {}
        if self.constituent_branches:
            inputs = Inputs(self._scaled({name: branches[name] for name in self.constituent_branches}),
                            self.constituent_roles, mask, jets)
            out["constituents"] = apply_functions(list(self.constituent_functions), inputs,
                                                  (n, self.max_constituents))
        out["jets"] = apply_functions(list(self.jet_functions), Inputs(jets, self.jet_roles), (n,))
        return out

    def features(self, branches: dict, mask: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
        """{'constituents': (n, max, F) float32, 'jets': (n, J) float32} (constituents only if configured)."""
        out = {}
        for dataset, feats in self._feature_dicts(branches, mask, n).items():
            shape = (n, self.max_constituents) if dataset == "constituents" else (n,)
            stacked = np.stack(list(feats.values()), axis=-1) if feats else np.zeros((*shape, 0))
            out[dataset] = stacked.astype(np.float32, copy=False)
        if "constituents" in out:
            out["constituents"][~mask] = 0
        return out

    def feature_names(self) -> dict[str, list[str]]:
        """Names of the constituent and jet features, found by running the functions on zero jets."""
        empty = {name: np.zeros((0, self.max_constituents), np.float32) for name in self.constituent_branches}
        empty.update({name: np.zeros(0, np.float32) for name in self.jet_branches})
        mask = np.zeros((0, self.max_constituents), bool)
        return {dataset: list(feats) for dataset, feats in self._feature_dicts(empty, mask, 0).items()}


class Preprocess(beam.DoFn):
    """JetBatch with padded branches -> `data['constituents']`, `data['jets']`; input branches dropped."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec

    def process(self, batch: JetBatch):
        try:
            batch.data.update(self.spec.features(batch.branches, batch.data.get("mask"), len(batch)))
        except (ConfigError, InputError) as err:
            raise type(err)(f"{batch.path}: {err}") from None
        batch.branches = {}
        yield batch
