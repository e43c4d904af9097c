"""The conversion pipeline: ROOT ntuples -> shuffled, padded HDF5 train/val/test sets.

    files -> entry ranges -> read -> flatten to jets -> select -> pad constituents -> preprocess
          -> label -> split & shard keys -> GroupByKey by shard -> write shards -> finalize

`build` assembles it from a resolved Config; `run` adds what happens on the driver around it: expanding
the inputs, checking the first file of every sample (so common mistakes fail in a second with a clear
message), preparing the output directory, and cleaning up after a failure.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from importlib import metadata

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from root2hdf5.pipelines.config import SPLITS, Config, public_names
from root2hdf5.pipelines.runners.local import make_pipeline
from root2hdf5.transforms.stats.composition import Composition
from root2hdf5.transforms.physics.padding import PadConstituents
from root2hdf5.transforms.core.errors import ConfigError, InputError, OutputError
from root2hdf5.transforms.read.finite import CheckFinite, SplitBatches
from root2hdf5.pipelines.event_plans import (check_friend_inputs, event_branch_plan, event_variables, friend_files,
                                   friend_spec, join_friends)
from root2hdf5.transforms.rows.event_variables import EventVariables
from root2hdf5.transforms.read.flatten import FlattenEvents, FlattenJets
from root2hdf5.transforms.core import progress
from root2hdf5.transforms.output.finalize import SHARDS_DIR, SUMMARY, TMP_PREFIX, SinkSpec
from root2hdf5.transforms.output.finish import FinishSpec
from root2hdf5.transforms.output.formats import ColumnSpec, Hdf5Format, ParquetFormat
from root2hdf5.transforms.output.hdf5_files import DatasetSpec, Storage, children, is_local
from root2hdf5.transforms.output.sink import WriteShuffledHdf5
from root2hdf5.transforms.physics.images import specs_from_config
from root2hdf5.transforms.physics.variations import ApplyVariation, VariationSpec
from root2hdf5.transforms.stats.model_scores import ModelSpec, fingerprint
from root2hdf5.transforms.stats.reweight import ReweightSpec
from root2hdf5.transforms.rows.label import Labeling, LabelJets
from root2hdf5.transforms.physics.preprocess import JetCollections, Preprocess, PreprocessSpec
from root2hdf5.transforms.read.ranges import ReadRootRanges
from root2hdf5.transforms.rows.select import SelectJets
from root2hdf5.transforms.read.sources import InputFile, expand_files
from root2hdf5.transforms.output.split import AssignSplits
from root2hdf5.transforms.read.trees import BranchPlan, check_branches, open_tree

log = logging.getLogger("root2hdf5")

SOURCE_COLUMNS = ["sample", "file", "entry", "jet_index"]
_VERSIONED = ("root2hdf5", "apache-beam", "uproot", "awkward", "numpy", "h5py")


def branch_plan(cfg: Config) -> BranchPlan:
    if cfg.record == "event":
        return event_branch_plan(cfg)
    inp = cfg.input
    return BranchPlan(inp.layout, tuple(inp.jet_branches), tuple(inp.constituent_branches),
                      tuple(inp.event_branches), inp.event_number,
                      inp.leading_by if inp.layout == "events" else None, inp.selection,
                      categories=tuple(c.selection for s in cfg.samples for c in s.categories),
                      weight=cfg.weights.branch,
                      collections=tuple(cfg.jet_collections.all_branches()) if cfg.jet_collections else (),
                      extra=tuple((b, "integer branch", (1, 2) if inp.layout == "events" else (1,))
                                  for b in inp.integer_branches))


def labelings(cfg: Config) -> list[Labeling]:
    return [Labeling(s.label or 0, tuple((c.label, c.name, c.selection) for c in s.categories))
            for s in cfg.samples]


def composition(cfg: Config) -> Composition:
    factors = tuple(s.weight * (s.cross_section * cfg.weights.luminosity if s.cross_section is not None else 1.0)
                    for s in cfg.samples)
    return Composition(
        caps=tuple(s.max_jets for s in cfg.samples), total_jets=cfg.limits.total_jets,
        balance=cfg.limits.balance, factors=factors,
        sum_of_weights=tuple(s.sum_of_weights if s.sum_of_weights in (None, "auto") else float(s.sum_of_weights)
                             for s in cfg.samples),
        sample_names=tuple(s.name for s in cfg.samples))


def padded_length(cfg: Config) -> int:
    """Slots per row of the padded dataset: constituents per jet, or objects of events.collection."""
    if cfg.record == "event":
        return cfg.events.collection.max if cfg.events.collection else 0
    return cfg.constituents.max if cfg.input.constituent_branches else 0


def variation_spec(item: dict) -> VariationSpec:
    """A `variations:` item -> its spec (`recompute_jets` is for the pipeline, not the kernels)."""
    return VariationSpec.from_dict({k: v for k, v in item.items() if k != "recompute_jets"},
                                   f"variations ({item.get('name')})")


def variation_dir(cfg: Config, item: dict) -> str:
    """Each variation is a complete output set of its own, beside the nominal one."""
    return FileSystems.join(cfg.output.dir.rstrip("/") or "/", "variations", item["name"])


def image_specs(cfg: Config) -> tuple:
    return specs_from_config(cfg.images, "images") if cfg.images else ()


def preprocess_spec(cfg: Config) -> PreprocessSpec:
    inp, pre = cfg.input, cfg.preprocess
    padded, features = tuple(inp.constituent_branches), tuple(inp.jet_branches + inp.event_branches)
    scaled = tuple(pre.scaled_branches or ())
    if cfg.record == "event":  # the collection is padded like constituents; the variables are the row's features
        padded = tuple(cfg.events.collection.branches) if cfg.events.collection else ()
        features = tuple(v.name for v in event_variables(cfg))
        scaled = tuple(b for b in scaled if b in padded)  # variables are scaled by EventVariables, before defaults
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
                                   tuple(jc.preprocess)) if (jc := cfg.jet_collections) else None)


def output_datasets(cfg: Config, features: dict[str, list[str]]) -> list[DatasetSpec]:
    datasets = []
    if "constituents" in features:
        n_max = padded_length(cfg)
        datasets += [
            DatasetSpec("constituents", "float32", (n_max, len(features["constituents"])),
                        (("features", features["constituents"]),)),
            DatasetSpec("mask", "bool", (n_max,)),
        ]
    datasets.append(DatasetSpec("jets", "float32", (len(features["jets"]),), (("features", features["jets"]),)))
    if "jet_collections" in features:
        names = list(cfg.jet_collections.collections)
        datasets.append(DatasetSpec("jet_collections", "float32", (len(names), len(features["jet_collections"])),
                                    (("collections", names), ("features", features["jet_collections"]))))
    datasets += [
        DatasetSpec("labels", "int32"),
        DatasetSpec("weights", "float32"),
        DatasetSpec("event_number", "int64"),
        DatasetSpec("source", "int64", (4,), (("columns", SOURCE_COLUMNS),)),
    ]
    if cfg.input.integer_branches:
        datasets.append(DatasetSpec("jets_int", "int64", (len(cfg.input.integer_branches),),
                                    (("features", list(cfg.input.integer_branches)),)))
    for spec in image_specs(cfg):
        datasets.append(DatasetSpec(spec.name, spec.output_dtype, spec.shape(padded_length(cfg)),
                                    tuple(spec.attrs().items()),
                                    chunk_rows=1 if spec.kind == "dense" else None))  # images are mostly zeros
    if cfg.model is not None and not cfg.model.as_weight:
        datasets.append(DatasetSpec(cfg.model.output, "float32", model_output_shape(cfg.model.path),
                                    (("model", os.path.basename(cfg.model.path)),
                                     ("model_sha256", fingerprint(cfg.model.path)))))
    return datasets


def model_output_shape(path: str) -> tuple[int, ...]:
    """Per-jet shape of the model's first output: () for one score per jet, (K,) for K."""
    import onnxruntime as ort

    with FileSystems.open(path) as handle:
        session = ort.InferenceSession(handle.read(), providers=["CPUExecutionProvider"])
    shape = session.get_outputs()[0].shape
    return () if len(shape) < 2 or shape[1] in (1, None) or isinstance(shape[1], str) else (int(shape[1]),)


