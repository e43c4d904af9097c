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

Config form (`variations_from_config` validates the list, names must be unique):

    variations:
      - {name: jes_up,   kind: energy_scale,      size: 0.05}
      - {name: jes_down, kind: energy_scale,      size: -0.05}
      - {name: jes_map,  kind: energy_scale,      size: {map: unc.root:jes, times: -1}}   # down by the map
      - {name: jer,      kind: energy_resolution, size: {map: unc.root:jer_pt_eta, abs_eta: true}}
      - {name: eff,      kind: efficiency,        size: 0.02}
      - {name: pos,      kind: position,          size: {eta: 0.005, phi: {map: unc.root:dphi, pt_scale: 0.001}}}

Random numbers are counter-based, not drawn from a generator: each is a 64-bit hash of (run seed, variation
name, sample, file, entry, jet index in the entry, position of the constituent in its jet as stored in the
ntuple, stream), so a constituent gets the same number however the jets are batched, ordered or spread over
workers, on every rerun. The variation name is part of the key, so two variations never share numbers, and
renaming a variation changes its numbers (on purpose: it is a different variation).
The position is the index in the jet's list as passed in: pass the constituents as read (all of them, in
ntuple order), not after a selection has dropped some.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.batch import Jagged, JetBatch
from root2hdf5.transforms.core.checks import check_block, check_name, named_list, one_of
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.hashing import hash_columns, mix

KINDS = ("energy_scale", "energy_resolution", "efficiency", "position")
ID_FIELDS = ("sample", "file", "entry", "jet_index")
JET_QUANTITIES = ("pt", "eta", "phi", "m", "e")  # keys of recompute_jet's result (kinematic role names)

# Roles that carry units of energy: an energy variation scales all of those the constituents have, so
# the varied four-momentum stays a multiple of the nominal one (and its mass scales with it).
_ENERGY_ROLES = ("pt", "e", "m", "px", "py", "pz")
_CARTESIAN_ROLES = ("px", "py", "pz")

_KEYS = ("name", "kind", "size")
_MAP_KEYS = ("map", "abs_eta", "times", "pt_scale")

# Stream ids: the last element of the key. Each use of random numbers has its own, so for example the
# efficiency and resolution numbers of a constituent would be independent even under the same name.
_STREAM_DROP = 0
_STREAMS_RESOLUTION = (1, 2)  # one Box-Muller pair -> one normal (the cosine branch)
_STREAMS_POSITION = (3, 4)  # one Box-Muller pair -> two independent normals: η (cosine), φ (sine)

_TWO_53 = 1.0 / (1 << 53)


# ------------------------------------------------------------------------------------- random numbers


def name_hash(name: str) -> int:
    """A stable 64-bit hash of a variation name. Python's hash() of a str is salted per process, so
    workers would disagree; blake2b is the same everywhere."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def _id_column(value, n: int) -> np.ndarray:
    """An id column (an (n,) array, or one number for the whole batch such as the sample index) as the
    uint64 bit pattern of its integer value."""
    column = np.asarray(value)
    if column.dtype.kind not in "iub":
        raise ValueError(f"jet ids must be integers, got dtype {column.dtype}")
    column = np.broadcast_to(column, (n,))
    # unsigned values keep their bits; signed ones go through int64 so -1 is the same key whatever its width
    return column.astype(np.uint64) if column.dtype.kind == "u" else column.astype(np.int64).view(np.uint64)


def jet_keys(seed: int, name: str, ids: Mapping[str, object], n: int | None = None) -> np.ndarray:
    """uint64 (n,): the hash of (seed, variation name, sample, file, entry, jet_index) of each jet.

    `ids` maps each of ID_FIELDS to an (n,) integer array or to a single integer shared by the batch.
    """
    missing = [k for k in ID_FIELDS if k not in ids]
    if missing:
        raise ValueError(f"jet ids need {', '.join(ID_FIELDS)}; missing {', '.join(missing)}")
    if n is None:
        n = max((np.size(ids[k]) for k in ID_FIELDS if np.ndim(ids[k])), default=1)
    columns = []
    for key in ID_FIELDS:
        if np.ndim(ids[key]) and np.shape(ids[key]) != (n,):
            raise ValueError(f"jet id {key!r} has shape {np.shape(ids[key])}, expected ({n},)")
        columns.append(_id_column(ids[key], n))
    return hash_columns(int(seed), np.uint64(name_hash(name)), *columns)


def constituent_keys(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """uint64 (sum(counts),): each jet's key mixed with each constituent's position in its jet, jets back
    to back (the order of Jagged.compact())."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    jet = np.repeat(np.arange(len(counts)), counts)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    within = np.arange(total, dtype=np.int64) - offsets[:-1][jet]
    with np.errstate(over="ignore"):
        return mix(keys[jet] ^ within.view(np.uint64))


