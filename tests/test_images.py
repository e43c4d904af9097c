"""Jet images against straightforward per-jet references built on np.histogram2d.

Random batches include empty jets and jets with 1 and 2 constituents, masked slots holding junk, values
exactly on interior bin edges and on the upper range edge, values outside the range, and jets at φ ≈ ±π
with constituents on both sides of the boundary. The real shared file checks the pixel form against the
old jet converter's formula.
"""
import math

import numpy as np
import pytest

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.config.images import image_spec
from root2hdf5.pipelines.config.loader import build
from root2hdf5.pipelines.config.schema import ImageConfig
from root2hdf5.transforms.core.errors import ConfigError, InputError
from root2hdf5.transforms.physics import images
from root2hdf5.transforms.physics.images import ImageSpec
from root2hdf5.transforms.physics.preprocess import Inputs
from tests.conftest import shared_file


def spec_of(entry, where: str = "images[0]") -> ImageSpec:
    """One `images:` entry as the config loads and resolves it."""
    return image_spec(build(ImageConfig, entry, where), where)


def config_images(items):
    """The `images:` list of a config with constituents, resolved."""
    return config_from_dict({"samples": [{"name": "a", "files": ["x.root"], "tree": "t"}],
                             "input": {"jet_branches": ["jet_pt"],
                                       "constituent_branches": ["c_pt", "c_eta", "c_phi", "c_e"]},
                             "images": items})

ROLES = {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "e": "c_E"}
JET_ROLES = {"eta": "jet_eta", "phi": "jet_phi"}
BINS = (8, 6)
RANGE = ((-1.0, 1.0), (-1.5, 1.5))


# ------------------------------------------------------------------------------------------ references


def reference_pixels(eta, phi, mask, bins, range):
    """A Python loop per constituent: the histogram2d bin of the value clipped into the range."""
    _, eta_edges, phi_edges = np.histogram2d([], [], bins=bins, range=range)
    out = np.full((*mask.shape, 2), -1, np.int64)
    for j in np.arange(mask.shape[0]):
        for k in np.arange(mask.shape[1]):
            if not mask[j, k]:
                continue
            for axis, (x, e) in enumerate(((float(eta[j, k]), eta_edges), (float(phi[j, k]), phi_edges))):
                x = min(max(x, e[0]), e[-1])  # the old tool's clipping into the edge pixels
                h, _ = np.histogram(np.array([x]), bins=e)  # one value, one bin: where histogram puts it
                out[j, k, axis] = int(np.argmax(h))
    return out


def reference_dense(eta, phi, mask, channels, bins, range, normalize):
    """np.histogram2d per jet and channel."""
    n = mask.shape[0]
    out = np.zeros((n, *bins, len(channels)))
    outside = 0
    for j in np.arange(n):
        m = mask[j]
        x, y = eta[j][m].astype(np.float64), phi[j][m].astype(np.float64)
        counts, _, _ = np.histogram2d(x, y, bins=bins, range=range)
        outside += len(x) - int(counts.sum())
        for c, values in enumerate(channels.values()):
            if values is None:
                out[j, ..., c] = counts
                continue
            h, _, _ = np.histogram2d(x, y, bins=bins, range=range, weights=values[j][m].astype(np.float64))
            if normalize:
                h = h / h.sum() if h.sum() > 0 else np.zeros_like(h)
            out[j, ..., c] = h
    return out, outside


# --------------------------------------------------------------------------------------------- batches


