"""``read_ahead``: the import's background reader keeps order, errors and closing."""

from __future__ import annotations

import threading

import pytest

from inbedder_retrieval.read_ahead import read_ahead


def test_items_come_in_order_and_all_of_them():
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(read_ahead([])) == []


def test_an_error_of_the_source_is_raised_after_the_items_before_it():
    def source():
        yield from range(5)
        raise ValueError("shard 3 is truncated")

    got = []
    with pytest.raises(ValueError, match="shard 3 is truncated"):
        for item in read_ahead(source()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_stopping_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    ahead = read_ahead(source(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    before = threading.active_count()
    ahead.close()
    assert closed.wait(5) and threading.active_count() < before
    assert not any(thread.name == "inbedder-read-ahead" for thread in threading.enumerate())
