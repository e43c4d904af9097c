"""Jet images for CNN taggers: per-constituent pixel indices and dense η–φ images, vectorized over a batch.

Two kinds of image, both computed from padded constituents ((n, max) arrays and a bool mask):

- `pixels`: int32 (n, max, 2), the (η bin, φ bin) of every constituent on the grid, clipped into it (a
  value below the range goes to bin 0, above it to the last bin, as the old jet converter did). Padded or
  masked slots, and constituents with a NaN coordinate, get -1 in both: never a real pixel.
- `dense`: (n, nη, nφ, C) with, per channel, the sum of constituent pT or E, or the constituent count, in
  each pixel. Constituents outside the range are dropped (and counted). `normalize` divides each image's
  pT / E channel by its in-range sum; an empty image (or one whose sum is not positive) stays all zero.

Binning is exactly numpy.histogram2d's with `bins` and `range`: edges np.linspace(lo, hi, n + 1), bins
closed on the left, the last bin also closed on the right; a value exactly on an interior edge goes to the
upper bin. The edges are the ones histogram2d builds, so a training script rebuilds the axes with `edges`.

`frame` says which coordinates are binned: `raw` (the eta/phi branches as read), `relative` (Δη, Δφ to
the jet axis, Δφ wrapped into (-π, π]: transforms.physics.library.relative) or `angular` (centred on the hardest
constituent, rotated and reflected: transforms.physics.library.angular).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.physics import library

PADDING = -1  # pixel index of padded / masked slots


@dataclass(frozen=True)
class ImageSpec:
    """One image of the `images:` config block (validated by pipelines.config.images).

    name:      output dataset name.
    kind:      'pixels' (int32 (N, max, 2) pixel indices) or 'dense' ((N, nη, nφ, C) images).
    bins:      (nη, nφ).
    range:     ((η_lo, η_hi), (φ_lo, φ_hi)), in the frame's coordinates.
    frame:     'raw', 'relative' or 'angular'.
    channels:  dense only: a subset of 'pt', 'e', 'count', in output order.
    normalize: dense only: divide the pt / e channels by the image's in-range sum.
    dtype:     dense only: 'float32' or 'float16'.
    """

    name: str
    kind: str
    bins: tuple[int, int]
    range: tuple[tuple[float, float], tuple[float, float]]
    frame: str = "raw"
    channels: tuple[str, ...] = ("pt",)
    normalize: bool = False
    dtype: str = "float32"

    @property
    def output_dtype(self) -> str:
        return "int32" if self.kind == "pixels" else self.dtype

    def shape(self, max_constituents: int) -> tuple[int, ...]:
        """Per-jet shape of the dataset (after the jet axis)."""
        if self.kind == "pixels":
            return (max_constituents, 2)
        return (*self.bins, len(self.channels))

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        return edges(self.bins, self.range)

    def attrs(self) -> dict:
        """HDF5 attributes of the dataset: enough for a training script to rebuild the axes."""
        eta_edges, phi_edges = self.edges()
        out = {"kind": self.kind, "bins": list(self.bins), "range": [list(r) for r in self.range],
               "frame": self.frame,
               # the last axis: (η bin, φ bin) for pixels, the channels for dense images
               "channels": list(self.channels) if self.kind == "dense" else ["eta_bin", "phi_bin"],
               "eta_edges": eta_edges, "phi_edges": phi_edges}
        if self.kind == "dense":
            out["normalize"] = self.normalize
        else:
            out["padding"] = PADDING
        return out


# ------------------------------------------------------------------------------------------- binning


def _check_grid(bins, range) -> tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]]:
    try:
        (n_eta, n_phi), ((eta_lo, eta_hi), (phi_lo, phi_hi)) = bins, range
    except (TypeError, ValueError):
        raise ValueError(f"bins must be (n_eta, n_phi) and range ((eta_lo, eta_hi), (phi_lo, phi_hi)), got "
                         f"{bins!r}, {range!r}") from None
    if int(n_eta) != n_eta or int(n_phi) != n_phi or n_eta < 1 or n_phi < 1:
        raise ValueError(f"bins must be two positive integers, got {bins!r}")
    for lo, hi in ((eta_lo, eta_hi), (phi_lo, phi_hi)):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"each range must be finite with lo < hi, got {range!r}")
    return (int(n_eta), int(n_phi)), ((float(eta_lo), float(eta_hi)), (float(phi_lo), float(phi_hi)))


def edges(bins, range) -> tuple[np.ndarray, np.ndarray]:
    """The bin edges np.histogram2d uses for these bins and range (float64, n + 1 each)."""
    (n_eta, n_phi), (eta_range, phi_range) = _check_grid(bins, range)
    return np.linspace(*eta_range, n_eta + 1), np.linspace(*phi_range, n_phi + 1)


_NEAR = 1e-6  # in bins: estimates this close to an edge are checked against the edges themselves


def _axis_bins(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin clipped into [0, n-1] as intp, inside) for float64 values, with histogram2d's convention.

    histogram2d does searchsorted(edges, x, 'right') - 1 and moves x == last edge into the last bin. A
    binary search per value is ~2x slower than arithmetic, so: estimate the bin from the uniform width and
    check the few estimates within _NEAR of an edge against the actual edges (linspace's), moving them by
    one where they disagree. The estimate and the edges are both within ~8 eps (scale / width + n) bins
    of exact, far below _NEAR unless the bins are absurdly narrow for their position; those use the
    binary search.
    """
    n = len(edges) - 1
    lo, hi = edges[0], edges[-1]
    if max(abs(lo), abs(hi)) / ((hi - lo) / n) + n > 1e7:
        index = np.searchsorted(edges, x, side="right") - 1
        index[x == hi] = n - 1
        inside = (index >= 0) & (index < n)
        np.clip(index, 0, n - 1, out=index)
        return index, inside
    position = (x - lo) * (n / (hi - lo))
    # fmax / fmin (not clip): NaN becomes 0 instead of an undefined integer; `inside` rejects it below
    clipped = np.fmax(position, 0)
    np.fmin(clipped, n - 1, out=clipped)
    index = clipped.astype(np.intp)
    # distance to the nearest edge of the estimated bin, in place: |position - index - 1/2| near 1/2
    np.trunc(clipped, out=clipped)
    position -= clipped
    position -= 0.5
    np.abs(position, out=position)
    near = np.flatnonzero((position > 0.5 - _NEAR) & (position < 0.5 + _NEAR))  # NaN: False
    if near.size:
        flat_x, flat_index = x.reshape(-1), index.reshape(-1)  # index is contiguous: a view, written through
        value, guess = flat_x[near], flat_index[near]
        # never past the grid's ends: values outside the range stay clipped to the first / last bin
        guess -= (value < edges[guess]) & (guess > 0)
        guess += (value >= edges[guess + 1]) & (guess < n - 1)
        flat_index[near] = guess
    inside = (x >= lo) & (x <= hi)  # False for NaN
    return index, inside


