"""The plan: everything the Beam graph needs, computed once on the driver from the resolved config and the
input files. `make_plan(cfg, files)` returns one frozen object; pipelines.graph builds the pipeline from it
alone, and each output set (the nominal one, each variation's) gets its SinkSpec from `Plan.sink`.

What is slow or touches files happens here once: the preprocessing functions run on zero jets for the
feature names, the ONNX model is opened and hashed, uncertainty maps are read.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from importlib import metadata

from root2hdf5.pipelines.config import Config
from root2hdf5.pipelines.config.events import event_variables, friend_branches, public_names
from root2hdf5.pipelines.config.features import output_format, padded_length, preprocess_spec
from root2hdf5.pipelines.config.variations import variation_specs
from root2hdf5.transforms.core.names import SPLITS
from root2hdf5.transforms.output.columns import Scores
from root2hdf5.transforms.output.finalize import SinkSpec
from root2hdf5.transforms.output.finish import FinishSpec
from root2hdf5.transforms.physics.preprocess import PreprocessSpec
from root2hdf5.transforms.physics.variations import VariationSpec
from root2hdf5.transforms.read.friends import FriendSpec
from root2hdf5.transforms.read.links import LinkSpec
from root2hdf5.transforms.read.sources import InputFile, expand_files
from root2hdf5.transforms.read.trees import BranchPlan
from root2hdf5.transforms.rows.event_expressions import EventExpression
from root2hdf5.transforms.rows.event_variables import Variable
from root2hdf5.transforms.rows.label import Labeling
from root2hdf5.transforms.stats.composition import Composition
from root2hdf5.transforms.stats.model_scores import ModelSpec, describe, input_datasets
from root2hdf5.transforms.stats.reweight import ReweightSpec

_VERSIONED = ("root2hdf5", "apache-beam", "uproot", "awkward", "numpy", "h5py")


@dataclass(frozen=True)
class RowsPlan:
    """From entry-range chunks to labelled rows (jets, or events with `record: event`)."""

    record: str
    layout: str
    leading_jets: int
    leading_by: str | None
    event_number: str | None
    sum_weights: str | None  # the weight branch summed exactly over all events read (sum_of_weights: auto)
    on_nonfinite: str
    nonfinite_value: float
    selection: str | None
    sample_selections: tuple[str | None, ...]
    labelings: tuple[Labeling, ...]
    weight_branch: str | None
    constituent_branches: tuple[str, ...] = ()  # record: jet
    constituent_roles: tuple[tuple[str, str], ...] = ()
    jet_roles: tuple[tuple[str, str], ...] = ()
    padded: tuple[str, ...] = ()  # record: event: the collection's branches (equal lengths per event)
    variables: tuple[Variable, ...] = ()  # record: event
    unit_scale: float = 1.0
    links: LinkSpec | None = None  # record: jet: constituents gathered per jet through an index


@dataclass(frozen=True)
class PadPlan:
    """Constituents (or an event's collection) sorted, truncated and zero-padded, with a mask."""

    branches: tuple[str, ...]
    sort_by: str | None
    max_len: int
    pt: str | None
    min_pt: float


@dataclass(frozen=True)
class SplitPlan:
    seed: int
    fractions: tuple[float, ...]
    shards: tuple[int, ...]
    by_event_number: bool
    sample_names: tuple[str, ...]
    modulo: int | None
    residue_splits: tuple[int, ...] | None
    rows: str  # 'jets' or 'events'


@dataclass(frozen=True)
class FriendPlan:
    spec: FriendSpec
    files: tuple[InputFile, ...]
    branches: BranchPlan


@dataclass(frozen=True)
class VariationPlan:
    spec: VariationSpec
    recompute_jets: bool
    record: str  # the config item as JSON, written with the variation's output set


@dataclass(frozen=True)
class Plan:
    record: str
    files: tuple[InputFile, ...]
    branches: BranchPlan
    step_size: int
    skip_errors: bool
    rows: RowsPlan
    friends: tuple[FriendPlan, ...]
    pad: PadPlan
    preprocess: PreprocessSpec
    features: dict
    split: SplitPlan
    format: object  # Hdf5Format or ParquetFormat
    composition: Composition
    finish: FinishSpec
    model: ModelSpec | None
    variations: tuple[VariationPlan, ...]
    spill: bool
    shards: tuple[tuple[str, int], ...]
    file_attrs: tuple[tuple[str, str], ...]
    sink_options: tuple[tuple[str, object], ...]  # the SinkSpec fields every output set shares

    @property
    def datasets(self):
        return self.format.columns.datasets

    def sink(self, out_dir: str, tmp_dir: str, overwrite: bool, variation: VariationPlan | None = None,
             progress_dir: str | None = None, warnings: tuple[str, ...] = ()) -> SinkSpec:
        """Where and how one output set is written: the nominal set, or a variation's. `warnings`: what the
        driver found (degenerate input the config allows), for the report."""
        attrs = dict(self.file_attrs)
        if variation is not None:
            attrs["variation"] = variation.record
        return SinkSpec(out_dir=out_dir, tmp_dir=tmp_dir, datasets=list(self.datasets), format=self.format,
                        shards=dict(self.shards), split_names=list(SPLITS), files=list(self.files),
                        file_attrs=attrs, overwrite=overwrite, features=self.features, progress_dir=progress_dir,
                        warnings=tuple(warnings), **dict(self.sink_options))


def make_plan(cfg: Config, files: list[InputFile]) -> Plan:
    spec = preprocess_spec(cfg)
    features = spec.feature_names()
    model, scores = _model(cfg)
    fmt = output_format(cfg, features, scores, spec.images)
    names = tuple(s.name for s in cfg.samples)
    events = cfg.record == "event"
    friends = _friends(cfg)
    return Plan(
        record=cfg.record, files=tuple(files), branches=branch_plan(cfg), step_size=cfg.input.step_size,
        skip_errors=cfg.input.on_error == "skip", rows=_rows(cfg), friends=friends, pad=_pad(cfg),
        preprocess=spec, features=features, split=_split(cfg), format=fmt, composition=_composition(cfg),
        finish=_finish(cfg, features), model=model,
        variations=tuple(VariationPlan(s, item.recompute_jets, json.dumps(dataclasses.asdict(item), sort_keys=True))
                         for s, item in zip(variation_specs(cfg), cfg.variations)),
        spill=cfg.shuffle.mode == "spill", shards=tuple(cfg.shuffle.shards_per_split.items()),
        file_attrs=tuple(_file_attrs(cfg, files, friends).items()),
        sink_options=(("sample_names", list(names)), ("selection", cfg.input.selection),
                      ("collections", list(cfg.jet_collections.collections) if cfg.jet_collections else []),
                      ("stats", cfg.stats.compute or cfg.stats.apply), ("standardized", cfg.stats.apply),
                      ("record", cfg.record), ("friends", tuple(f.name for f in cfg.events.friends) if events else ()),
                      ("allow", tuple(cfg.checks.allow))))


# ------------------------------------------------------------------------------------------------ reading


def branch_plan(cfg: Config) -> BranchPlan:
    """The branches the main tree must provide, each with the depths the layout needs."""
    if cfg.record == "event":
        return _event_branch_plan(cfg)
    inp = cfg.input
    return BranchPlan(inp.layout, tuple(inp.jet_branches), tuple(inp.constituent_branches),
                      tuple(inp.event_branches), inp.event_number,
                      inp.leading_by if inp.layout == "events" else None, inp.selection,
                      categories=tuple(c.selection for s in cfg.samples for c in s.categories),
                      weight=cfg.weights.branch,
                      collections=tuple(cfg.jet_collections.all_branches()) if cfg.jet_collections else (),
                      extra=tuple((b, "integer branch", (1, 2) if inp.layout == "events" else (1,))
                                  for b in inp.integer_branches),
                      links=link_spec(cfg))


def link_spec(cfg: Config) -> LinkSpec | None:
    links = cfg.input.constituent_links
    return LinkSpec(links.index, links.jet_index, links.valid) if links else None


def _event_branch_plan(cfg: Config) -> BranchPlan:
    """record: event: each branch with the depths it may have (1: one value per event, 2: a list). Friend
    branches come from the friend files."""
    inp, ev = cfg.input, cfg.events
    items = []

    def expression(text: str | None, what: str):
        if text:
            e = EventExpression(text, what)
            items.extend((b, what, (2,) if b in e.indexed else (1, 2)) for b in e.symbols)

    for v in event_variables(cfg):
        items.extend((b, "variable branch" if v.index is None else "indexed variable branch", depths)
                     for b, depths in v.branch_depths())
    items += [(b, "events.collection branch", (2,)) for b in (ev.collection.branches if ev.collection else ())]
    expression(inp.selection, "branch in input.selection")
    for s in cfg.samples:
        expression(s.selection, "branch in a sample selection")
        for c in s.categories:
            expression(c.selection, "branch in a category selection")
    items += [(b, f"key of friend {f.name!r}", (1,)) for f in ev.friends for b in f.keys]
    if cfg.weights.branch:
        items.append((cfg.weights.branch, "weights.branch", (1,)))
    from_friends = friend_branches(cfg)
    return BranchPlan("events", event_number=inp.event_number,
                      extra=tuple(item for item in items if item[0] not in from_friends))


def _friends(cfg: Config) -> tuple[FriendPlan, ...]:
    if cfg.record != "event":
        return ()
    plans = []
    for friend in cfg.events.friends:
        # the friend's files of every sample, indexed within the sample like the main files
        samples = [dataclasses.replace(s, files=s.friends[friend.name], tree=friend.tree,
                                       name=f"{s.name} (friend {friend.name})") for s in cfg.samples]
        files = tuple(dataclasses.replace(f, sample_name=cfg.samples[f.sample].name) for f in expand_files(samples))
        spec = FriendSpec(friend.name, tuple(friend.keys), tuple(friend.friend_keys), tuple(friend.branches),
                          friend.unmatched, friend.fill_value, cfg.events.join_groups,
                          tuple(tuple(f.path for f in files if f.sample == i) for i in range(len(cfg.samples))),
                          tuple(s.name for s in cfg.samples))
        keys = [(b, f"key of friend {friend.name!r}", (1,)) for b in friend.friend_keys]
        branches = BranchPlan("events", extra=tuple(keys + [(b, f"branch of friend {friend.name!r}", (1,))
                                                            for b in friend.branches]))
        plans.append(FriendPlan(spec, files, branches))
    return tuple(plans)


# ------------------------------------------------------------------------------------------ rows, padding


def _rows(cfg: Config) -> RowsPlan:
    inp = cfg.input
    auto = any(s.sum_of_weights == "auto" for s in cfg.samples)
    events = cfg.record == "event"
    coll = cfg.events.collection if events else None
    return RowsPlan(
        record=cfg.record, layout=inp.layout, leading_jets=inp.leading_jets, leading_by=inp.leading_by,
        event_number=inp.event_number, sum_weights=cfg.weights.branch if auto else None,
        on_nonfinite=inp.on_nonfinite, nonfinite_value=inp.nonfinite_value, selection=inp.selection,
        sample_selections=tuple(s.selection for s in cfg.samples),
        labelings=tuple(Labeling(s.label or 0, tuple((c.label, c.name, c.selection) for c in s.categories))
                        for s in cfg.samples),
        weight_branch=cfg.weights.branch, constituent_branches=tuple(inp.constituent_branches),
        constituent_roles=tuple(cfg.constituent_roles.items()), jet_roles=tuple(cfg.jet_roles.items()),
        padded=tuple(coll.branches) if coll else (), variables=event_variables(cfg) if events else (),
        unit_scale=cfg.preprocess.unit_scale, links=None if events else link_spec(cfg))


def _pad(cfg: Config) -> PadPlan:
    if cfg.record == "event":  # a padded collection plays the part of the constituents
        coll = cfg.events.collection
        return PadPlan(tuple(coll.branches) if coll else (), coll.sort_by if coll else None, padded_length(cfg),
                       None, 0.0)
    con = cfg.constituents
    return PadPlan(tuple(cfg.input.constituent_branches), con.sort_by, con.max, cfg.constituent_roles.get("pt"),
                   con.min_pt)


def _split(cfg: Config) -> SplitPlan:
    split, fractions = cfg.split, cfg.split.fractions()
    return SplitPlan(cfg.shuffle.seed, tuple(fractions[s] for s in SPLITS),
                     tuple(cfg.shuffle.shards_per_split.get(s, 0) for s in SPLITS),
                     cfg.input.event_number is not None, tuple(s.name for s in cfg.samples), split.modulo,
                     tuple(split.residue_splits()) if split.modulo else None,
                     "events" if cfg.record == "event" else "jets")


# --------------------------------------------------------------------------------------- dataset-wide numbers


def _composition(cfg: Config) -> Composition:
    factors = tuple(s.weight * (s.cross_section * cfg.weights.luminosity if s.cross_section is not None else 1.0)
                    for s in cfg.samples)
    return Composition(
        caps=tuple(s.max_jets for s in cfg.samples), total_jets=cfg.limits.total_jets,
        balance=cfg.limits.balance, factors=factors,
        sum_of_weights=tuple(s.sum_of_weights if s.sum_of_weights in (None, "auto") else float(s.sum_of_weights)
                             for s in cfg.samples),
        sample_names=tuple(s.name for s in cfg.samples))


def _finish(cfg: Config, features: dict) -> FinishSpec:
    w = cfg.weights
    reweight = ReweightSpec()
    if w.method:
        reweight = ReweightSpec(w.method, tuple(features["jets"].index(v) for v in w.variables),
                                tuple(tuple(edges) for edges in w.bins), tuple(w.abs), w.target_label)
    resample = ()
    if cfg.resample.target is not None:  # the target is shared by the splits in proportion to their fractions
        fractions = cfg.split.fractions()
        listed = [s for s in cfg.resample.splits if s in cfg.shuffle.shards_per_split]
        total = sum(fractions[s] for s in listed)
        resample = tuple((s, round(cfg.resample.target * fractions[s] / total)) for s in listed)
    return FinishSpec(reweight=reweight, resample=resample, standardize=cfg.stats.apply,
                      model_output=cfg.model.output if cfg.model else None,
                      model_as_weight=bool(cfg.model and cfg.model.as_weight), seed=cfg.shuffle.seed)


def _model(cfg: Config) -> tuple[ModelSpec | None, Scores | None]:
    """The model's spec and, unless it gives weights, its output dataset: the file is opened and hashed once."""
    m = cfg.model
    if m is None:
        return None, None
    model = describe(m.path)
    column = {v: k for k, v in public_names(cfg).items()}  # model.inputs name datasets as they are on disk
    inputs = input_datasets({k: column.get(v, v) for k, v in m.inputs.items()}, model, m.path)
    spec = ModelSpec(m.path, inputs, m.output, m.as_weight, m.threads)
    if m.as_weight:
        return spec, None
    attrs = (("model", os.path.basename(m.path)), ("model_sha256", model.sha256))
    return spec, Scores(m.output, model.output_shape, attrs)


# ---------------------------------------------------------------------------------------------- provenance


def _file_attrs(cfg: Config, files: list[InputFile], friends: tuple[FriendPlan, ...]) -> dict:
    """Attributes written on every output file: the resolved config, versions, what a row holds, the inputs."""
    attrs = {
        "config": cfg.provenance_json(),
        "versions": package_versions(),
        **({"record": "event", "collection_max": padded_length(cfg)} if cfg.record == "event"
           else {"max_constituents": padded_length(cfg)}),
        "samples": json.dumps([{"name": s.name, "label": s.label,
                                "categories": {c.name: c.label for c in s.categories}} for s in cfg.samples]),
        "source_files": json.dumps([[f.path for f in files if f.sample == i] for i in range(len(cfg.samples))]),
    }
    if friends:
        attrs["friend_files"] = json.dumps({p.spec.name: p.spec.paths for p in friends})
    return attrs


def package_versions() -> str:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return json.dumps(versions, sort_keys=True)