def random_batch(n=250, width=10, seed=0):
    """(n, width) float32 coordinates in and around RANGE, with edge values planted; junk in padded slots."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, width + 1, n)
    counts[:4] = [0, 1, 2, 0]
    mask = np.arange(width) < counts[:, None]
    mask[4:30] &= rng.random((26, width)) < 0.7  # holes in the middle, not only trailing padding
    eta = rng.uniform(-1.3, 1.3, (n, width))
    phi = rng.uniform(-1.8, 1.8, (n, width))
    eta_edges, phi_edges = images.edges(BINS, RANGE)
    # exactly on edges: interior ones (upper bin), the lower and the upper range edge (last bin, inclusive)
    eta[30:60] = rng.choice(eta_edges, (30, width))
    phi[45:75] = rng.choice(phi_edges, (30, width))
    eta[1, 0], phi[1, 0] = 1.0, 1.5  # a lone constituent in the top corner
    eta[2, :2], phi[2, :2] = [0.25, -1.0], [0.0, -1.5]
    pt = rng.exponential(20, (n, width)) + 0.5
    junk = ~mask
    eta[junk], phi[junk], pt[junk] = 0.1, 0.1, 1e3  # must not count anywhere
    return eta.astype(np.float32), phi.astype(np.float32), mask, pt.astype(np.float32)


@pytest.fixture(scope="module")
def batch():
    return random_batch()


def physics_inputs(eta, phi, mask, pt, jet_eta=None, jet_phi=None):
    arrays = {"c_pt": pt, "c_eta": eta, "c_phi": phi, "c_E": (pt * np.cosh(eta) * 1.1).astype(np.float32)}
    arrays = {k: np.where(mask, v, 0).astype(np.float32) for k, v in arrays.items()}
    jets = {} if jet_eta is None else {"jet_eta": np.asarray(jet_eta, np.float32),
                                       "jet_phi": np.asarray(jet_phi, np.float32)}
    return Inputs(arrays, ROLES, mask, jets, JET_ROLES if jets else {})


# --------------------------------------------------------------------------------------------- pixels


def test_edges_are_histogram2ds():
    _, e, p = np.histogram2d([], [], bins=BINS, range=RANGE)
    eta_edges, phi_edges = images.edges(BINS, RANGE)
    assert np.array_equal(eta_edges, e) and np.array_equal(phi_edges, p)


def test_pixels_match_reference(batch):
    eta, phi, mask, _ = batch
    out = images.pixel_indices(eta, phi, mask, BINS, RANGE)
    assert out.dtype == np.int32 and out.shape == (*mask.shape, 2)
    assert np.array_equal(out, reference_pixels(eta, phi, mask, BINS, RANGE))
    assert np.all(out[~mask] == -1)
    valid = out[mask]
    assert valid.min() == 0 and valid[:, 0].max() == BINS[0] - 1 and valid[:, 1].max() == BINS[1] - 1


def test_pixels_edges_and_clipping():
    # one jet: interior edge -> upper bin, range edges -> first / last bin, outside -> clipped, NaN -> -1
    eta = np.array([[-0.5, 1.0, -1.0, 5.0, -5.0, 0.0, np.nan, 0.3, 0.2]])
    phi = np.array([[0.5, 1.5, -1.5, 9.0, -9.0, np.inf, 0.0, -np.inf, 0.2]])
    mask = np.ones(eta.shape, bool)
    mask[0, -1] = False
    out, outside = images._pixels(eta, phi, mask, BINS, RANGE)
    assert out[0].tolist() == [[2, 4], [7, 5], [0, 0], [7, 5], [0, 0], [4, 5], [-1, -1], [5, 0], [-1, -1]]
    assert outside == 5  # 5.0/9.0, -5.0/-9.0, +inf, NaN, -inf


def test_non_dyadic_edges_and_their_neighbours():
    # edges that are not exact binary fractions, and the floats right next to them: the fast bin estimate
    # must still agree with histogram2d everywhere (one value per jet so the reference sees each alone)
    bins, rng_ = (7, 13), ((-0.7, 1.3), (-np.pi, np.pi))
    eta_edges, phi_edges = images.edges(bins, rng_)
    def around(e):
        return np.concatenate([e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf)])
    eta = np.concatenate([around(eta_edges), np.random.default_rng(3).uniform(-1, 1.5, 100)])
    phi = np.resize(np.concatenate([around(phi_edges), np.random.default_rng(4).uniform(-3.5, 3.5, 50)]), eta.size)
    eta, phi = eta[:, None], phi[:, None]
    mask = np.ones(eta.shape, bool)
    out = images.pixel_indices(eta, phi, mask, bins, rng_)
    assert np.array_equal(out, reference_pixels(eta, phi, mask, bins, rng_))
    dense, outside = images.dense_images(eta, phi, mask, {"count": None}, bins, rng_)
    ref, ref_outside = reference_dense(eta, phi, mask, {"count": None}, bins, rng_, False)
    assert outside == ref_outside and np.array_equal(dense, ref)


def test_pixels_degenerate_shapes():
    for shape in ((0, 5), (3, 0), (0, 0)):
        z = np.zeros(shape)
        assert images.pixel_indices(z, z, np.zeros(shape, bool), BINS, RANGE).shape == (*shape, 2)


def test_tiny_bins_take_the_exact_path():
    # bins a few ulp wide: the arithmetic estimate is not trusted, the binary search decides
    lo = 1e6
    rng = ((lo, lo + 1e-4), (-1.0, 1.0))
    eta = lo + np.random.default_rng(1).uniform(-2e-5, 1.2e-4, (20, 7))
    phi = np.zeros_like(eta)
    mask = np.ones(eta.shape, bool)
    out = images.pixel_indices(eta, phi, mask, (1000, 2), rng)
    assert np.array_equal(out, reference_pixels(eta, phi, mask, (1000, 2), rng))
    dense, _ = images.dense_images(eta, phi, mask, {"count": None}, (1000, 2), rng)
    ref, _ = reference_dense(eta, phi, mask, {"count": None}, (1000, 2), rng, False)
    assert np.array_equal(dense, ref)


# ---------------------------------------------------------------------------------------------- dense


@pytest.mark.parametrize("normalize", [False, True])
def test_dense_matches_histogram2d(batch, normalize):
    eta, phi, mask, pt = batch
    energy = pt * np.float32(1.7)
    channels = {"pt": pt, "count": None, "e": energy}
    out, outside = images.dense_images(eta, phi, mask, channels, BINS, RANGE, normalize=normalize)
    ref, ref_outside = reference_dense(eta, phi, mask, channels, BINS, RANGE, normalize)
    assert out.dtype == np.float32 and out.shape == (len(mask), *BINS, 3)
    assert outside == ref_outside > 0
    assert np.array_equal(out[..., 1], ref[..., 1])  # counts: exact
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 if normalize else 1e-4)
    assert np.all(np.isfinite(out))
    # every valid in-range constituent lands once; the junk in padded slots nowhere
    assert out[..., 1].sum() == mask.sum() - outside
    if normalize:
        sums = out[..., 0].sum(axis=(1, 2))
        has = out[..., 1].sum(axis=(1, 2)) > 0
        np.testing.assert_allclose(sums[has], 1, rtol=1e-5)
        assert np.all(out[~has] == 0)  # empty images stay zero: no NaN


def test_dense_edge_values():
    # interior edge -> upper bin; the upper range edge is inside (last bin); above it and NaN are dropped
    eta = np.array([[0.25, 1.0, -1.0, 1.0 + 1e-12, np.nan, 0.0]])
    phi = np.array([[0.5, 1.5, -1.5, 0.0, 0.0, 0.0]])
    pt = np.array([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]])
    mask = np.array([[True] * 5 + [False]])
    out, outside = images.dense_images(eta, phi, mask, {"pt": pt, "n": None}, BINS, RANGE)
    assert outside == 2
    hit = {tuple(i): out[(0, *i)].tolist() for i in np.argwhere(out[0, ..., 1] > 0)}
    assert hit == {(5, 4): [1.0, 1.0], (7, 5): [2.0, 1.0], (0, 0): [4.0, 1.0]}


def test_dense_empty_and_tiny_jets_normalized():
    eta = np.array([[0.0, 0.0], [0.1, 0.0], [0.1, -0.9], [5.0, 5.0], [0.3, 0.3]])
    phi = np.zeros_like(eta)
    pt = np.array([[9.0, 9.0], [3.0, 0.0], [1.0, 3.0], [2.0, 2.0], [-1.0, 0.5]])
    mask = np.array([[False, False], [True, False], [True, True], [True, True], [True, True]])
    out, outside = images.dense_images(eta, phi, mask, {"pt": pt, "count": None}, BINS, RANGE, normalize=True,
                                       dtype="float16")
    assert out.dtype == np.float16 and outside == 2 and np.all(np.isfinite(out))
    assert np.all(out[0] == 0)  # no constituents
    assert out[1, ..., 0].sum() == 1 and out[1, ..., 1].sum() == 1
    assert sorted(out[2, ..., 0][out[2, ..., 0] > 0].tolist()) == [0.25, 0.75]
    assert np.all(out[3, ..., 0] == 0) and np.all(out[3, ..., 1] == 0)  # everything out of range: all zero
    assert np.all(out[4, ..., 0] == 0) and out[4, ..., 1].sum() == 2  # negative sum: no normalization, zero


def test_dense_float16(batch):
    eta, phi, mask, pt = batch
    channels = {"pt": pt / np.float32(100), "count": None}
    half, _ = images.dense_images(eta, phi, mask, channels, BINS, RANGE, dtype="float16")
    exact, _ = images.dense_images(eta, phi, mask, channels, BINS, RANGE, dtype="float64")
    assert half.dtype == np.float16
    assert np.array_equal(half, exact.astype(np.float16))  # accumulated in float64, rounded once at the end
    assert np.array_equal(half[..., 1], exact[..., 1])  # counts stay exact
    big = {"pt": pt * np.float32(1e4)}  # MeV-scale sums beyond float16's 65504: an error, not inf
    with pytest.raises(InputError, match="float16"):
        images.dense_images(eta, phi, mask, big, BINS, RANGE, dtype="float16")


def test_dense_many_pixels(batch):
    # more than 2^16 pixels per image: grouping sorts the pixel numbers as int64 instead of uint16
    eta, phi, mask, pt = (a[:12] for a in batch)
    bins = (257, 256)
    out, outside = images.dense_images(eta, phi, mask, {"count": None, "pt": pt}, bins, RANGE)
    ref, ref_outside = reference_dense(eta, phi, mask, {"count": None, "pt": pt}, bins, RANGE, False)
    assert outside == ref_outside and np.array_equal(out[..., 0], ref[..., 0])
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_dense_degenerate_shapes():
    for shape in ((0, 5), (3, 0), (0, 0)):
        z = np.zeros(shape)
        out, outside = images.dense_images(z, z, np.zeros(shape, bool), {"pt": z, "c": None}, BINS, RANGE)
        assert out.shape == (shape[0], *BINS, 2) and outside == 0 and not out.any()


def test_kernel_argument_errors(batch):
    eta, phi, mask, pt = batch
    with pytest.raises(ValueError, match="same"):
        images.pixel_indices(eta[:, :3], phi, mask, BINS, RANGE)
    with pytest.raises(ValueError, match="boolean"):
        images.pixel_indices(eta, phi, mask.astype(int), BINS, RANGE)
    with pytest.raises(ValueError, match="lo < hi"):
        images.pixel_indices(eta, phi, mask, BINS, ((1, -1), (0, 1)))
    with pytest.raises(ValueError, match="channel 'pt'"):
        images.dense_images(eta, phi, mask, {"pt": pt[:, :2]}, BINS, RANGE)
    with pytest.raises(ValueError, match="floating"):
        images.dense_images(eta, phi, mask, {"pt": pt}, BINS, RANGE, dtype="int32")


# --------------------------------------------------------------------------------------------- frames


def boundary_jets():
    """Jets at φ ≈ ±π whose constituents straddle the boundary, plus ordinary ones."""
    rng = np.random.default_rng(5)
    n, width = 40, 8
    jet_eta = rng.uniform(-2, 2, n)
    jet_phi = np.where(np.arange(n) % 2 == 0, np.pi - 0.01, -np.pi + 0.01)
    jet_phi[30:] = rng.uniform(-3, 3, 10)
    eta = jet_eta[:, None] + rng.normal(0, 0.2, (n, width))
    phi = jet_phi[:, None] + rng.uniform(-0.3, 0.3, (n, width))
    phi = np.where(phi > np.pi, phi - 2 * np.pi, np.where(phi <= -np.pi, phi + 2 * np.pi, phi))
    counts = rng.integers(0, width + 1, n)
    counts[:3] = [0, 1, 2]
    mask = np.arange(width) < counts[:, None]
    pt = rng.exponential(20, (n, width)) + 1
    return physics_inputs(eta.astype(np.float32), phi.astype(np.float32), mask, pt.astype(np.float32),
                          jet_eta, jet_phi), jet_eta, jet_phi


def test_relative_frame_across_phi_boundary():
    inputs, jet_eta, jet_phi = boundary_jets()
    spec = spec_of({"name": "p", "kind": "pixels", "bins": [20, 20], "range": [[-1, 1], [-1, 1]],
                                "frame": "relative"})
    eta, phi = images.coordinates(spec, inputs)
    assert eta.dtype == phi.dtype == np.float64
    mask = inputs.mask
    # reference: Δφ wrapped by hand, per constituent
    for j, k in np.argwhere(mask):
        d = float(inputs.arrays["c_phi"][j, k]) - float(np.float32(jet_phi[j]))
        d = (d + math.pi) % (2 * math.pi) - math.pi
        assert phi[j, k] == pytest.approx(d, abs=1e-5)
        assert eta[j, k] == pytest.approx(float(inputs.arrays["c_eta"][j, k]) - float(np.float32(jet_eta[j])), abs=1e-5)
    out, outside = images.compute(spec, inputs)
    assert np.array_equal(out, reference_pixels(eta, phi, mask, spec.bins, spec.range))
    # |Δφ| < 0.31 -> the central φ pixels 6..13 only, in one contiguous block per jet (raw φ would split
    # them between pixel 0 and pixel 19)
    crossing = [j for j in range(30) if mask[j].sum() >= 2 and np.ptp(inputs.arrays["c_phi"][j][mask[j]]) > np.pi]
    assert len(crossing) >= 10
    for j in crossing:
        cols = np.unique(out[j][mask[j], 1])
        assert cols.min() >= 6 and cols.max() <= 13
        assert cols.max() - cols.min() <= 6  # |Δφ| < 0.3: one compact block, not both edges of the grid
    occupied = np.zeros(20, bool)
    occupied[np.unique(out[mask][:, 1])] = True
    assert not occupied[0] and not occupied[19]
    # dense in the same frame equals histogram2d per jet
    dense = spec_of({"name": "d", "kind": "dense", "bins": [20, 20], "range": [[-1, 1], [-1, 1]],
                                 "frame": "relative", "channels": ["pt", "count"]})
    image, dropped = images.compute(dense, inputs)
    ref, ref_dropped = reference_dense(eta, phi, mask, {"pt": inputs.arrays["c_pt"], "count": None},
                                       dense.bins, dense.range, False)
    assert dropped == ref_dropped
    assert np.array_equal(image[..., 1], ref[..., 1])
    np.testing.assert_allclose(image, ref, rtol=1e-6, atol=1e-4)
    assert np.any(image[:30, :, 9:11, 1] > 0)  # crossing jets land around the centre


def test_raw_and_angular_frames():
    inputs, _, _ = boundary_jets()
    raw = spec_of({"name": "r", "kind": "pixels", "bins": [64, 64], "range": [[-2, 2], [-2, 2]]})
    eta, phi = images.coordinates(raw, inputs)
    assert np.array_equal(eta, inputs.arrays["c_eta"].astype(np.float64))
    assert np.array_equal(phi, inputs.arrays["c_phi"].astype(np.float64))
    spec = spec_of({"name": "a", "kind": "dense", "bins": [16, 16], "range": [[-1, 1], [-1, 1]],
                                "frame": "angular", "channels": ["e", "pt", "count"], "normalize": True})
    eta, phi = images.coordinates(spec, inputs)
    from root2hdf5.transforms.physics import library as physics
    rotated = physics.angular(inputs)
    assert np.array_equal(eta, rotated["c_eta_rot"]) and np.array_equal(phi, rotated["c_phi_rot"])
    out, outside = images.compute(spec, inputs)
    ref, ref_outside = reference_dense(eta, phi, inputs.mask, {"e": inputs.arrays["c_E"], "pt": inputs.arrays["c_pt"],
                                                               "count": None}, spec.bins, spec.range, True)
    assert outside == ref_outside and out.shape == (40, 16, 16, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    # the hardest constituent sits at the origin: the pixel just above it on both axes (upper-bin rule)
    one = inputs.mask.sum(axis=1) == 1
    assert np.all(out[one][:, 8, 8, 2] == 1)


def test_energy_channel_without_e_branch():
    inputs, _, _ = boundary_jets()
    roles = {k: v for k, v in ROLES.items() if k != "e"}
    no_e = Inputs({k: v for k, v in inputs.arrays.items() if k != "c_E"}, roles, inputs.mask, inputs.jets,
                  inputs.jet_roles)
    spec = spec_of({"name": "d", "kind": "dense", "bins": [4, 4], "range": [[-3, 3], [-4, 4]],
                                "channels": ["e"]})
    massless = (no_e.arrays["c_pt"] * np.cosh(no_e.arrays["c_eta"])).astype(np.float64)
    out, _ = images.compute(spec, no_e)
    ref, _ = reference_dense(*images.coordinates(spec, no_e), no_e.mask, {"e": massless}, spec.bins, spec.range, False)
    np.testing.assert_allclose(out, ref, rtol=1e-5)


# --------------------------------------------------------------------------------------------- config


def test_spec_from_config_and_attrs():
    spec = spec_of({"name": "image", "kind": "dense", "bins": [32, 32], "range": [[-1, 1], [-1, 1]],
                                "frame": "angular", "channels": ["pt", "count"], "normalize": True,
                                "dtype": "float16"}, "images[1]")
    assert spec == ImageSpec("image", "dense", (32, 32), ((-1.0, 1.0), (-1.0, 1.0)), "angular", ("pt", "count"),
                             True, "float16")
    assert spec.shape(100) == (32, 32, 2) and spec.output_dtype == "float16"
    attrs = spec.attrs()
    assert attrs["kind"] == "dense" and attrs["bins"] == [32, 32] and attrs["range"] == [[-1, 1], [-1, 1]]
    assert attrs["frame"] == "angular" and attrs["channels"] == ["pt", "count"] and attrs["normalize"] is True
    assert np.array_equal(attrs["eta_edges"], np.linspace(-1, 1, 33))
    pixels = spec_of({"name": "pixels", "kind": "pixels", "bins": [64, 64], "range": [[-2, 2], [-2, 2]]})
    assert pixels.frame == "raw" and pixels.shape(100) == (100, 2) and pixels.output_dtype == "int32"
    assert pixels.attrs()["channels"] == ["eta_bin", "phi_bin"] and pixels.attrs()["padding"] == -1
    default = spec_of({"name": "x", "kind": "dense", "bins": [2, 2], "range": [[0, 1], [0, 1]]})
    assert default.channels == ("pt",) and default.normalize is False and default.dtype == "float32"


def test_attrs_write_to_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    spec = spec_of({"name": "image", "kind": "dense", "bins": [4, 3], "range": [[-1, 1], [-2, 2]],
                                "channels": ["pt", "count"]})
    with h5py.File(tmp_path / "x.h5", "w") as f:
        d = f.create_dataset(spec.name, data=np.zeros((1, *spec.shape(5)), spec.output_dtype))
        for key, value in spec.attrs().items():
            d.attrs[key] = value
    with h5py.File(tmp_path / "x.h5") as f:
        a = f["image"].attrs
        assert [c.decode() if isinstance(c, bytes) else c for c in a["channels"]] == ["pt", "count"]
        assert a["range"].tolist() == [[-1, 1], [-2, 2]] and a["bins"].tolist() == [4, 3]
        assert np.array_equal(a["phi_edges"], np.linspace(-2, 2, 4))


@pytest.mark.parametrize("change, message", [
    ({"bins": [64]}, r"images\[1\]\.bins: expected two positive integers"),
    ({"bins": [64, 0]}, r"images\[1\]\.bins"),
    ({"bins": [64, 2.5]}, r"images\[1\]\.bins"),
    ({"bins": [True, 2]}, r"images\[1\]\.bins"),
    ({"range": [[-2, 2]]}, r"images\[1\]\.range: expected"),
    ({"range": [[2, -2], [-2, 2]]}, r"images\[1\]\.range: the eta range must be finite with lo < hi"),
    ({"range": [[-2, 2], [1, 1]]}, r"images\[1\]\.range: the phi range"),
    ({"range": [[-2, "x"], [1, 2]]}, r"images\[1\]\.range\[0\]\[1\]: expected a number"),
    ({"range": [[-2, float("inf")], [1, 2]]}, r"images\[1\]\.range\[0\]\[1\]: inf is not a finite number"),
    ({"kind": "sparse"}, r"images\[1\]\.kind: .sparse. is not one of pixels, dense"),
    ({"frame": "polar"}, r"images\[1\]\.frame: 'polar' is not one of raw, relative, angular"),
    ({"name": "a/b"}, r"images\[1\]\.name"),
    ({"name": ""}, r"images\[1\]\.name"),
    ({"colour": 3}, r"unknown config key 'images\[1\]\.colour'"),
    ({"channels": ["pt", "m"]}, r"images\[1\]\.channels\[1\]: 'm' is not one of pt, e, count"),
    ({"channels": []}, r"images\[1\]\.channels: expected a non-empty list"),
    ({"channels": ["pt", "pt"]}, r"images\[1\]\.channels: .* twice"),
    ({"normalize": "yes"}, r"images\[1\]\.normalize: expected true or false"),
    ({"dtype": "float64"}, r"images\[1\]\.dtype: 'float64' is not one of float32, float16"),
])
def test_config_errors(change, message):
    entry = {"name": "image", "kind": "dense", "bins": [32, 32], "range": [[-1, 1], [-1, 1]], **change}
    with pytest.raises(ConfigError, match=message):
        spec_of(entry, "images[1]")


def test_config_errors_structure():
    with pytest.raises(ConfigError, match=r"missing required config key 'images\[0\]\.range'"):
        spec_of({"name": "a", "kind": "pixels", "bins": [2, 2]})
    with pytest.raises(ConfigError, match=r"images\[2\]: expected a mapping"):
        spec_of(["name", "a"], "images[2]")
    with pytest.raises(ConfigError, match=r"images\[0\]\.normalize: only for kind: dense"):
        spec_of({"name": "a", "kind": "pixels", "bins": [2, 2], "range": [[0, 1], [0, 1]],
                             "normalize": True})
    entry = {"name": "a", "kind": "pixels", "bins": [2, 2], "range": [[0, 1], [0, 1]]}
    assert len(config_images([entry, {**entry, "name": "b"}]).images) == 2
    with pytest.raises(ConfigError, match=r"images\[1\]\.name: 'a' is already used by images\[0\]"):
        config_images([entry, entry])
    with pytest.raises(ConfigError, match=r"images: expected a list"):
        config_images({"name": "a"})


# ------------------------------------------------------------------------------------------ real jets


def old_tool_pixels(values):
    """The old jet converter's formula, per constituent, in Python floats (exact for float32 inputs)."""
    return min(max(math.floor((float(values) + 2) / 4 * 64), 0), 63)