def _prepare(eta, phi, mask):
    """Checked arrays, not converted: callers convert what they bin to float64 (dense: only valid slots)."""
    eta, phi, mask = np.asarray(eta), np.asarray(phi), np.asarray(mask)
    if eta.dtype.kind not in "fiu" or phi.dtype.kind not in "fiu":
        raise ValueError(f"eta and phi must be real numbers, got {eta.dtype} and {phi.dtype}")
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got {mask.dtype}")
    if mask.ndim != 2 or eta.shape != mask.shape or phi.shape != mask.shape:
        raise ValueError(f"eta {eta.shape}, phi {phi.shape} and mask {mask.shape} must have the same (n, max) shape")
    return eta, phi, mask


def _pixels(eta, phi, mask, bins, range) -> tuple[np.ndarray, int]:
    """pixel_indices plus the number of valid constituents that were clipped into the grid."""
    (n_eta, n_phi), _ = _check_grid(bins, range)
    eta, phi, mask = _prepare(eta, phi, mask)
    eta_edges, phi_edges = edges(bins, range)
    eta, phi = eta.astype(np.float64, copy=False), phi.astype(np.float64, copy=False)
    i_eta, in_eta = _axis_bins(eta, eta_edges)
    i_phi, in_phi = _axis_bins(phi, phi_edges)
    # NaN has no pixel, not even a clipped one: treated like padding
    valid = mask & ~np.isnan(eta) & ~np.isnan(phi)
    out = np.full((*mask.shape, 2), PADDING, np.int32)
    out[..., 0] = np.where(valid, i_eta, PADDING)
    out[..., 1] = np.where(valid, i_phi, PADDING)
    outside = int(np.count_nonzero(mask & ~(in_eta & in_phi)))
    return out, outside


