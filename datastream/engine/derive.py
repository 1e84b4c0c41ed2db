"""Derived streams: validating a configuration into a :class:`Derivation` (behaviour §7).

Each operator is declared in ``datastream.engine.operator_specs`` and runs a kernel of
``datastream.kernels.derive``, driven by ``datastream.engine.operators``; creating a derived
stream (with its sources' ``contributes_to``) is one commit of the engine.
"""

from __future__ import annotations

from typing import Any

from .. import exceptions
from ..granularity import GranularityLevel, resolve
from . import operators
from .operator_specs import DERIVE_OPERATORS as DERIVE_OPERATORS  # re-exported
from .operator_specs import OPERATORS
from .state import Derivation, Source, StreamState


def check_operator(derive_op: Any, value_type: str) -> None:
    """The operator exists and supports the derived stream's value type."""
    if derive_op is None:
        raise ValueError("derive_op is required when derive_from is given")
    if not isinstance(derive_op, str) or derive_op not in DERIVE_OPERATORS:
        raise exceptions.UnsupportedDeriveOperator(f"unsupported derive operator {derive_op!r}")
    if value_type not in OPERATORS[derive_op].value_types:
        raise exceptions.UnsupportedDeriveOperator(
            f"derive operator {derive_op!r} does not support value type {value_type!r}"
        )


def source_items(derive_from: Any) -> list[Any]:
    """``derive_from`` as a list (a single id or dict is wrapped)."""
    return list(derive_from) if isinstance(derive_from, list | tuple) else [derive_from]


def prepare(
    derive_from: Any,
    derive_op: str | None,
    derive_args: dict[str, Any] | None,
    highest: GranularityLevel,
    value_type: str,
    state_of: Any,
    derive_backprocess: bool,
) -> Derivation:
    """Validate a derived-stream configuration (``state_of(id)`` gives source states)."""
    check_operator(derive_op, value_type)
    if derive_from is None:
        raise ValueError(f"derive operator {derive_op!r} needs derive_from")
    args = {} if derive_args is None else derive_args
    if not isinstance(args, dict):
        raise exceptions.InvalidOperatorArguments(f"derive_args must be a dict, got {args!r}")
    states: dict[str, StreamState] = {}
    sources = [_source(item, state_of, states) for item in source_items(derive_from)]
    operators.validate(derive_op, sources, args, highest, states)
    return Derivation(derive_op, dict(args), tuple(sources),
                      "replay" if derive_backprocess else "skip")


def _source(item: Any, state_of: Any, states: dict[str, StreamState]) -> Source:
    if isinstance(item, dict):
        if "stream" not in item:
            raise exceptions.InvalidOperatorArguments(
                f"a derive_from entry needs a 'stream' key, got {item!r}"
            )
        stream_id, name, granularity = item["stream"], item.get("name"), item.get("granularity")
    else:
        stream_id, name, granularity = item, None, None
    state = state_of(stream_id)
    states[state.stream_id] = state
    level = state.highest if granularity is None else resolve(granularity)
    if level > state.highest:
        raise exceptions.IncompatibleGranularities(
            f"source stream {stream_id} has highest granularity {state.highest}; "
            f"{level} is finer"
        )
    return Source(state.stream_id, name, level)
