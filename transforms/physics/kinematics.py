"""Which branch holds pT, eta, phi, E ...: inferred from branch-name suffixes, overridable in the config.

Ntuples name kinematic branches by suffix (`jet_pt`, `jet_constit_eta`, `fjet_clus_E`, `Jet_Px`), so the
role of a branch is the part after its last underscore, case-insensitive. The first branch with a given
suffix wins; `kinematics:` in the config overrides any of them.
"""
from __future__ import annotations

ROLE_SUFFIXES = {
    "pt": ("pt",),
    "eta": ("eta",),
    "phi": ("phi",),
    "e": ("e", "energy"),
    "m": ("m", "mass"),
    "px": ("px",),
    "py": ("py",),
    "pz": ("pz",),
}

# Quantities with units of energy, scaled by `preprocess.unit_scale` unless the config lists others.
ENERGY_SUFFIXES = {"pt", "e", "energy", "m", "mass", "px", "py", "pz", "et"}


def suffix(branch: str) -> str:
    return branch.rsplit("_", 1)[-1].lower()


def infer_roles(branches: list[str], explicit: dict[str, str] | None = None) -> dict[str, str]:
    """Map kinematic roles (pt, eta, phi, e, m, px, py, pz) to branch names."""
    roles: dict[str, str] = {}
    for branch in branches:
        for role, suffixes in ROLE_SUFFIXES.items():
            if role not in roles and suffix(branch) in suffixes:
                roles[role] = branch
    roles.update(explicit or {})
    return roles


def is_energy_like(branch: str) -> bool:
    return suffix(branch) in ENERGY_SUFFIXES


def feature_prefix(branch: str, role: str) -> str:
    """`jet_constit_pt` with role pt -> `jet_constit_`; used to name derived features (`jet_constit_px`)."""
    if "_" in branch and suffix(branch) in ROLE_SUFFIXES.get(role, (role,)):
        return branch.rsplit("_", 1)[0] + "_"
    return ""
