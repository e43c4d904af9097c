"""Resolution: the checks that span keys, and everything the pipeline infers, block by block.

`resolve` runs when the config loads, so every mistake a config can hold fails there, on the driver, before
a file is opened: names, branch lists, kinematic roles, preprocessing functions, split fractions or
residues, shard counts, the statistics, images and variations blocks, and the output features themselves
(`pipelines.config.features`). What is inferred (roles, sort branches, scaled branches, shards per split,
the defaults of dense images) is written into the config, so the resolved config stored with the output says
exactly what ran.
"""
from __future__ import annotations

import difflib
import logging
import math
import os
import re

from root2hdf5.pipelines.config import events, features, images, statistics, variations
from root2hdf5.pipelines.config.schema import Config
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import NAME, SPLITS
from root2hdf5.transforms.output.hdf5_files import hdf5plugin_missing
from root2hdf5.transforms.physics import kinematics
from root2hdf5.transforms.physics.library import PRESETS
from root2hdf5.transforms.physics.preprocess import BUILTINS
from root2hdf5.transforms.read.sources import shared_files
from root2hdf5.transforms.rows.expressions import unquote
from root2hdf5.transforms.rows.select import expression_class

log = logging.getLogger("root2hdf5")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
_USER_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_INDEX = re.compile(r"\[\d+\]$")  # the element index of an event variable such as Jet_pt[0]


def resolve(cfg: Config) -> Config:
    """Validate cross-key constraints and fill in what is inferred. Returns the same object."""
    _samples(cfg)
    listed = _input(cfg)
    _constituents(cfg)
    _preprocess(cfg, listed)
    _split(cfg)
    _shuffle(cfg)
    if cfg.limits.total_jets is not None and cfg.limits.total_jets < 1:
        raise ConfigError("limits.total_jets must be a positive number of jets")
    statistics.resolve(cfg)
    _integers(cfg, listed)
    images.resolve(cfg)
    variations.resolve(cfg)
    _output(cfg)
    _memory(cfg, features.check(cfg))
    return cfg


def check_name(name: str, where: str, what: str) -> None:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} may only use letters, digits and _ . + - (it names {what})")


# ------------------------------------------------------------------------------------------- samples


def _samples(cfg: Config) -> None:
    if not cfg.samples:
        raise ConfigError("samples: at least one sample is needed")
    names = [s.name for s in cfg.samples]
    for s in cfg.samples:
        check_name(s.name, "samples", "counters and report entries")
        if names.count(s.name) > 1:
            raise ConfigError(f"samples: name {s.name!r} is used twice")
        if not s.files:
            raise ConfigError(f"samples.{s.name}.files: no input files given")
    for s in cfg.samples:
        _categories(cfg, s)
        _sample_weights(cfg, s)
    _shared_files(cfg)


def _shared_files(cfg: Config) -> None:
    """A file in two samples would give each of its jets twice, once with each label: refused unless allowed,
    or unless both samples have a selection of their own (one file split into classes, docs/config.md)."""
    selected = {s.name for s in cfg.samples if s.selection is not None}
    shared = [item for item in shared_files(cfg.samples) if not {item[1], item[2]} <= selected]
    if not shared:
        return
    path, first, second = shared[0]
    more = f" (and {len(shared) - 1} more files in two samples)" if len(shared) > 1 else ""
    message = (f"samples: file {path} is in sample {first!r} and in sample {second!r}{more}; its jets would be "
               "written once per sample, with each label")
    if "shared_files" not in cfg.checks.allow:
        raise ConfigError(f"{message}; list it in one sample, give each sample a selection, or accept this with "
                          "checks.allow: [shared_files]")
    log.warning("%s (accepted by checks.allow: [shared_files])", message)


def _categories(cfg: Config, s) -> None:
    where = f"samples.{s.name}"
    make = expression_class(cfg.record)
    if s.categories:
        if s.label is not None:
            raise ConfigError(f"{where}: give either label or categories, not both")
        for c in s.categories:
            c.name = c.name or f"label{c.label}"
            if not NAME.fullmatch(c.name):
                raise ConfigError(f"{where}.categories: name {c.name!r} may only use letters, digits and _ . + -")
            make(c.selection, f"{where}.categories selection")
        if len({c.name for c in s.categories}) < len(s.categories):
            raise ConfigError(f"{where}.categories: names must be unique")
    elif s.label is None:
        s.label = 0
    if s.selection is not None:
        make(s.selection, f"{where}.selection")
    if s.max_jets is not None and s.max_jets < 0:
        raise ConfigError(f"{where}.max_jets must not be negative")


