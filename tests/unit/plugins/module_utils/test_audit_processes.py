# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Audit log writers as real concurrent processes, and writers killed with SIGKILL."""

from __future__ import annotations

import collections
import json
import os
import signal
import time

from ansible_collections.dihya.ops.plugins.module_utils._audit import verify
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, memory_folder, start_writer, stop, wait_for_size, write


def run_writers(path, writers, count, batch, fsync, timeout=60):
    processes = [start_writer(path, writer, count, batch, fsync) for writer in range(writers)]
    try:
        deadline = time.monotonic() + timeout
        for process in processes:
            assert process.wait(timeout=max(0.1, deadline - time.monotonic())) == 0
    finally:
        for process in processes:
            stop(process)


def check_writers(path, writers, count):
    """Every line is a whole record; each writer's events are all there, in its order."""
    seen = collections.defaultdict(list)
    with open(path, 'rb') as handle:
        for number, line in enumerate(handle, start=1):
            record = json.loads(line)
            assert record['dihya']['audit']['seq'] == number
            details = record['dihya']['details']
            seen[details['writer']].append(details['n'])
    assert sorted(seen) == list(range(writers))
    for numbers in seen.values():
        assert numbers == list(range(count))


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    # On tmpfs when there is one: what is tested is the locking between writers, not the disk, and
    # 800 fsyncs made one after the other under the lock would only measure the disk.
    with memory_folder(tmp_path) as folder:
        path = folder / 'audit.log'
        started = time.monotonic()
        run_writers(path, writers=8, count=2000, batch=20, fsync='batch')
        elapsed = time.monotonic() - started
        report = verify(str(path), KEY)
        assert report.ok and report.records == 16000 and report.last_seq == 16000 and not report.notes, report.error
        check_writers(path, 8, 2000)
    assert elapsed < 60


def test_concurrent_writers_fsync_every_record(tmp_path):
    path = tmp_path / 'audit.log'
    run_writers(path, writers=4, count=100, batch=1, fsync='always')
    report = verify(str(path), KEY)
    assert report.ok and report.records == 400
    check_writers(path, 4, 100)


def test_sigkill_while_writing_then_resume(tmp_path):
    """Writers killed at random points: at most an incomplete last record, and the next writer carries on."""
    path = tmp_path / 'audit.log'
    truncated = 0
    rounds = 0
    while rounds < 4 or (not truncated and rounds < 12):
        size = path.stat().st_size if path.exists() else 0
        # Every other writer makes short writes, so that the kill lands in the middle of a record.
        process = start_writer(path, rounds, count=0, batch=100 + 150 * (rounds % 2), fsync='batch', chunked=rounds % 2 == 1)
        try:
            wait_for_size(path, size + 60000)
            time.sleep(0.013 * rounds)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
        finally:
            stop(process)
        rounds += 1
        report = verify(str(path), KEY)
        assert report.ok, report.error
        assert all(item['reason'].startswith('truncated record (crash)') for item in report.notes)
        if report.truncated_tail:
            truncated += 1
            assert not path.read_bytes().endswith(b'\n')
            assert report.notes[-1]['line'] == path.read_bytes().count(b'\n') + 1
    assert truncated, 'no kill landed in the middle of a record'
    records_before = verify(str(path), KEY).records
    write(path, 5)
    report = verify(str(path), KEY)
    assert report.ok and not report.truncated_tail and report.records == records_before + 5 and report.last_seq == report.records
    # The same with an incomplete record cut at a random byte, as a power loss may leave it.
    data = path.read_bytes()
    last = data[:-1].rsplit(b'\n', 1)[1]
    for cut in (1, len(last) // 3, len(last) - 1):
        path.write_bytes(data + last[:cut])
        report = verify(str(path), KEY)
        assert report.ok and report.truncated_tail and report.records == records_before + 5
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == records_before + 6 and not report.truncated_tail
    assert report.notes[-1]['reason'] == f"truncated record (crash): recovered by the record at line {report.notes[-1]['line'] + 1}"
    assert os.path.getsize(path) > 0
