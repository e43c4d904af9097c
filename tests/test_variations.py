"""Systematic variations of constituents against independent expectations.

Statistical checks use ~200k constituents and tolerances of 5 standard errors computed from the sample
size, so they fail for a wrong shift / width / efficiency, not by chance (and the numbers are deterministic
anyway: a given seed always gives the same sample). Map lookups and jet recomputation are compared with
straightforward per-constituent / per-jet Python references. Batches are views (jets taken out of order
from a larger array), include empty jets, and have constituents next to φ = ±π.
"""
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.config.loader import build
from root2hdf5.pipelines.config.schema import VariationConfig
from root2hdf5.pipelines.config.variations import variation_spec
from root2hdf5.transforms.core.batch import Jagged
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.physics import randoms as R
from root2hdf5.transforms.physics import variations as V
from root2hdf5.transforms.physics.size_maps import SizeMap
from root2hdf5.transforms.physics.variations import VariationSpec, apply_variation, recompute_jet
from tests.conftest import shared_file

ROLES = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "e": "c_E"}
SEED = 20240607
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ helpers


def make_batch(n_jets, mean_count=60, seed=0, mass=False, near_pi=0.0):
    """Random constituents of n_jets jets as views: the jets of a larger compact batch in shuffled order,
    ~5% of them empty. pT in MeV (log-uniform 400 MeV .. 500 GeV), E massless unless `mass`. A fraction
    `near_pi` of the constituents sits within 1e-3 of φ = ±π. Returns (jagged, ids)."""
    rng = np.random.default_rng(seed)
    total_jets = n_jets + n_jets // 3
    counts = rng.poisson(mean_count, total_jets)
    counts[rng.random(total_jets) < 0.05] = 0
    total = int(counts.sum())
    pt = np.exp(rng.uniform(np.log(400.0), np.log(5e5), total))
    eta = rng.uniform(-2.7, 2.7, total)
    phi = rng.uniform(-np.pi, np.pi, total)
    edge = rng.random(total) < near_pi
    phi[edge] = np.where(rng.random(edge.sum()) < 0.5, 1, -1) * (np.pi - rng.uniform(0, 1e-3, edge.sum()))
    m = rng.uniform(0, 140.0, total) if mass else 0.0
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + m ** 2)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    full = {name: Jagged(values.astype(np.float32), offsets[:-1], counts)
            for name, values in zip(ROLES.values(), (pt, eta, phi, energy))}
    pick = rng.permutation(total_jets)[:n_jets]  # a view: out of order, not all of the content
    jagged = {name: j.take(pick) for name, j in full.items()}
    ids = {"sample": 2, "file": 5, "entry": pick.astype(np.int64) // 2, "jet_index": pick % 2}
    return jagged, ids


def lists(j: Jagged):
    """Per-jet Python lists (the reference's view of a Jagged)."""
    return [j.content[s:s + c].tolist() for s, c in zip(j.starts, j.counts)]


def flat(j: Jagged) -> np.ndarray:
    return j.compact().content


def take_ids(ids, index):
    return {k: (v[index] if np.ndim(v) else v) for k, v in ids.items()}


def spec(**d) -> VariationSpec:
    return from_config(d)


def from_config(d, base_dir=None) -> VariationSpec:
    """One `variations:` entry as the config loads and resolves it."""
    return variation_spec(build(VariationConfig, d, "variations[0]"), "variations[0]", base_dir)


def config_variations(items):
    """A config with constituents and these `variations:`, resolved."""
    return config_from_dict({"samples": [{"name": "a", "files": ["x.root"], "tree": "t"}],
                             "input": {"jet_branches": ["jet_pt"],
                                       "constituent_branches": ["c_pt", "c_eta", "c_phi", "c_e"]},
                             "variations": items})


def tol(sigma: float) -> float:
    return 5 * sigma


@pytest.fixture(scope="module")
def big():
    """~200k constituents."""
    return make_batch(3500, seed=1, near_pi=0.05)


# ------------------------------------------------------------------------------------ random numbers


def test_uniforms_are_open_53_bit_and_uniform():
    keys = R.constituent_keys(R.jet_keys(SEED, "u", {"sample": 0, "file": 0, "entry": np.arange(4000),
                                                       "jet_index": 0}), np.full(4000, 50))
    u = R.uniform(keys, 0)
    assert ((u > 0) & (u < 1)).all()
    grid = u * 2.0 ** 53 - 0.5  # (k + 1/2) / 2^53
    assert np.array_equal(grid, np.round(grid))
    n = len(u)
    assert abs(u.mean() - 0.5) < tol(math.sqrt(1 / 12 / n))
    assert abs(u.var() - 1 / 12) < tol(math.sqrt(1 / 180 / n))  # var of (u - 1/2)^2 is 1/80 - 1/144
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert (np.abs(counts - n / 10) < tol(math.sqrt(n * 0.1 * 0.9))).all()
    other = R.uniform(keys, 1)  # another stream: uncorrelated
    assert abs(np.corrcoef(u, other)[0, 1]) < tol(1 / math.sqrt(n))
    z1, z2 = R.normal_pair(keys, (2, 3))
    for z in (z1, z2):
        assert abs(z.mean()) < tol(1 / math.sqrt(n))
        assert abs(z.std() - 1) < tol(1 / math.sqrt(2 * n))
        assert abs(np.mean(np.abs(z) < 1) - 0.682689) < tol(math.sqrt(0.6827 * 0.3173 / n))
    assert abs(np.corrcoef(z1, z2)[0, 1]) < tol(1 / math.sqrt(n))


def test_numbers_do_not_depend_on_batching_or_order():
    jagged, ids = make_batch(400, mean_count=20, seed=2)
    pt = jagged["c_pt"]
    n = len(pt)
    whole = R.constituent_keys(R.jet_keys(SEED, "res", ids), pt.counts)
    per_jet_whole = np.split(whole, np.cumsum(pt.counts)[:-1])
    # arbitrary sub-batches, each in a random order
    rng = np.random.default_rng(3)
    order = rng.permutation(n)
    cuts = np.sort(rng.choice(np.arange(1, n), 7, replace=False))
    for part in np.split(order, cuts):
        keys = R.constituent_keys(R.jet_keys(SEED, "res", take_ids(ids, part)), pt.counts[part])
        for jet, values in zip(part, np.split(keys, np.cumsum(pt.counts[part])[:-1])):
            assert np.array_equal(values, per_jet_whole[jet])
    # and two separate calls agree
    assert np.array_equal(whole, R.constituent_keys(R.jet_keys(SEED, "res", ids), pt.counts))


@pytest.mark.parametrize("kind, size", [("energy_resolution", 0.2), ("efficiency", 0.3),
                                        ("position", {"eta": 0.1, "phi": 0.2})])
def test_variations_do_not_depend_on_batching_or_order(kind, size):
    jagged, ids = make_batch(300, mean_count=25, seed=4)
    s = spec(name="v", kind=kind, size=size)
    whole = {b: lists(j) for b, j in apply_variation(s, jagged, ROLES, ids, SEED).items()}
    again = {b: lists(j) for b, j in apply_variation(s, jagged, ROLES, ids, SEED).items()}
    assert again == whole
    rng = np.random.default_rng(5)
    order = rng.permutation(len(jagged["c_pt"]))
    for part in np.array_split(order, 4):
        varied = apply_variation(s, {b: j.take(part) for b, j in jagged.items()}, ROLES, take_ids(ids, part), SEED)
        for branch, j in varied.items():
            assert lists(j) == [whole[branch][i] for i in part]


def test_numbers_change_with_seed_name_and_identity():
    ids = {"sample": 0, "file": 0, "entry": np.arange(1000), "jet_index": np.zeros(1000, int)}
    counts = np.full(1000, 10)

    def u(seed=SEED, name="a", **change):
        return R.uniform(R.constituent_keys(R.jet_keys(seed, name, {**ids, **change}), counts), 0)

    base = u()
    for other in (u(seed=SEED + 1), u(name="b"), u(sample=1), u(file=1), u(jet_index=np.ones(1000, int)),
                  u(entry=np.arange(1000) + 1)):
        # independent numbers: essentially never equal, uncorrelated
        assert np.mean(base == other) < 1e-3
        assert abs(np.corrcoef(base, other)[0, 1]) < tol(1 / math.sqrt(len(base)))
    # the varied values differ too
    jagged, jids = make_batch(50, seed=6)
    a = apply_variation(spec(name="a", kind="energy_resolution", size=0.1), jagged, ROLES, jids, SEED)
    b = apply_variation(spec(name="b", kind="energy_resolution", size=0.1), jagged, ROLES, jids, SEED)
    c = apply_variation(spec(name="a", kind="energy_resolution", size=0.1), jagged, ROLES, jids, SEED + 1)
    assert not np.array_equal(flat(a["c_pt"]), flat(b["c_pt"]))
    assert not np.array_equal(flat(a["c_pt"]), flat(c["c_pt"]))


def test_numbers_are_the_same_in_another_process():
    """Python's str hash is salted per process; the variation-name hash must not be. One other process
    with another salt (it prints its hash() of the name to prove that) gives the same numbers."""
    code = ("import numpy as np; from root2hdf5.transforms.physics import randoms as R;"
            "k = R.constituent_keys(R.jet_keys(7, 'jer_up', {'sample': 1, 'file': 2, 'entry': np.arange(5),"
            " 'jet_index': 0}), np.full(5, 3)); print(hash('jer_up')); print(R.uniform(k, 0).tolist())")
    salt = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    their_hash, their_numbers = result.stdout.strip().splitlines()[-2:]
    assert int(their_hash) != hash("jer_up")  # really another salt
    mine = R.uniform(R.constituent_keys(R.jet_keys(7, "jer_up", {"sample": 1, "file": 2, "entry": np.arange(5),
                                                                   "jet_index": 0}), np.full(5, 3)), 0)
    assert their_numbers == str(mine.tolist())


# ------------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("size", [0.05, -0.03])
def test_energy_scale_multiplies_pt_and_e_exactly(size):
    jagged, ids = make_batch(200, seed=7)
    before = {b: flat(j).copy() for b, j in jagged.items()}
    out = apply_variation(spec(name="jes", kind="energy_scale", size=size), jagged, ROLES, ids, SEED)
    for branch in ("c_pt", "c_E"):
        expected = [[np.float32(np.float64(v) * (1 + size)) for v in jet] for jet in lists(jagged[branch])]
        assert lists(out[branch]) == expected
        assert out[branch].content.dtype == np.float32
    for branch in ("c_eta", "c_phi"):  # untouched: shared, not copied
        assert out[branch] is jagged[branch]
    for b, j in jagged.items():  # inputs unchanged
        assert np.array_equal(flat(j), before[b])


def test_energy_resolution_mean_and_width(big):
    jagged, ids = big
    size = 0.1
    out = apply_variation(spec(name="jer", kind="energy_resolution", size=size), jagged, ROLES, ids, SEED)
    ratio = flat(out["c_pt"]).astype(np.float64) / flat(jagged["c_pt"])
    n = len(ratio)
    assert n > 190_000
    assert abs(ratio.mean() - 1) < tol(size / math.sqrt(n))
    assert abs(ratio.std() - size) < tol(size / math.sqrt(2 * n))
    # Gaussian, not just the right width: 68.27% within 1 sigma
    assert abs(np.mean(np.abs(ratio - 1) < size) - 0.682689) < tol(math.sqrt(0.6827 * 0.3173 / n))
    # pT and E of a constituent get the same factor
    np.testing.assert_allclose(flat(out["c_E"]) / flat(jagged["c_E"]), ratio, rtol=1e-6)
    assert lists(out["c_eta"]) == lists(jagged["c_eta"])
    print(f"\nresolution {size}: n={n} mean ratio {ratio.mean():.6f} std {ratio.std():.6f}")


def test_energy_resolution_never_negative(big):
    jagged, ids = big
    out = apply_variation(spec(name="wide", kind="energy_resolution", size=1.0), jagged, ROLES, ids, SEED)
    pt = flat(out["c_pt"])
    n = len(pt)
    assert (pt >= 0).all()
    # factor max(1 + z, 0) is 0 exactly when z < -1: probability 0.158655
    assert abs(np.mean(pt == 0) - 0.158655) < tol(math.sqrt(0.1587 * 0.8413 / n))


def test_efficiency_fraction_and_subset(big):
    jagged, ids = big
    p = 0.2
    out = apply_variation(spec(name="eff", kind="efficiency", size=p), jagged, ROLES, ids, SEED)
    n = int(jagged["c_pt"].counts.sum())
    kept = out["c_pt"].counts.sum() / n
    assert abs(kept - (1 - p)) < tol(math.sqrt(p * (1 - p) / n))
    # independent of pT: the same fraction for soft and hard constituents
    nominal_pt = flat(jagged["c_pt"])
    soft = np.median(nominal_pt)
    varied_pt = flat(out["c_pt"])
    for nominal_part, varied_part in ((nominal_pt < soft, varied_pt < soft), (nominal_pt >= soft, varied_pt >= soft)):
        m = nominal_part.sum()
        assert abs(varied_part.sum() / m - (1 - p)) < tol(math.sqrt(p * (1 - p) / m))
    print(f"\nefficiency drop {p}: kept {kept:.5f} of {n}")

    # every branch has the same counts, and per jet the kept constituents are an ordered subset of the
    # nominal ones with (pt, eta, phi, E) unchanged: match them as tuples
    for branch in ROLES.values():
        assert np.array_equal(out[branch].counts, out["c_pt"].counts)
    nominal = list(zip(*(lists(jagged[b]) for b in ROLES.values())))
    varied = list(zip(*(lists(out[b]) for b in ROLES.values())))
    for jet_nominal, jet_varied in zip(nominal[:500], varied[:500]):
        rows = list(zip(*jet_nominal))
        position = 0
        for row in zip(*jet_varied):
            while rows[position] != row:
                position += 1  # raises IndexError if the kept row is not in the rest of the jet
            position += 1


def test_efficiency_extremes():
    jagged, ids = make_batch(100, seed=8)
    all_kept = apply_variation(spec(name="e0", kind="efficiency", size=0), jagged, ROLES, ids, SEED)
    none_kept = apply_variation(spec(name="e1", kind="efficiency", size=1), jagged, ROLES, ids, SEED)
    for branch in ROLES.values():
        assert lists(all_kept[branch]) == lists(jagged[branch])
        assert (none_kept[branch].counts == 0).all() and len(none_kept[branch].content) == 0
    assert len(recompute_jet(none_kept, ROLES)["pt"]) == 100


@pytest.mark.parametrize("mass", [False, True])
def test_position_widths_phi_range_and_energy(big, mass):
    jagged, ids = big if not mass else make_batch(3500, seed=9, mass=True, near_pi=0.05)
    s_eta, s_phi = 0.05, 0.1
    out = apply_variation(spec(name="pos", kind="position", size={"eta": s_eta, "phi": s_phi}), jagged, ROLES,
                          ids, SEED)
    eta0, phi0 = flat(jagged["c_eta"]).astype(np.float64), flat(jagged["c_phi"]).astype(np.float64)
    eta1, phi1 = flat(out["c_eta"]).astype(np.float64), flat(out["c_phi"]).astype(np.float64)
    n = len(eta0)
    deta = eta1 - eta0
    dphi = np.pi - np.mod(np.pi - (phi1 - phi0), 2 * np.pi)  # the smallest angle between them
    for d, s in ((deta, s_eta), (dphi, s_phi)):
        assert abs(d.mean()) < tol(s / math.sqrt(n))
        assert abs(d.std() - s) < tol(s / math.sqrt(2 * n))
    assert abs(np.corrcoef(deta, dphi)[0, 1]) < tol(1 / math.sqrt(n))
    # phi in (-pi, pi] in its float32 representation, and constituents near the boundary did cross it
    pi32 = np.float32(np.pi)
    phi32 = flat(out["c_phi"])
    assert ((phi32 > -pi32) & (phi32 <= pi32)).all()
    assert np.sum(np.sign(phi1) != np.sign(phi0)) > 100
    # pT untouched; E moves with eta at fixed pT and mass
    assert out["c_pt"] is jagged["c_pt"]
    pt = flat(jagged["c_pt"]).astype(np.float64)
    m2_before = flat(jagged["c_E"]).astype(np.float64) ** 2 - (pt * np.cosh(eta0)) ** 2
    m2_after = flat(out["c_E"]).astype(np.float64) ** 2 - (pt * np.cosh(eta1)) ** 2
    energy = flat(out["c_E"]).astype(np.float64)
    if mass:  # the mass is kept: m^2 moves only by the float32 rounding of E (~1e-7 E^2)
        assert (np.abs(m2_after - m2_before) <= 4e-7 * energy ** 2).all()
    else:
        # massless: E = pT cosh eta up to the float32 rounding of the stored pT, eta, E (a few 1e-7)
        np.testing.assert_allclose(energy, pt * np.cosh(eta1), rtol=1e-6)
    print(f"\nposition (mass={mass}): n={n} std deta {deta.std():.6f} (0.05) dphi {dphi.std():.6f} (0.1)")


def test_position_one_size_for_both():
    jagged, ids = make_batch(2000, seed=10)
    out = apply_variation(spec(name="pos", kind="position", size=0.02), jagged, ROLES, ids, SEED)
    n = int(jagged["c_pt"].counts.sum())
    deta = flat(out["c_eta"]).astype(np.float64) - flat(jagged["c_eta"])
    dphi = V.wrap_phi(flat(out["c_phi"]).astype(np.float64) - flat(jagged["c_phi"]))
    for d in (deta, dphi):
        assert abs(d.std() - 0.02) < tol(0.02 / math.sqrt(2 * n)) + 1e-6  # + float32 rounding of the angles


def test_wrap_phi_edges():
    phi = np.array([-np.pi, np.pi, 3 * np.pi, -1e-300, -3 * np.pi, np.nextafter(-np.pi, 0), 7.0])
    wrapped = V.wrap_phi(phi)
    assert ((wrapped > -np.pi) & (wrapped <= np.pi)).all()
    np.testing.assert_allclose(np.cos(wrapped), np.cos(phi), atol=1e-12)
    np.testing.assert_allclose(np.sin(wrapped), np.sin(phi), atol=1e-12)


def test_other_branches_travel_along():
    jagged, ids = make_batch(300, seed=11)
    pt = jagged["c_pt"]
    # an integer branch without a role, e.g. a constituent type, in its own (compact) array
    starts = np.concatenate([[0], np.cumsum(pt.counts)[:-1]])
    jagged["c_type"] = Jagged(np.arange(pt.counts.sum(), dtype=np.int32), starts, pt.counts)
    scaled = apply_variation(spec(name="s", kind="energy_scale", size=0.1), jagged, ROLES, ids, SEED)
    assert scaled["c_type"] is jagged["c_type"]
    dropped = apply_variation(spec(name="d", kind="efficiency", size=0.5), jagged, ROLES, ids, SEED)
    assert dropped["c_type"].content.dtype == np.int32
    # the kept types are the types of the kept pTs
    type_of = {v: t for pts, types in zip(lists(pt), lists(jagged["c_type"])) for v, t in zip(pts, types)}
    for pts, types in zip(lists(dropped["c_pt"]), lists(dropped["c_type"])):
        assert [type_of[v] for v in pts] == types


def test_energy_scale_scales_every_energy_like_branch():
    jagged, ids = make_batch(50, seed=12)
    jagged["c_m"] = Jagged(jagged["c_pt"].content * 0.01, jagged["c_pt"].starts, jagged["c_pt"].counts)
    out = apply_variation(spec(name="s", kind="energy_scale", size=0.5), jagged, {**ROLES, "m": "c_m"}, ids, SEED)
    np.testing.assert_allclose(flat(out["c_m"]), flat(jagged["c_m"]) * 1.5, rtol=1e-7)


def test_empty_batch():
    empty = {b: Jagged(np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)) for b in ROLES.values()}
    ids = {"sample": 0, "file": 0, "entry": np.zeros(0, np.int64), "jet_index": np.zeros(0, np.int64)}
    for d in ({"kind": "energy_resolution", "size": 0.1}, {"kind": "efficiency", "size": 0.1},
              {"kind": "position", "size": 0.1}):
        out = apply_variation(spec(name="x", **d), empty, ROLES, ids, SEED)
        assert all(len(j) == 0 for j in out.values())
    assert all(len(v) == 0 for v in recompute_jet(empty, ROLES).values())


