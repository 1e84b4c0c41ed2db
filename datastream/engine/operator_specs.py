"""Derive operators declared as data (behaviour §7), the way downsamplers are.

One :class:`OperatorSpec` per operator says everything the engine and the verifier would
otherwise decide by the operator's name: the value types of the derived stream and of its data
sources, the source rules (how many, distinct or not, required names, which one is a reset
input), the ``derive_args`` it takes, the size of its carried state vector, what shapes that
state (for replays from the middle), and how its kernel (``datastream.kernels.derive``) is
called. Adding an operator is one declaration here plus one kernel, and an oracle in
``datastream.verification.replay``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import exceptions, values
from ..kernels import derive as kernels


@dataclasses.dataclass
class Batch:
    """Merged input points of one derived stream (time, then source index, then append
    order), what its kernel needs besides them, and the output arrays the kernel fills."""

    t: np.ndarray  # int64 µs
    src: np.ndarray  # int64 source index (position in derive_from)
    v: np.ndarray  # float64, NaN for null
    valid: np.ndarray  # bool, False for null
    state: np.ndarray  # float64 carried state vector, updated in place
    last: int  # last bucket emitted (bucketed operators; NO_TIME: none), updated
    args: dict[str, Any]
    sources: int
    width_us: int
    out_t: np.ndarray
    out_v: np.ndarray
    out_valid: np.ndarray

    @property
    def zero_filled(self) -> np.ndarray:
        """Values with nulls as 0.0 (kernels that add read them under ``valid`` only)."""
        return np.where(self.valid, self.v, 0.0)


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """One derive operator.

    ``value_types``: of the derived stream. ``source_type``: the value type every source but the
    reset input must have. ``sources``: exact number of sources (None: one or more).
    ``source_names``: the ``name`` each source position must have (None: not checked).
    ``reset_source``: position of the reset input, read as truthy/falsy whatever its value type,
    which never holds data back (the others are waited for). ``bucketed``: the state is the
    current bucket of the derived stream's highest granularity (an unfinished bucket's inputs
    are read again); otherwise it is the previous point of ``data_source``, and
    ``nulls_keep_state`` says that a null there leaves it unchanged (else a null forgets it).
    ``args``: allowed ``derive_args`` with their checks; ``required_args`` must be given.
    ``state_size``: length of the carried float vector, ``value_slots`` the positions in it
    that hold an input value. ``run`` calls the kernel on a
    :class:`Batch` and returns how many outputs it wrote. ``warning_counts`` are state positions
    counting dropped inputs, and ``warning`` the message their increments fill in.
    """

    name: str
    value_types: tuple[str, ...]
    run: Callable[[Batch], int]
    state_size: int
    source_type: str = "numeric"
    sources: int | None = 1
    distinct_sources: bool = False
    source_names: tuple[str | None, ...] | None = None
    reset_source: int | None = None
    data_source: int = 0
    bucketed: bool = False
    nulls_keep_state: bool = False
    args: Mapping[str, Callable[[Any], None]] = dataclasses.field(default_factory=dict)
    required_args: frozenset[str] = frozenset()
    warning_counts: tuple[int, ...] = ()
    warning: str = ""
    value_slots: tuple[int, ...] = ()  # state positions holding an input value (not a time)

    def is_reset(self, position: int) -> bool:
        return position == self.reset_source

    def holds_back(self, position: int) -> bool:
        """Whether the derived stream waits for this source before processing later inputs."""
        return not self.is_reset(position)

    def check_args(self, args: dict[str, Any]) -> None:
        unknown = set(args) - set(self.args)
        if unknown:
            raise exceptions.InvalidOperatorArguments(
                f"{self.name} takes no arguments {sorted(map(values.show, unknown))}"
            )
        missing = self.required_args - set(args)
        if missing:
            raise exceptions.InvalidOperatorArguments(
                f"{self.name} needs arguments {sorted(missing)}"
            )
        for name, value in args.items():
            self.args[name](value)

    def check_sources(self, ids: list[str], names: list[str | None]) -> None:
        """Source count, distinctness and names (types and granularities: the engine)."""
        count = len(ids)
        if self.sources is None and not count:
            raise exceptions.InvalidOperatorArguments(
                f"{self.name} needs at least one source stream")
        if self.sources is not None and count != self.sources:
            raise exceptions.InvalidOperatorArguments(
                f"{self.name} needs exactly {_COUNTS.get(self.sources, self.sources)} source "
                f"stream{'s' if self.sources > 1 else ''}, got {count}"
            )
        if self.distinct_sources and len(set(ids)) != count:
            raise exceptions.InvalidOperatorArguments(
                f"{self.name} sources must be distinct: {ids}")
        if self.source_names is not None and tuple(names) != self.source_names:
            wanted = " and ".join(
                f"the {_ORDINALS[position]}{' source' if not position else ''} "
                + ("unnamed" if name is None else f"named {name!r}")
                for position, name in enumerate(self.source_names)
            )
            raise exceptions.InvalidOperatorArguments(f"{self.name} needs {wanted}")


_COUNTS = {1: "one", 2: "two", 3: "three"}
_ORDINALS = ["first", "second", "third", "fourth"]


def check_max_value(value: Any) -> None:
    """The kernel wraps counters in float64 and backends store the argument in JSON or BSON: a
    finite positive float, or a positive int within int64 (larger ones: pass a float)."""
    shown = values.show(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise exceptions.InvalidOperatorArguments(f"max_value must be a number, got {shown}")
    if not value > 0:  # also NaN
        raise exceptions.InvalidOperatorArguments(f"max_value must be positive, got {shown}")
    if isinstance(value, int) and value > values.INT64_MAX:
        raise exceptions.InvalidOperatorArguments(
            f"max_value {shown} is beyond int64; pass it as a float"
        )
    if not math.isfinite(value):
        raise exceptions.InvalidOperatorArguments(f"max_value must be finite, got {shown}")


# -- kernel calls ------------------------------------------------------------------------------


def _run_sum(b: Batch) -> int:
    bucket = (b.t // b.width_us) * b.width_us
    count, b.last = kernels.bucket_sum(bucket, b.src, b.zero_filled, b.valid, b.sources, b.last,
                                       b.out_t, b.out_v, b.out_valid)
    return count


def _run_derivative(b: Batch) -> int:
    return kernels.derivative(b.t, b.v, b.valid, b.state, b.out_t, b.out_v, b.out_valid)


def _run_counter_reset(b: Batch) -> int:
    count = kernels.counter_reset(b.t, b.v, b.valid, b.state, b.out_t)
    b.out_v[:count] = 1.0
    b.out_valid[:count] = True
    return count


def _run_counter_derivative(b: Batch) -> int:
    max_value = float(b.args.get("max_value", -1.0))  # < 0: no wrap
    return kernels.counter_derivative(b.t, b.src, b.zero_filled, b.valid, max_value, b.state,
                                      b.out_t, b.out_v, b.out_valid)


# -- the operators -----------------------------------------------------------------------------

SPECS: tuple[OperatorSpec, ...] = (
    OperatorSpec("sum", ("numeric",), _run_sum, state_size=0, sources=None,
                 distinct_sources=True, bucketed=True),
    OperatorSpec("derivative", ("numeric",), _run_derivative, state_size=4, value_slots=(2,),
                 warning_counts=(3,),
                 warning="{} points with a zero time step emitted nothing"),
    OperatorSpec("counter_reset", ("nominal",), _run_counter_reset, state_size=2,
                 value_slots=(1,), nulls_keep_state=True),
    OperatorSpec("counter_derivative", ("numeric",), _run_counter_derivative, state_size=5,
                 value_slots=(2,),
                 sources=2, source_names=("reset", None), reset_source=0, data_source=1,
                 args={"max_value": check_max_value}, warning_counts=(3, 4),
                 warning="{} counter decreases without max_value and {} zero time steps "
                         "emitted nothing"),
)

OPERATORS: dict[str, OperatorSpec] = {spec.name: spec for spec in SPECS}

# name → its upper-case constant, as the original API exported them (the declarations above
# say what each accepts)
DERIVE_OPERATORS: dict[str, str] = {name: name.upper() for name in OPERATORS}


def spec(op: str) -> OperatorSpec:
    """The declaration of a derive operator (KeyError for an unknown one)."""
    return OPERATORS[op]
