"""Exact, order-independent sums of floating-point values (sums of event weights, feature moments).

Float addition is not associative, so a sum combined across workers in whatever order they finish would
differ in the last bits from run to run. Here every value is an integer multiple of 2**-OFFSET_BITS, so
sums are Python integers: exact, mergeable in any order, converted to float once at the end.

Vectorized: values are split into (exponent, 3 x 18-bit mantissa chunks); per (group, exponent) the chunk
sums are np.bincount sums of small integers, exact in float64 for up to 2**35 values, and only the few
distinct exponents are combined in Python.
"""
from __future__ import annotations

import numpy as np

OFFSET_BITS = 1127  # frexp exponents go down to -1073, mantissas are scaled by 2**53: 1073 + 53 + 1
_CHUNK = 18
_BLOCK = 1 << 20  # values per pass: temporaries stay small enough for the allocator to reuse


def exact_group_sums(values, groups=None, n_groups: int = 1) -> list[int]:
    """[Σ values × 2**OFFSET_BITS for each group], exactly. groups: int array like values (default 0)."""
    values = np.asarray(values).ravel()
    groups = None if groups is None else np.asarray(groups).ravel()
    totals = [0] * n_groups
    for start in range(0, len(values), _BLOCK):
        block = _block_sums(values[start:start + _BLOCK],
                            None if groups is None else groups[start:start + _BLOCK], n_groups)
        totals = [a + b for a, b in zip(totals, block)]
    return totals


def _block_sums(values, groups, n_groups: int) -> list[int]:
    v = np.asarray(values, np.float64)
    g = np.zeros(len(v), np.int64) if groups is None else np.asarray(groups, np.int64)
    nonzero = v != 0
    v, g = v[nonzero], g[nonzero]
    if not np.all(np.isfinite(v)):
        raise ValueError("cannot sum non-finite values exactly")
    totals = [0] * n_groups
    if len(v) == 0:
        return totals
    mantissa, exponent = np.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    units = (mantissa * 2.0**53).astype(np.int64)  # exact: a float64 mantissa has 53 bits
    low = units & ((1 << _CHUNK) - 1)
    mid = (units >> _CHUNK) & ((1 << _CHUNK) - 1)
    high = units >> (2 * _CHUNK)  # signed
    e_min = int(exponent.min())
    width = int(exponent.max()) - e_min + 1
    index = g * width + (exponent - e_min)
    size = n_groups * width
    sums = [np.bincount(index, weights=chunk.astype(np.float64), minlength=size) for chunk in (low, mid, high)]
    for i in np.flatnonzero(np.bincount(index, minlength=size)):
        group, e = divmod(int(i), width)
        unit_sum = (int(sums[2][i]) << (2 * _CHUNK)) + (int(sums[1][i]) << _CHUNK) + int(sums[0][i])
        totals[group] += unit_sum << (e + e_min - 53 + OFFSET_BITS)
    return totals


def exact_sum(values) -> int:
    """Σ values × 2**OFFSET_BITS, exactly, as a Python int."""
    return exact_group_sums(values)[0]


def to_float(total: int) -> float:
    """The correctly rounded float of an exact_sum total."""
    return total / (1 << OFFSET_BITS)
