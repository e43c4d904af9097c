"""Vectorized, platform-independent 64-bit hashing (splitmix64), for splits, shard keys and orderings.

Everything random in the pipeline is a pure function of (seed, a jet's identity), never of the order in
which workers see the jets, so outputs are identical for any runner and any parallelism.
"""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(x) -> np.ndarray:
    """splitmix64 finalizer of uint64 values (wrapping arithmetic)."""
    z = np.asarray(x).astype(np.uint64, copy=True) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_columns(seed: int, *columns) -> np.ndarray:
    """One uint64 per row from a seed and integer columns (each broadcast to the row count)."""
    with np.errstate(over="ignore"):
        h = mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
        for column in columns:
            h = mix(h ^ np.asarray(column).astype(np.int64).view(np.uint64))
    return h


def to_unit_interval(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats uniform in [0, 1), using the top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