def pixel_indices(eta, phi, mask, bins, range) -> np.ndarray:
    """int32 (n, max, 2): the (η bin, φ bin) of each constituent, clipped into the grid; -1 in both for
    masked slots (and NaN coordinates).

    eta, phi: (n, max) floats in any frame; mask: (n, max) bool; bins: (nη, nφ); range: ((η_lo, η_hi),
    (φ_lo, φ_hi)). In-range values get np.histogram2d's bin; below the range bin 0, above it the last bin.
    """
    return _pixels(eta, phi, mask, bins, range)[0]


def dense_images(eta, phi, mask, channels: Mapping[str, np.ndarray | None], bins, range, normalize: bool = False,
                 dtype="float32") -> tuple[np.ndarray, int]:
    """(images (n, nη, nφ, C), outside): per channel and pixel, the sum of the channel's values, or the
    number of constituents for a channel given as None.

    channels: name -> (n, max) values (pT, E, ...) or None for a count, in output order. Only valid
    constituents inside the range contribute (np.histogram2d semantics, the last bin closed on the right);
    `outside` counts the valid ones that were dropped (NaN coordinates included). `normalize` divides each
    valued channel of each image by that image's in-range sum of it; count channels are left alone, and an
    image with no constituent in range (or a non-positive sum) is all zero, never NaN. Accumulated in
    float64, returned as `dtype`.
    """
    (n_eta, n_phi), _ = _check_grid(bins, range)
    eta, phi, mask = _prepare(eta, phi, mask)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    if not channels:
        raise ValueError("give at least one channel")
    for name, values in channels.items():
        if values is not None and np.shape(values) != mask.shape:
            raise ValueError(f"channel {name!r} has shape {np.shape(values)}, expected {mask.shape}")
    n, pixels = mask.shape[0], n_eta * n_phi

    # only the valid constituents: padded slots are ~40% of the slots on real jets and contribute nothing
    slots = np.flatnonzero(mask)
    jet = slots // mask.shape[1]
    eta_edges, phi_edges = edges(bins, range)
    i_eta, in_eta = _axis_bins(eta.reshape(-1)[slots].astype(np.float64), eta_edges)
    i_phi, in_phi = _axis_bins(phi.reshape(-1)[slots].astype(np.float64), phi_edges)
    inside = in_eta & in_phi
    outside = len(slots) - int(np.count_nonzero(inside))
    slots, jet = slots[inside], jet[inside]
    pixel = i_eta[inside] * n_phi + i_phi[inside]
    # int64: n * nη * nφ overflows int32 for large batches of fine images
    flat = jet.astype(np.int64) * pixels + pixel
    # Group equal (jet, pixel) pairs and number the groups, so the scatter-add below runs over the hit
    # pixels only. A bincount with minlength n * nη * nφ is as fast but needs a float64 temporary of
    # 8 bytes per pixel and channel, 4x a float16 image: 80 MB per channel for 10k jets of 32 x 32, 3.2 GB
    # for a 100k-jet batch of 64 x 64 (peak 235 MB against 114 MB here, bench/images.py's 10k jets). A
    # stable sort by pixel (a radix sort on 16 bits) suffices: the constituents are in jet order already,
    # so equal pairs end up next to each other.
    order = np.argsort(pixel.astype(np.uint16) if pixels <= 1 << 16 else pixel, kind="stable")
    grouped = flat[order]
    first = np.ones(len(grouped), bool)
    np.not_equal(grouped[1:], grouped[:-1], out=first[1:])
    group = np.cumsum(first) - 1  # group number of each constituent, in `order`
    target = grouped[first]  # the flat pixel of each group

    # zeros from calloc: pages never written (images are mostly empty) cost nothing until read
    images = np.zeros((n * pixels, len(channels)), dtype)
    for c, (name, values) in enumerate(channels.items()):
        weights = None
        if values is not None:
            weights = np.asarray(values).reshape(-1)[slots].astype(np.float64)
            if normalize:
                # scale the weights, not the images: ~60 values per jet instead of nη * nφ pixels
                total = np.bincount(jet, weights=weights, minlength=n)
                positive = total > 0
                weights = np.where(positive[jet], weights / np.where(positive, total, 1.0)[jet], 0.0)
        # the one scatter-add for the whole batch (per channel), in float64; cast once at the end
        summed = np.bincount(group, weights=None if weights is None else weights[order], minlength=len(target))
        if dtype.itemsize < 8 and summed.size:
            limit = np.finfo(dtype).max
            largest = max(summed.max(), -summed.min())
            if largest > limit:
                raise InputError(f"dense image channel {name!r} has a pixel sum of {largest:g}, "
                                 f"beyond the largest {dtype} ({limit:g}); use normalize: true, dtype: float32, or "
                                 "preprocess.unit_scale (e.g. 0.001 for MeV -> GeV)")
        images[target, c] = summed
    return images.reshape(n, n_eta, n_phi, len(channels)), outside


