"""The physics preprocessing library: vectorized over a batch of padded jets, no loop per jet.

Constituent functions take `Inputs` with (n, max) arrays and a mask and return (n, max) features; masked
slots are always 0 and no function returns NaN or infinity for a padded slot, an empty jet, or a jet with
zero summed pT. Jet functions return (n,) features. Formulas are in README.md ("Preprocessing").

Conventions: Δφ is wrapped into (-π, π]; E is the constituent's E branch when there is one, else the
massless pT cosh η; ΣpT and ΣE run over the jet's valid constituents; log of a non-positive value is 0.
"""
from __future__ import annotations

import numpy as np

from root2hdf5.transforms.physics import kinematics


def wrap_phi(dphi):
    """Angles into (-π, π]. np.mod can round a tiny negative angle up to exactly 2π, which would give -π:
    that one goes to +π."""
    wrapped = np.pi - np.mod(np.pi - dphi, 2 * np.pi)
    return np.where(wrapped <= -np.pi, np.pi, wrapped)


def _prefix(inputs, role: str = "pt") -> str:
    return kinematics.feature_prefix(inputs.roles[role], role) if role in inputs.roles else ""


def _energy(inputs):
    if "e" in inputs.roles:
        return inputs.arrays[inputs.roles["e"]]
    return inputs.role("pt") * np.cosh(inputs.role("eta"))


def _masked(values, mask):
    return np.where(mask, values, 0).astype(np.float32, copy=False)


def _jet_sum(values, mask):
    return np.sum(np.where(mask, values, 0), axis=1, dtype=np.float64)


def _ratio(values, total, mask):
    """values / total (per jet), 0 where the jet's total is not positive or the slot is masked."""
    safe = np.where(total > 0, total, 1.0)[:, None]
    return _masked(np.where((total > 0)[:, None], values / safe, 0), mask)


def _log(values, mask):
    ok = mask & (values > 0)
    return _masked(np.log(np.where(ok, values, 1.0)), ok)


# ------------------------------------------------------------------------------ constituent functions


def ptnorm(inputs):
    """pT / ΣpT and E / ΣpT."""
    p, mask = _prefix(inputs), inputs.mask
    total = _jet_sum(inputs.role("pt"), mask)
    return {f"{p}pt_over_sumpt": _ratio(inputs.role("pt"), total, mask),
            f"{p}e_over_sumpt": _ratio(_energy(inputs), total, mask)}


def energy_norm(inputs):
    """pT / ΣE and E / ΣE."""
    p, mask = _prefix(inputs), inputs.mask
    energy = _energy(inputs)
    total = _jet_sum(energy, mask)
    return {f"{p}pt_over_sume": _ratio(inputs.role("pt"), total, mask),
            f"{p}e_over_sume": _ratio(energy, total, mask)}


def log(inputs):
    """log pT and log E."""
    p, mask = _prefix(inputs), inputs.mask
    return {f"{p}log_pt": _log(inputs.role("pt"), mask), f"{p}log_e": _log(_energy(inputs), mask)}


def lognorm(inputs):
    """log(pT / ΣpT) and log(E / ΣE), the dimensionless ParticleNet inputs."""
    p, mask = _prefix(inputs), inputs.mask
    pt, energy = inputs.role("pt"), _energy(inputs)
    return {f"{p}log_pt_over_sumpt": _log(_ratio(pt, _jet_sum(pt, mask), mask), mask),
            f"{p}log_e_over_sume": _log(_ratio(energy, _jet_sum(energy, mask), mask), mask)}


def jet_axis(inputs):
    """(η, φ) of each jet: the jet's own eta/phi branches when configured, else the direction of the
    (massless) four-momentum sum of its valid constituents."""
    if {"eta", "phi"} <= set(inputs.jet_roles):
        return (np.asarray(inputs.jets[inputs.jet_roles["eta"]], np.float64),
                np.asarray(inputs.jets[inputs.jet_roles["phi"]], np.float64))
    pt, eta, phi, mask = inputs.role("pt"), inputs.role("eta"), inputs.role("phi"), inputs.mask
    px, py, pz = _jet_sum(pt * np.cos(phi), mask), _jet_sum(pt * np.sin(phi), mask), _jet_sum(pt * np.sinh(eta), mask)
    return np.arcsinh(np.divide(pz, np.hypot(px, py), out=np.zeros_like(pz), where=np.hypot(px, py) > 0)), \
        np.arctan2(py, px)


