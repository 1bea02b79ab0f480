# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Writes cut short by a full disk, one or several in a row, on a real small file system (a tmpfs of 256 KiB).

The free space is handed out one page at a time by shrinking a filler file, so that each write gets only part of its
record onto the disk, as a real full disk does. The verifier must call each incomplete line a crash, never tampering,
whatever the number of cut writes in a row, and the writer must recover from all of them once space is freed.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit, _audit_log
from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditError, AuditLog, verify
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, event, settings

PAGE = 4096
# A record of about 12 KB: more than the one page plus the end of the last page a write can get, so every cut lands inside it.
PAD = 'x' * 12000
CRASH = 'truncated record (crash)'


class SmallDisk:
    """A tmpfs mounted for the test, and a filler file that takes all its free space but what the test hands out."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.filler = root / 'filler'
        self.size = 0

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, b'\0' * PAGE)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        finally:
            os.close(fd)
        self.size = self.filler.stat().st_size

    def free(self, pages: int = 1) -> None:
        self.size = max(0, self.size - pages * PAGE)
        os.truncate(self.filler, self.size)

    def free_all(self) -> None:
        self.filler.unlink()
        self.size = 0


@pytest.fixture(name='disk')
def fixture_disk(tmp_path: pathlib.Path) -> t.Iterator[SmallDisk]:
    mount = tmp_path / 'fs'
    mount.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', str(mount)],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here (needs root): {proc.stderr.strip()}')
    try:
        yield SmallDisk(mount)
    finally:
        subprocess.run(['umount', str(mount)], capture_output=True, timeout=30, check=True)


def big(config, n: int) -> dict:
    return event(config, details={'n': n, 'pad': PAD})


def assert_crashes_only(path: pathlib.Path, records: int, crash_lines: list[int], tail: bool) -> _audit.VerifyReport:
    report = verify(str(path), KEY)
    assert report.ok, report.error
    assert report.error is None and report.records == records and report.last_seq == records
    assert [item['line'] for item in report.notes] == crash_lines
    assert all(item['reason'].startswith(CRASH) for item in report.notes)
    assert report.truncated_tail is tail
    return report


@pytest.mark.parametrize('fsync', ['always', 'batch'])
@pytest.mark.parametrize('cuts', [1, 2, 3])
def test_writes_cut_short_in_a_row_then_space_freed(disk, cuts, fsync):
    config = settings(fsync=fsync)
    path = disk.root / 'audit.log'
    log = AuditLog(str(path), config)
    log.append([big(config, 0), big(config, 1)])
    disk.fill()
    for cut in range(1, cuts + 1):
        disk.free()
        before = path.stat().st_size
        with pytest.raises(AuditError, match='No space left on device'):
            log.append([big(config, 10 + cut)])
        assert path.stat().st_size > before, 'the write got part of its record onto the disk'
        # After each cut write: one incomplete line per cut write, all crashes, none tampering.
        assert_crashes_only(path, 2, list(range(3, 3 + cut)), tail=True)
    # A full disk that gives nothing at all adds no line.
    with pytest.raises(AuditError, match='No space left on device'):
        log.append([big(config, 99)])
    assert_crashes_only(path, 2, list(range(3, 3 + cuts)), tail=True)

    disk.free_all()
    written = log.append([big(config, 100), big(config, 101)])
    recovered = written[0]['dihya']['audit']['recovered']
    assert len(recovered) == cuts and 'recovered' not in written[1]['dihya']['audit']
    report = assert_crashes_only(path, 4, list(range(3, 3 + cuts)), tail=False)
    assert {item['reason'] for item in report.notes} == {f'{CRASH}: recovered by the record at line {3 + cuts}'}
    # Writing carries on as usual afterwards.
    log.append([big(config, 102)])
    assert_crashes_only(path, 5, list(range(3, 3 + cuts)), tail=False)


def test_batch_cut_inside_its_second_record(disk):
    """A batch whose first record reached the disk whole and whose second was cut."""
    config = settings(fsync='batch')
    path = disk.root / 'audit.log'
    log = AuditLog(str(path), config)
    log.append([event(config)])
    disk.fill()
    disk.free(4)
    with pytest.raises(AuditError, match='No space left on device'):
        log.append([big(config, 1), big(config, 2)])
    report = assert_crashes_only(path, 2, [3], tail=True)
    assert report.last_seq == 2
    disk.free_all()
    written = log.append([event(config)])
    assert written[0]['dihya']['audit']['seq'] == 3 and len(written[0]['dihya']['audit']['recovered']) == 1
    assert_crashes_only(path, 3, [3], tail=False)


def test_recovery_cut_short_then_rotation(disk):
    """Two cut writes, the second of them a recovery, then the file is rotated before any write got through."""
    config = settings()
    path = disk.root / 'audit.log'
    log = AuditLog(str(path), config)
    log.append([event(config)])
    disk.fill()
    for dummy in range(2):
        disk.free()
        with pytest.raises(AuditError):
            log.append([big(config, 1)])
    path.rename(disk.root / 'audit.log.1')
    disk.free_all()
    log.append([event(config)])
    report = verify(str(path), KEY)
    assert report.ok and not report.truncated_tail and report.records == 3  # record, checkpoint, record
    assert [(item['file'], item['line']) for item in report.notes] == [(str(path) + '.1', 2), (str(path) + '.1', 3)]


# The same sequences without a file system of their own: the writes are cut where a full disk would cut them.

@pytest.mark.parametrize('cuts', [1, 2, 3])
@pytest.mark.parametrize('given', [0, 1, 2, 700])
def test_cut_writes_of_any_length(tmp_path, monkeypatch, cuts, given):
    """Each write gets ``given`` bytes onto the disk, then ENOSPC (0: nothing; 1: just the new line or the record's first byte)."""
    config = settings()
    path = tmp_path / 'audit.log'
    log = AuditLog(str(path), config)
    log.append([event(config), event(config)])
    real_write_all = _audit_log._write_all

    def full_disk(fd: int, data: bytes) -> None:
        if given:
            os.write(fd, data[:given])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_audit_log, '_write_all', full_disk)
    for dummy in range(cuts):
        with pytest.raises(AuditError, match='No space left on device'):
            log.append([event(config, details={'pad': 'x' * 1000})])  # more than ``given`` bytes
        report = verify(str(path), KEY)
        assert report.ok, report.error
        assert all(item['reason'].startswith(CRASH) for item in report.notes)
    monkeypatch.setattr(_audit_log, '_write_all', real_write_all)
    written = log.append([event(config)])
    report = verify(str(path), KEY)
    assert report.ok and report.records == 3 and not report.truncated_tail, report.error
    assert all(item['reason'].startswith(f'{CRASH}: recovered by the record') for item in report.notes)
    assert len(written[0]['dihya']['audit'].get('recovered', [])) == len(report.notes)
