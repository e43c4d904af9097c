"""Output formats: how the pipeline's columns become files, and back.

The pipeline works on plain columns (`constituents` (N, M, F), `mask`, `jets` (N, J), `labels`, ...). A
format turns them into the files of a shard and reads a shard back (for the second pass):

* `Hdf5Format` with layout `plain`: the columns as datasets (the default; see README "Reading the output");
* `Hdf5Format` with layout `ftag`: the convention of the ATLAS training-dataset-dumper, UPP and salt: a
  `jets` dataset (N,) with a compound dtype of named fields (the jet features, `flavour_label`, `weight`,
  `eventNumber`, the source columns, scores) and a constituents dataset (`consts` or `tracks`, (N, M))
  whose compound fields are the constituent features plus a boolean `valid`;
* `ParquetFormat`: one table per shard, a column per jet feature, a list column per constituent feature
  (only the valid constituents, or padded to M with a `mask` column), readable by pandas, polars, awkward.

HDF5 splits get one file each presenting their shards as virtual datasets; Parquet splits are directories
of parts (`train/part-00000-of-00006.parquet`), which pandas/polars/pyarrow read as one dataset.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core.batch import Columns
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import DATASETS, SOURCE_COLUMNS
from root2hdf5.transforms.output.columns import ColumnSpec
from root2hdf5.transforms.output.hdf5_files import (
    DatasetSpec,
    Storage,
    is_local,
    read_jets_file,
    write_bytes,
    write_jets_file,
    write_split_file,
)


def _fill(dtype: np.dtype):
    """The virtual-dataset fill value: NaN for floats, -1 for integers, False for booleans (per field)."""
    if dtype.names is None:
        return {"f": np.nan, "b": False}.get(dtype.kind, -1)
    value = np.zeros(1, dtype)
    for name in dtype.names:
        value[name] = _fill(dtype[name])
    return value[0]


class Hdf5Format:
    """HDF5 shards and virtual-dataset split files, `plain` or `ftag` layout."""

    extension = ".h5"
    split_files = True

    def __init__(self, columns: ColumnSpec, storage: Storage, layout: str = "plain",
                 constituents_name: str = "consts"):
        self.columns = columns
        self.storage = storage
        self.layout = layout
        self.constituents_name = constituents_name
        self.datasets = ([dataclasses.replace(d, name=columns.public_name(d.name)) for d in columns.datasets]
                         if layout == "plain" else self._ftag_datasets())
        self.count_attr = f"num_{columns.rows}"

    def public_name(self, name: str) -> str:
        return self.columns.public_name(name) if self.layout == "plain" else name

    # ------------------------------------------------------------------------------------ FTAG layout

    def _jet_fields(self) -> list[tuple[str, str, str, int | None]]:
        """(field, column, dtype, index within the column's feature axis or None)."""
        c = self.columns
        fields = [(name, "jets", "f4", i) for i, name in enumerate(c.features.get("jets", []))]
        for k, collection in enumerate(c.collections):
            fields += [(f"{collection}_{name}", "jet_collections", "f4", (k, i))
                       for i, name in enumerate(c.features.get("jet_collections", []))]
        fields += [(name, "jets_int", "i8", i) for i, name in enumerate(self._integer_names())]
        fields += [("flavour_label", "labels", "i4", None), ("weight", "weights", "f4", None),
                   ("eventNumber", "event_number", "i8", None)]
        fields += [(name, "source", "i8", i) for i, name in enumerate(SOURCE_COLUMNS)]
        if c.scores:
            spec = c.get(c.scores)
            width = spec.shape[0] if spec and spec.shape else None
            fields += ([(c.scores, c.scores, "f4", None)] if width is None else
                       [(f"{c.scores}_{k}", c.scores, "f4", k) for k in range(width)])
        names = [f[0] for f in fields]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(f"output.layout ftag: field names {clash} occur twice in the jets dataset; rename "
                              "the branches or features")
        return fields

    def _integer_names(self) -> list[str]:
        spec = self.columns.get("jets_int")
        return [str(x) for x in dict(spec.attrs)["features"]] if spec else []

    def _passed_through(self) -> list[DatasetSpec]:
        """Datasets the FTAG layout writes as they are (images): not part of the jets/tracks convention."""
        known = {*DATASETS, self.columns.scores}
        return [d for d in self.columns.datasets if d.name not in known]

    def _constituent_fields(self) -> list[str]:
        return list(self.columns.features.get("constituents", []))

    def _ftag_datasets(self) -> list[DatasetSpec]:
        jets = np.dtype([(name, dtype) for name, _, dtype, _ in self._jet_fields()])
        out = [DatasetSpec("jets", jets)]
        constituents = self.columns.get("constituents")
        if constituents is not None:
            fields = [(name, "f4") for name in self._constituent_fields()] + [("valid", "?")]
            out.append(DatasetSpec(self.constituents_name, np.dtype(fields), (constituents.shape[0],)))
        return out + self._passed_through()

    def to_file(self, columns: Columns) -> Columns:
        if self.layout == "plain":
            return self.columns.renamed(columns)
        n = len(columns["labels"])
        jets = np.zeros(n, self.datasets[0].dtype)
        for name, column, _, index in self._jet_fields():
            values = columns[column]
            jets[name] = values if index is None else values[(slice(None), *np.atleast_1d(index))]
        out = {"jets": jets}
        if "constituents" in columns:
            spec = self.datasets[1]
            consts = np.zeros(columns["constituents"].shape[:2], spec.dtype)
            for i, name in enumerate(self._constituent_fields()):
                consts[name] = columns["constituents"][..., i]
            consts["valid"] = columns["mask"]
            out[self.constituents_name] = consts
        out.update({d.name: columns[d.name] for d in self._passed_through() if d.name in columns})
        return out

    def from_file(self, data: Columns) -> Columns:
        if self.layout == "plain":
            return self.columns.renamed(data, back=True)
        jets = data["jets"]
        out: Columns = {}
        groups: dict[str, list] = {}
        for name, column, _, index in self._jet_fields():
            groups.setdefault(column, []).append((index, jets[name]))
        for column, parts in groups.items():
            if parts[0][0] is None:
                out[column] = parts[0][1]
            elif column == "jet_collections":
                shape = (len(jets), len(self.columns.collections), len(self.columns.features["jet_collections"]))
                values = np.zeros(shape, np.float32)
                for (k, i), part in parts:
                    values[:, k, i] = part
                out[column] = values
            else:
                out[column] = np.stack([p for _, p in parts], axis=1)
        if self.constituents_name in data:
            consts = data[self.constituents_name]
            out["constituents"] = np.stack([consts[name] for name in self._constituent_fields()], axis=-1)
            out["mask"] = consts["valid"]
        out.update({d.name: data[d.name] for d in self._passed_through() if d.name in data})
        return out

    # ----------------------------------------------------------------------------------------- files

    def write(self, path: str, columns: Columns, attrs: dict) -> None:
        write_jets_file(path, self.to_file(columns), self.datasets, self.storage, attrs, count_attr=self.count_attr)

    def write_empty(self, path: str, attrs: dict) -> None:
        write_jets_file(path, {}, self.datasets, self.storage, attrs, count_attr=self.count_attr)

    def read(self, path: str) -> Columns:
        return self.from_file(read_jets_file(path))

    def write_split(self, path: str, members: list[tuple[str, int]], attrs: dict, statistics: dict) -> None:
        extra = self.columns.renamed(statistics) if self.layout == "plain" else {}
        write_split_file(path, members, self.datasets, self.storage, attrs, extra,
                         fills={d.name: _fill(np.dtype(d.dtype)) for d in self.datasets}, count_attr=self.count_attr)


class ParquetFormat:
    """One Parquet file per shard; a split is a directory of them."""

    extension = ".parquet"
    split_files = False

    def __init__(self, columns: ColumnSpec, compression: str = "zstd", padded: bool = False, chunk_jets: int = 256):
        self.columns = columns
        self.compression = {"lzf": "zstd", "gzip": "gzip", "none": "none", "blosc-lz4": "lz4",
                            "blosc-zstd": "zstd"}.get(compression, compression)
        self.padded = padded
        self.row_group = max(chunk_jets * 64, 1024)
        names = [name for _, name in self._names()]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(f"output.format parquet: column names {clash} occur twice (a table has one column "
                              "per jet and constituent feature); rename the branches or features")

    def public_name(self, name: str) -> str:
        """A dataset's name in norm.yaml (the table's columns are named by feature)."""
        return self.columns.public_name(name)

    def _integer_names(self) -> list[str]:
        spec = self.columns.get("jets_int")
        return [str(x) for x in dict(spec.attrs)["features"]] if spec else []

    def _names(self) -> list[tuple[str, str]]:
        """(column of the pipeline, Parquet column name), in table order."""
        c = self.columns
        names = [("jets", name) for name in c.features.get("jets", [])]
        names += [("jet_collections", f"{k}_{name}") for k in c.collections for name in c.features["jet_collections"]]
        names += [("jets_int", name) for name in self._integer_names()]
        names += [("constituents", name) for name in c.features.get("constituents", [])]
        names += [("mask", "mask")] if self.padded and "constituents" in c.features else []
        names += [("labels", "label"), ("weights", "weight"), ("event_number", "event_number")]
        names += [("source", name) for name in SOURCE_COLUMNS]
        return names + ([(c.scores, c.scores)] if c.scores else [])

    def _table(self, columns: Columns) -> pa.Table:
        c = self.columns
        arrays = {name: columns["jets"][:, i] for i, name in enumerate(c.features.get("jets", []))}
        for k, collection in enumerate(c.collections):
            for i, name in enumerate(c.features.get("jet_collections", [])):
                arrays[f"{collection}_{name}"] = columns["jet_collections"][:, k, i]
        for i, name in enumerate(self._integer_names()):
            arrays[name] = columns["jets_int"][:, i]
        table = {name: pa.array(values) for name, values in arrays.items()}
        if "constituents" in columns:
            mask = columns["mask"]
            n, m = mask.shape
            if self.padded:
                for i, name in enumerate(c.features["constituents"]):
                    values = pa.array(columns["constituents"][..., i].ravel())
                    table[name] = pa.FixedSizeListArray.from_arrays(values, m)
                table["mask"] = pa.FixedSizeListArray.from_arrays(pa.array(mask.ravel()), m)
            else:
                offsets = pa.array(np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32))
                for i, name in enumerate(c.features["constituents"]):
                    table[name] = pa.ListArray.from_arrays(offsets, pa.array(columns["constituents"][..., i][mask]))
        table["label"] = pa.array(columns["labels"])
        table["weight"] = pa.array(columns["weights"])
        table["event_number"] = pa.array(columns["event_number"])
        for i, name in enumerate(SOURCE_COLUMNS):
            table[name] = pa.array(columns["source"][:, i])
        if c.scores and c.scores in columns:
            scores = columns[c.scores]
            table[c.scores] = (pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel()), scores.shape[1])
                               if scores.ndim > 1 else pa.array(scores))
        return pa.table(table)

    def _columns(self, table: pa.Table) -> Columns:
        c = self.columns
        jets = [table[name].to_numpy() for name in c.features.get("jets", [])]
        out: Columns = {"jets": np.stack(jets, axis=1).astype(np.float32) if jets else
                        np.zeros((table.num_rows, 0), np.float32)}
        if c.collections:
            out["jet_collections"] = np.stack(
                [np.stack([table[f"{k}_{name}"].to_numpy() for name in c.features["jet_collections"]], axis=1)
                 for k in c.collections], axis=1).astype(np.float32)
        if self._integer_names():
            out["jets_int"] = np.stack([table[name].to_numpy() for name in self._integer_names()], axis=1)
        if "constituents" in c.features:
            m = c.get("constituents").shape[0]
            names = c.features["constituents"]
            if self.padded:
                values = [table[name].combine_chunks().flatten().to_numpy().reshape(-1, m) for name in names]
                out["mask"] = table["mask"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, m)
            else:
                lists = [table[name].combine_chunks() for name in names]
                counts = np.diff(lists[0].offsets.to_numpy()) if len(lists) else np.zeros(table.num_rows, int)
                out["mask"] = np.arange(m) < counts[:, None]
                values = []
                for column in lists:
                    padded = np.zeros((table.num_rows, m), np.float32)
                    padded[out["mask"]] = column.flatten().to_numpy()
                    values.append(padded)
            out["constituents"] = np.stack(values, axis=-1).astype(np.float32)
        out["labels"] = table["label"].to_numpy().astype(np.int32)
        out["weights"] = table["weight"].to_numpy().astype(np.float32)
        out["event_number"] = table["event_number"].to_numpy()
        out["source"] = np.stack([table[name].to_numpy() for name in SOURCE_COLUMNS], axis=1)
        if c.scores and c.scores in table.column_names:
            column = table[c.scores].combine_chunks()
            out[c.scores] = (column.flatten().to_numpy().reshape(-1, column.type.list_size)
                             if pa.types.is_fixed_size_list(column.type) else column.to_numpy()).astype(np.float32)
        return out

    def _table_bytes(self, table: pa.Table, attrs: dict) -> pa.Buffer:
        """The Parquet file in memory (as the HDF5 files are: a full disk is then an error naming the path)."""
        metadata = {key.encode(): str(value).encode() for key, value in attrs.items()}
        table = table.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=self.compression, row_group_size=self.row_group)
        return sink.getvalue()

    def write(self, path: str, columns: Columns, attrs: dict) -> None:
        write_bytes(path, self._table_bytes(self._table(columns), attrs))

    def write_empty(self, path: str, attrs: dict) -> None:
        empty = {}
        for spec in self.columns.datasets:
            empty[spec.name] = np.zeros((0, *spec.shape), np.dtype(spec.dtype))
        self.write(path, empty, attrs)

    def read(self, path: str) -> Columns:
        if is_local(path):
            return self._columns(pq.read_table(path))
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return self._columns(pq.read_table(io.BytesIO(handle.read())))