def _deltas(inputs):
    eta_axis, phi_axis = jet_axis(inputs)
    deta = inputs.role("eta") - eta_axis[:, None]
    dphi = wrap_phi(inputs.role("phi") - phi_axis[:, None])
    return deta, dphi


def relative(inputs):
    """Δη = η - η_jet, Δφ = wrap(φ - φ_jet), ΔR = sqrt(Δη² + Δφ²)."""
    p, mask = _prefix(inputs, "eta"), inputs.mask
    deta, dphi = _deltas(inputs)
    return {f"{p}deta": _masked(deta, mask), f"{p}dphi": _masked(dphi, mask),
            f"{p}dr": _masked(np.hypot(deta, dphi), mask)}


def dr(inputs):
    """ΔR to the jet axis."""
    p, mask = _prefix(inputs, "eta"), inputs.mask
    deta, dphi = _deltas(inputs)
    return {f"{p}dr": _masked(np.hypot(deta, dphi), mask)}


def angular(inputs):
    """The standardised η-φ frame of arXiv:1902.09914.

    1. translate: the hardest constituent (highest pT) goes to the origin (Δφ wrapped);
    2. rotate about the origin so that the second hardest lies on the negative φ axis;
    3. reflect η -> -η if the third hardest has negative η.
    Fewer constituents: 2 -> translate and rotate; 1 -> translate (it sits at 0, 0); 0 -> all zero. A
    second constituent exactly at the origin leaves the rotation out, a third exactly at η' = 0 the
    reflection. Padded slots are 0.
    """
    p, mask = _prefix(inputs, "eta"), inputs.mask
    n = len(mask)
    eta, phi = inputs.role("eta").astype(np.float64), inputs.role("phi").astype(np.float64)
    ranked = np.argsort(-np.where(mask, inputs.role("pt"), -np.inf), axis=1, kind="stable")
    count = mask.sum(axis=1)
    rows = np.arange(n)
    if mask.shape[1] == 0:
        return {f"{p}eta_rot": _masked(eta, mask), f"{p}phi_rot": _masked(phi, mask)}

    def nth(values, k):
        return values[rows, ranked[:, k]] if mask.shape[1] > k else np.zeros(n)

    deta = eta - nth(eta, 0)[:, None]
    dphi = wrap_phi(phi - nth(phi, 0)[:, None])
    second_eta, second_phi = nth(deta, 1), nth(dphi, 1)
    rotate = (count >= 2) & (np.hypot(second_eta, second_phi) > 0)
    alpha = np.where(rotate, -np.pi / 2 - np.arctan2(second_phi, second_eta), 0.0)[:, None]
    cos, sin = np.cos(alpha), np.sin(alpha)
    eta_rot = deta * cos - dphi * sin
    phi_rot = deta * sin + dphi * cos
    flip = (count >= 3) & (nth(eta_rot, 2) < 0)
    eta_rot = np.where(flip[:, None], -eta_rot, eta_rot)
    return {f"{p}eta_rot": _masked(eta_rot, mask), f"{p}phi_rot": _masked(phi_rot, mask)}


# -------------------------------------------------------------------------------------- jet functions


def mass(inputs):
    """m = sqrt(max(E² - px² - py² - pz², 0)) from (pT, η, φ, E); the m branch itself with `raw`."""
    pt, eta, energy = (np.asarray(a, np.float64) for a in (inputs.role("pt"), inputs.role("eta"), inputs.role("e")))
    p2 = (pt * np.cosh(eta)) ** 2
    return {f"{_prefix(inputs)}mass": np.sqrt(np.maximum(energy**2 - p2, 0)).astype(np.float32)}


CONSTITUENT_FUNCTIONS = {"ptnorm": ptnorm, "energy_norm": energy_norm, "log": log, "lognorm": lognorm,
                         "relative": relative, "dr": dr, "angular": angular}
JET_FUNCTIONS = {"mass": mass}
PRESETS = {"lognorm_angular": ["lognorm", "angular", "dr"]}
