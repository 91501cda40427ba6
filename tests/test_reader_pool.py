"""The reader pool shared by scan and the daemon, driven the daemon's way: items
submitted one at a time, results taken without waiting, in order. Real worker
processes throughout (scan's way is tested through ordered_map in test_scan)."""

from __future__ import annotations

import time

import pytest
from helpers import double_or_die, double_or_hang

from watcherd.reader_pool import ReaderPool


def drain(readers: ReaderPool, deadline: float = 60.0) -> list:
    """Every result, polling `done()` as an event loop does (with a deadline)."""
    out: list = []
    end = time.monotonic() + deadline
    while len(readers) and time.monotonic() < end:
        out += readers.done()
        time.sleep(0.01)
    assert not len(readers), "the pool never finished"
    return out


def test_results_come_back_in_order_with_their_tags():
    readers = ReaderPool(double_or_die, 2, on_crash=lambda i: -i)
    try:
        for i in range(10):
            readers.submit([i], tag=f"t{i}")
        assert drain(readers) == [(f"t{i}", i * 2) for i in range(10)]
    finally:
        readers.close()


def test_a_crash_costs_only_its_item_and_the_pool_goes_on():
    readers = ReaderPool(double_or_die, 2, on_crash=lambda i: -i)
    try:
        for i in range(10, 17):
            readers.submit([i], tag=i)
        assert [r for _, r in drain(readers)] == [-13 if i == 13 else i * 2 for i in range(10, 17)]
        readers.submit([20])  # a new pool after the broken one
        assert drain(readers) == [(None, 40)]
    finally:
        readers.close()


@pytest.mark.parametrize("chunk", [1, 3])
def test_a_stuck_item_is_given_up_on_and_the_ones_behind_it_are_read(chunk):
    """A lone stuck item is given up on at once; one among several in a hand-over is
    found by reading them again alone. The items behind go on in a new pool."""
    items = [11, 12, 13, 14, 15, 16]
    readers = ReaderPool(
        double_or_hang, 2, on_crash=lambda i: -i, timeout=1, on_timeout=lambda i: None
    )
    try:
        for k in range(0, len(items), chunk):
            readers.submit(items[k : k + chunk])
        assert readers.deadline(time.monotonic()) is not None
        got = [r for _, r in drain(readers)]
        assert got == [None if i == 13 else i * 2 for i in items]
    finally:
        readers.close()


def test_an_error_in_the_function_is_the_items_result_when_asked():
    readers = ReaderPool(int, 1, on_crash=lambda i: -1, on_error=lambda i, e: type(e).__name__)
    try:
        readers.submit(["7"])
        readers.submit(["seven"])
        assert drain(readers) == [(None, 7), (None, "ValueError")]
    finally:
        readers.close()


def test_idle_workers_are_let_go_and_come_back_when_needed():
    readers = ReaderPool(double_or_die, 1, on_crash=lambda i: -i)
    try:
        readers.submit([1])
        assert drain(readers) == [(None, 2)]
        readers.release()
        assert not readers.running
        readers.submit([2])
        assert drain(readers) == [(None, 4)]
    finally:
        readers.close()
