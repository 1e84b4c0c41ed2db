"""Derived streams the kernels' float64 would round: high-accuracy (Decimal) derived streams and
integers beyond 2**53 take the exact operators, which mirror the kernels step for step."""

from __future__ import annotations

import datetime
import decimal
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datastream
from datastream import Granularity as G
from datastream.engine import exact_operators

UTC = datetime.timezone.utc
T0 = datetime.datetime(2000, 1, 1, tzinfo=UTC)
HA = {"high_accuracy": True}
DIGITS = decimal.Context(prec=64)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def outputs(ds, stream_id):
    return [(p["t"], p["v"]) for p in ds.get_data(stream_id, G.Seconds, start=T0)]


def derived_streams(ds, run=0):
    """Sources a and b and one derived stream per operator (tagged ``run``: a backend
    factory may hand out one shared database)."""
    a = ds.ensure_stream({"n": "a", "run": run}, {}, ["mean"], G.Seconds)
    b = ds.ensure_stream({"n": "b", "run": run}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "reset", "run": run}, {}, ["count"], G.Seconds,
                             derive_from=a, derive_op="counter_reset", value_type="nominal")
    made = {
        "sum": ds.ensure_stream({"n": "sum", "run": run}, {}, ["mean"], G.Seconds,
                                derive_from=[a, b], derive_op="sum"),
        "derivative": ds.ensure_stream({"n": "d", "run": run}, {}, ["mean"], G.Seconds,
                                       derive_from=a, derive_op="derivative"),
        "counter_reset": reset,
        "counter_derivative": ds.ensure_stream(
            {"n": "cd", "run": run}, {}, ["mean"], G.Seconds, derive_op="counter_derivative",
            derive_from=[{"stream": reset, "name": "reset"}, a],
            derive_args={"max_value": 1000}),
    }
    return a, b, made


def finish(ds, made):
    """Flush, check with verify(), close; each derived stream's outputs."""
    ds.flush()
    results = {op: outputs(ds, sid) for op, sid in made.items()}
    assert not ds.verify()
    ds.close()
    return results


POINT = st.tuples(st.integers(0, 40), st.sampled_from(["a", "b"]),
                  st.one_of(st.none(), st.integers(-50, 1000)), st.booleans())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(POINT, max_size=40))
def test_the_exact_operators_give_the_kernels_results(monkeypatch, points):
    """With every integer input sent down the exact path, small integers (which float64 holds
    exactly) give the kernels' outputs, whatever the batching and late points."""
    results = []
    for everything_exact in (False, True):
        with monkeypatch.context() as patch:
            if everything_exact:
                patch.setattr(exact_operators, "ROUNDED_INT", -1)
            ds = datastream.Datastream(clock=lambda: at(3600))
            a, b, made = derived_streams(ds)
            for second, name, value, flush in sorted(points, key=lambda p: p[0]):
                ds.append(a if name == "a" else b, value, at(second), check_timestamp=False)
                if flush:
                    ds.flush()
            results.append(finish(ds, made))
    assert results[0] == results[1]


def test_run_mirrors_each_kernel_on_a_spec_example():
    """behaviour §7's derivative example through the exact loop."""
    import numpy as np

    t = np.array([0, 1, 2, 3, 4, 10, 11], dtype=np.int64) * 1_000_000
    times, values = exact_operators.run("derivative", t, np.zeros(7, np.int64),
                                        [21, 25, 28, 32, 25, 70, 74], {}, 1, 1_000_000, None,
                                        decimal=False)
    assert times == list(t[1:]) and values == [4.0, 3.0, 4.0, -7.0, 7.5, 4.0]


def test_64_bit_counters_keep_every_unit(ds):
    """Readings one apart beyond 2**53 are different numbers to every operator."""
    a, b, made = derived_streams(ds)
    big = 2**60
    for second, value in enumerate([big + 3, big + 2, big + 5, big + 6]):
        ds.append(a, value, at(second))
        ds.append(b, 2**53 + 1 if second == 3 else 0, at(second))
    ds.flush()
    resets = outputs(ds, made["counter_reset"])
    assert [t for t, _ in resets] == [at(1)]
    assert [v for _, v in outputs(ds, made["derivative"])] == [-1.0, 3.0, 1.0]
    # the reset at :01 forgets :00; :02 and :03 are the counter's own steps
    assert [v for _, v in outputs(ds, made["counter_derivative"])] == [3.0, 1.0]
    sums = outputs(ds, made["sum"])
    assert sums[0][1] == big + 3 and sums[3][1] == big + 6 + 2**53 + 1
    assert not ds.verify()


