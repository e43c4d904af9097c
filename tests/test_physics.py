"""The physics library against straightforward per-jet loops and hand-computed values.

Random jets include empty jets, one- and two-constituent jets, and jets sitting at φ ≈ ±π with
constituents on both sides of the boundary, so a wrong sign, wrap, order or normalisation fails here.
"""
import math

import numpy as np
import pytest

from root2hdf5.transforms.physics import kinematics
from root2hdf5.transforms.physics import library as physics
from root2hdf5.transforms.physics.preprocess import Inputs

ROLES = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "e": "c_e"}
JET_ROLES = {"eta": "jet_eta", "phi": "jet_phi"}


def wrap(x):
    while x <= -math.pi:
        x += 2 * math.pi
    while x > math.pi:
        x -= 2 * math.pi
    return x


def random_jets(n=300, width=12, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, width + 1, n)
    counts[:4] = [0, 1, 2, 3]
    mask = np.arange(width) < counts[:, None]
    jet_eta = rng.uniform(-2, 2, n)
    jet_phi = rng.uniform(-np.pi, np.pi, n)
    jet_phi[4:40] = np.pi - rng.uniform(0, 0.05, 36) * rng.choice([1, -1], 36) % (2 * np.pi)  # near ±π
    jet_phi[4:40] = np.where(jet_phi[4:40] > np.pi, jet_phi[4:40] - 2 * np.pi, jet_phi[4:40])
    pt = rng.exponential(20, (n, width)) + 0.5
    eta = jet_eta[:, None] + rng.normal(0, 0.4, (n, width))
    phi = (jet_phi[:, None] + rng.normal(0, 0.4, (n, width)) + np.pi) % (2 * np.pi) - np.pi
    e = pt * np.cosh(eta) * rng.uniform(1.0, 1.2, (n, width))
    arrays = {k: np.where(mask, v, 0).astype(np.float32) for k, v in
              {"c_pt": pt, "c_eta": eta, "c_phi": phi, "c_e": e}.items()}
    jets = {"jet_eta": jet_eta.astype(np.float32), "jet_phi": jet_phi.astype(np.float32)}
    return Inputs(arrays, ROLES, mask, jets, JET_ROLES)


def per_jet(inputs):
    """Yield (jet index, list of (slot, pt, eta, phi, e)) with Python floats."""
    a = inputs.arrays
    for j in range(len(inputs.mask)):
        slots = [k for k in range(inputs.mask.shape[1]) if inputs.mask[j, k]]
        yield j, [(k, float(a["c_pt"][j, k]), float(a["c_eta"][j, k]), float(a["c_phi"][j, k]),
                   float(a["c_e"][j, k])) for k in slots]


def check(out, expected, inputs, rtol=2e-5, atol=2e-5):
    """Compare valid slots with the reference and demand exact zeros in padded slots."""
    for name, values in out.items():
        assert values.dtype == np.float32 and np.all(np.isfinite(values)), name
        assert np.all(values[~inputs.mask] == 0), name
        np.testing.assert_allclose(values, expected[name], rtol=rtol, atol=atol, err_msg=name)


def reference(inputs, fn):
    shape = inputs.mask.shape
    expected = {}
    for j, constituents in per_jet(inputs):
        for name, values in fn(j, constituents).items():
            expected.setdefault(name, np.zeros(shape))
            for k, v in values.items():
                expected[name][j, k] = v
    return expected


def test_wrap_phi_range_and_boundaries():
    x = np.array([-3 * np.pi, -np.pi, -np.pi + 1e-9, 0.0, np.pi, np.pi + 1e-9, 3 * np.pi, 7.0])
    w = physics.wrap_phi(x)
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(w, [wrap(v) for v in x], atol=1e-12)
    assert w[1] == pytest.approx(np.pi) and w[4] == pytest.approx(np.pi)


