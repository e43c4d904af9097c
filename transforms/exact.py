"""Exact, order-independent sums of floating-point values (for sums of event weights).

Float addition is not associative, so a sum combined across workers in whatever order they finish would
differ in the last bits from run to run. Here each value is an integer multiple of 2**-OFFSET_BITS, so
sums are Python integers: exact, mergeable in any order, converted to float once at the end.
"""
from __future__ import annotations

import numpy as np

OFFSET_BITS = 1127  # frexp exponents go down to -1073, mantissas are scaled by 2**53: 1073 + 53 + 1


def exact_sum(values) -> int:
    """Σ values × 2**OFFSET_BITS, exactly, as a Python int."""
    v = np.asarray(values, np.float64).ravel()
    v = v[v != 0]
    if not np.all(np.isfinite(v)):
        raise ValueError("cannot sum non-finite values exactly")
    mantissa, exponent = np.frexp(v)  # v = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    units = (mantissa * 2.0**53).astype(np.int64)  # exact: a float64 mantissa has 53 bits
    high, low = units >> 26, units & ((1 << 26) - 1)  # halves, so that int64 group sums cannot overflow
    exponents, group = np.unique(exponent, return_inverse=True)
    sum_high = np.zeros(len(exponents), np.int64)
    sum_low = np.zeros(len(exponents), np.int64)
    np.add.at(sum_high, group, high)
    np.add.at(sum_low, group, low)
    total = 0
    for e, h, l in zip(exponents.tolist(), sum_high.tolist(), sum_low.tolist()):
        total += ((h << 26) + l) << (e - 53 + OFFSET_BITS)
    return total


def to_float(total: int) -> float:
    """The correctly rounded float of an exact_sum total."""
    return total / (1 << OFFSET_BITS)