def test_a_wrapping_64_bit_counter_wraps_exactly(ds):
    counter = ds.ensure_stream({"n": "octets"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "r"}, {}, ["count"], G.Seconds, derive_from=counter,
                             derive_op="counter_reset", value_type="nominal")
    rate = ds.ensure_stream({"n": "rate"}, {}, ["mean"], G.Seconds,
                            derive_from=[{"stream": reset, "name": "reset"}, {"stream": counter}],
                            derive_op="counter_derivative",
                            derive_args={"max_value": 2**63 - 1})
    ds.append(counter, 2**63 - 11, at(0))
    ds.append(counter, 2**63 - 1, at(1))
    ds.flush()
    ds.append(counter, 2**53 + 9, at(2))  # a decrease, not a reset stream value: counted as
    ds.flush()  # a wrap by counter_derivative (the reset stream marks it too)
    assert [v for _, v in outputs(ds, rate)] == [10.0]
    assert not ds.verify()


def test_high_accuracy_derived_streams_compute_in_decimal(ds):
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds, value_type_options=HA)
    b = ds.ensure_stream({"n": "b"}, {}, ["mean"], G.Seconds, value_type_options=HA)
    total = ds.ensure_stream({"n": "s"}, {}, ["mean"], G.Seconds, derive_from=[a, b],
                             derive_op="sum", value_type_options=HA)
    slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds, derive_from=a,
                             derive_op="derivative", value_type_options=HA)
    ds.append(a, Decimal("0.1"), at(0))
    ds.append(b, Decimal("0.2"), at(0))
    ds.append(a, Decimal("0.1000000000000000000001"), at(1))
    ds.append(b, 0.5, at(1))  # a float joins by its decimal form
    ds.flush()
    ds.append(a, Decimal("1") / 3, at(4))  # a later batch: replayed from the point before
    ds.append(b, 1, at(4))
    ds.flush()
    assert [v for _, v in outputs(ds, total)] == [
        Decimal("0.3"), Decimal("0.6000000000000000000001"),
        DIGITS.add(Decimal("1") / 3, 1)]
    expected_last = DIGITS.divide(DIGITS.subtract(Decimal("1") / 3,
                                                  Decimal("0.1000000000000000000001")), 3)
    assert [v for _, v in outputs(ds, slope)] == [Decimal("1E-22"), expected_last]
    assert all(isinstance(v, Decimal) for _, v in outputs(ds, slope))
    assert not ds.verify()


@pytest.mark.parametrize("batched", [False, True])
def test_exact_results_do_not_depend_on_batching(backend_factory, batched):
    """One flush per point or one for all, and a late point re-derived: the same outputs."""
    results = []
    for late_first in (False, True):
        ds = datastream.Datastream(backend_factory(), clock=lambda: at(3600))
        a, b, made = derived_streams(ds, run=int(late_first))
        points = [(s, 2**60 + (7 * s) % 5) for s in range(8)]
        if late_first:
            points = points[1:] + points[:1]
        for second, value in points:
            ds.append(a, value, at(second), check_timestamp=False)
            ds.append(b, second, at(second), check_timestamp=False)
            if not batched:
                ds.flush()
        results.append(finish(ds, made))
    assert results[0] == results[1]


# -- found by probing the exact path ---------------------------------------------------------


def test_a_rounded_value_in_the_carried_state_is_replayed_exactly(ds):
    """2**53 + 1 then 2**53 flushed apart: the second batch holds no integer beyond 2**53,
    but the float state does (rounded), so the batch replays from the first point exactly."""
    a, b, made = derived_streams(ds)
    results = []
    for run, flush_each in enumerate((False, True)):
        a, b, made = derived_streams(ds, run=run)
        for second, value in enumerate([2**53 + 1, 2**53]):
            ds.append(a, value, at(second))
            ds.append(b, 0, at(second))
            if flush_each:
                ds.flush()
        ds.flush()
        results.append({op: outputs(ds, sid) for op, sid in made.items()})
    assert results[0] == results[1]
    assert [t for t, _ in results[1]["counter_reset"]] == [at(1)]
    assert [v for _, v in results[1]["derivative"]] == [-1.0]
    assert not ds.verify()