def uniform(keys: np.ndarray, stream: int) -> np.ndarray:
    """float64 uniform in the open interval (0, 1), 53 random bits, one per key: (k + 1/2) / 2^53 for the
    top 53 bits k of the hash of (key, stream), so never 0 (log is finite) and never 1."""
    with np.errstate(over="ignore"):
        h = mix(keys ^ np.uint64(stream))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * _TWO_53


def normal_pair(keys: np.ndarray, streams: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two independent N(0, 1) float64 arrays per key by Box-Muller from two uniform streams."""
    radius = np.sqrt(-2.0 * np.log(uniform(keys, streams[0])))
    angle = (2.0 * np.pi) * uniform(keys, streams[1])
    return radius * np.cos(angle), radius * np.sin(angle)


def normal(keys: np.ndarray, streams: tuple[int, int]) -> np.ndarray:
    """N(0, 1) float64 per key (the first of normal_pair)."""
    return normal_pair(keys, streams)[0]


# --------------------------------------------------------------------------------- uncertainty maps


@dataclass(frozen=True)
class SizeMap:
    """A variation size read from a ROOT histogram, looked up per constituent.

    TH1: x = constituent pT. TH2: x = constituent pT, y = constituent η (or |η| with abs_eta). The pT axis
    is in the units of the ntuple's constituent pT branch (variations act before preprocess.unit_scale):
    MeV for ATLAS-style ntuples, unless `pt_scale` converts (pT * pt_scale is looked up, e.g. 0.001 for a
    map in GeV on MeV ntuples). Bins are ROOT's, [low, high); values outside an axis use its first or last
    bin (under/overflow bins are not used). The looked-up value is multiplied by `times` (e.g. -1 for a
    "down" energy scale from a map of the uncertainty, 2 for a 2σ variation).

    The histogram is read once, when the config is validated, and travels with the spec, so workers do
    not need access to the file.
    """

    path: str
    hist: str
    abs_eta: bool = False
    times: float = 1.0
    pt_scale: float = 1.0
    values: np.ndarray = field(default=None, compare=False, repr=False)
    edges: tuple = field(default=(), compare=False, repr=False)

    @property
    def uses_eta(self) -> bool:
        return len(self.edges) == 2

    @classmethod
    def load(cls, path: str, hist: str, abs_eta: bool = False, times: float = 1.0, pt_scale: float = 1.0,
             where: str = "size") -> "SizeMap":
        """Read `hist` from the ROOT file `path` (TH1 or TH2), or raise ConfigError naming both."""
        import uproot

        if "://" not in path and not os.path.exists(path):
            raise ConfigError(f"{where}.map: uncertainty map file {path} does not exist")
        try:
            handle = uproot.open(path)
        except Exception as err:  # not a ROOT file, unreadable, remote failure: all the user's to fix
            raise ConfigError(f"{where}.map: cannot open uncertainty map file {path}: {err}") from None
        with handle:
            classnames = handle.classnames(cycle=False)
            if hist not in classnames and hist.split(";")[0] not in classnames:
                found = ", ".join(k for k, c in classnames.items() if c.startswith(("TH1", "TH2"))) or "none"
                raise ConfigError(f"{where}.map: {path} has no histogram {hist!r} (TH1/TH2 in it: {found})")
            obj = handle[hist]
            classname = obj.classname
            if not classname.startswith(("TH1", "TH2")):
                raise ConfigError(f"{where}.map: {hist!r} in {path} is a {classname}, expected a TH1 (in pT) "
                                  "or a TH2 (in pT and eta)")
            values, *edges = obj.to_numpy(flow=False)
        values = np.asarray(values, np.float64)
        edges = tuple(np.asarray(e, np.float64) for e in edges)
        if abs_eta and len(edges) != 2:
            raise ConfigError(f"{where}.abs_eta: {hist!r} in {path} is a {classname} in pT only; abs_eta needs "
                              "a TH2 in pT and eta")
        if not np.isfinite(values).all():
            raise ConfigError(f"{where}.map: histogram {hist!r} in {path} has non-finite bin contents")
        for axis, e in zip(("x (pT)", "y (eta)"), edges):
            if len(e) < 2 or not np.isfinite(e).all() or np.any(np.diff(e) <= 0):
                raise ConfigError(f"{where}.map: histogram {hist!r} in {path} has invalid {axis} bin edges")
        values.setflags(write=False)
        return cls(path, hist, bool(abs_eta), float(times), float(pt_scale), values, edges)

    def lookup(self, pt: np.ndarray, eta: np.ndarray | None = None) -> np.ndarray:
        """float64 per constituent: `times` * the content of the bin of (pT * pt_scale[, η or |η|])."""
        index = [_bin(np.asarray(pt, np.float64) * self.pt_scale, self.edges[0])]
        if self.uses_eta:
            if eta is None:
                raise ValueError(f"map {self.hist!r} is a TH2 in pT and eta: the lookup needs eta")
            eta = np.asarray(eta, np.float64)
            index.append(_bin(np.abs(eta) if self.abs_eta else eta, self.edges[1]))
        return self.values[tuple(index)] * self.times

    def extreme(self) -> tuple[float, float]:
        """(min, max) of the values the lookup can return."""
        scaled = self.values * self.times
        return float(scaled.min()), float(scaled.max())

    def to_config(self) -> dict:
        out = {"map": f"{self.path}:{self.hist}"}
        if self.abs_eta:
            out["abs_eta"] = True
        if self.times != 1.0:
            out["times"] = self.times
        if self.pt_scale != 1.0:
            out["pt_scale"] = self.pt_scale
        return out


def _bin(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """ROOT's bin [low, high) of each value as an index into the values, clipped into the axis: below the
    first edge -> first bin, at or above the last edge -> last bin (NaN -> last bin too)."""
    index = np.searchsorted(edges, x, side="right") - 1
    return np.clip(index, 0, len(edges) - 2)


def _size_values(size, nominal) -> np.ndarray | float:
    """A spec's size per constituent: the map looked up at the nominal pT (and eta), or the constant.
    `nominal(role)` gives the nominal float64 values of a role."""
    if isinstance(size, SizeMap):
        return size.lookup(nominal("pt"), nominal("eta") if size.uses_eta else None)
    return float(size)


# ---------------------------------------------------------------------------------------- the config


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


# Allowed range of a size (after `times`) per kind: (low, high, what it means) for error messages.
_LIMITS = {
    "energy_scale": (-1.0, math.inf, "a relative energy shift >= -1 (the energies stay >= 0)"),
    "energy_resolution": (0.0, math.inf, "a relative resolution >= 0"),
    "efficiency": (0.0, 1.0, "a drop probability in [0, 1]"),
    "position": (0.0, math.inf, "a width >= 0"),
}


def _parse_size(value, kind: str, where: str, base_dir: str | None):
    """A constant or {map: file.root:hist, ...} -> float | SizeMap, within the kind's limits."""
    low, high, meaning = _LIMITS[kind]
    if _number(value):
        value = float(value)
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{where}: {kind} size must be {meaning}, got {value!r}")
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a number or {{map: path/to/file.root:histname}}, got {value!r}")
    unknown = [k for k in value if k not in _MAP_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(_MAP_KEYS)})")
    if "map" not in value:
        raise ConfigError(f"{where}: missing required key 'map' (path/to/file.root:histname)")
    spec = value["map"]
    if not isinstance(spec, str) or ":" not in spec.strip(":"):
        raise ConfigError(f"{where}.map: expected 'path/to/file.root:histname', got {spec!r}")
    path, hist = spec.rsplit(":", 1)  # the last colon: paths may hold one (root://host/..., C:\...)
    if not path or not hist:
        raise ConfigError(f"{where}.map: expected 'path/to/file.root:histname', got {spec!r}")
    if base_dir is not None and "://" not in path and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    abs_eta = value.get("abs_eta", False)
    if not isinstance(abs_eta, bool):
        raise ConfigError(f"{where}.abs_eta: expected true or false, got {abs_eta!r}")
    times = value.get("times", 1.0)
    if not _number(times) or not math.isfinite(times):
        raise ConfigError(f"{where}.times: expected a number, got {times!r}")
    pt_scale = value.get("pt_scale", 1.0)
    if not _number(pt_scale) or not (math.isfinite(pt_scale) and pt_scale > 0):
        raise ConfigError(f"{where}.pt_scale: expected a positive number, got {pt_scale!r}")
    size = SizeMap.load(path, hist, abs_eta, float(times), float(pt_scale), where)
    lo, hi = size.extreme()
    if lo < low or hi > high:
        raise ConfigError(f"{where}.map: {kind} size must be {meaning}; histogram {hist!r} in {path} (times "
                          f"{size.times:g}) gives values in [{lo:g}, {hi:g}]")
    return size


