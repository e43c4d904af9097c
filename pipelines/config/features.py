"""What a config writes: the preprocessing spec, the output features it gives, and the datasets and format
that hold them. Checked when the config loads (the functions run on zero jets), so a feature that is not
there, a reweighting variable that is no feature or two FTAG / Parquet fields with one name fail before any
file is read; the plan (pipelines.plan) builds the same objects once for the run.
"""
from __future__ import annotations

from root2hdf5.pipelines.config.events import event_variables, public_names
from root2hdf5.pipelines.config.images import image_specs
from root2hdf5.pipelines.config.schema import Config
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.output.columns import ColumnSpec, Scores, dataset_specs
from root2hdf5.transforms.output.formats import Hdf5Format, ParquetFormat
from root2hdf5.transforms.output.hdf5_files import Storage
from root2hdf5.transforms.physics.preprocess import JetCollections, PreprocessSpec

Features = dict[str, list[str]]  # dataset -> its feature names


def check(cfg: Config) -> Features:
    """The output features; raises ConfigError for a reweighting variable that is not a jet feature and for
    field names that clash in the output format (with a model's scores taken as one column)."""
    spec = preprocess_spec(cfg)
    features = spec.feature_names()
    w = cfg.weights
    missing = [v for v in w.variables if v not in features["jets"]]
    if missing:
        raise ConfigError(f"weights.variables: {missing} are not jet features (jet features: {features['jets']})")
    output_format(cfg, features, Scores(cfg.model.output) if cfg.model and not cfg.model.as_weight else None,
                  spec.images)
    return features


def padded_length(cfg: Config) -> int:
    """Slots per row of the padded dataset: constituents per jet, or objects of events.collection."""
    if cfg.record == "event":
        return cfg.events.collection.max if cfg.events.collection else 0
    return cfg.constituents.max if cfg.input.constituent_branches else 0


def preprocess_spec(cfg: Config) -> PreprocessSpec:
    inp, pre = cfg.input, cfg.preprocess
    padded, features = tuple(inp.constituent_branches), tuple(inp.jet_branches + inp.event_branches)
    scaled = tuple(pre.scaled_branches or ())
    if cfg.record == "event":  # the collection is padded like constituents; the variables are the row's features
        padded = tuple(cfg.events.collection.branches) if cfg.events.collection else ()
        features = tuple(v.name for v in event_variables(cfg))
        scaled = tuple(b for b in scaled if b in padded)  # variables are scaled by EventVariables, before defaults
    jc = cfg.jet_collections
    return PreprocessSpec(
        constituent_functions=tuple(pre.constituents), jet_functions=tuple(pre.jets),
        constituent_branches=padded, jet_branches=features,
        constituent_roles=dict(cfg.constituent_roles), jet_roles=dict(cfg.jet_roles),
        unit_scale=pre.unit_scale, scaled_branches=scaled,
        max_constituents=padded_length(cfg),
        feature_scale=tuple(pre.scale.items()),
        images=image_specs(cfg),
        integer_branches=tuple(inp.integer_branches),
        collections=JetCollections(tuple(jc.fields), tuple((k, tuple(v)) for k, v in jc.collections.items()),
                                   tuple(jc.preprocess)) if jc else None)


def column_spec(cfg: Config, features: Features, scores: Scores | None, images: tuple) -> ColumnSpec:
    """The datasets of a row and their names on disk. `scores`: the model's output dataset, if it has one;
    `images`: the ImageSpecs (those of the preprocess spec)."""
    collections = tuple(cfg.jet_collections.collections) if cfg.jet_collections else ()
    datasets = dataset_specs(features, padded_length(cfg), collections, tuple(cfg.input.integer_branches),
                             images, scores)
    return ColumnSpec(datasets, features, collections, scores.name if scores else None, public_names(cfg),
                      "events" if cfg.record == "event" else "jets")


def output_format(cfg: Config, features: Features, scores: Scores | None, images: tuple):
    out = cfg.output
    columns = column_spec(cfg, features, scores, images)
    if out.format == "parquet":
        return ParquetFormat(columns, out.compression, out.parquet_constituents == "padded", out.chunk_jets)
    return Hdf5Format(columns, Storage(out.compression, out.compression_level, out.chunk_jets), out.layout,
                      out.constituents_name)
