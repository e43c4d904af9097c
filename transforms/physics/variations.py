"""Systematic variations of jet constituents: energy scale, energy resolution, efficiency, position.

A variation turns the constituents of a batch of jets (one `Jagged` per branch, as read, before sorting and
padding) into varied constituents, so that dropped constituents and changed pTs change the ordering and
padding exactly as a different detector would. Kinds (the *size* of each is a constant or an uncertainty
map looked up per constituent, see `SizeMap`):

- `energy_scale`:      every energy-like branch (pT, E, and m / px / py / pz if the constituents have them)
                       is multiplied by (1 + size); a negative size is a "down" variation, size >= -1.
- `energy_resolution`: the same branches are multiplied by max(1 + size * N(0, 1), 0), a Gaussian smearing
                       of relative width `size` that never makes an energy negative.
- `efficiency`:        each constituent is dropped with probability `size`; the kept ones are compacted
                       (new content / starts / counts), consistently for every branch.
- `position`:          η += size_η * N(0, 1), φ += size_φ * N(0, 1) wrapped into (-π, π]. pT is kept; an E
                       branch is recomputed so that the constituent's mass is unchanged
                       (E'² = E² + pT² (cosh² η' - cosh² η)): for massless clusters E' = pT cosh η'.

Map lookups and the Gaussian widths use the *nominal* (input) pT and η of the constituent.

Config form (validated by pipelines.config.variations; names must be unique):

    variations:
      - {name: jes_up,   kind: energy_scale,      size: 0.05}
      - {name: jes_down, kind: energy_scale,      size: -0.05}
      - {name: jes_map,  kind: energy_scale,      size: {map: unc.root:jes, times: -1}}   # down by the map
      - {name: jer,      kind: energy_resolution, size: {map: unc.root:jer_pt_eta, abs_eta: true}}
      - {name: eff,      kind: efficiency,        size: 0.02}
      - {name: pos,      kind: position,          size: {eta: 0.005, phi: {map: unc.root:dphi, pt_scale: 0.001}}}

Random numbers are counter-based (transforms.physics.randoms): the same for a constituent however the jets
are batched or spread over workers; renaming a variation changes its numbers (on purpose: it is a different
variation). The position in the key is the index in the jet's list as passed in: pass the constituents as
read (all of them, in ntuple order), not after a selection has dropped some.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.batch import Jagged, RowBatch
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.physics.library import wrap_phi
from root2hdf5.transforms.physics.randoms import constituent_keys, jet_keys, normal, normal_pair, uniform
from root2hdf5.transforms.physics.size_maps import SizeMap

JET_QUANTITIES = ("pt", "eta", "phi", "m", "e")  # keys of recompute_jet's result (kinematic role names)

# Roles that carry units of energy: an energy variation scales all of those the constituents have, so
# the varied four-momentum stays a multiple of the nominal one (and its mass scales with it).
ENERGY_ROLES = ("pt", "e", "m", "px", "py", "pz")
CARTESIAN_ROLES = ("px", "py", "pz")

# Allowed range of a size (after a map's `times`) per kind: (low, high, what it means) for error messages.
LIMITS = {
    "energy_scale": (-1.0, math.inf, "a relative energy shift >= -1 (the energies stay >= 0)"),
    "energy_resolution": (0.0, math.inf, "a relative resolution >= 0"),
    "efficiency": (0.0, 1.0, "a drop probability in [0, 1]"),
    "position": (0.0, math.inf, "a width >= 0"),
}

# Stream ids: the last element of the key. Each use of random numbers has its own, so for example the
# efficiency and resolution numbers of a constituent would be independent even under the same name.
_STREAM_DROP = 0
_STREAMS_RESOLUTION = (1, 2)  # one Box-Muller pair -> one normal (the cosine branch)
_STREAMS_POSITION = (3, 4)  # one Box-Muller pair -> two independent normals: η (cosine), φ (sine)


@dataclass(frozen=True)
class VariationSpec:
    """One entry of the `variations:` config block.

    name:     names the variation's output (letters, digits, _ . + -); also part of the random-number key.
    kind:     energy_scale, energy_resolution, efficiency or position.
    size:     float or SizeMap: the relative shift (energy_scale), relative width (energy_resolution), drop
              probability (efficiency) or η width (position).
    size_phi: position only: the φ width (float or SizeMap).
    """

    name: str
    kind: str
    size: object
    size_phi: object = None

    def sizes(self) -> tuple:
        return (self.size,) if self.kind != "position" else (self.size, self.size_phi)

    def required_roles(self) -> tuple[str, ...]:
        """Constituent roles apply_variation needs for this spec (more are used when present: energy
        variations scale every energy-like branch there is; position recomputes E when there is one)."""
        needed = {"energy_scale": {"pt"}, "energy_resolution": {"pt"}, "efficiency": set(),
                  "position": {"eta", "phi"}}[self.kind]
        for size in self.sizes():
            if isinstance(size, SizeMap):
                needed |= {"pt", "eta"} if size.uses_eta else {"pt"}
        return tuple(r for r in ("pt", "eta", "phi", "e") if r in needed)


# ------------------------------------------------------------------------------------ applying them


@dataclass
class _Flat:
    """The constituents of a batch back to back (jet order, ntuple order within a jet)."""

    counts: np.ndarray  # int64 (n,)
    offsets: np.ndarray  # int64 (n + 1,)
    jet: np.ndarray  # int64 (total,): the jet of each constituent
    within: np.ndarray  # int64 (total,): its position in the jet

    @classmethod
    def of(cls, counts) -> "_Flat":
        counts = np.asarray(counts, np.int64)
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        jet = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        return cls(counts, offsets, jet, np.arange(offsets[-1], dtype=np.int64) - offsets[:-1][jet])

    def values(self, jagged: Jagged) -> np.ndarray:
        """The content of a (possibly non-compact) Jagged in this order."""
        return jagged.content[np.asarray(jagged.starts, np.int64)[self.jet] + self.within]

    def jagged(self, content: np.ndarray, counts: np.ndarray | None = None) -> Jagged:
        if counts is None:
            return Jagged(content, self.offsets[:-1].copy(), self.counts.copy())
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Jagged(content, offsets[:-1], counts)


def _check_batch(jagged: Mapping[str, Jagged]) -> _Flat:
    if not jagged:
        raise ValueError("no constituent branches given")
    names = list(jagged)
    counts = np.asarray(jagged[names[0]].counts, np.int64)
    for name in names[1:]:
        other = np.asarray(jagged[name].counts, np.int64)
        if other.shape != counts.shape or not np.array_equal(other, counts):
            raise ValueError(f"constituent branches {names[0]!r} and {name!r} have different numbers of "
                             "constituents per jet")
    return _Flat.of(counts)


def _role_branches(roles: Mapping[str, str], jagged: Mapping[str, Jagged]) -> dict[str, str]:
    """role -> branch, for the roles whose branch is among the constituents."""
    return {role: branch for role, branch in roles.items() if branch in jagged}


def _require(spec_name: str, kind: str, present: Mapping[str, str], needed) -> None:
    missing = [r for r in needed if r not in present]
    if missing:
        raise ConfigError(f"variation {spec_name!r} ({kind}) needs the constituent {' and '.join(missing)} "
                          f"branch{'es' if len(missing) > 1 else ''}; the constituent roles are "
                          f"{dict(present) or 'none'}")


@dataclass
class _Batch:
    """What a kernel works on: the constituents, their roles, flat layout and random keys, the varied output."""

    spec: VariationSpec
    jagged: Mapping[str, Jagged]
    present: dict[str, str]  # role -> branch, for the roles the constituents have
    flat: _Flat
    keys: np.ndarray | None  # uint64 per constituent (None for energy_scale, which draws no numbers)
    out: dict
    _nominal: dict

    def nominal(self, role: str) -> np.ndarray:
        """float64 input values of a role in flat order, gathered once and only when used."""
        if role not in self._nominal:
            self._nominal[role] = self.flat.values(self.jagged[self.present[role]]).astype(np.float64)
        return self._nominal[role]

    def size(self, size) -> np.ndarray | float:
        """A size per constituent: the map looked up at the nominal pT (and eta), or the constant."""
        if isinstance(size, SizeMap):
            return size.lookup(self.nominal("pt"), self.nominal("eta") if size.uses_eta else None)
        return float(size)

    def put(self, role: str, values: np.ndarray) -> None:
        branch = self.present[role]
        self.out[branch] = self.flat.jagged(values.astype(self.jagged[branch].content.dtype, copy=False))


def _scale_energies(b: _Batch, factor) -> None:
    for role in ENERGY_ROLES:
        if role in b.present:
            b.put(role, b.nominal(role) * factor)


def _energy_scale(b: _Batch) -> None:
    _scale_energies(b, 1.0 + b.size(b.spec.size))  # size >= -1 is validated, so the factor is >= 0


def _energy_resolution(b: _Batch) -> None:
    # a Gaussian factor can go below 0 for large widths; an energy cannot
    _scale_energies(b, np.maximum(1.0 + b.size(b.spec.size) * normal(b.keys, _STREAMS_RESOLUTION), 0.0))


def _efficiency(b: _Batch) -> None:
    keep = uniform(b.keys, _STREAM_DROP) >= b.size(b.spec.size)  # P(u < p) = p: dropped
    counts = np.bincount(b.flat.jet[keep], minlength=len(b.flat.counts)).astype(np.int64)
    for branch, column in b.jagged.items():
        b.out[branch] = b.flat.jagged(b.flat.values(column)[keep], counts)


def _position(b: _Batch) -> None:
    if "e" in b.present:
        _require(b.spec.name, b.spec.kind, b.present, ("pt",))
    z_eta, z_phi = normal_pair(b.keys, _STREAMS_POSITION)
    new_eta = b.nominal("eta") + b.size(b.spec.size) * z_eta
    new_phi = wrap_phi(b.nominal("phi") + b.size(b.spec.size_phi) * z_phi)
    b.put("eta", new_eta)
    phi = b.present["phi"]
    b.out[phi] = b.flat.jagged(_phi_in_dtype(new_phi, b.jagged[phi].content.dtype))
    if "e" in b.present:
        # keep pT and the mass: E'^2 - pT^2 cosh^2 eta' = E^2 - pT^2 cosh^2 eta
        energy2 = b.nominal("e") ** 2 + b.nominal("pt") ** 2 * (np.cosh(new_eta) ** 2 - np.cosh(b.nominal("eta")) ** 2)
        b.put("e", np.sqrt(np.maximum(energy2, 0.0)))


KERNELS: dict[str, Callable[[_Batch], None]] = {"energy_scale": _energy_scale, "energy_resolution": _energy_resolution,
                                                "efficiency": _efficiency, "position": _position}


def apply_variation(spec: VariationSpec, jagged: Mapping[str, Jagged], roles: Mapping[str, str],
                    ids: Mapping[str, object], seed: int) -> dict[str, Jagged]:
    """The constituents of a batch of jets under one variation.

    jagged: {branch: Jagged} of the constituents as read (same counts in every branch; any dtype; views
            are fine). Branches without a kinematic role (e.g. a charge) are carried along.
    roles:  {role: branch} for the constituent branches ('pt', 'eta', 'phi', 'e'; also 'm', 'px', 'py',
            'pz'); roles whose branch is not in `jagged` are ignored.
    ids:    {'sample', 'file', 'entry', 'jet_index'}: (n,) integer arrays, or one integer for the batch.
    seed:   the run's seed.

    Returns {branch: Jagged} with the same branches and dtypes; the inputs are not modified. Changed
    branches get new compact arrays; unchanged branches are the input objects themselves (shared, not
    copied), except for `efficiency`, which compacts every branch to the kept constituents.
    """
    flat = _check_batch(jagged)
    present = _role_branches(roles, jagged)
    _require(spec.name, spec.kind, present, spec.required_roles())
    # validated even for energy_scale (which draws no numbers), so a caller's missing id fails on any kind
    per_jet = jet_keys(seed, spec.name, ids, len(flat.counts))
    keys = constituent_keys(per_jet, flat.counts) if spec.kind != "energy_scale" else None
    batch = _Batch(spec, jagged, present, flat, keys, dict(jagged), {})
    KERNELS[spec.kind](batch)
    return batch.out


def _phi_in_dtype(phi: np.ndarray, dtype) -> np.ndarray:
    """float64 angles in (-π, π] cast to `dtype`, still in (-π, π] in that dtype: casting rounds values
    next to -π onto the dtype's -π, which goes to its +π."""
    out = phi.astype(dtype)
    if out.dtype.kind == "f":
        pi = out.dtype.type(np.pi)
        out[out <= -pi] = pi
    return out