# --------------------------------------------------------------------------------------------- maps


PT_EDGES = np.array([0.0, 1e3, 5e3, 2e4, 1e5])  # variable bins, MeV
ETA_EDGES = np.array([-2.5, -1.0, 0.0, 1.3, 2.5])
ABS_ETA_EDGES = np.array([0.0, 0.8, 1.5, 2.5])


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "unc.root"
    rng = np.random.default_rng(13)
    h1 = np.array([0.08, 0.05, 0.03, 0.02])
    h2 = rng.uniform(0.01, 0.1, (4, 4))
    h2abs = rng.uniform(0.01, 0.1, (4, 3))
    prob = np.array([0.0, 0.5, 1.0, 0.0])
    with uproot.recreate(path) as f:
        f["jes_pt"] = (h1, PT_EDGES)
        f["jer_pt_eta"] = (h2, PT_EDGES, ETA_EDGES)
        f["jer_pt_abseta"] = (h2abs, PT_EDGES, ABS_ETA_EDGES)
        f["drop"] = (prob, PT_EDGES)
        f["negative"] = (np.array([-0.1, 0.2, 0.3, 0.4]), PT_EDGES)
        f["tree"] = {"x": np.arange(3.0)}
    return {"path": str(path), "jes_pt": h1, "jer_pt_eta": h2, "jer_pt_abseta": h2abs, "drop": prob}