def finish_spec(cfg: Config, features: dict[str, list[str]]) -> FinishSpec:
    w = cfg.weights
    reweight = ReweightSpec()
    if w.method:
        missing = [v for v in w.variables if v not in features["jets"]]
        if missing:
            raise ConfigError(f"weights.variables: {missing} are not jet features (jet features: {features['jets']})")
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


def model_spec(cfg: Config) -> ModelSpec | None:
    m = cfg.model
    column = {v: k for k, v in public_names(cfg).items()}  # model.inputs name datasets as they are on disk
    return None if m is None else ModelSpec(m.path, tuple((k, column.get(v, v)) for k, v in m.inputs.items()),
                                            m.output, m.as_weight, m.threads)


def package_versions() -> str:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return json.dumps(versions, sort_keys=True)


def build(pipeline: beam.Pipeline, cfg: Config, files: list[InputFile], sink: SinkSpec,
          variations: list[tuple[dict, SinkSpec]] = ()):
    """Add the conversion to `pipeline`: the input is read once; the nominal set and every variation's set
    (`variations`: (config item, sink)) are each converted and written from it. Returns the PCollection
    holding the nominal set's final report."""
    inp = cfg.input
    chunks, skipped = pipeline | "ReadRoot" >> ReadRootRanges(files, branch_plan(cfg), inp.step_size,
                                                               skip=inp.on_error == "skip",
                                                               progress_dir=sink.progress_dir)
    report = chunks | "Convert" >> ConvertRows(cfg, sink, skipped)
    for item, variation_sink in variations:
        chunks | f"Convert[{item['name']}]" >> ConvertRows(cfg, variation_sink, skipped, item)
    return report


