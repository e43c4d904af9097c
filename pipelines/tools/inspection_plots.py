"""PNG plots for `root2hdf5 inspect`: every feature's distribution per label, and an overview grid.

Histograms are normalised per label (shapes, not yields: the classes rarely have equal counts) and
unweighted, so they show what the network sees. The x-range is the 0.5-99.5 percentile range of all labels
together when the full range is dominated by a few outliers (so they do not squash the plot), the full
range otherwise; the fraction of values outside the plotted range is printed on the plot.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from root2hdf5.pipelines.tools.inspection import SplitView

_BINS = 50


def matplotlib_or_none():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    try:
        import mplhep

        plt.style.use(mplhep.style.ROOT)
    except ImportError:
        pass
    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def _edges(values: np.ndarray) -> np.ndarray | None:
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    lo, hi = np.percentile(v, [0.5, 99.5])
    if hi - lo > 0.5 * (v.max() - v.min()):  # no long tails: show everything
        lo, hi = v.min(), v.max()
    if lo == hi:  # a constant or near-constant feature: still show a bar
        lo, hi = lo - 0.5, hi + 0.5
    if np.all(v == np.round(v)) and hi - lo <= _BINS:  # integers: one bin per value
        return np.arange(math.floor(lo), math.ceil(hi) + 2) - 0.5
    return np.linspace(lo, hi, _BINS + 1)


def _draw(ax, values: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str, logy: bool) -> None:
    values = np.asarray(values, np.float64)
    edges = _edges(values)
    if edges is None:
        ax.set_title(f"{title} (no finite values)", fontsize=9)
        return
    for label in np.unique(labels):
        selected = values[labels == label]
        selected = selected[np.isfinite(selected)]
        if len(selected):
            ax.hist(selected, bins=edges, density=True, histtype="step",
                    linewidth=1.2, label=f"{label} {names.get(int(label), '')}".strip() + f" ({len(selected):,})")
    outside = np.mean((values < edges[0]) | (values > edges[-1]))
    ax.set_title(title, fontsize=9)
    if outside > 0:
        ax.text(0.98, 0.97, f"{outside:.1%} outside", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)
    if logy:
        ax.set_yscale("log")


def _panels(view: SplitView) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(file stem, title, values, labels per value) for every plot."""
    row, entry = ("event", "collection") if view.rows_are == "events" else ("jet", "constituent")
    panels = [(f"{row}_{_safe(k)}", f"{row}: {k}", v, view.labels) for k, v in view.jets.items()]
    if view.constituent_counts is not None:
        per_value = np.repeat(view.labels, view.constituent_counts)
        panels.append((f"n_{entry}s", f"{entry} entries per {row}", view.constituent_counts, view.labels))
        panels += [(f"{entry}_{_safe(k)}", f"{entry}: {k}", v, per_value) for k, v in view.constituents.items()]
    return panels


def save_plots(view: SplitView, out_dir: str, logy: bool = False) -> list[str]:
    """One PNG per feature plus `overview.png` (all of them on one page). Returns the paths written."""
    plt = matplotlib_or_none()
    if plt is None:
        raise ImportError("plots need matplotlib: pip install 'root2hdf5[inspect]' (or pass --no-plots)")
    os.makedirs(out_dir, exist_ok=True)
    panels = _panels(view)
    written = []
    # PNG metadata without the matplotlib version: the same data gives the same bytes
    metadata = {"Software": None}
    for stem, title, values, labels in panels:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        _draw(ax, values, labels, view.label_names, title, logy)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{stem}.png")
        fig.savefig(path, dpi=90, metadata=metadata)
        plt.close(fig)
        written.append(path)
    if panels:
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
        for ax, (_, title, values, labels) in zip(axes.flat, panels):
            _draw(ax, values, labels, view.label_names, title, logy)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, [n.split(" (")[0] for n in names], loc="upper right", fontsize=8, frameon=False)
        fig.suptitle(f"{view.name}: {view.sampled:,} of {view.rows:,} {view.rows_are}", fontsize=10, x=0.01, ha="left")
        fig.tight_layout(rect=(0, 0, 0.97, 0.97))
        path = os.path.join(out_dir, "overview.png")
        fig.savefig(path, dpi=72, metadata=metadata)
        plt.close(fig)
        written.append(path)
    return written