def _sample_weights(cfg: Config, s) -> None:
    where = f"samples.{s.name}"
    if s.sum_of_weights is not None and s.sum_of_weights != "auto":
        try:
            value = float(s.sum_of_weights)
        except ValueError:
            raise ConfigError(f"{where}.sum_of_weights: {s.sum_of_weights!r} is neither a number nor 'auto'") from None
        if not 0 < value < math.inf:
            raise ConfigError(f"{where}.sum_of_weights must be a positive finite number, got {s.sum_of_weights!r}")
    if s.cross_section is not None and s.cross_section <= 0:
        raise ConfigError(f"{where}.cross_section must be positive, got {s.cross_section:g}")
    if s.cross_section is not None and s.sum_of_weights is None:
        raise ConfigError(f"{where}: cross_section needs sum_of_weights (a number, or auto to sum "
                          "weights.branch over all events read)")
    if s.sum_of_weights == "auto":
        if not cfg.weights.branch:
            raise ConfigError(f"{where}.sum_of_weights: auto needs weights.branch (the event weight)")
        if cfg.input.layout != "events":
            raise ConfigError(f"{where}.sum_of_weights: auto needs layout 'events' (a per-jet ntuple does "
                              "not hold every event); give the number")


# -------------------------------------------------------------------------------------- input, roles


def _input(cfg: Config) -> list[str]:
    """Checks of `input` and of the record's own blocks; returns every branch that is read and may be scaled."""
    inp = cfg.input
    _unquote_names(cfg)
    if inp.leading_jets < 1:
        raise ConfigError("input.leading_jets must be at least 1")
    if inp.step_size < 1:
        raise ConfigError("input.step_size must be a positive number of entries")
    if cfg.record == "jet" and not inp.jet_branches and not inp.constituent_branches:
        raise ConfigError("input: give jet_branches and/or constituent_branches")
    if inp.layout == "jets" and not inp.event_number:
        raise ConfigError("input.event_number is required for layout 'jets': it keeps the jets of one event "
                          "in the same split")
    _links(cfg)
    listed = inp.jet_branches + inp.constituent_branches + inp.event_branches
    for b in set(listed):
        if listed.count(b) > 1:
            raise ConfigError(f"input: branch {b!r} is listed twice")
    _jet_collections(cfg)
    if cfg.jet_collections:
        listed += [b for b in cfg.jet_collections.all_branches() if b not in listed]
    if cfg.record == "event":
        listed += events.resolve(cfg)
    else:
        events.refuse_event_keys(cfg)
        cfg.kinematics.jets = kinematics.infer_roles(inp.jet_branches, cfg.kinematics.jets)
        cfg.kinematics.constituents = kinematics.infer_roles(inp.constituent_branches, cfg.kinematics.constituents)
        if inp.layout == "events" and inp.leading_by is None:
            inp.leading_by = cfg.kinematics.jets.get("pt")
    if inp.selection is not None:
        expression_class(cfg.record)(inp.selection, "input.selection")  # fail early on syntax
    return listed


def _links(cfg: Config) -> None:
    """input.constituent_links: constituents listed per event, reached from the jets through an index."""
    links, inp = cfg.input.constituent_links, cfg.input
    if links is None:
        return
    for key in ("index", "jet_index", "valid"):
        if getattr(links, key):
            setattr(links, key, unquote(getattr(links, key)))
    if cfg.record != "jet" or inp.layout != "events":
        raise ConfigError("input.constituent_links: links go from the jets of an event to its constituents; they "
                          "need record: jet and layout: events")
    if not inp.constituent_branches or not inp.jet_branches:
        raise ConfigError("input.constituent_links: give the jets (input.jet_branches, e.g. FatJet_pt) and the "
                          "per-event constituent collection (input.constituent_branches, e.g. PFCands_pt)")
    used = [b for b in (links.index, links.jet_index, links.valid) if b]
    clash = [b for b in used if b in inp.jet_branches + inp.constituent_branches + inp.event_branches]
    if clash or len(set(used)) < len(used):
        raise ConfigError(f"input.constituent_links: {clash or used} are read as links; list each branch once")


def _unquote_names(cfg: Config) -> None:
    """Keys that take branch names accept them plain or quoted as in expressions (`Info/evtNum`)."""
    inp = cfg.input
    for key in ("jet_branches", "constituent_branches", "event_branches", "integer_branches"):
        setattr(inp, key, [unquote(b) for b in getattr(inp, key)])
    for key in ("event_number", "leading_by"):
        if getattr(inp, key):
            setattr(inp, key, unquote(getattr(inp, key)))
    if cfg.weights.branch:
        cfg.weights.branch = unquote(cfg.weights.branch)
    if cfg.constituents.sort_by:
        cfg.constituents.sort_by = unquote(cfg.constituents.sort_by)


