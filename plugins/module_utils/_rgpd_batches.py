# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Reading the rows of a big export a batch at a time: batches bounded in bytes, optionally read ahead by a thread.

A table of 1 MB rows is read a few rows at a time, a table of small rows a thousand at a time (:class:`ByteBudget`).
Where the database works in another process, a second thread fetches the next batch while this one writes the last
one (:func:`prefetched`), holding at most a given number of bytes.
"""

from __future__ import annotations

import queue
import threading
import typing as t

# Export: the rows fetched at once are bounded by this many bytes of row text (and never more than the adapter's batch);
# the prefetch queue holds at most this many bytes too.
EXPORT_BATCH_BYTES = 4 * 1024 * 1024
# The first fetch of a table takes one row: its size sets the next fetches (a first batch of big rows would be big).
EXPORT_FIRST_BATCH = 1
# Most rows per fetch.
MOST_ROWS = 1000


def prefetched(batches: t.Iterator[t.Any], depth: int = 2, max_bytes: int | None = None,
               size: t.Callable[[t.Any], int] | None = None) -> t.Iterator[t.Any]:
    """Yield the items of ``batches``, read ahead by a thread holding at most ``depth`` items.

    With ``max_bytes`` and ``size`` (the bytes of an item, called by the reading thread as soon as it has the item),
    the items waiting in the queue also hold at most ``max_bytes`` (or one item, when a single item is larger).
    The database driver releases the GIL while it waits for the server, so the server produces the next rows while
    this thread encodes and compresses the previous ones. When the
    consumer stops early (an error), the reading thread stops and closes ``batches`` itself before this returns.
    """
    items: queue.Queue[tuple[str, t.Any, int]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    room = threading.Condition()
    queued = [0]

    def put(item: tuple[str, t.Any, int]) -> bool:
        if max_bytes is not None:
            with room:
                while not stop.is_set() and queued[0] and queued[0] + item[2] > max_bytes:
                    room.wait(0.05)
                queued[0] += item[2]
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(('batch', batch, size(batch) if size is not None else 0)):
                    return
            put(('end', None, 0))
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            put(('error', exc, 0))
        finally:
            close = getattr(batches, 'close', None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name='dihya-rgpd-reader', daemon=True)
    reader.start()
    try:
        while True:
            kind, item, nbytes = items.get()
            if nbytes:
                with room:
                    queued[0] -= nbytes
                    room.notify_all()
            if kind == 'end':
                return
            if kind == 'error':
                raise item
            yield item
            item = None
    finally:
        stop.set()
        reader.join()


def row_bytes(row: t.Sequence[t.Any]) -> int:
    """About how many bytes a fetched row holds (its texts and blobs, plus a little per value)."""
    return sum(len(value) if isinstance(value, (str, bytes, bytearray, memoryview)) else 16 for value in row) + 64


class ByteBudget:
    """How many rows to fetch next so that a batch holds about ``budget`` bytes, whatever the size of the rows.

    The first fetch takes ``first`` rows; after that, ``budget`` divided by the largest row seen so far (at least one
    row, at most ``most``). :meth:`measure` is called on every batch as soon as it is fetched.
    """

    def __init__(self, budget: int | None = None, first: int | None = None, most: int = MOST_ROWS) -> None:
        self.budget = EXPORT_BATCH_BYTES if budget is None else budget
        self.first = EXPORT_FIRST_BATCH if first is None else first
        self.most = most
        self.largest = 0

    def __call__(self) -> int:
        if not self.largest:
            return self.first
        return max(1, min(self.most, self.budget // self.largest))

    def measure(self, rows: t.Sequence[t.Sequence[t.Any]]) -> int:
        total = 0
        for row in rows:
            nbytes = row_bytes(row)
            total += nbytes
            self.largest = max(self.largest, nbytes)
        return total


def measured(batches: t.Iterator[t.Sequence[t.Sequence[t.Any]]], budget: ByteBudget) -> t.Iterator[t.Any]:
    """The batches, each measured by ``budget`` before the next one is fetched."""
    for rows in batches:
        budget.measure(rows)
        yield rows
        del rows


def byte_bounded(batches: t.Iterator[t.Any], budget: ByteBudget, read_ahead: bool) -> t.Iterator[t.Any]:
    """The batches of a query fetched with ``budget``, measured as they come; read ahead by a thread with ``read_ahead``."""
    if read_ahead:
        return prefetched(batches, max_bytes=2 * EXPORT_BATCH_BYTES, size=budget.measure)
    return measured(batches, budget)
