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

A kernel may also be given a numpy *reference* giving the same bits
(:meth:`Kernel.use_reference`). Until some kernel has run compiled in the process, a call runs
the reference: importing numba and loading a first kernel from the cache cost most of a second,
far more than a first read or a first chunk costs through the references (a million raw points
decode as fast either way), so a short process never pays it. Once the reference has cost about
what compiling takes (:data:`COMPILE_AFTER`), one background thread compiles the kernel for the
types of that call; or, when a marker in the cache directory says a process compiled it for this
source, numba and Python, once the references of all such kernels together have cost that much,
it loads the kernel from the cache. Later calls take the compiled code.
Once one kernel runs compiled, a kernel found in the cache is loaded by its first call (a few
milliseconds). ``datastream warmup`` (:mod:`datastream.warmup`) compiles everything and leaves
the markers. The warm path is that of any kernel: the dispatcher is an attribute, checked per
call.

Kernels that reduce segments to partial-state columns use the companion :func:`reduction`: it
declares the columns a kernel reads and writes, so output allocation (dtypes from the state table
of ``kernels.state``) and argument order live here, and calls pass columns by name.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import state

OPTIONS = {"nogil": True, "error_model": "numpy"}

KERNELS: list[Kernel] = []
"""Every kernel defined so far, in definition order (for warmup and its tests)."""

COMPILE_AFTER = 1.0
"""Seconds a kernel's reference may take in all before the kernel is compiled (or loaded from
the cache) in the background: about what compiling one costs, and what a process spends getting
numba to run its first kernel even from the cache. Until then nothing competes with the caller
for the CPU (numba works holding the GIL most of the time), and a short script never pays it."""

KERNELS_VARIABLE = "DATASTREAM_KERNELS"
"""``compiled`` in this environment variable turns :data:`FALLBACK` off for the process: a
long-running service then pays numba's setup (and any compile) at its first calls instead of
running the references meanwhile. ``auto`` (or unset) keeps the default."""


def _fallback_from_environment() -> bool:
    chosen = os.environ.get(KERNELS_VARIABLE, "auto").strip().lower() or "auto"
    if chosen not in ("auto", "compiled"):
        import warnings

        warnings.warn(f"{KERNELS_VARIABLE}={chosen!r} is neither 'auto' nor 'compiled': auto",
                      RuntimeWarning, stacklevel=2)
    return chosen != "compiled"


FALLBACK = _fallback_from_environment()
"""Whether kernels with a reference run it while their compiled code is not available (see
:data:`KERNELS_VARIABLE`). Warmup, the demo and the tests that compare kernels with their
references turn it off: every call then compiles (or loads) the kernel and runs it, as kernels
without a reference always do."""


_cached_reference_seconds = 0.0
"""Reference time of the kernels found in the cache, all together (see ``Kernel._spent``)."""

_running = threading.Event()
"""Set once a kernel has run (or been loaded) compiled in this process: numba is imported and
its compiler set up, so loading another kernel from the cache costs milliseconds."""


class Declined(Exception):
    """Raised by a reference, before it writes anything, for a call it would run far slower
    than the compiled kernel: the call then compiles the kernel and runs that."""


