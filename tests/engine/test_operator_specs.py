"""Derive operator declarations: consistent with each other, with the public table and the
verification oracles, and running their kernels through one generic call."""

from __future__ import annotations

import numpy as np
import pytest

import datastream
from datastream import exceptions
from datastream.engine.operator_specs import OPERATORS, SPECS, Batch, spec
from datastream.engine.state import OperatorState
from datastream.verification import replay

NO_TIME = -(2**63)


def test_every_operator_is_public_and_has_an_oracle():
    assert list(OPERATORS) == [declared.name for declared in SPECS]
    assert datastream.DERIVE_OPERATORS == {
        "sum": "SUM", "derivative": "DERIVATIVE", "counter_reset": "COUNTER_RESET",
        "counter_derivative": "COUNTER_DERIVATIVE"}
    assert datastream.VALUE_TYPES == ("numeric", "graph", "nominal")
    assert set(replay.ORACLES) == set(OPERATORS)


@pytest.mark.parametrize("declared", SPECS, ids=lambda s: s.name)
def test_declaration_is_consistent(declared):
    if declared.sources is not None:
        positions = range(declared.sources)
        assert declared.data_source in positions
        assert declared.reset_source is None or declared.reset_source in positions
        assert declared.source_names is None or len(declared.source_names) == declared.sources
    assert declared.data_source != declared.reset_source
    assert declared.warning.count("{}") == len(declared.warning_counts)
    assert all(0 <= index < declared.state_size for index in declared.warning_counts)
    assert declared.required_args <= set(declared.args)
    assert len(OperatorState.fresh(declared.name).values) == declared.state_size


@pytest.mark.parametrize("declared", SPECS, ids=lambda s: s.name)
def test_run_through_the_declaration(declared):
    """Two sources' worth of points, one second apart: every kernel runs on its fresh state."""
    t = np.array([0, 0, 10**6, 10**6, 2 * 10**6, 2 * 10**6], np.int64)
    src = np.array([0, 1] * 3, np.int64) % max(declared.sources or 2, 1)
    v = np.array([0.0, 1.0, 0.0, 3.0, 0.0, 4.0])
    size = t.size
    batch = Batch(t, src, v, ~np.isnan(v), np.zeros(declared.state_size), NO_TIME, {},
                  declared.sources or 2, 10**6, np.empty(size, np.int64), np.empty(size),
                  np.empty(size, np.bool_))
    count = declared.run(batch)
    assert 0 <= count <= size
    assert batch.state.shape == (declared.state_size,)
    assert (batch.last != NO_TIME) == (declared.bucketed and count > 0)


def test_source_rules_raise_invalid_arguments():
    counter = spec("counter_derivative")
    with pytest.raises(exceptions.InvalidOperatorArguments,
                       match="first source named 'reset' and the second unnamed"):
        counter.check_sources(["a", "b"], [None, None])
    with pytest.raises(exceptions.InvalidOperatorArguments, match="exactly two"):
        counter.check_sources(["a"], ["reset"])
    counter.check_sources(["a", "b"], ["reset", None])
    with pytest.raises(exceptions.InvalidOperatorArguments, match="distinct"):
        spec("sum").check_sources(["a", "a"], [None, None])
    with pytest.raises(exceptions.InvalidOperatorArguments, match="at least one"):
        spec("sum").check_sources([], [])
    with pytest.raises(exceptions.InvalidOperatorArguments, match="takes no arguments"):
        spec("derivative").check_args({"max_value": 1})
    with pytest.raises(exceptions.InvalidOperatorArguments, match="max_value"):
        counter.check_args({"max_value": -1})
    counter.check_args({"max_value": 256})
    counter.check_args({})