# ------------------------------------------------------------------------------------ from the inputs


def _raw(inputs):
    return inputs.role("eta"), inputs.role("phi")


def _relative(inputs):
    # the physics library's own features (float32), so pixels agree with a stored deta/dphi
    features, prefix = library.relative(inputs), library._prefix(inputs, "eta")
    return features[f"{prefix}deta"], features[f"{prefix}dphi"]


def _angular(inputs):
    features, prefix = library.angular(inputs), library._prefix(inputs, "eta")
    return features[f"{prefix}eta_rot"], features[f"{prefix}phi_rot"]


FRAMES = {"raw": _raw, "relative": _relative, "angular": _angular}  # frame -> (eta, phi) of the constituents
CHANNELS = {"pt": lambda inputs: inputs.role("pt"), "e": lambda inputs: library._energy(inputs),
            "count": lambda inputs: None}  # channel -> per-constituent values (None: count them)


def coordinates(spec: ImageSpec, inputs) -> tuple[np.ndarray, np.ndarray]:
    """(eta, phi), (n, max) float64, in the spec's frame, from a transforms.physics.preprocess.Inputs."""
    eta, phi = FRAMES[spec.frame](inputs)
    return np.asarray(eta, np.float64), np.asarray(phi, np.float64)


def channel_values(spec: ImageSpec, inputs) -> dict[str, np.ndarray | None]:
    """The dense channels' per-constituent values: pt, E (the E branch, else massless pT cosh η), None for
    a count."""
    return {name: CHANNELS[name](inputs) for name in spec.channels}


def compute(spec: ImageSpec, inputs) -> tuple[np.ndarray, int]:
    """The image dataset for a batch, (n, ...) as spec.shape() and spec.output_dtype, and how many valid
    constituents fell outside the range (clipped into the grid for pixels, dropped for dense)."""
    eta, phi = coordinates(spec, inputs)
    if spec.kind == "pixels":
        return _pixels(eta, phi, inputs.mask, spec.bins, spec.range)
    return dense_images(eta, phi, inputs.mask, channel_values(spec, inputs), spec.bins, spec.range,
                        spec.normalize, spec.dtype)