def reference_bin(x, edges):
    """ROOT bin [low, high) of x, the first / last bin outside the axis: a loop over the edges."""
    if x < edges[0]:
        return 0
    for i in range(len(edges) - 1):
        if edges[i] <= x < edges[i + 1]:
            return i
    return len(edges) - 2


def lookup_points():
    """pT below, inside, exactly on edges and above the axis; eta likewise, both signs."""
    pt = np.array([-5.0, 0.0, 10.0, 999.9, 1e3, 4e3, 5e3, 19999.0, 2e4, 5e4, 1e5, 3e5, 1e7])
    eta = np.array([-4.0, -2.5, -1.2, -1.0, -0.5, 0.0, 0.79, 0.8, 1.3, 2.0, 2.5, 3.1])
    pt, eta = (a.ravel() for a in np.meshgrid(pt, eta))
    return pt, eta


def test_map_lookup_th1_th2_against_reference(maps):
    pt, eta = lookup_points()
    path = maps["path"]
    th1 = SizeMap.load(path, "jes_pt")
    assert not th1.uses_eta
    expected = [maps["jes_pt"][reference_bin(x, PT_EDGES)] for x in pt]
    assert th1.lookup(pt).tolist() == expected
    th2 = SizeMap.load(path, "jer_pt_eta")
    expected = [maps["jer_pt_eta"][reference_bin(x, PT_EDGES), reference_bin(y, ETA_EDGES)] for x, y in zip(pt, eta)]
    assert th2.lookup(pt, eta).tolist() == expected
    absolute = SizeMap.load(path, "jer_pt_abseta", abs_eta=True)
    expected = [maps["jer_pt_abseta"][reference_bin(x, PT_EDGES), reference_bin(abs(y), ABS_ETA_EDGES)]
                for x, y in zip(pt, eta)]
    assert absolute.lookup(pt, eta).tolist() == expected
    # times and pt_scale (a map in GeV on MeV constituents)
    gev = SizeMap.load(path, "jes_pt", times=-2.0, pt_scale=1e3)
    expected = [-2.0 * maps["jes_pt"][reference_bin(x * 1e3, PT_EDGES)] for x in pt / 1e3]
    assert gev.lookup(pt / 1e3).tolist() == expected


