"""Failures every backend reports alike: a commit naming an unknown stream stores nothing and
raises StreamAppendFailed (storage/base.py: "whatever went wrong"); a closed storage raises
StorageUnavailable from every call but commit (behaviour §8)."""

from __future__ import annotations

import pytest

from datastream import exceptions
from datastream.storage.base import MetaUpdate, WriteBatch
from tests.storage.rows import add_stream, level_rows, new_id, raw_pairs, raw_rows, snapshot
from tests.storage.test_unavailable import assert_unavailable, seeded


def prepare(storage) -> tuple[str, str]:
    a = add_stream(storage, {"n": 1}, {"latest": 1})
    b = add_stream(storage, {"n": 2}, {"latest": 1})
    storage.commit(WriteBatch(raw={a: raw_rows([1], ints=[1])},
                              levels={"S": level_rows(a, [0], [1])}))
    return a, b


def big_batch(a: str, b: str) -> WriteBatch:
    """A batch touching everything: raw, a new level and a written one, meta, clears."""
    return WriteBatch(
        raw={a: raw_rows([2, 3], ints=[2, 3]), b: raw_rows([5], floats=[0.5], kinds=[2])},
        levels={"m": level_rows(a, [0], [2]), "S": level_rows(a, [10], [4])},
        meta={a: MetaUpdate(set={"flag": 1}, max={"latest": 3}), b: MetaUpdate(max={"latest": 5})},
        clear_levels=[a],
    )


def test_unknown_stream_fails_the_whole_batch(factory):
    storage = factory()
    a, b = prepare(storage)
    before = snapshot(storage, [a, b])
    unknown = new_id()
    in_levels = big_batch(a, b)
    in_levels.levels["S"] = level_rows(unknown, [10], [1])
    in_raw = big_batch(a, b)
    in_raw.raw[unknown] = raw_rows([1])
    for batch in (in_levels, in_raw, WriteBatch(raw={unknown: raw_rows([1])}),
                  WriteBatch(meta={unknown: MetaUpdate(set={"x": 1})})):
        with pytest.raises(exceptions.DatastreamException, match=unknown):
            storage.commit(batch)
        assert snapshot(storage, [a, b]) == before
    storage.commit(WriteBatch(raw={a: raw_rows([7], ints=[7])}))  # still usable
    assert raw_pairs(factory(), a) == [(1, 1), (7, 7)]


def test_a_commit_to_an_unknown_stream_raises_stream_append_failed(factory):
    storage = factory()
    a = add_stream(storage, {"n": 1})
    with pytest.raises(exceptions.StreamAppendFailed):
        storage.commit(WriteBatch(raw={a: raw_rows([1]), new_id(): raw_rows([1])}))
    assert raw_pairs(storage, a) == []


def test_a_closed_storage_is_unavailable(factory):
    """Records may be cached in process: a closed store must not keep serving them."""
    storage = factory()
    stream_id = seeded(storage)
    storage.close()
    storage.close()  # idempotent
    assert_unavailable(storage, stream_id, "closed")
    assert factory().read_raw(stream_id, None, None).column("i").to_pylist() == [1]
