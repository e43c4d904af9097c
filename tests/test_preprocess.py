"""Preprocessing functions, their composition, unit scaling and user functions."""
import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.physics.preprocess import Inputs, Preprocess, PreprocessSpec, cartesian

C_ROLES = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "e": "c_e"}
J_ROLES = {"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi", "m": "jet_m"}


def spec(**kw):
    base = dict(constituent_functions=("cartesian",), jet_functions=("raw",),
                constituent_branches=("c_pt", "c_eta", "c_phi", "c_e"),
                jet_branches=("jet_pt", "jet_eta", "jet_phi", "jet_m", "rho"),
                constituent_roles=C_ROLES, jet_roles=J_ROLES, unit_scale=1.0, scaled_branches=(), max_constituents=3)
    base.update(kw)
    return PreprocessSpec(**base)


def branches(n=4, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, 3), bool)
    mask[0, 1:] = False
    mask[1] = False  # a jet with no constituent left
    pt = rng.uniform(1, 100, (n, 3)).astype(np.float32) * mask
    eta = rng.normal(0, 1, (n, 3)).astype(np.float32) * mask
    phi = rng.uniform(-np.pi, np.pi, (n, 3)).astype(np.float32) * mask
    b = {"c_pt": pt, "c_eta": eta, "c_phi": phi, "c_e": (pt * np.cosh(eta) * 1.01).astype(np.float32),
         "jet_pt": rng.uniform(300, 900, n).astype(np.float32), "jet_eta": rng.normal(0, 1, n).astype(np.float32),
         "jet_phi": rng.uniform(-3, 3, n).astype(np.float32), "jet_m": rng.uniform(10, 200, n).astype(np.float32),
         "rho": rng.uniform(0, 30, n).astype(np.float32)}
    return b, mask


def test_cartesian_by_hand():
    inputs = Inputs({"c_pt": np.array([[2.0]]), "c_eta": np.array([[0.5]]), "c_phi": np.array([[math.pi / 3]])},
                    {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi"}, np.array([[True]]))
    out = cartesian(inputs)
    assert list(out) == ["c_px", "c_py", "c_pz", "c_E"]
    assert out["c_px"][0, 0] == pytest.approx(1.0)
    assert out["c_py"][0, 0] == pytest.approx(math.sqrt(3))
    assert out["c_pz"][0, 0] == pytest.approx(2 * math.sinh(0.5))
    assert out["c_E"][0, 0] == pytest.approx(2 * math.cosh(0.5))  # massless without an E branch


def test_features_against_per_element_loop():
    b, mask = branches()
    out = spec(unit_scale=0.001, scaled_branches=("c_pt", "c_e", "jet_pt", "jet_m")).features(b, mask, 4)
    c, j = out["constituents"], out["jets"]
    assert c.shape == (4, 3, 4) and c.dtype == np.float32 and j.shape == (4, 5)
    for i in range(4):
        for k in range(3):
            if not mask[i, k]:
                assert np.all(c[i, k] == 0)
                continue
            pt, eta, phi, e = (float(b[n][i, k]) for n in ("c_pt", "c_eta", "c_phi", "c_e"))
            expected = [pt * 1e-3 * math.cos(phi), pt * 1e-3 * math.sin(phi), pt * 1e-3 * math.sinh(eta), e * 1e-3]
            np.testing.assert_allclose(c[i, k], expected, rtol=1e-5)
        np.testing.assert_allclose(j[i], [b["jet_pt"][i] * 1e-3, b["jet_eta"][i], b["jet_phi"][i],
                                          b["jet_m"][i] * 1e-3, b["rho"][i]], rtol=1e-6)


def test_composition_and_user_functions():
    s = spec(constituent_functions=("raw", "tests.userfuncs.features:log_pt"),
             jet_functions=("cartesian", "tests.userfuncs.features:jet_mass_over_pt"))
    names = s.feature_names()
    assert names["constituents"] == ["c_pt", "c_eta", "c_phi", "c_e", "log_pt"]
    assert names["jets"] == ["jet_px", "jet_py", "jet_pz", "jet_E", "jet_m", "rho", "m_over_pt"]
    b, mask = branches()
    out = s.features(b, mask, 4)
    np.testing.assert_allclose(out["constituents"][..., 4][mask], np.log(b["c_pt"][mask]), rtol=1e-6)
    np.testing.assert_allclose(out["jets"][:, 6], b["jet_m"] / b["jet_pt"], rtol=1e-6)
    # jets `cartesian` without an E branch: massless E = pt cosh(eta), mass kept as a feature
    np.testing.assert_allclose(out["jets"][:, 3], b["jet_pt"] * np.cosh(b["jet_eta"]), rtol=1e-5)


@pytest.mark.parametrize("functions, message", [
    (("raw", "raw"), "produced by both"),
    (("tests.userfuncs.features:wrong_shape",), "has shape"),
    (("tests.userfuncs.features:nope",), "has no function 'nope'"),
    (("tests.nomodule:f",), "cannot import module"),
])
def test_bad_functions(functions, message):
    with pytest.raises(ConfigError, match=message):
        spec(constituent_functions=functions).feature_names()


def test_missing_role_is_explained():
    s = spec(constituent_roles={"pt": "c_pt"})
    with pytest.raises(ConfigError, match="needs the 'eta' branch; name it under kinematics"):
        s.feature_names()


def test_dofn_sets_datasets_and_drops_branches():
    b, mask = branches()
    batch = RowBatch(0, 0, b, {"mask": mask})
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | beam.ParDo(Preprocess(spec()))
        assert_that(out | beam.Map(lambda x: (sorted(x.data), x.branches, x.data["constituents"].shape)),
                    equal_to([(["constituents", "jets", "mask"], {}, (4, 3, 4))]))