def test_energy_scale_from_th2_map(maps):
    jagged, ids = make_batch(300, seed=14)
    s = spec(name="jes", kind="energy_scale", size={"map": f"{maps['path']}:jer_pt_eta", "times": -1})
    assert s.required_roles() == ("pt", "eta")
    out = apply_variation(s, jagged, ROLES, ids, SEED)
    table = maps["jer_pt_eta"]
    for branch in ("c_pt", "c_E"):
        expected = [[np.float32(v * (1 - table[reference_bin(p, PT_EDGES), reference_bin(e, ETA_EDGES)]))
                     for v, p, e in zip(jv, jp, je)]
                    for jv, jp, je in zip(lists(jagged[branch]), lists(jagged["c_pt"]), lists(jagged["c_eta"]))]
        assert lists(out[branch]) == expected


def test_efficiency_from_map(maps):
    jagged, ids = make_batch(1000, seed=15)
    out = apply_variation(spec(name="eff", kind="efficiency", size={"map": f"{maps['path']}:drop"}), jagged, ROLES,
                          ids, SEED)
    before, after = flat(jagged["c_pt"]), flat(out["c_pt"])
    b = np.clip(np.searchsorted(PT_EDGES, before, "right") - 1, 0, 3)
    a = np.clip(np.searchsorted(PT_EDGES, after, "right") - 1, 0, 3)
    for i, p in enumerate(maps["drop"]):
        m = (b == i).sum()
        if p == 0:
            assert (a == i).sum() == m  # all kept
        elif p == 1:
            assert (a == i).sum() == 0  # all dropped
        else:
            assert abs((a == i).sum() / m - (1 - p)) < tol(math.sqrt(p * (1 - p) / m))