class ConvertRows(beam.PTransform):
    """Entry-range chunks -> one output set: rows, selection, labels, padding, preprocessing, split, shuffle,
    written and finalized by `sink`. With `variation` (an item of the config's `variations:`), the
    constituents are varied right after they are read."""

    def __init__(self, cfg: Config, sink: SinkSpec, skipped, variation: dict | None = None):
        super().__init__()
        self.cfg, self.sink, self.skipped, self.variation = cfg, sink, skipped, variation

    def expand(self, chunks):
        cfg, sink, skipped = self.cfg, self.sink, self.skipped
        pipeline = chunks.pipeline
        inp, con = cfg.input, cfg.constituents
        split_names = list(SPLITS)
        sum_weights = cfg.weights.branch if any(s.sum_of_weights == "auto" for s in cfg.samples) else None
        events = cfg.record == "event"
        if events:  # one row per event; a padded collection plays the part of the constituents
            coll = cfg.events.collection
            padded = list(coll.branches) if coll else []
            rows = chunks | "FlattenEvents" >> beam.ParDo(FlattenEvents(inp.event_number, sum_weights,
                                                                        tuple(padded)))
            pad = PadConstituents(padded, coll.sort_by if coll else None, padded_length(cfg), None, 0.0)
        else:
            rows = chunks | "FlattenJets" >> beam.ParDo(FlattenJets(inp.layout, inp.leading_jets, inp.leading_by,
                                                                    inp.event_number, sum_weights))
            pad = PadConstituents(inp.constituent_branches, con.sort_by, con.max,
                                  cfg.constituent_roles.get("pt"), con.min_pt)
        rows = rows | "CheckFinite" >> beam.ParDo(CheckFinite(inp.on_nonfinite, inp.nonfinite_value))
        if self.variation is not None:
            rows = rows | "Vary" >> beam.ParDo(ApplyVariation(
                variation_spec(self.variation), inp.constituent_branches, cfg.constituent_roles, cfg.jet_roles, cfg.shuffle.seed,
                self.variation.get("recompute_jets", False)))
        rows = (
            rows
            | "SplitBatches" >> beam.ParDo(SplitBatches())
            | "Select" >> beam.ParDo(SelectJets(inp.selection, [s.selection for s in cfg.samples], cfg.record))
        )
        if events:
            rows = join_friends(pipeline, cfg, rows)
        rows = rows | "Label" >> beam.ParDo(LabelJets(labelings(cfg), cfg.weights.branch, cfg.record))
        if events:
            rows = rows | "EventVariables" >> beam.ParDo(EventVariables(event_variables(cfg),
                                                                        cfg.preprocess.unit_scale))
        split = cfg.split
        routed, stats = (
            rows
            | "PadConstituents" >> beam.ParDo(pad)
            | "Preprocess" >> beam.ParDo(Preprocess(preprocess_spec(cfg)))
            | "AssignSplits" >> beam.ParDo(AssignSplits(
                cfg.shuffle.seed, split_names, [split.fractions()[s] for s in split_names],
                [cfg.shuffle.shards_per_split.get(s, 0) for s in split_names],
                by_event_number=inp.event_number is not None, sample_names=[s.name for s in cfg.samples],
                modulo=split.modulo, residue_splits=split.residue_splits() if split.modulo else None,
                rows="events" if events else "jets"))
            .with_outputs("stats", main="batches")
        )
        return routed | "WriteHdf5" >> WriteShuffledHdf5(
            sink, stats, spill=cfg.shuffle.mode == "spill", composition=composition(cfg), skipped=skipped,
            finish=finish_spec(cfg, sink.features), model=model_spec(cfg))