@dataclass(frozen=True)
class VariationSpec:
    """One entry of the `variations:` config block.

    name:     names the variation's output (letters, digits, _ . + -); also part of the random-number key.
    kind:     one of KINDS.
    size:     float or SizeMap: the relative shift (energy_scale), relative width (energy_resolution), drop
              probability (efficiency) or η width (position).
    size_phi: position only: the φ width (float or SizeMap).
    """

    name: str
    kind: str
    size: object
    size_phi: object = None

    @classmethod
    def from_dict(cls, d, where: str = "variations[0]", base_dir: str | None = None) -> "VariationSpec":
        """Validate one config entry and read its maps; errors name the key, e.g. 'variations[1].size: ...'.
        Relative map paths are taken relative to `base_dir` when given (else the working directory)."""
        check_block(d, where, _KEYS, _KEYS, "name, kind, size")
        name, kind = d["name"], d["kind"]
        check_name(name, f"{where}.name", "the variation's output")
        one_of(f"{where}.kind", kind, KINDS)
        size = d["size"]
        if kind != "position":
            return cls(name, kind, _parse_size(size, kind, f"{where}.size", base_dir))
        # position: one size for both coordinates, or {eta: ..., phi: ...}
        if isinstance(size, Mapping) and "map" not in size:
            unknown = [k for k in size if k not in ("eta", "phi")]
            if unknown:
                raise ConfigError(f"{where}.size: unknown key {unknown[0]!r} (a position size is a number, a "
                                  "{map: ...}, or {eta: ..., phi: ...})")
            for key in ("eta", "phi"):
                if key not in size:
                    raise ConfigError(f"{where}.size: missing required key {key!r} (or give one size for both)")
            return cls(name, kind, _parse_size(size["eta"], kind, f"{where}.size.eta", base_dir),
                       _parse_size(size["phi"], kind, f"{where}.size.phi", base_dir))
        both = _parse_size(size, kind, f"{where}.size", base_dir)
        return cls(name, kind, both, both)

    def to_dict(self) -> dict:
        """The config form (maps as 'path:hist'), e.g. to record in the output's metadata."""
        def one(size):
            return size.to_config() if isinstance(size, SizeMap) else size
        size = one(self.size) if self.kind != "position" else {"eta": one(self.size), "phi": one(self.size_phi)}
        return {"name": self.name, "kind": self.kind, "size": size}

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


