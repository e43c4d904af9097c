"""Awkward layouts as numpy: one list level's offsets and a layout's flat values (no Beam import, so that
`root2hdf5 init` starts fast)."""
from __future__ import annotations

import awkward as ak
import numpy as np


def list_offsets(layout) -> tuple[np.ndarray, object]:
    """(offsets, content layout) of one level of an awkward list layout."""
    if not isinstance(layout, ak.contents.ListOffsetArray):
        layout = layout.to_ListOffsetArray64(True)
    return np.asarray(layout.offsets, dtype=np.int64), layout.content


def numpy_content(layout) -> np.ndarray:
    if not isinstance(layout, ak.contents.NumpyArray):
        layout = ak.to_layout(ak.to_packed(ak.Array(layout)))
    return np.asarray(layout.data)
