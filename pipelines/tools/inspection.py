"""`root2hdf5 inspect`: look at a training set before training on it.

Reads any output of the pipeline (an output directory, one split file, or a Parquet split directory; HDF5
plain or FTAG layout, or Parquet), counts jets per split and label over all rows, and summarises the
features over a sample of rows (the first `max_jets` of a split: the rows are globally shuffled, so the first
rows are a random sample). Each layout is read into the same `SplitView`, so the table and the plots do not
care where the numbers came from.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import h5py
import numpy as np

try:  # outputs written with output.compression blosc-lz4 / blosc-zstd need its filters
    import hdf5plugin  # noqa: F401
except ImportError:
    pass

from root2hdf5.transforms.core.errors import InputError

SPLIT_ORDER = ("train", "val", "test")
FTAG_BOOKKEEPING = ("flavour_label", "weight", "eventNumber", "sample", "file", "entry", "jet_index")
PARQUET_BOOKKEEPING = ("label", "weight", "event_number", "sample", "file", "entry", "jet_index", "mask")
_CHUNK = 1 << 20  # rows per read when counting labels, so memory does not grow with the file


@dataclass
class SplitView:
    """One split, reduced to what inspection shows.

    counts / weight_sums: per label over all rows; `jets`: jet-level features of the sampled rows;
    `constituents`: per feature the values of the valid constituents of the sampled rows, flattened, with
    `constituent_counts` (per sampled row) and `slots` (the padded length, 0 when unknown).
    """

    name: str
    path: str
    rows: int
    counts: dict[int, int]
    weight_sums: dict[int, float]
    labels: np.ndarray  # of the sampled rows
    jets: dict[str, np.ndarray] = field(default_factory=dict)
    constituents: dict[str, np.ndarray] = field(default_factory=dict)
    constituent_counts: np.ndarray | None = None
    slots: int = 0
    label_names: dict[int, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    kind: str = ""
    rows_are: str = "jets"  # or "events" (record: event)

    @property
    def sampled(self) -> int:
        return len(self.labels)


def _label_names(samples_json: str | bytes | None) -> dict[int, str]:
    """label -> the sample (or category) names that carry it, from the `samples` attribute."""
    if not samples_json:
        return {}
    names: dict[int, list[str]] = {}
    for sample in json.loads(samples_json):
        if sample.get("categories"):
            for category, label in sample["categories"].items():
                names.setdefault(int(label), []).append(category)
        elif sample.get("label") is not None:
            names.setdefault(int(sample["label"]), []).append(sample["name"])
    return {label: "/".join(n) for label, n in names.items()}


def _count(labels_and_weights) -> tuple[dict[int, int], dict[int, float]]:
    counts: Counter = Counter()
    sums: dict[int, float] = defaultdict(float)
    for labels, weights in labels_and_weights:
        values, index = np.unique(labels, return_inverse=True)
        n = np.bincount(index, minlength=len(values))
        w = np.bincount(index, weights=np.asarray(weights, np.float64), minlength=len(values))
        for value, c, s in zip(values.tolist(), n.tolist(), w.tolist()):
            counts[value] += c
            sums[value] += s
    return dict(counts), dict(sums)


# ----------------------------------------------------------------------------------------------- HDF5


def _missing_sources(handle: h5py.File, path: str) -> list[str]:
    """Shard files a split file's virtual datasets point to that are not there (moved or deleted)."""
    base = os.path.dirname(os.path.abspath(path))
    missing = set()
    for name, obj in handle.items():
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            for source in obj.virtual_sources():
                target = source.file_name if os.path.isabs(source.file_name) else os.path.join(base, source.file_name)
                if source.file_name != "." and not os.path.exists(target):
                    missing.add(source.file_name)
    return sorted(missing)


def _chunks(n: int):
    for start in range(0, n, _CHUNK):
        yield slice(start, min(n, start + _CHUNK))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _read_hdf5(path: str, name: str, max_jets: int) -> SplitView:
    with h5py.File(path, "r") as f:
        missing = _missing_sources(f, path)
        names = _label_names(f.attrs.get("samples"))
        if "jets" in f and f["jets"].dtype.names:
            view = _read_ftag(f, path, name, max_jets, names, missing)
        else:
            view = _read_plain(f, path, name, max_jets, names, missing)
        if _text(f.attrs.get("record")) == "event":
            view.rows_are = "events"
        return view


def _padded_dataset(f: h5py.File) -> str | None:
    """The (N, max, F) dataset the mask belongs to: `constituents`, or an event's padded collection."""
    if "mask" not in f:
        return None
    if "constituents" in f:
        return "constituents"
    slots = f["mask"].shape[1:]
    return next((key for key, ds in f.items() if isinstance(ds, h5py.Dataset) and ds.ndim == 3
                 and ds.shape[1:2] == slots and "features" in ds.attrs and "collections" not in ds.attrs), None)