def test_ptnorm_and_energy_norm():
    inputs = random_jets()

    def ref(j, cs):
        spt, se = sum(c[1] for c in cs), sum(c[4] for c in cs)
        return {"c_pt_over_sumpt": {c[0]: c[1] / spt for c in cs}, "c_e_over_sumpt": {c[0]: c[4] / spt for c in cs},
                "c_pt_over_sume": {c[0]: c[1] / se for c in cs}, "c_e_over_sume": {c[0]: c[4] / se for c in cs}}

    out = {**physics.ptnorm(inputs), **physics.energy_norm(inputs)}
    check(out, reference(inputs, ref), inputs)
    sums = out["c_pt_over_sumpt"].sum(axis=1)
    np.testing.assert_allclose(sums[inputs.mask.any(axis=1)], 1, rtol=1e-5)  # normalised per jet
    assert np.all(sums[~inputs.mask.any(axis=1)] == 0)  # empty jets: zeros, not NaN


def test_log_and_lognorm():
    inputs = random_jets(seed=1)

    def ref(j, cs):
        spt, se = sum(c[1] for c in cs), sum(c[4] for c in cs)
        return {"c_log_pt": {c[0]: math.log(c[1]) for c in cs}, "c_log_e": {c[0]: math.log(c[4]) for c in cs},
                "c_log_pt_over_sumpt": {c[0]: math.log(c[1] / spt) for c in cs},
                "c_log_e_over_sume": {c[0]: math.log(c[4] / se) for c in cs}}

    check({**physics.log(inputs), **physics.lognorm(inputs)}, reference(inputs, ref), inputs, atol=5e-5)


def test_relative_and_dr_with_wrap():
    inputs = random_jets(seed=2)

    def ref(j, cs):
        je, jp = float(inputs.jets["jet_eta"][j]), float(inputs.jets["jet_phi"][j])
        d = {c[0]: (c[2] - je, wrap(c[3] - jp)) for c in cs}
        return {"c_deta": {k: v[0] for k, v in d.items()}, "c_dphi": {k: v[1] for k, v in d.items()},
                "c_dr": {k: math.hypot(*v) for k, v in d.items()}}

    out = physics.relative(inputs)
    check(out, reference(inputs, ref), inputs)
    assert np.all(np.abs(out["c_dphi"]) <= np.pi)
    # jets at the ±π boundary: constituents within ~1 of the axis, never ~2π away
    assert np.all(np.abs(out["c_dphi"][4:40]) < 2.5)
    np.testing.assert_array_equal(physics.dr(inputs)["c_dr"], out["c_dr"])


def test_relative_without_jet_branches_uses_the_constituent_sum():
    inputs = random_jets(seed=3)
    inputs = Inputs(inputs.arrays, ROLES, inputs.mask)

    def ref(j, cs):
        px = sum(c[1] * math.cos(c[3]) for c in cs)
        py = sum(c[1] * math.sin(c[3]) for c in cs)
        pz = sum(c[1] * math.sinh(c[2]) for c in cs)
        axis_eta, axis_phi = (math.asinh(pz / math.hypot(px, py)), math.atan2(py, px)) if cs else (0, 0)
        return {"c_deta": {c[0]: c[2] - axis_eta for c in cs}, "c_dphi": {c[0]: wrap(c[3] - axis_phi) for c in cs},
                "c_dr": {c[0]: math.hypot(c[2] - axis_eta, wrap(c[3] - axis_phi)) for c in cs}}

    check(physics.relative(inputs), reference(inputs, ref), inputs, atol=5e-5)


def angular_reference(j, cs):
    """arXiv:1902.09914 by hand, one jet at a time."""
    if not cs:
        return {}
    ranked = sorted(cs, key=lambda c: -c[1])  # by pT, ties in slot order
    hardest = ranked[0]
    pts = {c[0]: (c[2] - hardest[2], wrap(c[3] - hardest[3])) for c in cs}
    if len(ranked) >= 2:
        x, y = pts[ranked[1][0]]
        if math.hypot(x, y) > 0:
            alpha = -math.pi / 2 - math.atan2(y, x)
            ca, sa = math.cos(alpha), math.sin(alpha)
            pts = {k: (x * ca - y * sa, x * sa + y * ca) for k, (x, y) in pts.items()}
    if len(ranked) >= 3 and pts[ranked[2][0]][0] < 0:
        pts = {k: (-x, y) for k, (x, y) in pts.items()}
    return {"c_eta_rot": {k: v[0] for k, v in pts.items()}, "c_phi_rot": {k: v[1] for k, v in pts.items()}}