def variations_from_config(items, where: str = "variations", base_dir: str | None = None) -> tuple[VariationSpec, ...]:
    """The `variations:` list -> specs, with unique names (each names its own output)."""
    return named_list(items, where, lambda item, at: VariationSpec.from_dict(item, at, base_dir),
                      "variations (name, kind, size)")


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
    n = len(flat.counts)
    # validated even for energy_scale (which draws no numbers), so a caller's missing id fails on any kind
    per_jet = jet_keys(seed, spec.name, ids, n)
    keys = constituent_keys(per_jet, flat.counts) if spec.kind != "energy_scale" else None
    gathered: dict[str, np.ndarray] = {}

    def nominal(role: str) -> np.ndarray:
        """float64 input values of a role in flat order, gathered once and only when used."""
        if role not in gathered:
            gathered[role] = flat.values(jagged[present[role]]).astype(np.float64)
        return gathered[role]

    out = dict(jagged)

    def put(role: str, values: np.ndarray) -> None:
        branch = present[role]
        out[branch] = flat.jagged(values.astype(jagged[branch].content.dtype, copy=False))

    if spec.kind in ("energy_scale", "energy_resolution"):
        size = _size_values(spec.size, nominal)
        if spec.kind == "energy_scale":
            factor = 1.0 + size  # size >= -1 is validated, so factor >= 0
        else:
            # a Gaussian factor can go below 0 for large widths; an energy cannot
            factor = np.maximum(1.0 + size * normal(keys, _STREAMS_RESOLUTION), 0.0)
        for role in _ENERGY_ROLES:
            if role in present:
                put(role, nominal(role) * factor)
        return out

    if spec.kind == "efficiency":
        probability = _size_values(spec.size, nominal)
        keep = uniform(keys, _STREAM_DROP) >= probability  # P(u < p) = p: dropped
        counts = np.bincount(flat.jet[keep], minlength=n).astype(np.int64)
        for branch, column in jagged.items():
            out[branch] = flat.jagged(flat.values(column)[keep], counts)
        return out

    # position
    cartesian = [r for r in _CARTESIAN_ROLES if r in present]
    if cartesian:
        raise ConfigError(f"variation {spec.name!r} (position) smears eta and phi, but the constituents also "
                          f"have cartesian branches ({', '.join(present[r] for r in cartesian)}) it would leave "
                          "stale; drop them from the constituent roles")
    if "e" in present:
        _require(spec.name, spec.kind, present, ("pt",))
    z_eta, z_phi = normal_pair(keys, _STREAMS_POSITION)
    new_eta = nominal("eta") + _size_values(spec.size, nominal) * z_eta
    new_phi = wrap_phi(nominal("phi") + _size_values(spec.size_phi, nominal) * z_phi)
    put("eta", new_eta)
    out[present["phi"]] = flat.jagged(_phi_in_dtype(new_phi, jagged[present["phi"]].content.dtype))
    if "e" in present:
        # keep pT and the mass: E'^2 - pT^2 cosh^2 eta' = E^2 - pT^2 cosh^2 eta
        energy2 = nominal("e") ** 2 + nominal("pt") ** 2 * (np.cosh(new_eta) ** 2 - np.cosh(nominal("eta")) ** 2)
        put("e", np.sqrt(np.maximum(energy2, 0.0)))
    return out


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Angles into (-π, π] (float64). np.mod can round a tiny negative angle up to exactly 2π, which
    would give -π: that one goes to +π."""
    wrapped = np.pi - np.mod(np.pi - phi, 2 * np.pi)
    return np.where(wrapped <= -np.pi, np.pi, wrapped)


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


@beam.typehints.with_output_types(JetBatch)
class ApplyVariation(beam.DoFn):
    """JetBatch with the constituents as read (jagged, ntuple order) -> the same jets with `spec` applied to
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

    def process(self, batch: JetBatch):
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
