# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The audit chain across rotated files, as logrotate leaves them (numbered, dated, compressed)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._audit import CHECKPOINT_ACTION, AuditError, AuditLog, rotated_files, verify
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, settings, write


def lines_of(path):
    return path.read_bytes().splitlines()


def rotate(path, number=1):
    """What logrotate does without copytruncate: shift the numbered files, rename the live one to .1."""
    for index in range(number, 0, -1):
        for suffix in ('', '.gz'):
            older = path.with_name(f'{path.name}.{index}{suffix}')
            if older.exists():
                older.rename(path.with_name(f'{path.name}.{index + 1}{suffix}'))
    path.rename(path.with_name(f'{path.name}.1'))


def gzip_file(path):
    with open(path, 'rb') as source, gzip.open(str(path) + '.gz', 'wb') as target:
        target.write(source.read())
    path.unlink()


def test_rotated_file_is_linked_by_a_checkpoint(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 50, batch=10)
    last_old = lines_of(path)[-1]
    rotate(path)
    written = write(path, 50, batch=10)
    assert written[0]['dihya']['audit']['seq'] == 52  # seq 51 is the checkpoint
    checkpoint = json.loads(lines_of(path)[0])
    assert checkpoint['event']['action'] == CHECKPOINT_ACTION
    assert checkpoint['dihya']['audit']['prev'] == hashlib.sha256(last_old).hexdigest()
    assert checkpoint['dihya']['checkpoint'] == {'file': 'audit.log.1', 'seq': 50, 'hash': hashlib.sha256(last_old).hexdigest()}
    report = verify(str(path), KEY)
    assert report.ok and report.records == 101 and report.first_seq == 1 and report.last_seq == 101
    assert report.files == [str(path) + '.1', str(path)]
    # Alone, the live file starts with its checkpoint: accepted as the start of the chain.
    alone = verify(str(path), KEY, include_rotated=False)
    assert alone.ok and alone.records == 51 and alone.first_seq == 51 and alone.files == [str(path)]


def test_a_checkpoint_names_the_host_of_the_events_it_comes_before(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3, host='web-03')
    rotate(path)
    write(path, 2, host='web-03')
    checkpoint = json.loads(lines_of(path)[0])
    assert checkpoint['event']['action'] == CHECKPOINT_ACTION and checkpoint['host']['name'] == 'web-03'
    assert verify(str(path), KEY).ok


@pytest.mark.parametrize('where', ['rotated', 'live'])
def test_tampering_names_the_right_file_and_line(tmp_path, where):
    path = tmp_path / 'audit.log'
    write(path, 30, batch=10)
    rotate(path)
    write(path, 30, batch=10)
    target = path.with_name('audit.log.1') if where == 'rotated' else path
    lines = lines_of(target)
    record = json.loads(lines[9])
    record['event']['outcome'] = 'denied'
    lines[9] = canonical(record).encode()
    target.write_bytes(b'\n'.join(lines) + b'\n')
    report = verify(str(path), KEY)
    assert report.error == {'file': str(target), 'line': 10, 'reason': 'HMAC mismatch: record altered, or written with another key'}
    assert report.records == (9 if where == 'rotated' else 39)


def test_removed_middle_file_breaks_the_chain_and_retention_does_not(tmp_path):
    path = tmp_path / 'audit.log'
    for dummy in range(3):
        write(path, 10, batch=5)
        rotate(path, number=3)
    write(path, 10, batch=5)
    assert [os.path.basename(name) for name in rotated_files(str(path))] == ['audit.log.3', 'audit.log.2', 'audit.log.1']
    report = verify(str(path), KEY)
    assert report.ok and report.records == 43 and report.first_seq == 1
    os.rename(str(path) + '.2', str(tmp_path / 'aside'))
    report = verify(str(path), KEY)
    assert report.error['file'] == str(path) + '.1' and report.error['line'] == 1
    assert report.error['reason'].startswith('chain broken')
    # Retention removes the oldest file: the chain now starts at a checkpoint.
    os.rename(str(tmp_path / 'aside'), str(path) + '.2')
    os.unlink(str(path) + '.3')
    report = verify(str(path), KEY)
    assert report.ok and report.first_seq == 11 and report.records == 33


