"""The plain columns a job produces, and the dataset each becomes: the pipeline's side of the output."""
from __future__ import annotations

from dataclasses import dataclass, field

from root2hdf5.transforms.core.batch import Columns
from root2hdf5.transforms.core.names import SOURCE_COLUMNS
from root2hdf5.transforms.output.hdf5_files import DatasetSpec


@dataclass(frozen=True)
class ColumnSpec:
    """The plain columns a job produces: dataset specs, feature names, jet collection names, scores.

    names: column -> dataset name on disk where they differ (record: event writes `jets` as `events`);
    rows: what a row is ('jets' or 'events'), for the `num_<rows>` file attribute.
    """

    datasets: tuple[DatasetSpec, ...]
    features: dict = field(default_factory=dict)
    collections: tuple[str, ...] = ()
    scores: str | None = None
    names: dict = field(default_factory=dict)
    rows: str = "jets"

    def get(self, name: str) -> DatasetSpec | None:
        return next((d for d in self.datasets if d.name == name), None)

    def public_name(self, name: str) -> str:
        return self.names.get(name, name)

    def renamed(self, columns: Columns, back: bool = False) -> Columns:
        """Columns keyed by their names on disk (or, with back=True, from those back to the pipeline's)."""
        if not self.names:
            return columns
        names = {v: k for k, v in self.names.items()} if back else self.names
        return {names.get(name, name): values for name, values in columns.items()}


@dataclass(frozen=True)
class Scores:
    """A model's output dataset: its name, per-row shape and attributes (model file name and hash)."""

    name: str
    shape: tuple[int, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()


def dataset_specs(features: dict[str, list[str]], padded: int, collections: tuple[str, ...] = (),
                  integers: tuple[str, ...] = (), images: tuple = (), scores: Scores | None = None
                  ) -> tuple[DatasetSpec, ...]:
    """The datasets of a row, in file order: features and mask, then labels, weights, event number and source,
    integer branches, images, model scores. `padded`: slots per row of the padded dataset."""
    datasets = []
    if "constituents" in features:
        datasets += [DatasetSpec("constituents", "float32", (padded, len(features["constituents"])),
                                 (("features", features["constituents"]),)),
                     DatasetSpec("mask", "bool", (padded,))]
    datasets.append(DatasetSpec("jets", "float32", (len(features["jets"]),), (("features", features["jets"]),)))
    if "jet_collections" in features:
        datasets.append(DatasetSpec("jet_collections", "float32", (len(collections), len(features["jet_collections"])),
                                    (("collections", list(collections)), ("features", features["jet_collections"]))))
    datasets += [DatasetSpec("labels", "int32"), DatasetSpec("weights", "float32"),
                 DatasetSpec("event_number", "int64"),
                 DatasetSpec("source", "int64", (len(SOURCE_COLUMNS),), (("columns", list(SOURCE_COLUMNS)),))]
    if integers:
        datasets.append(DatasetSpec("jets_int", "int64", (len(integers),), (("features", list(integers)),)))
    for spec in images:
        datasets.append(DatasetSpec(spec.name, spec.output_dtype, spec.shape(padded), tuple(spec.attrs().items()),
                                    chunk_rows=1 if spec.kind == "dense" else None))  # images are mostly zeros
    if scores is not None:
        datasets.append(DatasetSpec(scores.name, "float32", scores.shape, scores.attrs))
    return tuple(datasets)