def _read_plain(f: h5py.File, path: str, name: str, max_jets: int, names, missing) -> SplitView:
    if "labels" not in f:
        raise InputError(f"{path}: no 'labels' dataset; is this a root2hdf5 output file?")
    rows = len(f["labels"])
    has_weights = "weights" in f
    counts, sums = _count((f["labels"][s], f["weights"][s] if has_weights else np.ones(s.stop - s.start))
                          for s in _chunks(rows))
    k = min(rows, max_jets)
    view = SplitView(name, path, rows, counts, sums, f["labels"][:k], label_names=names, missing=missing,
                     kind="HDF5 plain")
    padded = _padded_dataset(f)
    skip = {"labels", "weights", "event_number", "source", "mask", padded}
    for key, ds in f.items():
        if not isinstance(ds, h5py.Dataset) or key in skip or ds.dtype.kind not in "fiub" or ds.ndim > 3:
            continue
        data = ds[:k]
        features = [str(x) for x in ds.attrs.get("features", [])]
        if ds.ndim == 1:
            view.jets[key] = data
        elif ds.ndim == 2:
            for i in range(data.shape[1]):
                view.jets[features[i] if i < len(features) else f"{key}_{i}"] = data[:, i]
        elif "collections" in ds.attrs:  # (N, collections, features): named as in the FTAG/Parquet layouts
            for c, collection in enumerate(str(x) for x in ds.attrs["collections"]):
                for i, feature in enumerate(features):
                    view.jets[f"{collection}_{feature}"] = data[:, c, i]
    if padded:
        mask = f["mask"][:k]
        values = f[padded][:k]
        for i, feature in enumerate(str(x) for x in f[padded].attrs.get("features", [])):
            view.constituents[feature] = values[..., i][mask]
        view.constituent_counts = mask.sum(axis=1)
        view.slots = mask.shape[1]
    return view


def _read_ftag(f: h5py.File, path: str, name: str, max_jets: int, names, missing) -> SplitView:
    jets = f["jets"]
    rows = len(jets)
    fields = jets.dtype.names
    counts, sums = _count((jets.fields("flavour_label")[s],
                           jets.fields("weight")[s] if "weight" in fields else np.ones(s.stop - s.start))
                          for s in _chunks(rows))
    k = min(rows, max_jets)
    sample = jets[:k]
    view = SplitView(name, path, rows, counts, sums, sample["flavour_label"], label_names=names,
                     missing=missing, kind="HDF5 FTAG")
    for field_name in fields:
        if field_name not in FTAG_BOOKKEEPING and sample.dtype[field_name].shape == ():
            view.jets[field_name] = sample[field_name]
    groups = [key for key, ds in f.items() if isinstance(ds, h5py.Dataset) and key != "jets" and ds.ndim == 2
              and ds.dtype.names and "valid" in ds.dtype.names]
    if groups:
        consts = f[groups[0]][:k]
        mask = consts["valid"]
        for field_name in consts.dtype.names:
            if field_name != "valid":
                view.constituents[field_name] = consts[field_name][mask]
        view.constituent_counts = mask.sum(axis=1)
        view.slots = mask.shape[1]
    return view


# -------------------------------------------------------------------------------------------- Parquet


def _read_parquet(path: str, name: str, max_jets: int) -> SplitView:
    import pyarrow as pa
    import pyarrow.dataset as pads

    dataset = pads.dataset(path, format="parquet")
    schema = dataset.schema
    if "label" not in schema.names:
        raise InputError(f"{path}: no 'label' column; is this a root2hdf5 Parquet output?")
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    weights = ["weight"] if "weight" in schema.names else []
    table = dataset.to_table(columns=["label", *weights])
    labels = table["label"].to_numpy()
    counts, sums = _count([(labels, table["weight"].to_numpy() if weights else np.ones(len(labels)))])
    sample = dataset.head(max_jets)
    view = SplitView(name, path, len(labels), counts, sums, sample["label"].to_numpy(),
                     label_names=_label_names(meta.get("samples")), kind="Parquet",
                     rows_are="events" if meta.get("record") == "event" else "jets")
    slots = int(meta.get("max_constituents", 0) or 0)
    mask = None
    if "mask" in sample.column_names:
        column = sample["mask"].combine_chunks()
        mask = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)
    for column_name in sample.column_names:
        if column_name in PARQUET_BOOKKEEPING:
            continue
        column = sample[column_name].combine_chunks()
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):  # jagged constituents: the valid ones only
            view.constituents[column_name] = column.flatten().to_numpy()
            view.constituent_counts = np.diff(column.offsets.to_numpy())
        elif pa.types.is_fixed_size_list(kind):
            values = column.flatten().to_numpy().reshape(-1, kind.list_size)
            if mask is not None and kind.list_size == mask.shape[1]:  # padded constituents
                view.constituents[column_name] = values[mask]
                view.constituent_counts = mask.sum(axis=1)
            else:  # a vector per jet, e.g. model scores
                for i in range(kind.list_size):
                    view.jets[f"{column_name}_{i}"] = values[:, i]
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            view.jets[column_name] = column.to_numpy(zero_copy_only=False)
    view.slots = slots if view.constituents else 0
    return view


