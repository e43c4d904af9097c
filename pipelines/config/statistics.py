"""Resolution of the dataset-wide statistics: `weights` (reweighting), `resample` and `model`."""
from __future__ import annotations

from root2hdf5.pipelines.config.events import public_names
from root2hdf5.pipelines.config.schema import Config
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import DATASETS


def resolve(cfg: Config) -> None:
    _reweighting(cfg)
    r = cfg.resample
    if r.target is not None:
        if r.target < 1:
            raise ConfigError("resample.target must be a positive number of jets")
        if not r.splits:
            raise ConfigError("resample.splits: give the splits to resample (e.g. [train])")
    _model(cfg)


def _reweighting(cfg: Config) -> None:
    w = cfg.weights
    if w.method is None:
        if w.variables or w.bins:
            raise ConfigError("weights.variables/bins need weights.method (flat or match)")
        return
    if not 1 <= len(w.variables) <= 2:
        raise ConfigError("weights.variables: give one or two jet features to bin in (e.g. [jet_pt] or "
                          "[jet_pt, jet_eta])")
    if len(w.bins) != len(w.variables) or any(len(edges) < 2 for edges in w.bins):
        raise ConfigError("weights.bins: give a list of bin edges (at least two) for each variable")
    for edges, name in zip(w.bins, w.variables):
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"weights.bins for {name}: edges must increase")
    w.abs = w.abs or [False] * len(w.variables)
    if len(w.abs) != len(w.variables):
        raise ConfigError("weights.abs: one true/false per variable")
    if w.method == "match" and w.target_label is None:
        raise ConfigError("weights.method match needs weights.target_label (the class others follow)")


def _model(cfg: Config) -> None:
    m = cfg.model
    if m is None:
        return
    if not m.path.endswith(".onnx"):
        raise ConfigError(f"model.path: {m.path!r} is not an .onnx file")
    renamed = public_names(cfg)
    if m.output in DATASETS or m.output in renamed.values():
        raise ConfigError(f"model.output: {m.output!r} is already a dataset name")
    features = [renamed.get(n, n) for n in ("constituents", "mask", "jets", "jet_collections")]
    if cfg.record == "event":
        features = [n for i, n in enumerate(features) if i == 2 or (i < 2 and cfg.events.collection)]
    for name, dataset in m.inputs.items():
        if dataset not in features:
            raise ConfigError(f"model.inputs.{name}: {dataset!r} is not a feature dataset ({', '.join(features)})")
    if m.as_weight and cfg.resample.target is not None:
        raise ConfigError("model.as_weight cannot be combined with resample (the draw needs the weights "
                          "before the model has run)")
    if m.threads < 1:
        raise ConfigError("model.threads must be at least 1")
