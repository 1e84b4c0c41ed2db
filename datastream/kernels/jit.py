"""The single decorator every kernel goes through.

Kernels are plain loops over numpy arrays with explicit ``out`` arguments (numbagg style). This
decorator compiles them with numba in nopython mode and caches the machine code on disk, so a
machine pays the compile cost (about a second per kernel) once. ``nogil`` lets callers process
several streams in threads; numpy's error model makes float division by zero give inf/NaN
instead of raising, exactly as in the numpy reference functions.

Importing numba takes most of a second, and most programs that import datastream only append or
read: so the decorator returns a :class:`Kernel` that imports numba and builds the dispatcher on
its first call. The compiled code goes to a per-user cache directory (:func:`cache_dir`) rather
than next to the installed sources, which may be read-only or shared between users.

Kernels that reduce segments to partial-state columns use the companion :func:`reduction`: it
declares the columns a kernel reads and writes, so output allocation (dtypes from the state table
of ``kernels.state``) and argument order live here, and calls pass columns by name.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import state

OPTIONS = {"nogil": True, "error_model": "numpy"}

KERNELS: list[Kernel] = []
"""Every kernel defined so far, in definition order (for warmup and its tests)."""


class Kernel:
    """A kernel function that becomes a numba dispatcher when it is first called."""

    def __init__(self, func: Any) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self._dispatcher: Any = None
        self._lock = threading.Lock()
        KERNELS.append(self)

    def __call__(self, *args: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher()
        return dispatcher(*args)

    def __repr__(self) -> str:
        return f"<kernel {self.py_func.__module__}.{self.py_func.__qualname__}>"

    @property
    def loaded(self) -> bool:
        """Whether numba has been asked for this kernel yet (without asking it)."""
        return self._dispatcher is not None

    def dispatcher(self) -> Any:
        """The numba dispatcher, created on first use (numba compiles per signature later)."""
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = _jit(self.py_func)
            return self._dispatcher


def kernel(func: Any) -> Kernel:
    """Make ``func`` a lazily compiled, disk-cached, GIL-free numba kernel."""
    return Kernel(func)


class Reduction(Kernel):
    """A kernel reducing the segments ``bounds[j]:bounds[j + 1]`` to one row of state columns.

    Its parameters are named after what they receive: ``bounds`` (int64 segment bounds), a plain
    input by its declared name, a state column it reads by the column's name, a column it writes
    as ``out_<name>``; a trailing underscore escapes a name that would shadow a global or trip
    the linter (``np_``, ``l_``). Calling it allocates the written columns (dtype from the state
    table, one row per segment), passes every array in parameter order (inputs read-only, so
    numba compiles one signature) and returns the written columns by name.
    """

    def __init__(self, func: Any, inputs: Mapping[str, type], reads: tuple[str, ...],
                 writes: tuple[str, ...]) -> None:
        self.inputs = dict(inputs)
        self.reads = tuple(reads)
        self.writes = tuple(writes)
        dtypes = {"bounds": np.int64, **self.inputs, **{n: state.dtype(n) for n in self.reads}}
        self._written = {name: state.dtype(name) for name in self.writes}
        code = func.__code__
        self._plan: list[tuple[str, type | None]] = []  # (name, input dtype; None = written)
        for parameter in code.co_varnames[: code.co_argcount]:
            name = parameter[:-1] if parameter.endswith("_") else parameter
            if name.startswith("out_"):
                self._plan.append((name[4:], None))
            elif name in dtypes:
                self._plan.append((name, dtypes[name]))
            else:
                raise TypeError(f"{func.__qualname__}: undeclared parameter {parameter!r}")
        taken = sorted(n for n, d in self._plan if d is not None)
        written = sorted(n for n, d in self._plan if d is None)
        if taken != sorted(dtypes) or written != sorted(self.writes):
            raise TypeError(f"{func.__qualname__}: parameters do not match the declaration")
        super().__init__(func)  # registered in KERNELS only once the declaration holds

    def __call__(self, bounds: np.ndarray, columns: Mapping[str, np.ndarray] | None = None,
                 **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The written columns for segment ``bounds``; ``columns`` holds (at least) the read
        columns, ``inputs`` exactly the plain inputs."""
        if inputs.keys() != self.inputs.keys():
            raise TypeError(f"{self.__name__} takes inputs {sorted(self.inputs)}, "
                            f"got {sorted(inputs)}")
        given = {**(columns or {}), **inputs, "bounds": bounds}
        size = len(bounds) - 1
        out = {name: np.empty(size, dtype) for name, dtype in self._written.items()}
        args = [out[name] if dtype is None else readonly(given[name], dtype)
                for name, dtype in self._plan]
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher()
        dispatcher(*args)
        return out