def test_position_from_map(maps):
    jagged, ids = make_batch(3000, seed=16)
    s = spec(name="pos", kind="position", size={"eta": {"map": f"{maps['path']}:jes_pt"}, "phi": 0.0})
    out = apply_variation(s, jagged, ROLES, ids, SEED)
    pt = flat(jagged["c_pt"]).astype(np.float64)
    deta = flat(out["c_eta"]).astype(np.float64) - flat(jagged["c_eta"])
    width = maps["jes_pt"][np.clip(np.searchsorted(PT_EDGES, pt, "right") - 1, 0, 3)]
    pull = deta / width
    assert abs(pull.std() - 1) < tol(1 / math.sqrt(2 * len(pull))) + 1e-4  # + float32 rounding of eta
    assert lists(out["c_phi"]) == lists(jagged["c_phi"])  # width 0


def test_config_form_to_spec_and_back(maps):
    """Each config form gives the spec it says; the item as written with a variation's output (its JSON)
    loads back to the same item."""
    path = maps["path"]
    jes = from_config({"name": "jes_up", "kind": "energy_scale", "size": 0.05})
    assert (jes.name, jes.kind, jes.size) == ("jes_up", "energy_scale", 0.05)
    jer = from_config({"name": "jer", "kind": "energy_resolution",
                       "size": {"map": f"{path}:jer_pt_abseta", "abs_eta": True, "times": 2.0, "pt_scale": 0.5}})
    assert (jer.size.path, jer.size.hist, jer.size.abs_eta, jer.size.times, jer.size.pt_scale) == \
        (path, "jer_pt_abseta", True, 2.0, 0.5)
    pos = from_config({"name": "pos", "kind": "position", "size": {"eta": 0.01, "phi": {"map": f"{path}:jes_pt"}}})
    assert pos.size == 0.01 and (pos.size_phi.path, pos.size_phi.hist) == (path, "jes_pt")
    for d in ({"name": "jes_up", "kind": "energy_scale", "size": 0.05, "recompute_jets": True},
              {"name": "pos", "kind": "position", "size": {"eta": 0.01, "phi": {"map": f"{path}:jes_pt"}}}):
        item = build(VariationConfig, d, "variations[0]")
        assert build(VariationConfig, json.loads(json.dumps(dataclasses.asdict(item))), "variations[0]") == item


