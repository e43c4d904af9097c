"""Counter-based random numbers: each one a pure function of (seed, a name, a jet's identity, a position).

A number is a 64-bit hash of (run seed, name, sample, file, entry, jet index in the entry, position of the
constituent in its jet as stored in the ntuple, stream), not a draw from a generator, so a constituent gets
the same number however the jets are batched, ordered or spread over workers, on every rerun. The name is
part of the key, so two variations never share numbers; a stream id lets one use draw several independent
numbers per constituent.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from root2hdf5.transforms.core.hashing import hash_columns, mix
from root2hdf5.transforms.core.names import SOURCE_COLUMNS

_TWO_53 = 1.0 / (1 << 53)


def name_hash(name: str) -> int:
    """A stable 64-bit hash of a variation name. Python's hash() of a str is salted per process, so
    workers would disagree; blake2b is the same everywhere."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def _id_column(value, n: int) -> np.ndarray:
    """An id column (an (n,) array, or one number for the whole batch such as the sample index) as the
    uint64 bit pattern of its integer value."""
    column = np.asarray(value)
    if column.dtype.kind not in "iub":
        raise ValueError(f"jet ids must be integers, got dtype {column.dtype}")
    column = np.broadcast_to(column, (n,))
    # unsigned values keep their bits; signed ones go through int64 so -1 is the same key whatever its width
    return column.astype(np.uint64) if column.dtype.kind == "u" else column.astype(np.int64).view(np.uint64)


def jet_keys(seed: int, name: str, ids: Mapping[str, object], n: int | None = None) -> np.ndarray:
    """uint64 (n,): the hash of (seed, variation name, sample, file, entry, jet_index) of each jet.

    `ids` maps each of SOURCE_COLUMNS to an (n,) integer array or to a single integer shared by the batch.
    """
    missing = [k for k in SOURCE_COLUMNS if k not in ids]
    if missing:
        raise ValueError(f"jet ids need {', '.join(SOURCE_COLUMNS)}; missing {', '.join(missing)}")
    if n is None:
        n = max((np.size(ids[k]) for k in SOURCE_COLUMNS if np.ndim(ids[k])), default=1)
    columns = []
    for key in SOURCE_COLUMNS:
        if np.ndim(ids[key]) and np.shape(ids[key]) != (n,):
            raise ValueError(f"jet id {key!r} has shape {np.shape(ids[key])}, expected ({n},)")
        columns.append(_id_column(ids[key], n))
    return hash_columns(int(seed), np.uint64(name_hash(name)), *columns)


def constituent_keys(keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """uint64 (sum(counts),): each jet's key mixed with each constituent's position in its jet, jets back
    to back (the order of Jagged.compact())."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    jet = np.repeat(np.arange(len(counts)), counts)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    within = np.arange(total, dtype=np.int64) - offsets[:-1][jet]
    with np.errstate(over="ignore"):
        return mix(keys[jet] ^ within.view(np.uint64))


def uniform(keys: np.ndarray, stream: int) -> np.ndarray:
    """float64 uniform in the open interval (0, 1), 53 random bits, one per key: (k + 1/2) / 2^53 for the
    top 53 bits k of the hash of (key, stream), so never 0 (log is finite) and never 1."""
    with np.errstate(over="ignore"):
        h = mix(keys ^ np.uint64(stream))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * _TWO_53


def normal_pair(keys: np.ndarray, streams: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two independent N(0, 1) float64 arrays per key by Box-Muller from two uniform streams."""
    radius = np.sqrt(-2.0 * np.log(uniform(keys, streams[0])))
    angle = (2.0 * np.pi) * uniform(keys, streams[1])
    return radius * np.cos(angle), radius * np.sin(angle)


def normal(keys: np.ndarray, streams: tuple[int, int]) -> np.ndarray:
    """N(0, 1) float64 per key (the first of normal_pair)."""
    return normal_pair(keys, streams)[0]