# ------------------------------------------------------------------------------- jet-level quantities


def recompute_jet(jagged: Mapping[str, Jagged], roles: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Jet pt, eta, phi, m, e (float64 (n,) each, keys as kinematic roles) from the four-momentum sum of
    its constituents: massless (E = pT cosh η) unless the constituents have an E branch.

    Conventions: an empty jet (or one whose transverse momentum sums to 0) has eta = 0 and phi = 0 (and
    pt = m = e = 0 when empty), never NaN; m = sqrt(max(E² - p², 0)), so rounding never gives a NaN mass.
    """
    flat = _check_batch(jagged)
    present = _role_branches(roles, jagged)
    missing = [r for r in ("pt", "eta", "phi") if r not in present]
    if missing:
        raise ConfigError(f"recomputing jets needs the constituent {', '.join(missing)} branches; the "
                          f"constituent roles are {dict(present) or 'none'}")
    pt, eta, phi = (flat.values(jagged[present[r]]).astype(np.float64) for r in ("pt", "eta", "phi"))
    energy = flat.values(jagged[present["e"]]).astype(np.float64) if "e" in present else pt * np.cosh(eta)
    n = len(flat.counts)

    def total(values):
        # bincount sums per jet in one pass; empty jets get 0 (np.add.reduceat would give a neighbour's value)
        return np.bincount(flat.jet, weights=values, minlength=n)

    px, py, pz, e = total(pt * np.cos(phi)), total(pt * np.sin(phi)), total(pt * np.sinh(eta)), total(energy)
    jet_pt = np.hypot(px, py)
    jet_eta = np.arcsinh(np.divide(pz, jet_pt, out=np.zeros(n), where=jet_pt > 0))
    jet_phi = np.arctan2(py, px)  # arctan2(0, 0) = 0
    jet_m = np.sqrt(np.maximum(e * e - (px * px + py * py + pz * pz), 0.0))
    return {"pt": jet_pt, "eta": jet_eta, "phi": jet_phi, "m": jet_m, "e": e}


# ------------------------------------------------------------------------------------------ in the pipeline


@beam.typehints.with_output_types(RowBatch)
class ApplyVariation(beam.DoFn):
    """RowBatch with the constituents as read (jagged, ntuple order) -> the same jets with `spec` applied to
    their constituents; with `recompute_jets`, the jet branches of the kinematic roles pt, eta, phi, m, e
    replaced by those of the sum of the varied constituents (so selections and features see the variation).

    Runs before selection and padding: dropped constituents free their slots, rescaled ones re-sort, and a
    selection on the jet pT acts on the recomputed value.
    """

    def __init__(self, spec: VariationSpec, constituent_branches: list[str], constituent_roles: dict[str, str],
                 jet_roles: dict[str, str], seed: int, recompute_jets: bool = False):
        self.spec = spec
        self.branches = list(constituent_branches)
        self.roles = {r: b for r, b in constituent_roles.items() if b in self.branches}
        self.jet_roles = dict(jet_roles)
        self.seed = seed
        self.recompute_jets = recompute_jets

    def process(self, batch: RowBatch):
        source = batch.data["source"]
        ids = {"sample": source[:, 0], "file": source[:, 1], "entry": source[:, 2], "jet_index": source[:, 3]}
        jagged = {name: batch.branches[name] for name in self.branches}
        before = int(jagged[self.branches[0]].counts.sum()) if self.branches else 0
        varied = apply_variation(self.spec, jagged, self.roles, ids, self.seed)
        batch.branches.update(varied)
        if self.branches:
            batch.stats["variation_dropped"] += before - int(varied[self.branches[0]].counts.sum())
        if self.recompute_jets:
            jet = recompute_jet(varied, self.roles)
            for role, branch in self.jet_roles.items():
                if role in jet and branch in batch.branches:
                    batch.branches[branch] = jet[role].astype(np.asarray(batch.branches[branch]).dtype)
        yield batch
