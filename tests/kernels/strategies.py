"""Hypothesis strategies for the kernel tests: sorted µs timestamps with duplicates, gaps of
seconds to days and pre-1970 starts, and values with nulls, negative and huge magnitudes."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

SECOND = 1_000_000
DAY = 86_400 * SECOND
WIDTHS = [SECOND, 10 * SECOND, 60 * SECOND, 600 * SECOND, 3600 * SECOND, DAY // 4, DAY]

gaps = st.one_of(
    st.just(0),  # duplicate timestamps
    st.integers(0, 20 * SECOND),
    st.integers(0, 3 * DAY),  # gaps of days
)
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-(10**6), 10**6).map(float),
    st.floats(-1e150, 1e150, allow_nan=False),  # huge, squares still finite
    st.just(1e9) | st.just(-1e9),
)


@st.composite
def timestamps(draw, max_size: int = 60) -> np.ndarray:
    """Sorted int64 epoch µs, starting anywhere from 1907 to 2033."""
    start = draw(st.integers(-2 * 10**15, 2 * 10**15))
    steps = draw(st.lists(gaps, min_size=1, max_size=max_size))
    return start + np.cumsum(np.array([0] + steps[1:], dtype=np.int64))


@st.composite
def points(draw, max_size: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, x, valid): timestamps, values and the mask of non-null points."""
    t = draw(timestamps(max_size))
    x = np.array(draw(st.lists(values, min_size=len(t), max_size=len(t))), dtype=np.float64)
    valid = np.array(draw(st.lists(st.booleans() | st.just(True), min_size=len(t),
                                   max_size=len(t))), dtype=np.bool_)
    return t, x, valid


def assert_same(got: dict, expected: dict, scale: float = 1.0) -> None:
    """Column-wise equality: ints exactly, floats to 1e-9 relative (atol from ``scale``)."""
    assert got.keys() == expected.keys()
    for name, column in expected.items():
        if column.dtype.kind == "i":
            np.testing.assert_array_equal(got[name], column, err_msg=name)
        else:
            np.testing.assert_allclose(
                got[name], column, rtol=1e-9, atol=1e-12 * scale, equal_nan=True, err_msg=name
            )
