"""The single decorator every kernel goes through.

Kernels are plain loops over numpy arrays with explicit ``out`` arguments (numbagg style). This
decorator compiles them with numba in nopython mode and caches the machine code on disk, so a
fresh clone pays the compile cost (~0.5 s per kernel) once. ``nogil`` lets callers process
several streams in threads; numpy's error model makes float division by zero give inf/NaN
instead of raising, exactly as in the numpy reference functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numba
import numpy as np

F = TypeVar("F", bound=Callable)


def kernel(func: F) -> F:
    """Compile ``func`` as a cached, GIL-free numba kernel."""
    return numba.njit(cache=True, nogil=True, error_model="numpy")(func)


def readonly(values: np.ndarray, dtype: type) -> np.ndarray:
    """``values`` as a C-contiguous read-only array of ``dtype`` (a view when possible).

    numba compiles a separate specialisation for read-only arrays, and Arrow hands out read-only
    buffers: passing every kernel input read-only means one compile per kernel, whatever the
    caller holds.
    """
    if values.dtype == dtype and not values.flags.writeable and values.flags.c_contiguous:
        return values  # already what the kernels take (Arrow's buffers usually are)
    view = np.ascontiguousarray(values, dtype=dtype).view()
    view.flags.writeable = False
    return view