def test_angular_against_per_jet_reference():
    inputs = random_jets(seed=4)
    out = physics.angular(inputs)
    expected = reference(inputs, angular_reference)
    for name in ("c_eta_rot", "c_phi_rot"):
        expected.setdefault(name, np.zeros(inputs.mask.shape))
    check(out, expected, inputs, atol=5e-5)
    has2, has3 = inputs.mask[:, 1], inputs.mask[:, 2]
    ranked = np.argsort(-np.where(inputs.mask, inputs.arrays["c_pt"], -np.inf), axis=1, kind="stable")
    rows = np.arange(len(ranked))
    # hardest at the origin, second on the negative phi axis, third at positive eta
    assert np.allclose(out["c_eta_rot"][rows, ranked[:, 0]], 0, atol=1e-6)
    assert np.allclose(out["c_phi_rot"][rows, ranked[:, 0]], 0, atol=1e-6)
    assert np.allclose(out["c_eta_rot"][rows, ranked[:, 1]][has2], 0, atol=1e-5)
    assert np.all(out["c_phi_rot"][rows, ranked[:, 1]][has2] < 0)
    assert np.all(out["c_eta_rot"][rows, ranked[:, 2]][has3] >= 0)


def test_angular_by_hand():
    """Hardest at (1, 3.1), second at (1, -3.1) -> 0.083 across the φ boundary, third at (0.5, 3.1)."""
    arrays = {"c_pt": np.array([[10.0, 5.0, 1.0, 0.0]]), "c_eta": np.array([[1.0, 1.0, 0.5, 0.0]]),
              "c_phi": np.array([[3.1, -3.1, 3.1, 0.0]]), "c_e": np.zeros((1, 4))}
    out = physics.angular(Inputs(arrays, ROLES, np.array([[True, True, True, False]])))
    gap = 2 * np.pi - 6.2  # the second is +0.0832 in φ from the hardest, not -6.2
    # the second (0, +gap) is rotated by -π to (0, -gap); the third (-0.5, 0) goes to (0.5, 0): no reflection
    np.testing.assert_allclose(out["c_eta_rot"][0], [0, 0, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(out["c_phi_rot"][0], [0, -gap, 0, 0], atol=1e-6)


@pytest.mark.parametrize("count", [0, 1, 2])
def test_angular_with_few_constituents_is_finite(count):
    mask = np.arange(5)[None, :] < count
    arrays = {"c_pt": np.where(mask, [[5.0, 4.0, 3.0, 2.0, 1.0]], 0), "c_eta": np.where(mask, 0.7, 0.0),
              "c_phi": np.where(mask, [[3.0, -3.0, 0, 0, 0]], 0), "c_e": np.zeros((1, 5))}
    out = physics.angular(Inputs(arrays, ROLES, mask))
    for values in out.values():
        assert np.all(np.isfinite(values)) and np.all(values[~mask] == 0)
    if count >= 1:
        assert out["c_eta_rot"][0, 0] == 0 and out["c_phi_rot"][0, 0] == 0
    if count == 2:
        assert out["c_eta_rot"][0, 1] == pytest.approx(0, abs=1e-9)
        assert out["c_phi_rot"][0, 1] == pytest.approx(-(2 * np.pi - 6.0))


def test_hand_computed_values():
    arrays = {"c_pt": np.array([[30.0, 10.0]]), "c_eta": np.array([[0.0, 0.0]]),
              "c_phi": np.array([[0.1, -0.1]]), "c_e": np.array([[40.0, 10.0]])}
    inputs = Inputs(arrays, ROLES, np.array([[True, True]]), {"jet_eta": np.array([0.0]), "jet_phi": np.array([0.0])},
                    JET_ROLES)
    assert physics.ptnorm(inputs)["c_pt_over_sumpt"][0].tolist() == pytest.approx([0.75, 0.25])
    assert physics.ptnorm(inputs)["c_e_over_sumpt"][0].tolist() == pytest.approx([1.0, 0.25])
    assert physics.energy_norm(inputs)["c_e_over_sume"][0].tolist() == pytest.approx([0.8, 0.2])
    assert physics.lognorm(inputs)["c_log_pt_over_sumpt"][0].tolist() == pytest.approx([math.log(0.75), math.log(0.25)])
    assert physics.log(inputs)["c_log_e"][0].tolist() == pytest.approx([math.log(40), math.log(10)])
    assert physics.relative(inputs)["c_dphi"][0].tolist() == pytest.approx([0.1, -0.1])
    assert physics.dr(inputs)["c_dr"][0].tolist() == pytest.approx([0.1, 0.1])


def test_jet_mass():
    pt, eta, m = np.array([100.0, 50.0]), np.array([0.5, -1.0]), np.array([20.0, 0.0])
    e = np.sqrt(m**2 + (pt * np.cosh(eta)) ** 2)
    out = physics.mass(Inputs({"jet_pt": pt, "jet_eta": eta, "jet_E": e},
                              {"pt": "jet_pt", "eta": "jet_eta", "e": "jet_E"}))
    np.testing.assert_allclose(out["jet_mass"], m, atol=1e-3)


@pytest.mark.parametrize("branches, expected", [
    # PHYSLITE: the calibrated `.pt` wins over the constituent-scale momentum listed before it (Seen 1)
    (["AnalysisJetsAuxDyn.JetConstitScaleMomentum_pt", "AnalysisJetsAuxDyn.JetConstitScaleMomentum_eta",
      "AnalysisJetsAuxDyn.pt", "AnalysisJetsAuxDyn.eta", "AnalysisJetsAuxDyn.phi", "AnalysisJetsAuxDyn.m"],
     {"pt": "AnalysisJetsAuxDyn.pt", "eta": "AnalysisJetsAuxDyn.eta", "phi": "AnalysisJetsAuxDyn.phi",
      "m": "AnalysisJetsAuxDyn.m"}),
    # large-R jets have only the prefixed ones, which are then used
    (["AnalysisLargeRJetsAuxDyn.JetConstitScaleMomentum_pt", "AnalysisLargeRJetsAuxDyn.Tau32_wta"],
     {"pt": "AnalysisLargeRJetsAuxDyn.JetConstitScaleMomentum_pt"}),
    (["Jet/Jet.PT", "Jet/Jet.Eta", "Jet/Jet.Phi", "Jet/Jet.Mass", "Jet/Jet.Tau[5]"],
     {"pt": "Jet/Jet.PT", "eta": "Jet/Jet.Eta", "phi": "Jet/Jet.Phi", "m": "Jet/Jet.Mass"}),
    (["AK4CHS/AK4CHS.ptRaw", "AK4CHS/AK4CHS.pt", "AK4CHS/AK4CHS.mass"],
     {"pt": "AK4CHS/AK4CHS.pt", "m": "AK4CHS/AK4CHS.mass"}),
    (["FatJet_pt", "FatJet_eta", "FatJet_mass", "FatJet_msoftdrop"], {"pt": "FatJet_pt", "eta": "FatJet_eta",
                                                                      "m": "FatJet_mass"}),
    (["x/x.fCoordinates.fX", "x/x.fCoordinates.fT", "jetp4.E"],
     {"px": "x/x.fCoordinates.fX", "e": "x/x.fCoordinates.fT"}),
])
def test_roles_from_the_last_name_component(branches, expected):
    assert kinematics.infer_roles(branches) == expected


def test_unit_scale_follows_the_last_name_component():
    assert [kinematics.is_energy_like(b) for b in ("AnalysisJetsAuxDyn.pt", "Coll:m", "Jet/Jet.PT", "jet_constit_e",
                                                   "AnalysisJetsAuxDyn.eta", "AK4CHS/AK4CHS.ptRaw", "rho")] == \
        [True, True, True, True, False, False, False]
