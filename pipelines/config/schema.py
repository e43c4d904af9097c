"""The config's schema: one dataclass per YAML block, typed so the loader can check every value.

Choices are `Literal[...]` (the loader names the valid ones and the closest to a near miss), optional keys
have their defaults here, and keys that resolution infers (kinematic roles, sort branch, scaled branches,
shards per split) start as None or empty. docs/config.md documents every field (a test keeps them in step).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal

from root2hdf5.transforms.core.names import SPLITS


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
class ConstituentLinksConfig:
    """Constituents stored once per event (PFNano's PFCands_*) and reached from each jet through an index."""

    index: str  # per link, the constituent's position in the event's collection; or, alone, a list per jet
    jet_index: str | None = None  # per link, the jet's position among the event's jets (FatJetPFCands_jetIdx)
    valid: str | None = None  # per link, non-zero where the link is set (ElementLink m_persKey)


@dataclass
class InputConfig:
    layout: Literal["events", "jets"] = "events"
    leading_jets: int = 2
    leading_by: str | None = None
    event_number: str | None = None
    jet_branches: list[str] = field(default_factory=list)
    constituent_branches: list[str] = field(default_factory=list)
    event_branches: list[str] = field(default_factory=list)
    selection: str | None = None
    step_size: int = 50_000
    on_nonfinite: Literal["fail", "drop", "replace"] = "fail"
    nonfinite_value: float = 0.0
    on_error: Literal["fail", "skip"] = "fail"
    integer_branches: list[str] = field(default_factory=list)
    constituent_links: ConstituentLinksConfig | None = None


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
    unmatched: Literal["drop", "fill"] = "drop"
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
class WeightsConfig:
    branch: str | None = None
    luminosity: float = 1.0
    method: Literal["flat", "match"] | None = None  # reweight in bins of `variables`
    variables: list[str] = field(default_factory=list)
    bins: list[list[float]] = field(default_factory=list)
    abs: list[bool] = field(default_factory=list)
    target_label: int | None = None


@dataclass
class LimitsConfig:
    total_jets: int | None = None
    balance: bool = False


@dataclass
class StatsConfig:
    compute: bool = True
    apply: bool = False


@dataclass
class ResampleConfig:
    target: int | None = None
    splits: list[Literal["train", "val", "test"]] = field(default_factory=lambda: ["train"])


@dataclass
class ModelConfig:
    path: str
    inputs: dict[str, str] = field(default_factory=dict)
    output: str = "scores"
    as_weight: bool = False
    threads: int = 1


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
    mode: Literal["spill", "engine"] = "spill"
    shards_per_split: dict[str, int] = field(default_factory=dict)


@dataclass
class OutputConfig:
    dir: str = "out"
    format: Literal["hdf5", "parquet"] = "hdf5"
    layout: Literal["plain", "ftag"] = "plain"
    constituents_name: str = "consts"
    parquet_constituents: Literal["jagged", "padded"] = "jagged"
    compression: Literal["gzip", "lzf", "none", "blosc-lz4", "blosc-zstd"] = "lzf"
    compression_level: int | None = None
    chunk_jets: int = 256


@dataclass
class ImageConfig:
    """One jet image (see docs/images.md). The dense-only keys stay None for pixel images."""

    name: str
    kind: Literal["pixels", "dense"]
    bins: list[int]
    range: list[list[float]]
    frame: Literal["raw", "relative", "angular"] = "raw"
    channels: list[Literal["pt", "e", "count"]] | None = None  # dense: default [pt]
    normalize: bool | None = None  # dense: default false
    dtype: Literal["float32", "float16"] | None = None  # dense: default float32


@dataclass
class SizeMapConfig:
    """A variation size read from a TH1 (in pT) or TH2 (in pT, eta): `map: file.root:histogram`."""

    map: str
    abs_eta: bool = False
    times: float = 1.0
    pt_scale: float = 1.0


@dataclass
class PositionSizeConfig:
    """A position variation's widths in eta and phi, each a number or a map."""

    eta: float | SizeMapConfig
    phi: float | SizeMapConfig


@dataclass
class VariationConfig:
    """One systematic variation (see docs/variations.md); each gives an output set of its own."""

    name: str
    kind: Literal["energy_scale", "energy_resolution", "efficiency", "position"]
    size: float | SizeMapConfig | PositionSizeConfig
    recompute_jets: bool = False


@dataclass
class ChecksConfig:
    """Checks of degenerate input that stop a run (exit code != 0) unless listed in `allow` (`shared_files`, a
    file in two samples, is checked when the config loads)."""

    allow: list[Literal["few_event_numbers", "empty_split", "empty_norm", "shared_files"]] = field(
        default_factory=list)


@dataclass
class Config:
    samples: list[SampleConfig]
    record: Literal["jet", "event"] = "jet"  # jet: one row per jet; event: one row per event (see `events`)
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
    images: list[ImageConfig] = field(default_factory=list)
    variations: list[VariationConfig] = field(default_factory=list)
    checks: ChecksConfig = field(default_factory=ChecksConfig)

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