def test_a_sums_type_never_depends_on_the_path(ds):
    """Small integer sums are floats, as the kernels give them, even in a batch computed
    exactly; only a sum float64 cannot hold stays an int."""
    a, b, made = derived_streams(ds)
    for second, (x, y) in enumerate([(3, 0), (2**60 + 1, 0), (3, 4)]):
        ds.append(a, x, at(second))
        ds.append(b, y, at(second))
    ds.flush()
    sums = [v for _, v in outputs(ds, made["sum"])]
    assert sums == [3.0, 2**60 + 1, 7.0]
    assert [type(v) for v in sums] == [float, int, float]


def test_high_accuracy_sources_are_compared_and_subtracted_exactly(ds):
    counter = ds.ensure_stream({"n": "c"}, {}, ["mean"], G.Seconds, value_type_options=HA)
    reset = ds.ensure_stream({"n": "r"}, {}, ["count"], G.Seconds, derive_from=counter,
                             derive_op="counter_reset", value_type="nominal")
    slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds, derive_from=counter,
                             derive_op="derivative")
    for second, value in enumerate(["100000000000000000001", "100000000000000000000",
                                    "100000000000000000002.5"]):
        ds.append(counter, Decimal(value), at(second))
    ds.flush()
    assert [t for t, _ in outputs(ds, reset)] == [at(1)]
    assert [v for _, v in outputs(ds, slope)] == [-1.0, 2.5]
    assert not ds.verify()


def test_a_high_accuracy_bucket_without_a_sum_is_a_null_input(ds):
    """A pre-aggregated point without its sum makes a level bucket with no mean: a null to a
    derivative taken from that level (it restarts), and no crash for counter_derivative."""
    a = ds.ensure_stream({"n": "a"}, {}, ["mean"], G.Seconds, value_type_options=HA)
    level = {"stream": a, "granularity": "10seconds"}
    slope = ds.ensure_stream({"n": "d"}, {}, ["mean"], G.Seconds10, derive_from=[level],
                             derive_op="derivative", value_type_options=HA)
    uptime = ds.ensure_stream({"n": "u"}, {}, ["mean"], G.Seconds)
    resets = ds.ensure_stream({"n": "cr"}, {}, ["count"], G.Seconds10, value_type="nominal",
                              derive_from=[{"stream": uptime, "granularity": "10seconds"}],
                              derive_op="counter_reset")
    rate = ds.ensure_stream({"n": "cd"}, {}, ["mean"], G.Seconds10, value_type_options=HA,
                            derive_from=[{"stream": resets, "name": "reset"}, level],
                            derive_op="counter_derivative", derive_args={"max_value": 100})
    for second in (0, 12, 25, 35):
        ds.append(uptime, second, at(second))
    for second, value in [(0, 1), (11, {"c": 2, "s": None, "m": 1.5}), (12, 2), (25, 5),
                          (35, 7)]:
        ds.append(a, value, at(second))
    ds.downsample_streams(until=at(100))
    slopes = [(p["t"], p["v"]) for p in ds.get_data(slope, G.Seconds10, start=T0)]
    assert slopes[0] == (at(10), None)
    assert all(v is None or isinstance(v, Decimal) for _, v in slopes)
    assert all(v is None or isinstance(v, Decimal)
               for _, v in [(p["t"], p["v"]) for p in ds.get_data(rate, G.Seconds10, start=T0)])
    assert not ds.verify()


@pytest.mark.parametrize("high_accuracy", [False, True])
def test_an_integral_float_max_value_wraps_by_the_integer_it_holds(ds, high_accuracy):
    """max_value=2.0**64 (no int argument can give it) wraps 2**63 - 1 → 5 exactly."""
    counter = ds.ensure_stream({"n": "c"}, {}, ["mean"], G.Seconds)
    reset = ds.ensure_stream({"n": "r"}, {}, ["count"], G.Seconds, derive_from=counter,
                             derive_op="counter_reset", value_type="nominal")
    options = HA if high_accuracy else {}
    silent = ds.ensure_stream({"n": "never"}, {}, ["count"], G.Seconds, value_type="nominal")
    rate = ds.ensure_stream({"n": "rate"}, {}, ["mean"], G.Seconds, value_type_options=options,
                            derive_from=[{"stream": silent, "name": "reset"}, counter],
                            derive_op="counter_derivative", derive_args={"max_value": 2.0**64})
    ds.append(counter, 2**63 - 1, at(0))
    ds.append(counter, 5, at(1))
    ds.flush()
    assert reset
    wrapped = 2**64 - (2**63 - 1) + 5
    assert [v for _, v in outputs(ds, rate)] == [Decimal(wrapped) if high_accuracy
                                                 else float(wrapped)]
    assert not ds.verify()