def check_inputs(cfg: Config, files: list[InputFile]) -> None:
    """Open the first file of every sample on the driver and check its tree and branches (with
    `input.on_error: skip`, problems are left to the workers, which skip the file)."""
    plan = branch_plan(cfg)
    for sample_index in range(len(cfg.samples)):
        first = next(f for f in files if f.sample == sample_index)
        try:
            tree = open_tree(first.path, first.tree)
            try:
                check_branches(tree, plan, first.path)
            finally:
                tree.file.close()
        except InputError as err:
            if cfg.input.on_error != "skip":
                raise
            log.warning("%s (the file will be skipped)", err)
    if cfg.record == "event":
        check_friend_inputs(cfg)


@dataclass
class OutputDir:
    path: str
    tmp: str
    created: bool

    def cleanup_after_failure(self):
        """Remove the run's temporary directory, and the output directory if this run created it."""
        try:
            if FileSystems.exists(self.tmp):
                FileSystems.delete([self.tmp])
            if self.created and FileSystems.exists(self.path) and not children(self.path):
                FileSystems.delete([self.path])
        except Exception as err:  # cleanup must not hide the original error
            log.warning("could not clean up %s: %s", self.tmp, err)


def prepare_output(path: str, overwrite: bool) -> OutputDir:
    """Refuse a non-empty output directory unless overwriting; make the run's temporary directory."""
    path = path.rstrip("/") or "/"
    created = False
    try:
        if FileSystems.exists(path):
            existing = [e for e in children(path) if not e.rstrip("/").rsplit("/", 1)[-1].startswith(TMP_PREFIX)]
            if existing and not overwrite:
                raise OutputError(f"output directory {path} already holds {len(existing)} entries (e.g. "
                                  f"{existing[0]}); pass --overwrite to replace its train/val/test files")
        else:
            FileSystems.mkdirs(path)
            created = True
        tmp = FileSystems.join(path, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
        for sub in ("", SHARDS_DIR, "pieces"):
            FileSystems.mkdirs(FileSystems.join(tmp, sub) if sub else tmp)
        probe = FileSystems.join(tmp, "probe")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except OutputError:
        raise
    except Exception as err:
        raise OutputError(f"output directory {path} cannot be written: {err}") from None
    return OutputDir(path, tmp, created)


def make_sink(cfg: Config, files: list[InputFile], features: dict[str, list[str]], out: OutputDir,
              overwrite: bool) -> SinkSpec:
    file_attrs = {
        "config": cfg.provenance_json(),
        "versions": package_versions(),
        **({"record": "event", "collection_max": padded_length(cfg)} if cfg.record == "event"
           else {"max_constituents": padded_length(cfg)}),
        "samples": json.dumps([{"name": s.name, "label": s.label,
                                "categories": {c.name: c.label for c in s.categories}} for s in cfg.samples]),
        "source_files": json.dumps([[f.path for f in files if f.sample == i] for i in range(len(cfg.samples))]),
    }
    if cfg.record == "event" and cfg.events.friends:
        file_attrs["friend_files"] = json.dumps({f.name: friend_spec(cfg, f, friend_files(cfg, f)).paths
                                                 for f in cfg.events.friends})
    datasets = output_datasets(cfg, features)
    return SinkSpec(
        out_dir=out.path, tmp_dir=out.tmp, datasets=datasets, format=output_format(cfg, datasets, features),
        shards=dict(cfg.shuffle.shards_per_split), split_names=list(SPLITS),
        sample_names=[s.name for s in cfg.samples], files=files, file_attrs=file_attrs,
        overwrite=overwrite, selection=cfg.input.selection, features=features,
        collections=list(cfg.jet_collections.collections) if cfg.jet_collections else [],
        stats=cfg.stats.compute or cfg.stats.apply, standardized=cfg.stats.apply, record=cfg.record,
        friends=tuple(f.name for f in cfg.events.friends) if cfg.record == "event" else ())


def output_format(cfg: Config, datasets: list[DatasetSpec], features: dict[str, list[str]]):
    out = cfg.output
    columns = ColumnSpec(tuple(datasets), features,
                         tuple(cfg.jet_collections.collections) if cfg.jet_collections else (),
                         cfg.model.output if cfg.model and not cfg.model.as_weight else None,
                         public_names(cfg), "events" if cfg.record == "event" else "jets")
    if out.format == "parquet":
        return ParquetFormat(columns, out.compression, out.parquet_constituents == "padded", out.chunk_jets)
    return Hdf5Format(columns, Storage(out.compression, out.compression_level, out.chunk_jets), out.layout,
                      out.constituents_name)


def runs_locally(beam_args: list[str]) -> bool:
    """Whether the workers share this machine's disk (the DirectRunner), so they can report progress."""
    runner = re.search(r"--runner[= ](\S+)", " ".join(beam_args))
    return runner is None or runner.group(1) in ("DirectRunner", "direct", "FnApiRunner")


def run(cfg: Config, beam_args: list[str] | None = None, overwrite: bool = False,
        progress_every: float = 10.0) -> dict:
    """Run the conversion; returns the report (also written to <output.dir>/summary.json).

    On a local run, a progress line is logged every `progress_every` seconds (0: never)."""
    started = time.perf_counter()
    files = expand_files(cfg.samples)
    log.info("%d input files in %d samples", len(files), len(cfg.samples))
    check_inputs(cfg, files)
    features = preprocess_spec(cfg).feature_names()  # fails fast on a broken preprocessing function
    finish_spec(cfg, features)  # and on reweighting variables that are not features
    output_format(cfg, output_datasets(cfg, features), features)  # and on clashing FTAG field names
    out = prepare_output(cfg.output.dir, overwrite)
    outputs = [out]
    try:
        sink = make_sink(cfg, files, features, out, overwrite)
        variations = []
        for item in cfg.variations:
            outputs.append(prepare_output(variation_dir(cfg, item), overwrite))
            variation_sink = make_sink(cfg, files, features, outputs[-1], overwrite)
            variation_sink.file_attrs["variation"] = json.dumps(item, sort_keys=True)
            variations.append((item, variation_sink))
        log.info("constituent features: %s", features.get("constituents", []))
        log.info("jet features: %s", features["jets"])
        sinks = [sink] + [v for _, v in variations]
        watch = progress_every > 0 and is_local(out.tmp) and runs_locally(beam_args or [])
        if watch:
            for s in sinks:
                s.progress_dir = os.path.join(out.tmp, progress.FOLDER)
        shards = sum(sum(s.shards.values()) for s in sinks)
        with progress.Watcher(sink.progress_dir, len(files), shards, progress_every) \
                if watch else contextlib.nullcontext():
            with make_pipeline(PipelineOptions(beam_args or [])) as pipeline:
                build(pipeline, cfg, files, sink, variations)
    except BaseException:
        for o in outputs:
            o.cleanup_after_failure()
        raise
    report = _read_report(out.path)
    if variations:
        report["variations"] = {item["name"]: {"dir": s.out_dir, **_read_report(s.out_dir)}
                                for item, s in variations}
    report["seconds"] = round(time.perf_counter() - started, 2)
    if watch:
        total = report["total"]
        log.info("progress: done: read %s entries of %d files, wrote %s %s in %s shards [%s]",
                 f"{total['events']:,}", len(files), f"{total['written']:,}",
                 "events" if cfg.record == "event" else "jets", shards, progress.duration(report["seconds"]))
    return report


def _read_report(out_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(out_dir, SUMMARY)) as handle:
        return json.loads(handle.read())
