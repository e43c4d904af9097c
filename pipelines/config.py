"""The YAML config: loading, validation with helpful messages, and resolution of inferred defaults.

Every key is documented in README.md and in configs/example.yaml. Unknown keys are rejected with the closest
valid name, values are type-checked, and everything the pipeline infers (kinematic roles, sort branch,
scaled branches, shard counts per split) is written into the resolved config stored with the output.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from root2hdf5.transforms.physics import kinematics
from root2hdf5.transforms.core.checks import one_of
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.rows.expressions import Expression

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
LAYOUTS = ("events", "jets")
RECORDS = ("jet", "event")
SHUFFLE_MODES = ("spill", "engine")
COMPRESSIONS = ("gzip", "lzf", "none")
_USER_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_INDEX = re.compile(r"\[\d+\]$")  # the element index of an event variable such as Jet_pt[0]
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class CategoryConfig:
    label: int
    selection: str
    name: str | None = None


@dataclass
class SampleConfig:
    name: str
    files: list[str]
    tree: str
    label: int | None = None
    categories: list[CategoryConfig] = field(default_factory=list)
    weight: float = 1.0
    cross_section: float | None = None
    sum_of_weights: str | None = None  # a number, or "auto": the sum of weights.branch over all events read
    max_jets: int | None = None
    selection: str | None = None  # applied after input.selection, to this sample only
    friends: dict[str, list[str]] = field(default_factory=dict)  # friend name -> its files for this sample


@dataclass
class WeightsConfig:
    branch: str | None = None
    luminosity: float = 1.0
    method: str | None = None  # flat | match: reweight in bins of `variables`
    variables: list[str] = field(default_factory=list)
    bins: list[list[float]] = field(default_factory=list)
    abs: list[bool] = field(default_factory=list)
    target_label: int | None = None


@dataclass
class StatsConfig:
    compute: bool = True
    apply: bool = False


@dataclass
class ResampleConfig:
    target: int | None = None
    splits: list[str] = field(default_factory=lambda: ["train"])


@dataclass
class ModelConfig:
    path: str
    inputs: dict[str, str] = field(default_factory=dict)
    output: str = "scores"
    as_weight: bool = False
    threads: int = 1


@dataclass
class LimitsConfig:
    total_jets: int | None = None
    balance: bool = False


@dataclass
class JetCollectionsConfig:
    fields: list[str]
    collections: dict[str, list[str]]
    preprocess: list[str] = field(default_factory=lambda: ["raw"])

    def all_branches(self) -> list[str]:
        return [b for branches in self.collections.values() for b in branches]


@dataclass
class CollectionConfig:
    """record: event: one per-event list collection kept padded (e.g. the first 6 jets x fields)."""

    branches: list[str]
    max: int = 6
    sort_by: str | None = None
    name: str = "jets"


@dataclass
class FriendConfig:
    """record: event: a friend tree joined per event on key branches (e.g. matrix-element outputs)."""

    name: str
    tree: str
    keys: list[str]
    branches: list[str]
    friend_keys: list[str] = field(default_factory=list)  # the keys' names in the friend tree; default: keys
    unmatched: str = "drop"  # drop | fill
    fill_value: float = -999.0


@dataclass
class EventsConfig:
    """record: event: what a row holds."""

    variables: list[str] = field(default_factory=list)
    default: float = -999.0
    defaults: dict[str, float] = field(default_factory=dict)
    collection: CollectionConfig | None = None
    friends: list[FriendConfig] = field(default_factory=list)
    join_groups: int = 32


@dataclass
class InputConfig:
    layout: str = "events"
    leading_jets: int = 2
    leading_by: str | None = None
    event_number: str | None = None
    jet_branches: list[str] = field(default_factory=list)
    constituent_branches: list[str] = field(default_factory=list)
    event_branches: list[str] = field(default_factory=list)
    selection: str | None = None
    step_size: int = 50_000
    on_nonfinite: str = "fail"
    nonfinite_value: float = 0.0
    on_error: str = "fail"
    integer_branches: list[str] = field(default_factory=list)


@dataclass
class KinematicsConfig:
    jets: dict[str, str] = field(default_factory=dict)
    constituents: dict[str, str] = field(default_factory=dict)


@dataclass
class ConstituentsConfig:
    max: int = 80
    sort_by: str | None = None
    min_pt: float = 0.0


@dataclass
class PreprocessConfig:
    constituents: list[str] = field(default_factory=lambda: ["raw"])
    jets: list[str] = field(default_factory=lambda: ["raw"])
    unit_scale: float = 1.0
    scaled_branches: list[str] | None = None
    scale: dict[str, float] = field(default_factory=dict)


@dataclass
class SplitConfig:
    # fractions of events (hash split), or with `modulo` the residues of event_number % modulo per split;
    # None until resolved (0.8/0.1/0.1, or no residue)
    train: float | list[int] | None = None
    val: float | list[int] | None = None
    test: float | list[int] | None = None
    modulo: int | None = None

    def fractions(self) -> dict[str, float]:
        if self.modulo:
            return {name: len(getattr(self, name) or []) / self.modulo for name in SPLITS}
        return {name: getattr(self, name) for name in SPLITS}

    def residue_splits(self) -> list[int]:
        """For each residue 0 .. modulo-1, the index of its split (modulo split only)."""
        owner = {r: i for i, name in enumerate(SPLITS) for r in getattr(self, name) or []}
        return [owner[r] for r in range(self.modulo)]


@dataclass
class ShuffleConfig:
    seed: int = 42
    shards: int = 8
    mode: str = "spill"
    shards_per_split: dict[str, int] = field(default_factory=dict)


@dataclass
class OutputConfig:
    dir: str = "out"
    format: str = "hdf5"
    layout: str = "plain"
    constituents_name: str = "consts"
    parquet_constituents: str = "jagged"
    compression: str = "lzf"
    compression_level: int | None = None
    chunk_jets: int = 256


@dataclass
class Config:
    samples: list[SampleConfig]
    record: str = "jet"  # jet: one row per jet; event: one row per event (see `events`)
    events: EventsConfig | None = None
    input: InputConfig = field(default_factory=InputConfig)
    kinematics: KinematicsConfig = field(default_factory=KinematicsConfig)
    constituents: ConstituentsConfig = field(default_factory=ConstituentsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    jet_collections: JetCollectionsConfig | None = None
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    model: ModelConfig | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    shuffle: ShuffleConfig = field(default_factory=ShuffleConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    images: list[dict] = field(default_factory=list)  # validated by transforms.physics.images
    variations: list[dict] = field(default_factory=list)  # validated by transforms.physics.variations

    @property
    def jet_roles(self) -> dict[str, str]:
        return self.kinematics.jets

    @property
    def constituent_roles(self) -> dict[str, str]:
        return self.kinematics.constituents

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def provenance_json(self) -> str:
        """The resolved config as stored in the output files, without the keys that only say where and
        how the job ran (`output.dir`, `shuffle.mode`, `input.step_size`) or what else ran beside it
        (`variations`); they must not, and do not, change the output's bytes."""
        data = self.to_dict()
        data["output"].pop("dir")
        data["shuffle"].pop("mode")
        data["input"].pop("step_size")
        # each variation's set carries its own item (attribute `variation`); the nominal set is the same
        # whether variations run beside it or not
        data.pop("variations")
        return json.dumps(data, sort_keys=True)