def test_relative_map_path_uses_base_dir(maps):
    folder, name = os.path.split(maps["path"])
    s = from_config({"name": "a", "kind": "energy_scale", "size": {"map": f"{name}:jes_pt"}}, base_dir=folder)
    assert s.size.path == maps["path"]


# ------------------------------------------------------------------------------------- jet recompute


def reference_jet(pts, etas, phis, energies=None):
    px = py = pz = e = 0.0
    for i, (pt, eta, phi) in enumerate(zip(pts, etas, phis)):
        px += pt * math.cos(phi)
        py += pt * math.sin(phi)
        pz += pt * math.sinh(eta)
        e += energies[i] if energies is not None else pt * math.cosh(eta)
    pt = math.hypot(px, py)
    eta = math.asinh(pz / pt) if pt > 0 else 0.0
    phi = math.atan2(py, px)
    m = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
    return {"pt": pt, "eta": eta, "phi": phi, "m": m, "e": e}


@pytest.mark.parametrize("with_e", [True, False])
def test_recompute_jet_against_reference(with_e):
    jagged, _ = make_batch(300, mean_count=15, seed=17, mass=True)
    roles = ROLES if with_e else {k: v for k, v in ROLES.items() if k != "e"}
    if not with_e:
        del jagged["c_E"]
    got = recompute_jet(jagged, roles)
    columns = [lists(jagged[b]) for b in ("c_pt", "c_eta", "c_phi")]
    energies = lists(jagged["c_E"]) if with_e else [None] * len(columns[0])
    refs = [reference_jet(*jet, e) for *jet, e in zip(*columns, energies)]
    empty = jagged["c_pt"].counts == 0
    assert empty.any()
    for q in V.JET_QUANTITIES:
        expected = np.array([r[q] for r in refs])
        assert np.isfinite(got[q]).all()
        assert (got[q][empty] == 0).all()
        energy = np.array([r["e"] for r in refs])
        if q == "m":  # m^2 = E^2 - p^2 cancels: compare m^2 with E^2 precision
            assert_close(got[q] ** 2, expected ** 2, 1e-9 * energy ** 2)
        else:  # sums in another order: agree to ~1e-9 relative to the jet's energy (angles: absolute)
            assert_close(got[q], expected, 1e-9 * (energy if q in ("pt", "e") else 1))


