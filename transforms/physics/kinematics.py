"""Which branch holds pT, eta, phi, E ...: inferred from branch names, overridable in the config.

A role is read from the branch's *leaf*: the last component of its name after `/`, `.` or `:`, with any
`[N]` array suffix stripped (`AnalysisJetsAuxDyn.pt` -> `pt`, `Jet/Jet.PT` -> `PT`, `FatJet_mass` ->
`FatJet_mass`), case-insensitive. A leaf that *is* a role word (`pt`, `PT`, `m`, `mass`, `E`, and the
`fPt`/`fX`... of a split Math::LorentzVector) is an exact match; otherwise the part after the leaf's last
underscore is (`jet_constit_pt`, `FatJet_mass`, `JetConstitScaleMomentum_pt`). Exact matches win over
prefixed ones, so PHYSLITE's calibrated `AnalysisJetsAuxDyn.pt` is the jet pT and not the constituent-scale
`...JetConstitScaleMomentum_pt` listed before it; among equals the first listed wins. `kinematics:` in the
config overrides any of them.
"""
from __future__ import annotations

import re

ROLE_WORDS = {
    "pt": ("pt", "fpt"),
    "eta": ("eta", "feta"),
    "phi": ("phi", "fphi"),
    "e": ("e", "energy", "fe", "ft"),  # fT: the time component of a PxPyPzE Math::LorentzVector, i.e. E
    "m": ("m", "mass", "fm"),
    "px": ("px", "fx"),
    "py": ("py", "fy"),
    "pz": ("pz", "fz"),
}

# Quantities with units of energy, scaled by `preprocess.unit_scale` unless the config lists others.
ENERGY_WORDS = {"pt", "e", "energy", "m", "mass", "px", "py", "pz", "et", "fpt", "fe", "ft", "fm", "fx", "fy", "fz"}

_ARRAY_SUFFIX = re.compile(r"(\[\d+\])+$")
_SEPARATORS = re.compile(r"[/.:]")


def leaf(branch: str) -> str:
    """The last component of a branch name: `Jet/Jet.Tau[5]` -> `Tau`, `AnalysisJetsAuxDyn.pt` -> `pt`."""
    return _SEPARATORS.split(_ARRAY_SUFFIX.sub("", branch))[-1]


def suffix(branch: str) -> str:
    """The leaf's part after its last underscore, lower-case (the whole leaf without one)."""
    return leaf(branch).rsplit("_", 1)[-1].lower()


def role_of(branch: str) -> tuple[str, bool] | None:
    """(role, exact) of a branch name, or None: exact when the leaf is the role word itself."""
    word = leaf(branch).lower()
    for role, words in ROLE_WORDS.items():
        if word in words:
            return role, True
    if "_" in word:
        word = word.rsplit("_", 1)[-1]
        for role, words in ROLE_WORDS.items():
            if word in words:
                return role, False
    return None


def infer_roles(branches: list[str], explicit: dict[str, str] | None = None) -> dict[str, str]:
    """Map kinematic roles (pt, eta, phi, e, m, px, py, pz) to branch names: exact leaves first, then
    prefixed ones, each in the order listed; `explicit` roles override."""
    found = [(b, role_of(b)) for b in branches]
    roles: dict[str, str] = {}
    for exact in (True, False):
        for branch, match in found:
            if match is not None and match[1] is exact and match[0] not in roles:
                roles[match[0]] = branch
    position = {b: i for i, b in reversed(list(enumerate(branches)))}
    ordered = dict(sorted(roles.items(), key=lambda item: position[item[1]]))  # in the order listed
    ordered.update(explicit or {})
    return ordered


def is_energy_like(branch: str) -> bool:
    word = leaf(branch).lower()
    return word in ENERGY_WORDS or ("_" in word and suffix(branch) in ENERGY_WORDS)


def describe_roles(roles: dict[str, str], explicit: dict[str, str] | None = None) -> str:
    """`pt=AnalysisJetsAuxDyn.pt, ...`; roles taken from a prefixed name (another scale?) are marked."""
    parts = []
    for role, branch in roles.items():
        match = role_of(branch)
        # `Coll.JetConstitScaleMomentum_pt`: a collection's leaf that only ends in the role word
        prefixed = match is not None and not match[1] and leaf(branch) != branch
        note = " (from a prefixed leaf: another scale?)" if prefixed and not (explicit and role in explicit) else ""
        parts.append(f"{role}={branch}{note}")
    return ", ".join(parts) or "none"


def feature_prefix(branch: str, role: str) -> str:
    """`jet_constit_pt` with role pt -> `jet_constit_`, `Jet/Jet.PT` -> `Jet/Jet.`; used to name derived
    features (`jet_constit_px`)."""
    match = role_of(branch)
    if match is None or match[0] != role:
        return ""
    base = _ARRAY_SUFFIX.sub("", branch)
    word = leaf(branch)
    if match[1]:
        return base[:len(base) - len(word)]
    return base[:len(base) - len(word)] + word.rsplit("_", 1)[0] + "_"