# ------------------------------------------------------------------------------------------ discovery


def open_output(path: str, max_jets: int = 100_000) -> list[SplitView]:
    """The splits under `path`: an output directory, a split file (.h5) or a Parquet split (dir or file)."""
    path = path.rstrip("/") or "/"
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    if os.path.isfile(path):
        if path.endswith(".parquet"):
            return [_read_parquet(path, _split_name(path), max_jets)]
        if not h5py.is_hdf5(path):
            raise InputError(f"{path}: neither HDF5 nor Parquet")
        return [_read_hdf5(path, _split_name(path), max_jets)]
    views = []
    for split in SPLIT_ORDER:
        h5 = os.path.join(path, f"{split}.h5")
        sub = os.path.join(path, split)
        if os.path.isfile(h5):
            views.append(_read_hdf5(h5, split, max_jets))
        elif os.path.isdir(sub) and any(n.endswith(".parquet") for n in os.listdir(sub)):
            views.append(_read_parquet(sub, split, max_jets))
    if not views and any(n.endswith(".parquet") for n in os.listdir(path)):
        views.append(_read_parquet(path, os.path.basename(path), max_jets))
    if not views:
        raise InputError(f"{path}: no train/val/test outputs here (expected train.h5 ... or train/*.parquet)")
    return views


def _split_name(path: str) -> str:
    if path.endswith(".h5"):
        with h5py.File(path, "r") as f:
            split = f.attrs.get("split")
            if split:
                return split.decode() if isinstance(split, bytes) else str(split)
    stem = os.path.basename(path).split(".")[0]
    return stem


# ----------------------------------------------------------------------------------------------- table


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join(line(r) for r in [header, *rows])


def feature_stats(values: np.ndarray) -> tuple[float, float, float, float, int]:
    """(min, mean, std, max, non-finite count) over the finite values."""
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    v = v[finite]
    if not len(v):
        return (np.nan,) * 4 + (int((~finite).sum()),)
    return float(v.min()), float(v.mean()), float(v.std()), float(v.max()), int((~finite).sum())


def summary(views: list[SplitView]) -> str:
    """The text `root2hdf5 inspect` prints."""
    labels = sorted({label for v in views for label in v.counts})
    names = {label: name for v in views for label, name in v.label_names.items()}
    out = [f"{views[0].kind}: {', '.join(f'{v.name} {v.path}' for v in views)}", ""]
    rows_are = views[0].rows_are
    header = ["split", rows_are, *[f"{label} {names.get(label, '')}".strip() for label in labels]]
    rows = [[v.name, f"{v.rows:,}", *[f"{v.counts.get(label, 0):,}" for label in labels]] for v in views]
    rows.append(["total", f"{sum(v.rows for v in views):,}",
                 *[f"{sum(v.counts.get(label, 0) for v in views):,}" for label in labels]])
    out += [_table(header, rows), ""]
    weighted = [[v.name, *[_fmt(v.weight_sums.get(label, 0.0)) for label in labels]] for v in views]
    out += [_table(["sum of weights", *header[2:]], weighted), ""]

    first = views[0]
    out.append(f"features over {first.sampled:,} {first.name} {rows_are}"
               + (" (a random sample: rows are shuffled)" if first.sampled < first.rows else ""))
    rows = []
    levels = ("event", "collection") if rows_are == "events" else ("jet", "constituent")
    for group, values in zip(levels, (first.jets, first.constituents)):
        for feature, data in values.items():
            lo, mean, std, hi, bad = feature_stats(data)
            rows.append([feature, group, _fmt(lo), _fmt(mean), _fmt(std), _fmt(hi), f"{bad:,}" if bad else ""])
    if rows:
        out += [_table(["feature", "level", "min", "mean", "std", "max", "non-finite"], rows), ""]
    if first.constituent_counts is not None and first.sampled:
        n = first.constituent_counts
        what = "collection entries per event" if rows_are == "events" else "constituents per jet"
        line = f"{what}: mean {n.mean():.1f}, median {np.median(n):.0f}, max {n.max()}"
        if first.slots:
            padded = 1 - n.sum() / (first.slots * len(n))
            full, empty = int(np.sum(n >= first.slots)), int(np.sum(n == 0))
            line += (f"; {first.slots} slots: {padded:.1%} padding; {full:,} {rows_are} ({full / len(n):.2%}) fill all "
                     f"slots (possibly truncated), {empty:,} ({empty / len(n):.2%}) have none")
        out.append(line)
    for v in views:
        if v.missing:
            out.append(f"MISSING: {v.path} points to {len(v.missing)} shard file(s) that are not there: "
                       f"{', '.join(v.missing[:5])}{' ...' if len(v.missing) > 5 else ''} "
                       "(their rows read as fill values)")
    return "\n".join(out)