def assert_close(got, expected, atol):
    assert (np.abs(got - expected) <= atol + 1e-12).all(), np.max(np.abs(got - expected) - atol)


# -------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("d, message", [
    ("jes", "variations[0]: expected a mapping"),
    ({"kind": "energy_scale", "size": 0.1}, "missing required config key 'variations[0].name'"),
    ({"name": "a", "size": 0.1}, "missing required config key 'variations[0].kind'"),
    ({"name": "a", "kind": "energy_scale"}, "missing required config key 'variations[0].size'"),
    ({"name": "a", "kind": "energy_scale", "size": 0.1, "seed": 3}, "unknown config key 'variations[0].seed'"),
    ({"name": "a b", "kind": "energy_scale", "size": 0.1}, "variations[0].name"),
    ({"name": "", "kind": "energy_scale", "size": 0.1}, "variations[0].name"),
    ({"name": "a", "kind": "jes", "size": 0.1}, "variations[0].kind: 'jes' is not one of"),
    ({"name": "a", "kind": "energy_scale", "size": -1.5}, "variations[0].size: energy_scale size must be"),
    ({"name": "a", "kind": "energy_scale", "size": True}, "variations[0].size: expected a number"),
    ({"name": "a", "kind": "energy_scale", "size": "0.1"}, "variations[0].size: expected a number"),
    ({"name": "a", "kind": "energy_scale", "size": float("nan")}, "variations[0].size"),
    ({"name": "a", "kind": "energy_resolution", "size": -0.1}, "variations[0].size: energy_resolution size"),
    ({"name": "a", "kind": "efficiency", "size": 1.2}, "drop probability in [0, 1]"),
    ({"name": "a", "kind": "position", "size": {"eta": 0.1}}, "missing required config key 'variations[0].size.phi'"),
    ({"name": "a", "kind": "position", "size": {"eta": 0.1, "phi": -1}}, "variations[0].size.phi"),
    ({"name": "a", "kind": "position", "size": {"eta": 0.1, "phi": 0.1, "r": 1}},
     "unknown config key 'variations[0].size.r'"),
    ({"name": "a", "kind": "energy_scale", "size": {"file": "x.root"}}, "unknown config key 'variations[0].size.file'"),
    ({"name": "a", "kind": "energy_scale", "size": {"map": "x.root"}}, "path/to/file.root:histname"),
    ({"name": "a", "kind": "energy_scale", "size": {"map": "x.root:"}}, "path/to/file.root:histname"),
    ({"name": "a", "kind": "energy_scale", "size": {"map": "/no/such/unc.root:h"}},
     "variations[0].size.map: uncertainty map file /no/such/unc.root does not exist"),
])
def test_config_errors(d, message):
    with pytest.raises(ConfigError) as err:
        from_config(d)
    assert message in str(err.value)


@pytest.mark.parametrize("size, message", [
    ({"map": "{path}:missing"}, "{path} has no histogram 'missing' (TH1/TH2 in it: "),
    ({"map": "{path}:tree"}, "expected a TH1 (in pT) or a TH2 (in pT and eta)"),  # a tree / RNTuple
    ({"map": "{path}:jes_pt", "abs_eta": True}, "variations[0].size.abs_eta: 'jes_pt' in {path} is a TH1D"),
    ({"map": "{path}:jes_pt", "abs_eta": "yes"}, "variations[0].size.abs_eta: expected true or false"),
    ({"map": "{path}:jes_pt", "times": "2"}, "variations[0].size.times: expected a number"),
    ({"map": "{path}:jes_pt", "pt_scale": 0}, "variations[0].size.pt_scale: expected a positive number"),
    ({"map": "{path}:jes_pt", "times": -20}, "histogram 'jes_pt' in {path} (times -20) gives values in"),
])
def test_map_errors(maps, size, message):
    size = {k: v.format(path=maps["path"]) if isinstance(v, str) else v for k, v in size.items()}
    with pytest.raises(ConfigError) as err:
        from_config({"name": "a", "kind": "energy_scale", "size": size})
    assert message.format(path=maps["path"]) in str(err.value)


