"""Preprocessing: turn padded branches into the output features.

Outputs: `constituents` (n, max, F), `jets` (n, J) and, when jet collections are configured,
`jet_collections` (n, C, K): several jet collections (reco, calibrated, truth ...) with the same feature
list, stacked.

`preprocess.constituents`, `preprocess.jets` and `jet_collections.preprocess` name one or more functions,
built-in (transforms.physics.library, plus `raw` and `cartesian` here), presets (`lognorm_angular`), or
`module:function`; their outputs are concatenated in order. A function takes `Inputs` and returns
`{feature name: array}`. Before any function runs, the branches in `preprocess.scaled_branches` are
multiplied by `unit_scale` (e.g. 0.001 for MeV -> GeV); after, `preprocess.scale` multiplies named output
features, and masked constituent slots are set to 0 whatever the function did.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.errors import ConfigError, InputError
from root2hdf5.transforms.physics import kinematics, library
from root2hdf5.transforms.physics.images import compute as compute_image


@dataclass
class Inputs:
    """What a preprocessing function receives.

    arrays:    name -> array, (n, max) for constituents or (n,) for jets, already unit-scaled.
    roles:     kinematic role ('pt', 'eta', 'phi', 'e', 'm', ...) -> key of `arrays`.
    mask:      (n, max) bool, True for real constituents (constituent functions only).
    jets:      jet-level arrays by branch name, unit-scaled (constituent functions only), e.g. for
               features relative to the jet axis.
    jet_roles: roles of `jets`.
    """

    arrays: dict[str, np.ndarray]
    roles: dict[str, str]
    mask: np.ndarray | None = None
    jets: dict[str, np.ndarray] = field(default_factory=dict)
    jet_roles: dict[str, str] = field(default_factory=dict)

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


CONSTITUENT_BUILTINS: dict[str, Function] = {"raw": raw, "cartesian": cartesian, **library.CONSTITUENT_FUNCTIONS}
JET_BUILTINS: dict[str, Function] = {"raw": raw, "cartesian": cartesian, **library.JET_FUNCTIONS}
BUILTINS = {"constituents": CONSTITUENT_BUILTINS, "jets": JET_BUILTINS}


def expand_presets(specs) -> list[str]:
    out = []
    for spec in specs:
        out.extend(library.PRESETS.get(spec, [spec]))
    return out


def resolve_function(spec: str, kind: str = "constituents") -> Function:
    """A built-in of `kind` ('constituents' or 'jets') by name, or `package.module:function`."""
    if spec in BUILTINS[kind]:
        return BUILTINS[kind][spec]
    if ":" not in spec:
        other = "jets" if kind == "constituents" else "constituents"
        where = f"; it is a {other} function" if spec in BUILTINS[other] else ""
        raise ConfigError(f"preprocessing {spec!r} is not a built-in {kind} function{where} (built-ins: "
                          f"{', '.join(BUILTINS[kind])}; presets: {', '.join(library.PRESETS)})")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"preprocessing {spec!r}: cannot import module {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"preprocessing {spec!r}: module {module_name!r} has no function {attr!r}")
    return fn


def apply_functions(specs, inputs: Inputs, shape: tuple[int, ...], kind: str) -> dict[str, np.ndarray]:
    """Run the functions, check what they return, and merge their features in order."""
    features: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for spec in expand_presets(specs):
        result = resolve_function(spec, kind)(inputs)
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
class JetCollections:
    """Jet collections stacked with the same fields: name -> one branch per field."""

    fields: tuple[str, ...]
    branches: tuple[tuple[str, tuple[str, ...]], ...]
    functions: tuple[str, ...] = ("raw",)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.branches]

    def all_branches(self) -> list[str]:
        return [b for _, bs in self.branches for b in bs]


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
    feature_scale: tuple[tuple[str, float], ...] = ()
    collections: JetCollections | None = None
    images: tuple = ()  # transforms.physics.images.ImageSpec, made from the unit-scaled constituents
    integer_branches: tuple[str, ...] = ()  # written unconverted to `jets_int`

    def _scaled(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scale = np.float32(self.unit_scale)
        return {name: (np.asarray(values, np.float32) * scale if name in self.scaled_branches
                       else np.asarray(values, np.float32))
                for name, values in arrays.items()}

    def prepare(self, branches: dict, mask: np.ndarray | None) -> tuple[dict, Inputs | None]:
        """The unit-scaled jet branches and constituent Inputs, shared by the features and the images."""
        jets = self._scaled({name: branches[name] for name in self.jet_branches})
        inputs = (Inputs(self._scaled({name: branches[name] for name in self.constituent_branches}),
                         self.constituent_roles, mask, jets, self.jet_roles) if self.constituent_branches else None)
        return jets, inputs

    def _feature_dicts(self, branches: dict, mask: np.ndarray | None, n: int, prepared=None) -> dict[str, dict]:
        jets, inputs = prepared or self.prepare(branches, mask)
        out = {}
        if inputs is not None:
            out["constituents"] = apply_functions(self.constituent_functions, inputs,
                                                  (n, self.max_constituents), "constituents")
        out["jets"] = apply_functions(self.jet_functions, Inputs(jets, self.jet_roles), (n,), "jets")
        if self.collections is not None:
            roles = kinematics.infer_roles(list(self.collections.fields))
            per_collection = []
            for name, names in self.collections.branches:
                scaled = self._scaled({b: branches[b] for b in names})
                arrays = {f: scaled[b] for f, b in zip(self.collections.fields, names)}
                per_collection.append(apply_functions(self.collections.functions, Inputs(arrays, roles), (n,),
                                                      "jets"))
            out["jet_collections"] = per_collection
        return out

    def _check_scale(self, names: dict[str, list[str]]):
        produced = {f for features in names.values() for f in features}
        unknown = [f for f, _ in self.feature_scale if f not in produced]
        if unknown:
            raise ConfigError(f"preprocess.scale: {unknown} are not output features (features: {sorted(produced)})")

    def features(self, branches: dict, mask: np.ndarray | None, n: int, prepared=None) -> dict[str, np.ndarray]:
        """The feature datasets, float32: constituents (n, max, F), jets (n, J), jet_collections (n, C, K)."""
        out = {}
        for dataset, feats in self._feature_dicts(branches, mask, n, prepared).items():
            if dataset == "jet_collections":
                out[dataset] = np.stack([self._stack(f, (n,)) for f in feats], axis=1)
            elif dataset == "constituents":
                out[dataset] = self._stack(feats, (n, self.max_constituents), mask)
            else:
                out[dataset] = self._stack(feats, (n,))
        return out

    def extras(self, branches: dict, mask: np.ndarray | None, prepared=None) -> tuple[dict, dict[str, int]]:
        """Integer branches as `jets_int` (n, K) int64, and the images; plus the number of constituents
        outside each image's range."""
        out, outside = {}, {}
        if self.integer_branches:
            out["jets_int"] = np.stack([np.asarray(branches[b]).astype(np.int64) for b in self.integer_branches],
                                       axis=1)
        if self.images:
            _, inputs = prepared or self.prepare(branches, mask)
            for spec in self.images:
                out[spec.name], outside[spec.name] = compute_image(spec, inputs)
        return out, outside

    def _trusted(self) -> bool:
        """Built-ins give exact +0 in padded slots (their inputs are 0 there); user functions may not."""
        return all(spec in BUILTINS["constituents"] or spec in library.PRESETS
                   for spec in self.constituent_functions)

    def _stack(self, feats: dict, shape: tuple[int, ...], mask: np.ndarray | None = None) -> np.ndarray:
        """Interleave the features into one float32 array, scaled, with padded slots exactly 0."""
        scale = dict(self.feature_scale)
        out = np.empty((*shape, len(feats)), np.float32)
        zero = np.float32(0)
        for i, (name, values) in enumerate(feats.items()):
            if name in scale:
                values = values * np.float32(scale[name])
            if mask is None:
                out[..., i] = values
            elif self._trusted():
                np.multiply(values, mask, out=out[..., i], casting="unsafe")
            else:
                out[..., i] = np.where(mask, values, zero)
        return out

    def feature_names(self) -> dict[str, list[str]]:
        """Names of the features of each dataset, found by running the functions on zero jets."""
        empty = {name: np.zeros((0, self.max_constituents), np.float32) for name in self.constituent_branches}
        empty.update({name: np.zeros(0, np.float32) for name in self.jet_branches})
        if self.collections is not None:
            empty.update({name: np.zeros(0, np.float32) for name in self.collections.all_branches()})
        mask = np.zeros((0, self.max_constituents), bool)
        names = {}
        for dataset, feats in self._feature_dicts(empty, mask, 0).items():
            if dataset == "jet_collections":
                names[dataset] = list(feats[0])
                if any(list(f) != names[dataset] for f in feats):
                    raise ConfigError("jet_collections: the collections give different feature names "
                                      f"{[list(f) for f in feats]}; their fields must match")
            else:
                names[dataset] = list(feats)
        self._check_scale(names)
        return names


@beam.typehints.with_output_types(RowBatch)
class Preprocess(beam.DoFn):
    """RowBatch with padded branches -> `data['constituents']`, `data['jets']` (and `jet_collections`);
    the input branches are dropped."""

    def __init__(self, spec: PreprocessSpec):
        self.spec = spec

    def process(self, batch: RowBatch):
        try:
            mask = batch.data.get("mask")
            # an overflow to Inf is not worth a warning: CheckWrittenFinite applies input.on_nonfinite to it next
            with np.errstate(over="ignore"):
                prepared = self.spec.prepare(batch.branches, mask)
                batch.data.update(self.spec.features(batch.branches, mask, len(batch), prepared))
                extras, outside = self.spec.extras(batch.branches, mask, prepared)
            batch.data.update(extras)
            for name, count in outside.items():
                batch.stats[f"image_outside/{name}"] += int(count)
        except (ConfigError, InputError) as err:
            raise type(err)(f"{batch.path}: {err}") from None
        batch.branches = {}
        yield batch