def test_real_jets_reproduce_old_tool_pixels():
    path = shared_file("jets_flat_zprime.root")
    uproot = pytest.importorskip("uproot")
    from root2hdf5.transforms.core.batch import Jagged
    from root2hdf5.transforms.physics.padding import pad_constituents

    names = ["fjet_clus_pt", "fjet_clus_eta", "fjet_clus_phi", "fjet_clus_E"]
    with uproot.open(path) as f:
        arrays = f["FlatSubstructureJetTree"].arrays(names, entry_stop=500)
    jagged = {name: Jagged.from_awkward(arrays[name]) for name in names}
    padded, mask = pad_constituents(jagged, "fjet_clus_pt", 100)
    assert mask.sum() > 10_000 and (mask.sum(axis=1) == 100).any()  # some jets are truncated
    inputs = Inputs(padded, {"pt": "fjet_clus_pt", "eta": "fjet_clus_eta", "phi": "fjet_clus_phi",
                             "e": "fjet_clus_E"}, mask)
    spec = spec_of({"name": "pixels", "kind": "pixels", "bins": [64, 64], "range": [[-2, 2], [-2, 2]],
                                "frame": "raw"})
    out, clipped = images.compute(spec, inputs)
    eta, phi = padded["fjet_clus_eta"], padded["fjet_clus_phi"]
    expected = np.full(out.shape, -1)
    for j, k in np.argwhere(mask):
        expected[j, k] = old_tool_pixels(eta[j, k]), old_tool_pixels(phi[j, k])
    mismatch = np.argwhere(np.any(out != expected, axis=-1))
    assert len(mismatch) == 0, [(tuple(i), eta[tuple(i)], phi[tuple(i)], out[tuple(i)], expected[tuple(i)])
                                for i in mismatch[:5]]
    # the same formula evaluated in float32 (as `(eta + 2) / 4 * 64` on float32 arrays would be) can round
    # a value a float32 ulp below an edge up onto it: it may differ, and only there (one constituent in
    # jets_flat_zprime.root, φ = 1.9374999, not in these 500 jets); histogram2d agrees with the exact result
    f32 = [np.clip(np.floor((x + np.float32(2)) / np.float32(4) * np.float32(64)), 0, 63) for x in (eta, phi)]
    for axis, x in enumerate((eta, phi)):
        differ = mask & (f32[axis] != out[..., axis])
        t = (x[differ].astype(np.float64) + 2) * 16
        assert np.all(np.abs(t - np.round(t)) <= 16 * np.spacing(np.float32(2)))
    # φ spans (-π, π]: plenty of constituents are clipped into the edge columns; η of these jets < 2.5
    outside = mask & ((np.abs(eta) > 2) | (np.abs(phi) > 2))
    assert clipped == outside.sum() > 0
    # and the dense form of the same grid counts exactly the in-range constituents
    dense, dropped = images.dense_images(eta, phi, mask, {"count": None}, spec.bins, spec.range)
    ref, _ = reference_dense(eta[:50], phi[:50], mask[:50], {"count": None}, spec.bins, spec.range, False)
    assert dropped == clipped and np.array_equal(dense[:50], ref)