def reduction(
    *, inputs: Mapping[str, type] | None = None, reads: tuple[str, ...] = (),
    writes: tuple[str, ...],
) -> Callable[[Any], Reduction]:
    """Make a function a :class:`Reduction` kernel (lazily compiled like :func:`kernel`) that
    takes ``inputs`` (name → dtype) and the state columns ``reads`` and fills ``writes``."""
    return lambda func: Reduction(func, inputs or {}, reads, writes)


def _jit(func: Any) -> Any:
    import numba

    # Kernels calling kernels: numba must see the callee's dispatcher, not our wrapper, so the
    # function is rebuilt over a copy of its module namespace (numba freezes globals anyway).
    callees = {
        name: value.dispatcher()
        for name in func.__code__.co_names
        if isinstance(value := func.__globals__.get(name), Kernel)
    }
    if callees:
        original = func
        func = types.FunctionType(func.__code__, {**func.__globals__, **callees},
                                  func.__name__, func.__defaults__, func.__closure__)
        func.__qualname__ = original.__qualname__
        func.__doc__ = original.__doc__
    dispatcher = numba.njit(**OPTIONS)(func)
    _enable_cache(dispatcher)
    return dispatcher


def cache_dir() -> str:
    """The directory compiled kernels are cached in (created on the first compile).

    ``$DATASTREAM_CACHE_DIR`` wins; otherwise a user who set numba's own ``NUMBA_CACHE_DIR``
    keeps it; otherwise the platform's per-user cache directory (XDG on Linux).
    """
    chosen = os.environ.get("DATASTREAM_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "datastream", "Cache", "numba")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/datastream/numba")
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore relative paths
        base = os.path.expanduser("~/.cache")
    return os.path.join(base, "datastream", "numba")


def _enable_cache(dispatcher: Any) -> None:
    """``cache=True`` for one dispatcher, with :func:`cache_dir` as its first choice."""
    try:
        cache_class = _cache_class(cache_dir())
    except (ImportError, AttributeError):  # numba's internals moved: its default places
        dispatcher.enable_caching()
        return
    dispatcher._cache = cache_class(dispatcher.py_func)  # what enable_caching() assigns


@functools.cache
def _cache_class(root: str) -> Any:
    """A numba FunctionCache whose first locator is ``root``.

    numba only offers a process-wide directory (``NUMBA_CACHE_DIR``, read once at import into
    ``numba.config.CACHE_DIR``); changing it would move every other library's cache too, so
    only our dispatchers get this locator. If ``root`` cannot be created or written, numba's
    own locators take over (``NUMBA_CACHE_DIR``, ``__pycache__``, its user-wide directory).
    """
    from numba.core import caching

    provided = getattr(caching, "UserProvidedCacheLocator", None)
    if provided is None:  # numba < 0.62 names
        provided = caching._UserProvidedCacheLocator
    impl_class = caching.FunctionCache._impl_class

    class Locator(provided):
        """numba's NUMBA_CACHE_DIR locator (same layout and checks), rooted at ``root``."""

        def __init__(self, py_func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            # skip the parent's "is NUMBA_CACHE_DIR set" test, keep the file and writable checks
            return super(provided, cls).from_function(py_func, py_file)

    class Impl(impl_class):
        _locator_classes = [Locator, *impl_class._locator_classes]

    class Cache(caching.FunctionCache):
        _impl_class = Impl

    return Cache


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
