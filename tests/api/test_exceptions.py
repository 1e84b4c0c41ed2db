"""behaviour §8: the exception hierarchy, and messages that name what was wrong."""

from __future__ import annotations

import math
import uuid

import pytest

from datastream import exceptions

from .helpers import EVER, G, at

HIERARCHY = {
    "StreamNotFound": (),
    "MultipleStreamsReturned": (),
    "InconsistentStreamConfiguration": (),
    "OutstandingDependenciesError": (),
    "UnsupportedDownsampler": (ValueError,),
    "UnsupportedGranularity": (ValueError,),
    "UnsupportedDeriveOperator": (ValueError,),
    "UnsupportedValueType": (TypeError,),
    "ReservedTagNameError": (ValueError,),
    "InvalidTimestamp": (ValueError,),
    "IncompatibleGranularities": (ValueError,),
    "IncompatibleTypes": (TypeError,),
    "AppendToDerivedStreamNotAllowed": (ValueError,),
    "InvalidOperatorArguments": (ValueError,),
    "LockExpiredMidMaintenance": (),
    "StreamAppendContended": (),
    "StreamAppendFailed": (),
    "StorageUnavailable": (),
}
WARNINGS = ["InvalidValueWarning", "InternalInconsistencyWarning",
            "DownsampleConsistencyNotGuaranteed"]


def test_hierarchy() -> None:
    assert issubclass(exceptions.DatastreamException, Exception)
    for name, bases in HIERARCHY.items():
        error = getattr(exceptions, name)
        assert issubclass(error, exceptions.DatastreamException), name
        for base in bases:
            assert issubclass(error, base), (name, base)
        instance = error("message")
        assert isinstance(instance, exceptions.DatastreamException)
        assert str(instance) == "message"
    assert not issubclass(exceptions.StreamNotFound, (ValueError, TypeError, KeyError))
    assert issubclass(exceptions.DatastreamWarning, RuntimeWarning)
    for name in WARNINGS:
        warning = getattr(exceptions, name)
        assert issubclass(warning, exceptions.DatastreamWarning), name
        assert issubclass(warning, Warning)
        assert not issubclass(warning, exceptions.DatastreamException)


def _message(call, error=exceptions.DatastreamException) -> str:
    with pytest.raises(error) as caught:
        call()
    return str(caught.value)


def test_messages_name_the_culprit(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    other = ds.ensure_stream({"a": 2}, {}, ["mean"], G.Seconds)
    derived = ds.ensure_stream({"a": 3}, {}, ["mean"], G.Seconds, derive_from=[stream_id],
                               derive_op="derivative")
    ds.append(stream_id, 1, at(10))
    missing = str(uuid.uuid4())

    assert missing in _message(lambda: ds.get_tags(missing), exceptions.StreamNotFound)
    assert missing in _message(lambda: ds.append(missing, 1), exceptions.StreamNotFound)
    assert "not-an-id" in _message(lambda: ds.get_data("not-an-id", G.Seconds, start=EVER),
                                   exceptions.StreamNotFound)
    assert stream_id in _message(lambda: ds.append(stream_id, 1, at(5)),
                                 exceptions.InvalidTimestamp)
    assert derived in _message(lambda: ds.append(derived, 1, at(20)),
                               exceptions.AppendToDerivedStreamNotAllowed)
    assert "fortnight" in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["mean"], "fortnight"),
        exceptions.UnsupportedGranularity)
    assert "average" in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["average"], G.Seconds),
        exceptions.UnsupportedDownsampler)
    assert "median" in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["median"], G.Seconds, value_type="graph"),
        exceptions.UnsupportedDownsampler)
    assert "texty" in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["count"], G.Seconds, value_type="texty"),
        exceptions.UnsupportedValueType)
    assert "bad__key" in _message(
        lambda: ds.ensure_stream({"b": 1}, {"bad__key": 1}, ["count"], G.Seconds),
        exceptions.ReservedTagNameError)
    assert "value_type" in _message(
        lambda: ds.update_tags(other, {"value_type": 1}), exceptions.ReservedTagNameError)
    assert "integral" in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["mean"], G.Seconds, derive_from=[other],
                                 derive_op="integral"),
        exceptions.UnsupportedDeriveOperator)
    assert stream_id in _message(
        lambda: ds.ensure_stream({"a": 1}, {}, ["max"], G.Seconds),
        exceptions.InconsistentStreamConfiguration)
    message = _message(lambda: ds.delete_streams({"a": 1}),
                       exceptions.OutstandingDependenciesError)
    assert stream_id in message or derived in message
    assert missing in _message(
        lambda: ds.ensure_stream({"b": 1}, {}, ["mean"], G.Seconds, derive_from=[missing],
                                 derive_op="sum"),
        exceptions.StreamNotFound)


def test_value_messages_name_the_value_or_stream(ds) -> None:
    stream_id = ds.ensure_stream({"a": 1}, {}, ["mean"], G.Seconds)
    for value, error in [(True, TypeError), ("seven", TypeError), (math.inf, ValueError),
                         ({"c": 1}, ValueError)]:
        message = _message(lambda value=value: ds.append(stream_id, value, at(0)), error)
        assert stream_id in message or repr(value) in message or str(value) in message, message


def test_multiple_streams_message_names_the_query(ds) -> None:
    ds.ensure_stream({"group": "g", "n": 1}, {}, ["mean"], G.Seconds)
    ds.ensure_stream({"group": "g", "n": 2}, {}, ["mean"], G.Seconds)
    message = _message(lambda: ds.ensure_stream({"group": "g"}, {}, ["mean"], G.Seconds),
                       exceptions.MultipleStreamsReturned)
    assert "group" in message