def test_map_values_checked_against_the_kind(maps, tmp_path):
    with pytest.raises(ConfigError, match="drop probability in \\[0, 1\\]; histogram 'negative'"):
        from_config({"name": "a", "kind": "efficiency", "size": {"map": f"{maps['path']}:negative"}})
    not_root = tmp_path / "notes.root"
    not_root.write_text("not a ROOT file")
    with pytest.raises(ConfigError, match=f"cannot open uncertainty map file {not_root}"):
        from_config({"name": "a", "kind": "efficiency", "size": {"map": f"{not_root}:h"}})


def test_variation_list_errors():
    with pytest.raises(ConfigError, match=r"variations\[1\].name: 'a' is already used by variations\[0\]"):
        config_variations([{"name": "a", "kind": "efficiency", "size": 0.1},
                                  {"name": "a", "kind": "energy_scale", "size": 0.1}])
    with pytest.raises(ConfigError, match="variations: expected a list"):
        config_variations({"name": "a"})
    assert config_variations([]).variations == []


def test_missing_roles_and_inconsistent_branches():
    jagged, ids = make_batch(20, seed=18)
    with pytest.raises(ConfigError, match="'pos' \\(position\\) needs the constituent phi branch"):
        apply_variation(spec(name="pos", kind="position", size=0.1), jagged, {"eta": "c_eta", "pt": "c_pt"}, ids, SEED)
    with pytest.raises(ConfigError, match="needs the constituent pt branch"):
        apply_variation(spec(name="s", kind="energy_scale", size=0.1), jagged, {"pt": "not_there"}, ids, SEED)
    other = dict(jagged, c_eta=jagged["c_eta"].take(np.arange(19, -1, -1)))
    with pytest.raises(ValueError, match="different numbers of constituents"):
        apply_variation(spec(name="s", kind="energy_scale", size=0.1), other, ROLES, ids, SEED)
    with pytest.raises(ValueError, match="missing jet_index"):
        apply_variation(spec(name="s", kind="efficiency", size=0.1), jagged, ROLES,
                        {k: v for k, v in ids.items() if k != "jet_index"}, SEED)
    with pytest.raises(ConfigError, match="recomputing jets needs the constituent phi"):
        recompute_jet(jagged, {"pt": "c_pt", "eta": "c_eta"})


# --------------------------------------------------------------------------------------- real file


def test_shared_file_jet_pt_and_scale():
    path = shared_file("jets_flat_zprime.root")
    names = {"pt": "fjet_clus_pt", "eta": "fjet_clus_eta", "phi": "fjet_clus_phi", "e": "fjet_clus_E"}
    tree = uproot.open(path)["FlatSubstructureJetTree"]
    arrays = tree.arrays([*names.values(), "fjet_pt", "fjet_m"], entry_stop=1000)
    jagged = {b: Jagged.from_awkward(arrays[b]) for b in names.values()}
    n = len(jagged["fjet_clus_pt"])
    stored_pt = arrays["fjet_pt"].to_numpy().astype(np.float64)
    nominal = recompute_jet(jagged, names)
    ratio = nominal["pt"] / stored_pt
    # the same clusters make the stored jet (E-scheme sum): equal up to float32 rounding
    print(f"\njets_flat_zprime.root, {n} jets: median recomputed / stored jet pT {np.median(ratio):.9f}, "
          f"range [{ratio.min():.8f}, {ratio.max():.8f}]; median mass ratio "
          f"{np.median(nominal['m'] / arrays['fjet_m'].to_numpy()):.9f}")
    assert abs(np.median(ratio) - 1) < 1e-6
    assert np.abs(ratio - 1).max() < 1e-5

    ids = {"sample": 0, "file": 0, "entry": np.arange(n), "jet_index": 0}
    size = 0.05
    up = apply_variation(spec(name="jes_up", kind="energy_scale", size=size), jagged, names, ids, SEED)
    varied = recompute_jet(up, names)
    shift = varied["pt"] / nominal["pt"]
    print(f"scale up {size}: recomputed jet pT ratio in [{shift.min():.9f}, {shift.max():.9f}]")
    np.testing.assert_allclose(shift, 1 + size, rtol=1e-6)
    np.testing.assert_allclose(varied["m"] / nominal["m"], 1 + size, rtol=1e-4)
    np.testing.assert_allclose(varied["eta"], nominal["eta"], rtol=0, atol=1e-7)  # float32 rounding of the scaled pT