def _jet_collections(cfg: Config) -> None:
    jc = cfg.jet_collections
    if jc is None:
        return
    if not jc.fields or not jc.collections:
        raise ConfigError("jet_collections: give fields and at least one collection")
    for name, branches in jc.collections.items():
        if len(branches) == 1 and len(jc.fields) > 1:  # a prefix: branch = prefix + field
            jc.collections[name] = [branches[0] + f for f in jc.fields]
        elif len(branches) != len(jc.fields):
            raise ConfigError(f"jet_collections.collections.{name}: {len(branches)} branches for "
                              f"{len(jc.fields)} fields {jc.fields}")


def _constituents(cfg: Config) -> None:
    inp, con = cfg.input, cfg.constituents
    if not inp.constituent_branches:
        return
    if con.max < 1:
        raise ConfigError("constituents.max must be at least 1")
    if con.sort_by is None:
        con.sort_by = cfg.kinematics.constituents.get("pt", inp.constituent_branches[0])
    if con.sort_by not in inp.constituent_branches:
        raise ConfigError(f"constituents.sort_by: {con.sort_by!r} is not one of input.constituent_branches")
    if con.min_pt > 0 and "pt" not in cfg.kinematics.constituents:
        raise ConfigError("constituents.min_pt needs the constituent pT branch; name it in "
                          "kinematics.constituents.pt")


def _integers(cfg: Config, listed: list[str]) -> None:
    ints = cfg.input.integer_branches
    if not ints:
        return
    if cfg.record == "event":
        raise ConfigError("input.integer_branches: with record: event, list integer values under events.variables")
    twice = sorted({b for b in ints if ints.count(b) > 1 or b in listed})
    if twice:
        raise ConfigError(f"input.integer_branches: {twice} are listed twice (an integer branch goes to "
                          "`jets_int` only; remove it from jet_branches / event_branches)")


# --------------------------------------------------------------------------------------- preprocess


