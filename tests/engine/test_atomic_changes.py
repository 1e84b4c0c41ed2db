"""Creating and deleting a derived stream is one commit with its sources' contributes_to."""

from __future__ import annotations

import pytest

import datastream
from datastream import exceptions
from datastream.backends import duckdb
from tests.engine.failing import FailingStorage

G = datastream.Granularity


@pytest.fixture
def failing():
    storage = FailingStorage(duckdb.Backend())
    ds = datastream.Datastream(storage)
    yield storage, ds
    storage.fail = False
    ds.close()


def test_failed_creation_of_a_derived_stream_leaves_nothing(failing):
    storage, ds = failing
    source = ds.ensure_stream({"n": "src"}, {}, [], G.Seconds)
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.ensure_stream({"n": "d"}, {}, [], G.Seconds, derive_from=[source],
                         derive_op="derivative")
    storage.fail = False
    assert len(ds.find_streams({"n": "d"})) == 0
    assert "contributes_to" not in ds.get_tags(source)
    ds.delete_streams({"n": "src"})  # not held back by a dependency that does not exist
    assert len(ds.find_streams()) == 0


def test_failed_deletion_of_a_derived_stream_changes_nothing(failing):
    storage, ds = failing
    source = ds.ensure_stream({"n": "src"}, {}, [], G.Seconds)
    derived = ds.ensure_stream({"n": "d"}, {}, [], G.Seconds, derive_from=[source],
                               derive_op="derivative")
    storage.fail = True
    with pytest.raises(exceptions.StreamAppendFailed):
        ds.delete_streams({"n": "d"})
    storage.fail = False
    assert ds.get_tags(source)["contributes_to"] == {derived: {"op": "derivative", "args": {}}}
    assert ds.get_tags(derived)["derived_from"]["stream_ids"] == [source]
    ds.delete_streams({"n": "d"})
    assert "contributes_to" not in ds.get_tags(source)


def test_a_dangling_dependency_does_not_block_deleting_the_source(failing):
    """Stores written by older versions may hold contributes_to entries of streams that no
    longer exist: they protect nothing."""
    storage, ds = failing
    source = ds.ensure_stream({"n": "src"}, {}, [], G.Seconds)
    record = storage.get_stream(source)
    record.meta["contributes_to"] = {"5d1f6a7c-1111-4222-8333-944455556666": {"op": "sum",
                                                                               "args": {}}}
    from datastream.storage.base import MetaUpdate, WriteBatch

    storage.commit(WriteBatch(meta={source: MetaUpdate(set={"contributes_to":
                                                            record.meta["contributes_to"]})}))
    ds.delete_streams({"n": "src"})
    assert len(ds.find_streams()) == 0