class Kernel:
    """A kernel function that becomes a numba dispatcher when it is first called."""

    def __init__(self, func: Any) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self.reference: Callable[..., Any] | None = None
        self._dispatcher: Any = None
        self._lock = threading.Lock()
        self._cold = False  # not in the cache at the first call: the reference runs
        self._warm = False  # found in the cache (the marker is not looked up again)
        self._reference_seconds = 0.0  # spent in the reference so far
        self._queued = False  # handed to the background compiler, not ready yet
        self._marker: str | None = None
        KERNELS.append(self)

    def __call__(self, *args: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            return self._first_calls(args)
        return dispatcher(*args)

    def use_reference(self, reference: Callable[..., Any]) -> None:
        """Run ``reference`` while the compiled code is not available. It must take the same
        arguments and give the same results, bit for bit (outputs, return values and their
        Python types), as the tests of each such pair check."""
        self.reference = reference

    def _first_calls(self, args: tuple) -> Any:
        """A call before the dispatcher is set: the reference while numba would have to be
        imported or the kernel compiled for it (handing the kernel to the background thread
        once the reference has cost enough), else the dispatcher, loading or compiling now if
        need be."""
        if self.reference is not None and FALLBACK and self._reference_first():
            began = time.perf_counter()
            try:
                with np.errstate(all="ignore"):  # as quiet as the kernel (its error model)
                    result = self.reference(*args)
            except Declined:
                pass  # compiled below
            else:
                if self._spent(time.perf_counter() - began) > COMPILE_AFTER:
                    _background.add(self, args)
                return result
        result = self.dispatcher()(*args)
        _running.set()
        if self.reference is not None:
            self._mark()
        return result

    def _spent(self, seconds: float) -> float:
        """Count ``seconds`` of reference time; what it is weighed against COMPILE_AFTER: this
        kernel's own total when it must be compiled (each compile is paid apart), the total of
        every kernel found in the cache otherwise (one load sets numba up for all of them)."""
        global _cached_reference_seconds
        self._reference_seconds += seconds
        if self._cold:
            return self._reference_seconds
        _cached_reference_seconds += seconds
        return _cached_reference_seconds

    def _reference_first(self) -> bool:
        """Whether a call runs the reference: the kernel is not in the cache (``_cold``, looked
        up once per process), or it is but no kernel has run compiled in this process yet
        (importing numba and setting up its compiler cost most of a second, once)."""
        if self._cold:
            return True
        if not self._warm:
            if not self._cached():
                self._cold = True
                return True
            self._warm = True
        return not _running.is_set()

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

    def compile(self, args: tuple) -> None:
        """Compile (or load from the cache) the signature of ``args``, then set the dispatcher:
        until then, calls do not see it (the background compiler's step)."""
        import numba

        with self._lock:
            if self._dispatcher is None:
                dispatcher = _jit(self.py_func)
                dispatcher.compile(tuple(numba.typeof(arg) for arg in args))
                self._dispatcher = dispatcher
        _running.set()
        self._mark()

    def _cached(self) -> bool:
        """Whether the marker of this kernel's compiled code is in the cache directory."""
        if self._marker is None:
            self._marker = os.path.join(cache_dir(), "ready",
                                        f"{self.py_func.__module__}.{self.__qualname__}-"
                                        f"{_stamp(self.py_func)}")
        return os.path.exists(self._marker)

    def _mark(self) -> None:
        """Leave the marker: numba has just compiled or loaded this kernel, so its machine code
        is in the cache (if the cache directory cannot be written, calls keep falling back)."""
        if self._cached():
            return
        try:
            os.makedirs(os.path.dirname(self._marker), exist_ok=True)
            with open(self._marker, "x"):
                pass
        except OSError:  # read-only, or another process wrote it first
            pass


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
        out, args = self._arguments(bounds, columns, inputs)
        dispatcher = self._dispatcher
        if dispatcher is None:
            self._first_calls(args)  # the reference while the kernel is not loaded
        else:
            dispatcher(*args)
        return out

    def run_reference(self, bounds: np.ndarray, columns: Mapping[str, np.ndarray] | None = None,
                      **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """What a call gives through the numpy reference (for the tests that compare them)."""
        out, args = self._arguments(bounds, columns, inputs)
        self.reference(*args)
        return out

    def _arguments(self, bounds: np.ndarray, columns: Mapping[str, np.ndarray] | None,
                   inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], tuple]:
        if inputs.keys() != self.inputs.keys():
            raise TypeError(f"{self.__name__} takes inputs {sorted(self.inputs)}, "
                            f"got {sorted(inputs)}")
        given = {**(columns or {}), **inputs, "bounds": bounds}
        size = len(bounds) - 1
        out = {name: np.empty(size, dtype) for name, dtype in self._written.items()}
        args = tuple(out[name] if dtype is None else readonly(given[name], dtype)
                     for name, dtype in self._plan)
        return out, args


def reduction(
    *, inputs: Mapping[str, type] | None = None, reads: tuple[str, ...] = (),
    writes: tuple[str, ...],
) -> Callable[[Any], Reduction]:
    """Make a function a :class:`Reduction` kernel (lazily compiled like :func:`kernel`) that
    takes ``inputs`` (name → dtype) and the state columns ``reads`` and fills ``writes``."""
    return lambda func: Reduction(func, inputs or {}, reads, writes)


class _BackgroundCompiler:
    """One thread compiling the kernels handed to it, in the order they were handed. numba
    compiles under a process-wide lock, so one thread is all that compiling in parallel could
    get. Once the main thread has ended, the kernel being compiled is finished (the interpreter
    waits for this non-daemon thread, so numba is never torn down under it: a second or two)
    and the others are left: the next process falls back and compiles them again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[tuple[Kernel, tuple]] = []
        self._thread: threading.Thread | None = None

    def add(self, kernel: Kernel, args: tuple) -> None:
        with self._lock:
            if kernel._queued:
                return
            kernel._queued = True
            self._queue.append((kernel, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="datastream-jit")
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue or not threading.main_thread().is_alive():
                    self._thread = None
                    return
                kernel, args = self._queue.pop(0)
            try:
                kernel.compile(args)
            except Exception:  # noqa: BLE001 - the next call compiles in the foreground and raises
                kernel.reference = None
            finally:
                kernel._queued = False


_background = _BackgroundCompiler()


def _after_fork() -> None:
    """A forked child has no compiling thread: its kernels may be handed to a new one."""
    global _background
    _background = _BackgroundCompiler()
    for kernel in KERNELS:
        kernel._queued = False


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork)


def _stamp(func: Any) -> str:
    """What the compiled code of ``func`` depends on, hashed: its module's source and that of
    the kernels it calls (numba checks the same source files), numba's version and the
    interpreter's (compiled code is cached per both)."""
    import hashlib

    seen = {func}
    pending = [func]
    while pending:
        current = pending.pop()
        for name in current.__code__.co_names:
            value = current.__globals__.get(name)
            if isinstance(value, Kernel) and value.py_func not in seen:
                seen.add(value.py_func)
                pending.append(value.py_func)
    files = sorted({f.__code__.co_filename for f in seen})
    parts = [sys.implementation.cache_tag, _numba_version(), *map(_file_digest, files)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


@functools.cache
def _file_digest(path: str) -> str:
    import hashlib

    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:  # no source to hash: a key of this process alone, so no marker matches
        return os.urandom(16).hex()


@functools.cache
def _numba_version() -> str:
    """numba's version file (versioneer's, holding the version and revision), read without
    importing numba, which is the point of asking."""
    import importlib.util

    spec = importlib.util.find_spec("numba")
    if spec is None or not spec.origin:
        return "no numba"
    folder = os.path.dirname(spec.origin)
    for name in ("_version.py", "__init__.py"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return _file_digest(path)
    return "unknown numba"


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
