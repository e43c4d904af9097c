"""Joining the baskets of `vector<vector<T>>` branches (constituents in per-event ntuples) with numpy.

uproot decodes each basket of such a branch into its own awkward array and joins them with
`ak.concatenate`, whose cost per array (~1 ms: type checks, index objects) dwarfs the copying when baskets
are small. ROOT writes the first clusters of a tree with small baskets (until its basket sizes adapt):
the 2 x 150k-event files of bench/make_ttrees.py hold 251 baskets of ~54 entries per constituent branch in
their first 38k entries and 9 in the rest, so the first entry range took 2.3 x as long as the next. Here
the baskets of a list-of-lists of numbers are joined as three numpy concatenations (outer offsets, inner
offsets, values) into the layout uproot would build; any other shape, library or interpretation is left to
uproot. `install()` is called where inflate.install() is: in every process that reads.
"""
from __future__ import annotations

import awkward as ak
import numpy as np

_ORIGINAL = "_root2hdf5_original"


def _parts(basket_arrays: dict, entry_start: int, entry_stop: int, entry_offsets) -> list | None:
    """The (layout, first entry, last entry) of every basket overlapping the range, in order; None unless each
    is a list of lists of numbers."""
    parts = []
    for number, (start, stop) in enumerate(zip(entry_offsets[:-1], entry_offsets[1:])):
        if stop <= entry_start or start >= entry_stop:
            continue
        array = basket_arrays.get(number)
        layout = ak.to_layout(array) if isinstance(array, ak.Array) else array
        if not (isinstance(layout, ak.contents.ListOffsetArray)
                and isinstance(layout.content, ak.contents.ListOffsetArray)
                and isinstance(layout.content.content, ak.contents.NumpyArray)
                and layout.content.content.data.ndim == 1):
            return None
        parts.append((layout, max(entry_start, start) - start, min(entry_stop, stop) - start))
    return parts or None


def join(parts: list) -> ak.contents.ListOffsetArray:
    """One ListOffsetArray(ListOffsetArray(NumpyArray)) holding the given entries of every part, in order."""
    outers, inners, values = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], []
    lists = entries = 0
    for layout, first, last in parts:
        outer = np.asarray(layout.offsets.data, dtype=np.int64)[first:last + 1]
        inner = np.asarray(layout.content.offsets.data, dtype=np.int64)[outer[0]:outer[-1] + 1]
        outers.append(outer[1:] - outer[0] + lists)
        inners.append(inner[1:] - inner[0] + entries)
        values.append(layout.content.content.data[inner[0]:inner[-1]])
        lists += int(outer[-1] - outer[0])
        entries += int(inner[-1] - inner[0])
    first = parts[0][0]
    numbers = ak.contents.NumpyArray(np.concatenate(values), parameters=first.content.content.parameters)
    lists_of_numbers = ak.contents.ListOffsetArray(ak.index.Index64(np.concatenate(inners)), numbers,
                                                   parameters=first.content.parameters)
    return ak.contents.ListOffsetArray(ak.index.Index64(np.concatenate(outers)), lists_of_numbers,
                                       parameters=first.parameters)


def install() -> None:
    """Join the baskets of lists of lists of numbers with numpy when uproot builds awkward arrays (idempotent)."""
    import uproot.interpretation.library as library
    from uproot.interpretation.objects import AsObjects

    if hasattr(AsObjects.final_array, _ORIGINAL):
        return
    original = AsObjects.final_array

    def final_array(self, basket_arrays, entry_start, entry_stop, entry_offsets, library_, branch, options):
        # only uproot's own class, whose hooks do nothing, and only for awkward output
        parts = None
        if type(self) is AsObjects and isinstance(library_, library.Awkward) and entry_stop > entry_start:
            parts = _parts(basket_arrays, entry_start, entry_stop, entry_offsets)
        if parts is None:
            return original(self, basket_arrays, entry_start, entry_stop, entry_offsets, library_, branch, options)
        return library_.finalize(join(parts), branch, self, entry_start, entry_stop, options)

    setattr(final_array, _ORIGINAL, original)
    AsObjects.final_array = final_array


def uninstall() -> None:
    from uproot.interpretation.objects import AsObjects

    original = getattr(AsObjects.final_array, _ORIGINAL, None)
    if original is not None:
        AsObjects.final_array = original
