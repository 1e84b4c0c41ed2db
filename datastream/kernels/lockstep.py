"""Walking every segment at once, for the numpy twins of the segment kernels.

A kernel reducing the segments ``bounds[j]:bounds[j + 1]`` folds each one element by element,
and its floating-point sums depend on that order. A numpy twin that must give the kernel's
bits cannot use ``reduceat`` (pairwise summation) or a global ``cumsum`` (one running sum
across segments): it takes the k-th element of every segment that has one, for k = 0, 1, ...,
and applies the kernel's step to all of them with one array operation. Python then loops as
many times as the longest segment has elements, which is why a twin declines
(:class:`~datastream.kernels.jit.Declined`) segments longer than :data:`MAX_STEPS`: the
compiled kernel is the faster way there.

``min``/``max`` of numba keep the first argument on a tie (``min(0.0, -0.0)`` is ``0.0``) while
``np.minimum``/``np.maximum`` keep the second, so the twins use :func:`first_min` and
:func:`first_max`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .jit import Declined

MAX_STEPS = 4_096
"""Longest segment a twin walks; longer ones compile the kernel."""


def steps(bounds: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(segments, positions)`` for k = 0, 1, ...: the segments with a k-th element and that
    element's index, longest segments first. Raises ``Declined`` before yielding anything when
    a segment is longer than :data:`MAX_STEPS`."""
    lengths = np.diff(bounds)
    if not lengths.size:
        return
    order = np.argsort(-lengths, kind="stable")
    longest_first = lengths[order]
    if longest_first[0] > MAX_STEPS:
        raise Declined(f"a segment of {int(longest_first[0])} elements")
    descending = -longest_first  # ascending: searchsorted counts the segments longer than k
    starts = bounds[:-1]
    for k in range(int(longest_first[0])):
        segments = order[: int(np.searchsorted(descending, -k, side="left"))]
        yield segments, starts[segments] + k


def first_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numba's ``min(a, b)`` elementwise (no NaN among the arguments)."""
    return np.where(b < a, b, a)


def first_max(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numba's ``max(a, b)`` elementwise (no NaN among the arguments)."""
    return np.where(b > a, b, a)


def write_value_state(n, total, squares, low, high, mean, m2,
                      out_c, out_s, out_q, out_l, out_u, out_mu, out_m2) -> None:
    """The value-state outputs of the twins: the float columns NaN where a segment counted no
    value, as the kernels write them."""
    empty = n == 0
    out_c[:] = n
    for out, column in ((out_s, total), (out_q, squares), (out_l, low), (out_u, high),
                        (out_mu, mean), (out_m2, m2)):
        out[:] = np.where(empty, np.nan, column)