# ---------------------------------------------------------------------------------------------- loading


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [t for t in options if t is not type(None)]
        lists = [t for t in inner if typing.get_origin(t) is list]
        if isinstance(value, list) and lists:  # e.g. `float | list[int]`: a list picks the list type
            return _convert(value, lists[0], where)
        return _convert(value, next((t for t in inner if t not in lists), inner[0]), where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and item is str:
            value = [str(value)]  # a single name where a list is expected
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_convert(k, key_t, where): _convert(v, val_t, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is dict:  # a block another module validates (images, variations)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        # YAML 1.1 reads `350e3` (no dot) as a string; accept it as the number it obviously is.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {_type_name(tp)}")


def _build(cls, data, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{path}'{hint}")
        kwargs[key] = _convert(value, hints[key], path)
    for f in dataclasses.fields(cls):
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key '{where + '.' if where else ''}{f.name}'")
    return cls(**kwargs)


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read, validate and resolve a YAML config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return config_from_dict(data or {}, source=str(path), overrides=overrides)


def config_from_dict(data: dict, source: str = "config", overrides: dict | None = None) -> Config:
    data = json.loads(json.dumps(data))  # deep copy, and plain types only
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    if "samples" not in data:
        raise ConfigError(f"{source}: missing required key 'samples' (a list of name/files/tree/label)")
    return resolve(_build(Config, data, ""))


# ------------------------------------------------------------------------------------------- resolution


def _check_function(spec: str, kind: str, where: str):
    from root2hdf5.transforms.physics.library import PRESETS
    from root2hdf5.transforms.physics.preprocess import BUILTINS

    if spec in BUILTINS[kind] or (kind == "constituents" and spec in PRESETS) or _USER_FUNCTION.match(spec):
        return
    close = difflib.get_close_matches(spec, [*BUILTINS[kind], *PRESETS], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"{where}: {spec!r} is not a built-in {kind} function ({hint}built-ins: "
                      f"{', '.join(BUILTINS[kind])}) nor a user function written as 'package.module:function'")


def resolve(cfg: Config) -> Config:
    """Validate cross-key constraints and fill in what is inferred. Returns the same object."""
    inp = cfg.input
    if not cfg.samples:
        raise ConfigError("samples: at least one sample is needed")
    names = [s.name for s in cfg.samples]
    for s in cfg.samples:
        if not _NAME.match(s.name):
            raise ConfigError(f"samples: name {s.name!r} may only use letters, digits and _ . + - (it names "
                              "counters and report entries)")
        if names.count(s.name) > 1:
            raise ConfigError(f"samples: name {s.name!r} is used twice")
        if not s.files:
            raise ConfigError(f"samples.{s.name}.files: no input files given")
    one_of("input.layout", inp.layout, LAYOUTS)
    if inp.leading_jets < 1:
        raise ConfigError("input.leading_jets must be at least 1")
    if inp.step_size < 1:
        raise ConfigError("input.step_size must be a positive number of entries")
    one_of("input.on_nonfinite", inp.on_nonfinite, ("fail", "drop", "replace"))
    one_of("input.on_error", inp.on_error, ("fail", "skip"))
    one_of("record", cfg.record, RECORDS)
    if cfg.record == "jet" and not inp.jet_branches and not inp.constituent_branches:
        raise ConfigError("input: give jet_branches and/or constituent_branches")
    if inp.layout == "jets" and not inp.event_number:
        raise ConfigError("input.event_number is required for layout 'jets': it keeps the jets of one event "
                          "in the same split")
    listed = inp.jet_branches + inp.constituent_branches + inp.event_branches
    for b in set(listed):
        if listed.count(b) > 1:
            raise ConfigError(f"input: branch {b!r} is listed twice")

    _resolve_samples(cfg)
    _resolve_collections(cfg)
    if cfg.jet_collections:
        listed += [b for b in cfg.jet_collections.all_branches() if b not in listed]
    if cfg.record == "event":
        listed += _resolve_events(cfg)
    else:
        _no_event_keys(cfg)
        cfg.kinematics.jets = kinematics.infer_roles(inp.jet_branches, cfg.kinematics.jets)
        cfg.kinematics.constituents = kinematics.infer_roles(inp.constituent_branches, cfg.kinematics.constituents)
        if inp.layout == "events" and inp.leading_by is None:
            inp.leading_by = cfg.kinematics.jets.get("pt")

    con = cfg.constituents
    if inp.constituent_branches:
        if con.max < 1:
            raise ConfigError("constituents.max must be at least 1")
        if con.sort_by is None:
            con.sort_by = cfg.kinematics.constituents.get("pt", inp.constituent_branches[0])
        if con.sort_by not in inp.constituent_branches:
            raise ConfigError(f"constituents.sort_by: {con.sort_by!r} is not one of input.constituent_branches")
        if con.min_pt > 0 and "pt" not in cfg.kinematics.constituents:
            raise ConfigError("constituents.min_pt needs the constituent pT branch; name it in "
                              "kinematics.constituents.pt")

    if inp.selection is not None:
        _expression_class(cfg)(inp.selection, "input.selection")  # fail early on syntax

    pre = cfg.preprocess
    for key in ("constituents", "jets"):
        specs = getattr(pre, key)
        if not specs:
            raise ConfigError(f"preprocess.{key}: give at least one function (e.g. raw)")
        for spec in specs:
            _check_function(spec, key, f"preprocess.{key}")
    if cfg.jet_collections:
        for spec in cfg.jet_collections.preprocess:
            _check_function(spec, "jets", "jet_collections.preprocess")
    if pre.scaled_branches is None:
        pre.scaled_branches = [b for b in listed if kinematics.is_energy_like(_INDEX.sub("", b))] \
            if pre.unit_scale != 1 else []
    unknown = [b for b in pre.scaled_branches if b not in listed]
    if unknown:
        raise ConfigError(f"preprocess.scaled_branches: {unknown} are not among the configured branches")

    _resolve_split(cfg)
    fractions = cfg.split.fractions()
    if any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ConfigError(f"split: fractions must be non-negative and add up to 1, got {fractions}")

    sh = cfg.shuffle
    one_of("shuffle.mode", sh.mode, SHUFFLE_MODES)
    if not 1 <= sh.shards < 1 << 28:
        raise ConfigError("shuffle.shards must be between 1 and 2**28")
    if not sh.shards_per_split:
        # Shards are spread over the splits in proportion to their fractions, so that shard files
        # have similar sizes; every non-empty split gets at least one.
        sh.shards_per_split = {name: max(1, round(sh.shards * f)) for name, f in fractions.items() if f > 0}

    if cfg.limits.total_jets is not None and cfg.limits.total_jets < 1:
        raise ConfigError("limits.total_jets must be a positive number of jets")
    _resolve_statistics(cfg)
    _resolve_integers(cfg, listed)
    _resolve_images(cfg)
    _resolve_variations(cfg)

    out = cfg.output
    if not out.dir or any(ord(ch) < 32 for ch in out.dir):
        raise ConfigError(f"output.dir: {out.dir!r} is not a usable path")
    one_of("output.format", out.format, ("hdf5", "parquet"))
    one_of("output.layout", out.layout, ("plain", "ftag"))
    if out.layout == "ftag" and out.format != "hdf5":
        raise ConfigError("output.layout ftag is an HDF5 layout; use output.format hdf5")
    if out.layout == "ftag" and cfg.record == "event":
        raise ConfigError("output.layout ftag is the jets/tracks convention of flavour tagging, one row per jet; "
                          "with record: event use output.layout plain (or output.format parquet)")
    one_of("output.parquet_constituents", out.parquet_constituents, ("jagged", "padded"))
    if not _NAME.match(out.constituents_name) or out.constituents_name == "jets":
        raise ConfigError(f"output.constituents_name: {out.constituents_name!r} is not a usable dataset name")
    one_of("output.compression", out.compression, COMPRESSIONS)
    if out.chunk_jets < 1:
        raise ConfigError("output.chunk_jets must be at least 1")
    return cfg


def _resolve_integers(cfg: Config, listed: list[str]):
    ints = cfg.input.integer_branches
    if not ints:
        return
    if cfg.record == "event":
        raise ConfigError("input.integer_branches: with record: event, list integer values under events.variables")
    twice = sorted({b for b in ints if ints.count(b) > 1 or b in listed})
    if twice:
        raise ConfigError(f"input.integer_branches: {twice} are listed twice (an integer branch goes to "
                          "`jets_int` only; remove it from jet_branches / event_branches)")


def _resolve_images(cfg: Config):
    from root2hdf5.transforms.physics.images import specs_from_config

    if not cfg.images:
        return
    specs = specs_from_config(cfg.images, "images")
    if cfg.record == "event" or not cfg.input.constituent_branches:
        raise ConfigError("images: need input.constituent_branches (images are made of a jet's constituents)")
    roles = cfg.kinematics.constituents
    for i, spec in enumerate(specs):
        needed = {"eta", "phi"} | ({"pt"} if spec.frame == "angular" or "pt" in spec.channels or
                                   ("e" in spec.channels and "e" not in roles) else set())
        missing = sorted(needed - set(roles))
        if missing:
            raise ConfigError(f"images[{i}] ({spec.name}): needs the constituent {missing} branches; name them "
                              "under kinematics.constituents")
    if cfg.output.format != "hdf5":
        raise ConfigError("images: are written to HDF5 (output.format hdf5); Parquet has no n-dimensional columns")
    taken = {"constituents", "mask", "jets", "labels", "weights", "event_number", "source", "jet_collections",
             "jets_int", cfg.output.constituents_name, cfg.model.output if cfg.model else "scores"}
    clash = sorted(spec.name for spec in specs if spec.name in taken)
    if clash:
        raise ConfigError(f"images: names {clash} are taken by other datasets; choose other names")


def _resolve_variations(cfg: Config):
    from root2hdf5.transforms.physics.variations import variations_from_config

    if not cfg.variations:
        return
    if cfg.record == "event" or not cfg.input.constituent_branches:
        raise ConfigError("variations: vary constituents, so they need input.constituent_branches (record: jet)")
    for i, item in enumerate(cfg.variations):
        if not isinstance(item.get("recompute_jets", False), bool):
            raise ConfigError(f"variations[{i}].recompute_jets: expected true or false, got {item['recompute_jets']!r}")
    specs = variations_from_config([{k: v for k, v in item.items() if k != "recompute_jets"}
                                    for item in cfg.variations], "variations")
    roles = cfg.kinematics.constituents
    for i, spec in enumerate(specs):
        missing = sorted(set(spec.required_roles()) - set(roles))
        if missing:
            raise ConfigError(f"variations[{i}] ({spec.name}): needs the constituent {missing} branches; name "
                              "them under kinematics.constituents")
        if spec.name == "nominal":
            raise ConfigError(f"variations[{i}].name: 'nominal' is the unvaried set; choose another name")


def _resolve_samples(cfg: Config):
    inp = cfg.input
    for s in cfg.samples:
        where = f"samples.{s.name}"
        if s.categories:
            if s.label is not None:
                raise ConfigError(f"{where}: give either label or categories, not both")
            labels = [c.label for c in s.categories]
            for c in s.categories:
                c.name = c.name or f"label{c.label}"
                if not _NAME.match(c.name):
                    raise ConfigError(f"{where}.categories: name {c.name!r} may only use letters, digits and _ . + -")
                _expression_class(cfg)(c.selection, f"{where}.categories selection")
            if len({c.name for c in s.categories}) < len(s.categories):
                raise ConfigError(f"{where}.categories: names must be unique")
        elif s.label is None:
            s.label = 0
        if s.selection is not None:
            _expression_class(cfg)(s.selection, f"{where}.selection")
        if s.max_jets is not None and s.max_jets < 0:
            raise ConfigError(f"{where}.max_jets must not be negative")
        if s.sum_of_weights is not None and s.sum_of_weights != "auto":
            try:
                value = float(s.sum_of_weights)
            except ValueError:
                raise ConfigError(f"{where}.sum_of_weights: {s.sum_of_weights!r} is neither a number nor 'auto'") from None
            if value <= 0:
                raise ConfigError(f"{where}.sum_of_weights must be positive")
        if s.cross_section is not None and s.sum_of_weights is None:
            raise ConfigError(f"{where}: cross_section needs sum_of_weights (a number, or auto to sum "
                              "weights.branch over all events read)")
        if s.sum_of_weights == "auto":
            if not cfg.weights.branch:
                raise ConfigError(f"{where}.sum_of_weights: auto needs weights.branch (the event weight)")
            if inp.layout != "events":
                raise ConfigError(f"{where}.sum_of_weights: auto needs layout 'events' (a per-jet ntuple does "
                                  "not hold every event); give the number")


def _resolve_collections(cfg: Config):
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


def _expression_class(cfg: Config):
    """Selections are per jet for record: jet, per event (with Jet_pt[0], count(...)) for record: event."""
    if cfg.record == "event":
        from root2hdf5.transforms.rows.event_expressions import EventExpression

        return EventExpression
    return Expression


def _no_event_keys(cfg: Config):
    if cfg.events is not None:
        raise ConfigError("events: these keys describe one row per event; set record: event to use them")
    for s in cfg.samples:
        if s.friends:
            raise ConfigError(f"samples.{s.name}.friends: friend trees are joined per event; set record: event")


def _resolve_events(cfg: Config) -> list[str]:
    """Checks of record: event; returns the names preprocessing may scale (variables, collection branches)."""
    from root2hdf5.transforms.rows.event_expressions import EventExpression
    from root2hdf5.transforms.rows.event_variables import parse_variable

    inp, ev = cfg.input, cfg.events
    if ev is None or not ev.variables:
        raise ConfigError("events.variables: record: event needs at least one variable: a branch (MET_pt), an "
                          "element of a list (Jet_pt[0]) or a named expression (HT = sum(Jet_pt))")
    if inp.layout != "events":
        raise ConfigError("input.layout: record: event reads one entry per event; use layout events")
    for key in ("jet_branches", "constituent_branches", "event_branches"):
        if getattr(inp, key):
            raise ConfigError(f"input.{key}: not used with record: event; list the values in events.variables "
                              "(MET_pt, Jet_pt[0], HT = sum(Jet_pt)) and keep a list padded with events.collection")
    if cfg.jet_collections:
        raise ConfigError("jet_collections: stacks collections per jet (record: jet); with record: event keep a "
                          "collection padded with events.collection")
    variables = [parse_variable(text, f"events.variables[{i}]") for i, text in enumerate(ev.variables)]
    names = [v.name for v in variables]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"events.variables: {name!r} is listed twice")
    unknown = [k for k in ev.defaults if k not in names]
    if unknown:
        raise ConfigError(f"events.defaults: {unknown} are not variables (variables: {names})")

    coll = ev.collection
    if coll is not None:
        if not coll.branches:
            raise ConfigError("events.collection.branches: give the list branches to keep (e.g. [Jet_pt, Jet_eta])")
        for b in set(coll.branches):
            if coll.branches.count(b) > 1:
                raise ConfigError(f"events.collection.branches: {b!r} is listed twice")
        if coll.max < 1:
            raise ConfigError("events.collection.max must be at least 1")
        cfg.kinematics.constituents = kinematics.infer_roles(coll.branches, cfg.kinematics.constituents)
        if coll.sort_by is None:
            coll.sort_by = cfg.kinematics.constituents.get("pt", coll.branches[0])
        if coll.sort_by not in coll.branches:
            raise ConfigError(f"events.collection.sort_by: {coll.sort_by!r} is not one of events.collection.branches")
        if not _NAME.match(coll.name) or coll.name in ("events", "mask", *OUTPUT_DATASETS[4:]):
            raise ConfigError(f"events.collection.name: {coll.name!r} is not a usable dataset name (the names "
                              "events, mask, labels, weights, event_number and source are taken)")
    if ev.join_groups < 1:
        raise ConfigError("events.join_groups must be at least 1")

    friend_names = [f.name for f in ev.friends]
    friend_branches = {}
    for f in ev.friends:
        where = f"events.friends.{f.name}"
        if not _NAME.match(f.name) or friend_names.count(f.name) > 1:
            raise ConfigError(f"events.friends: name {f.name!r} is used twice or uses characters other than "
                              "letters, digits and _ . + -")
        if not f.keys:
            raise ConfigError(f"{where}.keys: give the key branches of the main tree, e.g. "
                              "[run, luminosityBlock, event]")
        f.friend_keys = f.friend_keys or list(f.keys)
        if len(f.friend_keys) != len(f.keys):
            raise ConfigError(f"{where}.friend_keys: {len(f.friend_keys)} names for {len(f.keys)} keys {f.keys}")
        if not f.branches:
            raise ConfigError(f"{where}.branches: give the friend branches to add to each event")
        clash = [b for b in f.branches if b in f.friend_keys]
        if clash:
            raise ConfigError(f"{where}.branches: {clash} are keys; the keys of the main tree are kept")
        for b in f.branches:
            if b in friend_branches:
                raise ConfigError(f"{where}.branches: {b!r} also comes from friend {friend_branches[b]!r}")
            friend_branches[b] = f.name
        one_of(f"{where}.unmatched", f.unmatched, ("drop", "fill"))
    for s in cfg.samples:
        unknown = [k for k in s.friends if k not in friend_names]
        if unknown:
            raise ConfigError(f"samples.{s.name}.friends: {unknown} are not in events.friends ({friend_names})")
        for name in friend_names:
            if not s.friends.get(name):
                raise ConfigError(f"samples.{s.name}.friends.{name}: no files given; every sample needs the friend "
                                  "files holding its events")

    # selections run before the joins (friend files usually hold only selected events), so they read the main tree
    texts = [("input.selection", inp.selection)] + [(f"samples.{s.name}.selection", s.selection) for s in cfg.samples]
    for where, text in texts:
        used = [b for b in (EventExpression(text, where).symbols if text else []) if b in friend_branches]
        if used:
            raise ConfigError(f"{where}: {used} come from friend trees, which are joined after the selection; "
                              "select on them with categories, or cut on them after conversion")
    if cfg.weights.branch in friend_branches:
        raise ConfigError(f"weights.branch: {cfg.weights.branch!r} comes from a friend tree; use a main-tree branch")
    reserved = set(coll.branches if coll else ()) | set(friend_branches)
    for v in variables:
        if v.expression is not None and v.name in reserved:
            raise ConfigError(f"events.variables: {v.name!r} names a branch that is read; choose another name")
    return names + list(coll.branches if coll else ())


def _resolve_split(cfg: Config):
    sp = cfg.split
    if sp.modulo is None:
        for name in SPLITS:
            value = getattr(sp, name)
            if isinstance(value, list):
                raise ConfigError(f"split.{name}: a list of residues needs split.modulo (e.g. split: {{modulo: 2, "
                                  "train: [0], test: [1]}); without it give the fraction of events")
            if value is None:
                setattr(sp, name, DEFAULT_FRACTIONS[name])
        return
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


def public_names(cfg: Config) -> dict[str, str]:
    """Dataset names on disk that differ from the pipeline's column names: with record: event the feature
    matrix `jets` is written as `events`, and the padded collection (`constituents`) under its name."""
    if cfg.record != "event":
        return {}
    names = {"jets": "events"}
    if cfg.events.collection is not None:
        names["constituents"] = cfg.events.collection.name
    return names


OUTPUT_DATASETS = ("constituents", "mask", "jets", "jet_collections", "labels", "weights", "event_number", "source")




def _resolve_statistics(cfg: Config):
    w = cfg.weights
    if w.method is not None:
        one_of("weights.method", w.method, ("flat", "match"))
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
    elif w.variables or w.bins:
        raise ConfigError("weights.variables/bins need weights.method (flat or match)")
    r = cfg.resample
    if r.target is not None:
        if r.target < 1:
            raise ConfigError("resample.target must be a positive number of jets")
        bad = [s for s in r.splits if s not in SPLITS]
        if bad or not r.splits:
            raise ConfigError(f"resample.splits: {bad or r.splits} are not splits ({', '.join(SPLITS)})")
    m = cfg.model
    if m is not None:
        if not m.path.endswith(".onnx"):
            raise ConfigError(f"model.path: {m.path!r} is not an .onnx file")
        renamed = public_names(cfg)
        if m.output in OUTPUT_DATASETS or m.output in renamed.values():
            raise ConfigError(f"model.output: {m.output!r} is already a dataset name")
        features = [renamed.get(n, n) for n in ("constituents", "mask", "jets", "jet_collections")]
        if cfg.record == "event":
            features = [n for i, n in enumerate(features) if i == 2 or (i < 2 and cfg.events.collection)]
        for name, dataset in m.inputs.items():
            if dataset not in features:
                raise ConfigError(f"model.inputs.{name}: {dataset!r} is not a feature dataset "
                                  f"({', '.join(features)})")
        if m.as_weight and r.target is not None:
            raise ConfigError("model.as_weight cannot be combined with resample (the draw needs the weights "
                              "before the model has run)")
        if m.threads < 1:
            raise ConfigError("model.threads must be at least 1")