def check_function(spec: str, kind: str, where: str) -> None:
    if spec in BUILTINS[kind] or (kind == "constituents" and spec in PRESETS) or _USER_FUNCTION.match(spec):
        return
    close = difflib.get_close_matches(spec, [*BUILTINS[kind], *PRESETS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"{where}: {spec!r} is not a built-in {kind} function ({hint}built-ins: "
                      f"{', '.join(BUILTINS[kind])}) nor a user function written as 'package.module:function'")


def _preprocess(cfg: Config, listed: list[str]) -> None:
    pre = cfg.preprocess
    if pre.unit_scale <= 0:
        raise ConfigError(f"preprocess.unit_scale must be positive (a factor of units), got {pre.unit_scale:g}")
    if cfg.weights.luminosity <= 0:
        raise ConfigError(f"weights.luminosity must be positive, got {cfg.weights.luminosity:g}")
    for key in ("constituents", "jets"):
        specs = getattr(pre, key)
        if not specs:
            raise ConfigError(f"preprocess.{key}: give at least one function (e.g. raw)")
        for spec in specs:
            check_function(spec, key, f"preprocess.{key}")
    if cfg.jet_collections:
        for spec in cfg.jet_collections.preprocess:
            check_function(spec, "jets", "jet_collections.preprocess")
    if pre.scaled_branches is None:
        pre.scaled_branches = [b for b in listed if kinematics.is_energy_like(_INDEX.sub("", b))] \
            if pre.unit_scale != 1 else []
    unknown = [b for b in pre.scaled_branches if b not in listed]
    if unknown:
        raise ConfigError(f"preprocess.scaled_branches: {unknown} are not among the configured branches")


# ------------------------------------------------------------------------------------ split, shuffle


def _split(cfg: Config) -> None:
    sp = cfg.split
    if sp.modulo is None:
        for name in SPLITS:
            value = getattr(sp, name)
            if isinstance(value, list):
                raise ConfigError(f"split.{name}: a list of residues needs split.modulo (e.g. split: {{modulo: 2, "
                                  "train: [0], test: [1]}); without it give the fraction of events")
            if value is None:
                setattr(sp, name, DEFAULT_FRACTIONS[name])
    else:
        _residues(cfg)
    fractions = sp.fractions()
    if any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ConfigError(f"split: fractions must be non-negative and add up to 1, got {fractions}")


def _residues(cfg: Config) -> None:
    sp = cfg.split
    if sp.modulo < 1:
        raise ConfigError("split.modulo must be a positive integer")
    if not cfg.input.event_number:
        raise ConfigError("split.modulo needs input.event_number: an event goes to the split listing "
                          "event_number % modulo")
    owner: dict[int, str] = {}
    for name in SPLITS:
        value = getattr(sp, name)
        if value is None:
            setattr(sp, name, [])
            continue
        if not isinstance(value, list):
            raise ConfigError(f"split.{name}: with split.modulo give the residues of event_number % {sp.modulo} "
                              f"that go to {name} as a list (e.g. [0]), not a fraction")
        for residue in value:
            if not 0 <= residue < sp.modulo:
                raise ConfigError(f"split.{name}: residue {residue} is not between 0 and {sp.modulo - 1}")
            if residue in owner:
                raise ConfigError(f"split.{name}: residue {residue} is also in split.{owner[residue]}; each "
                                  "residue goes to one split")
            owner[residue] = name
    missing = [r for r in range(sp.modulo) if r not in owner]
    if missing:
        raise ConfigError(f"split: residues {missing} of event_number % {sp.modulo} are in no split; list every "
                          "residue under train, val or test")


def _shuffle(cfg: Config) -> None:
    sh = cfg.shuffle
    if not 1 <= sh.shards < 1 << 28:
        raise ConfigError("shuffle.shards must be between 1 and 2**28")
    if not sh.shards_per_split:
        # Shards are spread over the splits in proportion to their fractions, so that shard files
        # have similar sizes; every non-empty split gets at least one.
        sh.shards_per_split = {name: max(1, round(sh.shards * f)) for name, f in cfg.split.fractions().items()
                               if f > 0}


# -------------------------------------------------------------------------------------------- memory


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _memory(cfg: Config, names: features.Features) -> None:
    """The keys that become array shapes must give arrays that fit: one work unit's rows (input.step_size
    entries, each with its leading jets) of the padded dataset, or of each image, in half of the memory (the
    rest is for the branches read and the copies the functions make). Absurd sizes fail here, not as a
    numpy MemoryError on a worker."""
    memory = physical_memory()
    if not memory:
        return
    rows = cfg.input.step_size * (cfg.input.leading_jets if cfg.record == "jet" and cfg.input.layout == "events"
                                  else 1)
    key = "events.collection.max" if cfg.record == "event" else "constituents.max"
    width = [(key, features.padded_length(cfg) * max(1, len(names.get("constituents", []))) * 4)]
    for i, image in enumerate(cfg.images):
        if image.kind == "dense":  # a pixels image holds one index per constituent, whatever its bins
            width.append((f"images[{i}].bins",
                          math.prod(image.bins) * len(image.channels) * (2 if image.dtype == "float16" else 4)))
    for key, row_bytes in width:
        need = rows * row_bytes
        if need > memory // 2:
            raise ConfigError(f"{key}: one work unit of {rows:,} rows (input.step_size x jets per entry) would need "
                              f"{need / 2**30:,.1f} GiB for it, more than half the {memory / 2**30:,.1f} GiB of "
                              "memory here; lower it or input.step_size")


# -------------------------------------------------------------------------------------------- output


def _output(cfg: Config) -> None:
    out = cfg.output
    if not out.dir or any(ord(ch) < 32 for ch in out.dir):
        raise ConfigError(f"output.dir: {out.dir!r} is not a usable path")
    if out.layout == "ftag" and out.format != "hdf5":
        raise ConfigError("output.layout ftag is an HDF5 layout; use output.format hdf5")
    if out.layout == "ftag" and cfg.record == "event":
        raise ConfigError("output.layout ftag is the jets/tracks convention of flavour tagging, one row per jet; "
                          "with record: event use output.layout plain (or output.format parquet)")
    if not NAME.fullmatch(out.constituents_name) or out.constituents_name == "jets":
        raise ConfigError(f"output.constituents_name: {out.constituents_name!r} is not a usable dataset name")
    if out.chunk_jets < 1:
        raise ConfigError("output.chunk_jets must be at least 1")
    if out.compression_level is not None and not 0 <= out.compression_level <= 9:
        raise ConfigError(f"output.compression_level: {out.compression_level} is not a level from 0 to 9")
    if out.compression.startswith("blosc") and out.format == "hdf5":
        missing = hdf5plugin_missing()
        if missing:
            raise ConfigError(f"output.compression: {out.compression} needs the hdf5plugin package ({missing}); "
                              "or choose lzf, gzip or none")