def test_dated_and_compressed_predecessors(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 10)
    os.rename(path, tmp_path / 'audit.log-20261123')
    gzip_file(tmp_path / 'audit.log-20261123')
    write(path, 10)
    os.rename(path, tmp_path / 'audit.log-20261124')  # delaycompress: the newest rotated file stays plain
    write(path, 10)
    assert [os.path.basename(name) for name in rotated_files(str(path))] == ['audit.log-20261123.gz', 'audit.log-20261124']
    report = verify(str(path), KEY)
    assert report.ok and report.records == 32
    # The writer also reads a compressed predecessor.
    gzip_file(tmp_path / 'audit.log-20261124')
    os.rename(path, tmp_path / 'audit.log-20261125')
    gzip_file(tmp_path / 'audit.log-20261125')
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 34 and len(report.files) == 4
    # A record altered inside a compressed file.
    data = gzip.decompress((tmp_path / 'audit.log-20261124.gz').read_bytes())
    (tmp_path / 'audit.log-20261124.gz').write_bytes(gzip.compress(data.replace(b'"outcome":"success"', b'"outcome":"failure"', 1)))
    report = verify(str(path), KEY)
    assert report.error == {'file': str(tmp_path / 'audit.log-20261124.gz'), 'line': 1,
                            'reason': 'HMAC mismatch: record altered, or written with another key'}
    # A corrupt compressed file.
    (tmp_path / 'audit.log-20261124.gz').write_bytes(gzip.compress(data)[:-20])
    report = verify(str(path), KEY)
    assert report.error['file'] == str(tmp_path / 'audit.log-20261124.gz')
    assert report.error['reason'].startswith('cannot read the file')


def test_rotated_file_names(tmp_path):
    path = tmp_path / 'audit.log'
    for name in ('audit.log.1', 'audit.log.2.gz', 'audit.log.10', 'audit.log-20261124', 'audit.log-2026112412.gz',
                 'audit.log-20261120-1764000000', 'audit.log.1.gz', 'audit.log.lock', 'audit.log.x', 'other.log.1', 'audit.log-'):
        (tmp_path / name).write_bytes(b'')
    assert [os.path.basename(name) for name in rotated_files(str(path))] == [
        'audit.log-20261120-1764000000', 'audit.log-20261124', 'audit.log-2026112412.gz', 'audit.log.10', 'audit.log.2.gz', 'audit.log.1']
    assert not rotated_files(str(tmp_path / 'missing' / 'audit.log'))


def test_empty_rotated_file_is_skipped_by_the_writer(tmp_path):
    """logrotate without notifempty rotates an empty live file: the checkpoint links to the older one."""
    path = tmp_path / 'audit.log'
    write(path, 5)
    rotate(path)
    path.write_bytes(b'')
    rotate(path)
    write(path, 5)
    checkpoint = json.loads(lines_of(path)[0])
    assert checkpoint['dihya']['checkpoint']['file'] == 'audit.log.2'
    report = verify(str(path), KEY)
    assert report.ok and report.records == 11


def test_crash_before_rotation(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 5)
    with open(path, 'ab') as handle:
        handle.write(b'{"@timestamp":"20')
    rotate(path)
    write(path, 2)
    report = verify(str(path), KEY)
    assert report.ok and not report.truncated_tail and report.records == 8
    assert report.notes == [{'file': str(path) + '.1', 'line': 6, 'reason': 'truncated record (crash): last line of the file is incomplete'}]
    # A first write into the new file that crashed, then recovery: the checkpoint attests the fragment.
    rotate(path, number=2)
    path.write_bytes(b'{"@tim')
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 10 and report.notes[-1]['line'] == 1


def test_rotate_checkpoint_and_rotation_while_a_writer_is_cached(tmp_path):
    path = tmp_path / 'audit.log'
    log = AuditLog(str(path), settings())
    log.append([_event() for dummy in range(3)])
    log.rotate_checkpoint()  # nothing to do: the file has records
    assert len(lines_of(path)) == 3
    rotate(path)
    log.rotate_checkpoint()
    assert [json.loads(line)['event']['action'] for line in lines_of(path)] == [CHECKPOINT_ACTION]
    log.rotate_checkpoint()
    assert len(lines_of(path)) == 1
    log.append([_event()])
    rotate(path, number=2)
    log.append([_event()])  # the cached tail is for the rotated file: a checkpoint comes first
    report = verify(str(path), KEY)
    assert report.ok and report.records == 7 and len(report.files) == 3
    no_rotation = AuditLog(str(tmp_path / 'fresh.log'), settings())
    no_rotation.rotate_checkpoint()
    assert (tmp_path / 'fresh.log').read_bytes() == b''


def test_only_rotated_files_left(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 4)
    rotate(path)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 4 and report.files == [str(path) + '.1']
    with pytest.raises(AuditError, match='does not exist'):
        verify(str(path), KEY, include_rotated=False)


def _event():
    from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import event
    return event()
