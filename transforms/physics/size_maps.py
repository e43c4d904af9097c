"""Uncertainty maps: a variation's size read from a ROOT TH1 (in pT) or TH2 (in pT and eta), looked up per
constituent."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np

from root2hdf5.transforms.core.errors import ConfigError


@dataclass(frozen=True)
class SizeMap:
    """A variation size read from a ROOT histogram, looked up per constituent.

    TH1: x = constituent pT. TH2: x = constituent pT, y = constituent η (or |η| with abs_eta). The pT axis
    is in the units of the ntuple's constituent pT branch (variations act before preprocess.unit_scale):
    MeV for ATLAS-style ntuples, unless `pt_scale` converts (pT * pt_scale is looked up, e.g. 0.001 for a
    map in GeV on MeV ntuples). Bins are ROOT's, [low, high); values outside an axis use its first or last
    bin (under/overflow bins are not used). The looked-up value is multiplied by `times` (e.g. -1 for a
    "down" energy scale from a map of the uncertainty, 2 for a 2σ variation).

    The histogram is read on the driver, when the config is validated (once per process, see `_read`),
    and travels with the spec, so workers do not need access to the file.
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
        if "://" not in path and not os.path.exists(path):
            raise ConfigError(f"{where}.map: uncertainty map file {path} does not exist (looked in "
                              f"{os.path.dirname(os.path.abspath(path))})")
        try:
            classname, values, edges = _read(path, hist, _stamp(path))
        except ConfigError as err:
            raise ConfigError(f"{where}.map: {err}") from None
        if abs_eta and len(edges) != 2:
            raise ConfigError(f"{where}.abs_eta: {hist!r} in {path} is a {classname} in pT only; abs_eta needs "
                              "a TH2 in pT and eta")
        if not np.isfinite(values).all():
            raise ConfigError(f"{where}.map: histogram {hist!r} in {path} has non-finite bin contents")
        for axis, e in zip(("x (pT)", "y (eta)"), edges):
            if len(e) < 2 or not np.isfinite(e).all() or np.any(np.diff(e) <= 0):
                raise ConfigError(f"{where}.map: histogram {hist!r} in {path} has invalid {axis} bin edges")
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


def _bin(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """ROOT's bin [low, high) of each value as an index into the values, clipped into the axis: below the
    first edge -> first bin, at or above the last edge -> last bin (NaN -> last bin too)."""
    index = np.searchsorted(edges, x, side="right") - 1
    return np.clip(index, 0, len(edges) - 2)


def _stamp(path: str):
    """What tells a changed local file from the one read before."""
    if "://" in path:
        return None
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=32)
def _read(path: str, hist: str, stamp) -> tuple[str, np.ndarray, tuple[np.ndarray, ...]]:
    """(classname, float64 contents, float64 edges per axis) of a TH1 or TH2. Cached by (path, histogram,
    file stamp): the config check and the plan both build the variation's spec, and the file is read once."""
    import uproot

    try:
        handle = uproot.open(path)
    except Exception as err:  # not a ROOT file, unreadable, remote failure: all the user's to fix
        raise ConfigError(f"cannot open uncertainty map file {path}: {err}") from None
    with handle:
        classnames = handle.classnames(cycle=False)
        if hist not in classnames and hist.split(";")[0] not in classnames:
            found = ", ".join(k for k, c in classnames.items() if c.startswith(("TH1", "TH2"))) or "none"
            raise ConfigError(f"{path} has no histogram {hist!r} (TH1/TH2 in it: {found})")
        obj = handle[hist]
        classname = obj.classname
        if not classname.startswith(("TH1", "TH2")):
            raise ConfigError(f"{hist!r} in {path} is a {classname}, expected a TH1 (in pT) "
                              "or a TH2 (in pT and eta)")
        values, *edges = obj.to_numpy(flow=False)
    values = np.asarray(values, np.float64)
    values.setflags(write=False)
    return classname, values, tuple(np.asarray(e, np.float64) for e in edges)
