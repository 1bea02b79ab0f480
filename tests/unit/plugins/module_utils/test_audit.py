# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the audit log engine: events, records, crash recovery and bad input, on real files."""

from __future__ import annotations

import datetime
import errno
import hashlib
import hmac
import json
import os
import re

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _audit_log, _audit_record, _audit_verify
from ansible_collections.dihya.ops.plugins.module_utils._audit import (
    CATEGORIES,
    OUTCOMES,
    ZERO_HASH,
    AuditError,
    AuditLog,
    AuditSettings,
    VerifyReport,
    build_event,
    verify,
)
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.plugins.module_utils._ids import new_trace_id
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, event, settings, write

CANARY = b'canary-key-value-5f2b8c1d9e'


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------

def test_build_event_is_ecs_and_pseudonymised():
    config = settings()
    stamp = datetime.datetime(2026, 11, 25, 21, 30, 1, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    doc = build_event(action='user.login', category='security', outcome='denied', settings=config, user='alice',
                      tenant='acme', trace_id='a' * 32, correlation_id='req-1', route='/api/login', host='web1',
                      email='alice@example.org', source_ip='192.0.2.7', labels={'env': 'prod', 'retry': 2, 'dry': True},
                      details={'attempts': 3}, timestamp=stamp)
    assert doc['@timestamp'] == '2026-11-25T20:30:01.123456Z'
    assert doc['event'] == {'action': 'user.login', 'category': 'security', 'outcome': 'denied', 'kind': 'event'}
    assert doc['organization'] == {'id': 'acme'}
    assert doc['trace'] == {'id': 'a' * 32}
    assert doc['url'] == {'path': '/api/login'}
    assert doc['host'] == {'name': 'web1'}
    assert doc['labels'] == {'env': 'prod', 'retry': '2', 'dry': 'true'}
    assert doc['dihya'] == {'correlation_id': 'req-1', 'details': {'attempts': 3}}
    for value, clear in ((doc['user']['id'], 'alice'), (doc['user']['email'], 'alice@example.org'), (doc['source']['ip'], '192.0.2.7')):
        assert re.fullmatch(r'hmac:[0-9a-f]{64}', value)
        assert value == config.pseudonym(clear)
    assert 'alice' not in json.dumps(doc)


def test_clear_values_only_when_allowed():
    doc = event(settings(pseudonymise=False), user='alice', email='a@example.org', source_ip='192.0.2.7')
    assert doc['user'] == {'id': 'alice', 'email': 'a@example.org'}
    assert doc['source'] == {'ip': '192.0.2.7'}


def test_pseudonyms_are_stable_and_keyed():
    one = settings().pseudonym('alice')
    assert one == settings().pseudonym('alice')
    assert one != settings().pseudonym('bob')
    derived = hmac.new(KEY, b'dihya-pseudonym', hashlib.sha256).digest()
    assert one == 'hmac:' + hmac.new(derived, b'alice', hashlib.sha256).hexdigest()
    other = settings(pseudonym_key=b'another pseudonym key').pseudonym('alice')
    assert other != one
    with pytest.raises(AuditError, match='must be a string'):
        settings().pseudonym(42)


def test_defaults_trace_id_host_and_time():
    doc = event()
    assert re.fullmatch(r'[0-9a-f]{32}', doc['trace']['id'])
    assert doc['host']['name']
    stamp = datetime.datetime.strptime(doc['@timestamp'], '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.UTC)
    assert abs((stamp - datetime.datetime.now(datetime.UTC)).total_seconds()) < 60
    assert 'user' not in doc and 'labels' not in doc and 'dihya' not in doc
    assert event(timestamp=datetime.datetime(2026, 1, 2, 3, 4, 5))['@timestamp'] == '2026-01-02T03:04:05.000000Z'
    assert len({new_trace_id() for dummy in range(100)}) == 100


@pytest.mark.parametrize('fields, message', [
    ({'category': 'fun'}, "unknown category 'fun': expected one of audit, security, rgpd, ops"),
    ({'outcome': 'maybe'}, "unknown outcome 'maybe': expected one of success, failure, denied"),
    ({'action': ''}, 'action must be a non-empty string'),
    ({'action': '   '}, 'action must be a non-empty string'),
    ({'action': 3}, 'action must be a non-empty string'),
    ({'action': 'a' * 2000}, 'action is longer than 1024 characters'),
    ({'user': ''}, 'user must be a non-empty string'),
    ({'tenant': ['x']}, 'tenant must be a non-empty string'),
    ({'details': ['x']}, 'details must be a mapping, not list'),
    ({'details': {'x': object()}}, 'labels and details are not JSON-serialisable: Object of type object'),
    ({'details': {'x': b'bytes'}}, 'labels and details are not JSON-serialisable: Object of type bytes'),
    ({'details': {'x': {1, 2}}}, 'labels and details are not JSON-serialisable: Object of type set'),
    ({'details': {'x': float('nan')}}, 'labels and details are not JSON-serialisable: Out of range float'),
    ({'details': {'x': 'a' * 20000}}, r'labels and details take 200\d\d bytes, more than the limit of 16384 bytes'),
    ({'details': {'x': '\ud800'}}, 'not valid Unicode'),
    ({'labels': ['x']}, 'labels must be a mapping, not list'),
    ({'labels': {'x': {'nested': 1}}}, "label 'x' must be a string, a number or a boolean, not dict"),
    ({'labels': {1: 'x'}}, 'label names must be non-empty strings'),
    ({'timestamp': '2026-01-01'}, 'timestamp must be a datetime, not str'),
])
def test_build_event_rejects_bad_input(fields, message):
    with pytest.raises(AuditError, match=message):
        event(**fields)


def test_deeply_nested_details_are_refused():
    nested: dict = {}
    for dummy in range(5000):
        nested = {'x': nested}
    with pytest.raises(AuditError, match=r'nested too deeply|not JSON-serialisable'):
        event(details=nested)


def test_details_limit_is_a_setting():
    event(settings(max_details_bytes=100000), details={'x': 'a' * 50000})
    with pytest.raises(AuditError, match='more than the limit of 64 bytes'):
        event(settings(max_details_bytes=64), details={'x': 'a' * 64})


@pytest.mark.parametrize('options, message', [
    ({'key': b'short'}, 'at least 16 bytes'),
    ({'key': 'a text key of more than 16'}, 'must be a byte string'),
    ({'fsync': 'never'}, "unknown fsync mode 'never'"),
    ({'pseudonym_key': b''}, 'pseudonym key must be a non-empty byte string'),
    ({'max_details_bytes': True}, 'max_details_bytes must be an integer'),
])
def test_settings_are_checked(options, message):
    with pytest.raises(AuditError, match=message):
        settings(**options)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------

def test_records_are_chained_canonical_lines(tmp_path):
    path = tmp_path / 'audit.log'
    written = write(path, 3, batch=2)
    lines = path.read_bytes().split(b'\n')
    assert lines[-1] == b'' and len(lines) == 4
    previous = ZERO_HASH
    for number, (line, record) in enumerate(zip(lines, written, strict=False), start=1):
        parsed = json.loads(line)
        assert parsed == record
        assert line == canonical(parsed).encode()
        audit = parsed['dihya']['audit']
        assert (audit['seq'], audit['prev']) == (number, previous)
        body = json.loads(line)
        del body['dihya']['audit']['hmac']
        assert audit['hmac'] == hmac.new(KEY, canonical(body).encode(), hashlib.sha256).hexdigest()
        assert parsed['dihya']['details'] == {'n': number - 1}
        previous = hashlib.sha256(line).hexdigest()
    assert oct(path.stat().st_mode & 0o777) == '0o600'
    report = verify(str(path), KEY)
    assert report == VerifyReport(ok=True, records=3, files=[str(path)], last_seq=3, last_hash=previous,
                                  truncated_tail=False, error=None, first_seq=1, notes=[])
    assert report.as_dict()['last_seq'] == 3


def test_append_nothing_writes_nothing(tmp_path):
    assert not AuditLog(str(tmp_path / 'audit.log'), settings()).append([])
    assert not (tmp_path / 'audit.log').exists()


def test_batch_fsync_and_custom_events(tmp_path):
    path = tmp_path / 'audit.log'
    log = AuditLog(str(path), settings(fsync='batch'), mode=0o640)
    records = log.append([{'message': 'hand-made', 'dihya': {'x': (1, 2)}, 7: 'seven'}])
    assert records[0]['dihya']['x'] == [1, 2] and records[0]['7'] == 'seven'
    assert oct(path.stat().st_mode & 0o777) == '0o640'
    assert verify(str(path), KEY).ok


def test_two_loggers_and_external_writers_share_the_chain(tmp_path):
    path = tmp_path / 'audit.log'
    first, second = AuditLog(str(path), settings()), AuditLog(str(path), settings())
    for dummy in range(3):
        first.append([event()])
        second.append([event(), event()])
    report = verify(str(path), KEY)
    assert report.ok and report.records == 9 and report.last_seq == 9


def test_wrong_key_is_reported_on_the_first_line(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3)
    report = verify(str(path), b'another key of enough length')
    assert not report.ok and report.records == 0
    assert report.error == {'file': str(path), 'line': 1, 'reason': 'HMAC mismatch: record altered, or written with another key'}


# ---------------------------------------------------------------------------
# Crash recovery (incomplete lines written directly, as a crash leaves them)
# ---------------------------------------------------------------------------

def test_truncated_tail_is_not_tampering_and_writing_resumes(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 5)
    full = path.read_bytes()
    lines = full.split(b'\n')
    path.write_bytes(full[:-1 - len(lines[-2]) // 2])  # half of record 5, no newline
    fragment = path.read_bytes().rsplit(b'\n', 1)[1]
    report = verify(str(path), KEY)
    assert report.ok and report.truncated_tail and report.records == 4 and report.last_seq == 4
    assert report.notes == [{'file': str(path), 'line': 5, 'reason': 'truncated record (crash): last line of the file is incomplete'}]

    written = write(path, 2)
    assert written[0]['dihya']['audit']['seq'] == 5
    assert written[0]['dihya']['audit']['prev'] == hashlib.sha256(lines[3]).hexdigest()
    assert written[0]['dihya']['audit']['recovered'] == [{'bytes': len(fragment), 'sha256': hashlib.sha256(fragment).hexdigest()}]
    assert 'recovered' not in written[1]['dihya']['audit']
    report = verify(str(path), KEY)
    assert report.ok and not report.truncated_tail and report.records == 6 and report.last_seq == 6
    assert report.notes == [{'file': str(path), 'line': 5, 'reason': 'truncated record (crash): recovered by the record at line 6'}]
    assert path.read_bytes().count(b'\n') == 7


def test_complete_record_without_newline_is_a_record(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3)
    path.write_bytes(path.read_bytes()[:-1])
    report = verify(str(path), KEY)
    assert report.ok and not report.truncated_tail and report.records == 3
    write(path, 1)
    assert path.read_bytes().count(b'\n') == 4
    report = verify(str(path), KEY)
    assert report.ok and report.records == 4 and not report.notes


def test_repeated_crashes_during_recovery(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    record = path.read_bytes().split(b'\n')[0]
    with open(path, 'ab') as handle:
        handle.write(record[:30] + b'\n' + record[:50] + b'\n' + b'\x00' * 10)  # two crashes, then a zero-filled block
    report = verify(str(path), KEY)
    # Each cut write left one line; none was recovered yet: crashes, not tampering.
    assert report.ok and report.truncated_tail and report.records == 2
    assert [(item['line'], item['reason']) for item in report.notes] == [
        (3, 'truncated record (crash): line after the last record is incomplete'),
        (4, 'truncated record (crash): line after the last record is incomplete'),
        (5, 'truncated record (crash): last line of the file is incomplete')]
    written = write(path, 1)
    assert [item['bytes'] for item in written[0]['dihya']['audit']['recovered']] == [30, 50, 10]
    report = verify(str(path), KEY)
    assert report.ok and report.records == 3 and [item['line'] for item in report.notes] == [3, 4, 5]


def test_first_write_crashed(tmp_path):
    path = tmp_path / 'audit.log'
    path.write_bytes(b'{"@timestamp":"2026')
    report = verify(str(path), KEY)
    assert report.ok and report.truncated_tail and report.records == 0 and report.last_seq is None
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 1 and report.first_seq == 1


def test_incomplete_line_followed_by_unattesting_record_is_tampering(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3)
    lines = path.read_bytes().split(b'\n')
    path.write_bytes(b'\n'.join([lines[0], lines[1][:40], lines[1], lines[2], b'']))
    report = verify(str(path), KEY)
    assert report.error == {'file': str(path), 'line': 2, 'reason': 'not a valid audit record (incomplete or altered line)'}
    # A line at the end of the file that no cut write leaves (it does not start like a record).
    for junk in (b'x{"x\n', b'garbage', b' {"x', b'\n', b'[1,\n'):
        path.write_bytes(b'\n'.join(lines) + junk)
        report = verify(str(path), KEY)
        assert report.error == {'file': str(path), 'line': 4, 'reason': 'not a valid audit record (incomplete or altered line)'}, junk


def test_record_attesting_missing_lines_is_tampering(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    with open(path, 'ab') as handle:
        handle.write(b'{"partial')
    write(path, 1)
    lines = path.read_bytes().split(b'\n')
    del lines[2]
    path.write_bytes(b'\n'.join(lines))
    report = verify(str(path), KEY)
    assert report.error == {'file': str(path), 'line': 3, 'reason': 'the record attests incomplete lines that are not in the file before it'}


def test_valid_json_that_is_not_a_record(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    with open(path, 'ab') as handle:
        handle.write(b'{"event":{"action":"forged"}}\n')
    report = verify(str(path), KEY)
    assert report.error['line'] == 3 and report.error['reason'].startswith('not an audit record')
    # A writer chains past it but verify still reports it.
    write(path, 1)
    assert verify(str(path), KEY).error['line'] == 3


def test_writer_chains_to_a_forged_last_record_and_verify_reports_it(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    lines = path.read_bytes().split(b'\n')
    forged = json.loads(lines[1])
    forged['event']['outcome'] = 'failure'
    lines[1] = canonical(forged).encode()
    path.write_bytes(b'\n'.join(lines))
    write(path, 2)
    report = verify(str(path), KEY)
    assert report.error == {'file': str(path), 'line': 2, 'reason': 'HMAC mismatch: record altered, or written with another key'}


def test_non_canonical_and_sequence_errors(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3)
    lines = path.read_bytes().split(b'\n')
    path.write_bytes(b'\n'.join([lines[0], json.dumps(json.loads(lines[1])).encode(), lines[2], b'']))
    assert verify(str(path), KEY).error['reason'] == 'record is not in canonical form (altered)'

    # A validly signed record with a good prev but a wrong seq (written with the key, as only an insider could).
    config = settings()
    log = AuditLog(str(path), config)
    path.write_bytes(b'\n'.join(lines[:2]) + b'\n')
    record, line = log._seal(event(config), 5, hashlib.sha256(lines[1]).hexdigest(), [])
    assert record['dihya']['audit']['seq'] == 5
    path.write_bytes(path.read_bytes() + line + b'\n')
    assert verify(str(path), KEY).error == {'file': str(path), 'line': 3, 'reason': 'sequence gap: expected seq 3, found 5'}

    # A chain that does not start at seq 1 nor with a checkpoint.
    path.write_bytes(b'\n'.join(lines[1:]))
    assert 'the chain starts at seq 2' in verify(str(path), KEY).error['reason']


def test_overlong_lines_are_hashed_not_held(tmp_path, monkeypatch):
    monkeypatch.setattr(_audit_record, 'MAX_LINE_BYTES', 64)
    path = tmp_path / 'audit.log'
    write(path, 2)
    report = verify(str(path), KEY)
    assert not report.ok and report.error['line'] == 1  # every record is longer than 64 bytes here
    with open(path, 'ab') as handle:
        handle.write(b'y' * 1000)
    with open(path, 'rb') as handle:
        lines = list(_audit_record.read_lines(handle))
    assert [line.data is None for line in lines] == [True, True, True]
    assert lines[-1].size == 1000 and not lines[-1].newline
    assert lines[-1].sha256 == hashlib.sha256(b'y' * 1000).hexdigest()


def test_tail_scan_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(_audit_log, 'MAX_TAIL_SCAN', 10000)
    path = tmp_path / 'audit.log'
    write(path, 1)
    with open(path, 'ab') as handle:
        handle.write((b'z' * 99 + b'\n') * 200)
    with pytest.raises(AuditError, match='no audit record in the last 10000 bytes'):
        write(path, 1)


def test_tail_scan_reads_back_over_long_tails(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 3)
    with open(path, 'ab') as handle:
        handle.write(b'{"' + b'q' * 50000)
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 4 and report.notes[0]['line'] == 4


# ---------------------------------------------------------------------------
# Bad input: nothing half-written
# ---------------------------------------------------------------------------

def test_bad_event_among_good_ones_writes_nothing(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    before = path.read_bytes()
    log = AuditLog(str(path), settings())
    for bad, message in (
        ({'x': object()}, 'not JSON-serialisable'),
        ('text', 'must be a mapping, not str'),
        ({'dihya': {'audit': {'seq': 1}}}, 'must not carry dihya.audit'),
        ({'dihya': 'x'}, 'dihya field of an audit event must be a mapping'),
        ({'x': 'y' * 70000}, 'more than the limit of'),
        ({'x': '\udcff'}, 'not valid Unicode'),
    ):
        with pytest.raises(AuditError, match=message):
            log.append([event(), bad])
        assert path.read_bytes() == before
    assert verify(str(path), KEY).ok


def test_unwritable_path_parent_is_a_file(tmp_path):
    parent = tmp_path / 'regular'
    parent.write_text('not a directory')
    with pytest.raises(AuditError, match=r'cannot open .*regular/audit.log.lock: Not a directory'):
        write(parent / 'audit.log', 1)
    with pytest.raises(AuditError, match='directory does not exist'):
        write(tmp_path / 'missing' / 'audit.log', 1)
    assert parent.read_text() == 'not a directory'


def test_symlink_at_log_path_is_refused(tmp_path):
    target = tmp_path / 'target.log'
    target.write_text('precious\n')
    link = tmp_path / 'audit.log'
    link.symlink_to(target)
    with pytest.raises(AuditError, match=r'refusing to open .*audit\.log: it is a symbolic link'):
        write(link, 1)
    assert target.read_text() == 'precious\n'
    with pytest.raises(AuditError, match='it is a symbolic link'):
        verify(str(link), KEY)
    # The check at open time too (O_NOFOLLOW), for a link swapped in after the first check.
    with pytest.raises(AuditError, match='it is a symbolic link'):
        _audit_record.open_regular(str(link), os.O_RDWR | os.O_APPEND)


def test_symlink_at_lock_path_and_special_files_are_refused(tmp_path):
    target = tmp_path / 'elsewhere'
    target.write_text('keep\n')
    (tmp_path / 'audit.log.lock').symlink_to(target)
    with pytest.raises(AuditError, match=r'audit\.log\.lock: it is a symbolic link'):
        write(tmp_path / 'audit.log', 1)
    assert target.read_text() == 'keep\n'
    assert not (tmp_path / 'audit.log').exists()
    (tmp_path / 'dir.log').mkdir()
    with pytest.raises(AuditError, match=r'dir\.log'):
        write(tmp_path / 'dir.log', 1)
    os.mkfifo(tmp_path / 'fifo.log')
    with pytest.raises(AuditError, match=r'fifo\.log: it is not a regular file'):
        write(tmp_path / 'fifo.log', 1)
    with pytest.raises(AuditError, match=r'fifo\.log: it is not a regular file'):
        verify(str(tmp_path / 'fifo.log'), KEY)


def test_check_finds_what_append_refuses_and_writes_nothing(tmp_path):
    """AuditLog.check (check mode): what append would refuse, and False for a directory an earlier task may still create."""
    assert AuditLog(str(tmp_path / 'later' / 'audit.log'), settings()).check() is False
    log = AuditLog(str(tmp_path / 'audit.log'), settings())
    assert log.check() is True and os.listdir(tmp_path) == []
    (tmp_path / 'target').write_text('keep\n')
    for name in ('audit.log', 'audit.log.lock'):
        (tmp_path / name).symlink_to(tmp_path / 'target')
        with pytest.raises(AuditError, match=rf'refusing to open .*{name}: it is a symbolic link'):
            log.check()
        with pytest.raises(AuditError, match='it is a symbolic link'):
            log.append([event()])
        (tmp_path / name).unlink()
    os.mkfifo(tmp_path / 'audit.log')
    with pytest.raises(AuditError, match=r'audit\.log: it is not a regular file'):
        log.check()
    with pytest.raises(AuditError, match='File name too long'):
        AuditLog(str(tmp_path / ('x' * 300)), settings()).check()
    assert (tmp_path / 'target').read_text() == 'keep\n' and sorted(os.listdir(tmp_path)) == ['audit.log', 'target']


def test_hostile_file_names(tmp_path):
    folder = tmp_path / 'a b;$(touch x)\'"'
    folder.mkdir()
    path = folder / '..audit; rm -rf.log'
    write(path, 2)
    assert verify(str(path), KEY).ok
    assert not (tmp_path / 'x').exists()


def test_bad_arguments():
    with pytest.raises(AuditError, match='path must be a non-empty absolute path'):
        AuditLog('', settings())
    with pytest.raises(AuditError, match='settings must be an AuditSettings'):
        AuditLog('/tmp/x', {'key': KEY})


def test_lock_timeout(tmp_path, monkeypatch):
    import fcntl
    path = tmp_path / 'audit.log'
    log = AuditLog(str(path), settings())
    log.lock_timeout = 0.05
    with open(str(path) + '.lock', 'w') as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(AuditError, match='timed out after 0 s waiting for the lock'):
            log.append([event()])
    assert not path.exists() or path.stat().st_size == 0


def test_missing_log(tmp_path):
    with pytest.raises(AuditError, match=r'audit\.log does not exist'):
        verify(str(tmp_path / 'audit.log'), KEY)


# ---------------------------------------------------------------------------
# Key material never shows
# ---------------------------------------------------------------------------

def test_canary_key_never_in_errors_or_results(tmp_path):
    texts = []
    canary_text = CANARY.decode()
    for options in ({'key': CANARY[:10]}, {'key': CANARY, 'fsync': 'x'}, {'key': CANARY, 'pseudonym_key': b''}):
        with pytest.raises(AuditError) as exc:
            AuditSettings(**options)
        texts.append(str(exc.value))
    config = AuditSettings(key=CANARY, pseudonym_key=CANARY + b'-p')
    path = tmp_path / 'audit.log'
    texts.append(json.dumps(write(path, 3, config=config, user=canary_text)))
    with pytest.raises(AuditError) as exc:
        event(config, category='x')
    texts.append(str(exc.value))
    texts.append(json.dumps(verify(str(path), CANARY).as_dict()))
    texts.append(json.dumps(verify(str(path), KEY).as_dict()))
    lines = path.read_bytes().split(b'\n')
    path.write_bytes(b'\n'.join([lines[0], lines[1][:-3] + b'xx}', lines[2], b'']))
    texts.append(json.dumps(verify(str(path), CANARY).as_dict()))
    with pytest.raises(AuditError) as exc:
        verify(str(path), CANARY[:8])
    texts.append(str(exc.value))
    texts.append(path.read_text())
    for text in texts:
        assert canary_text not in text
        assert CANARY[:10].decode() not in text
    assert set(CATEGORIES) == {'audit', 'security', 'rgpd', 'ops'} and set(OUTCOMES) == {'success', 'failure', 'denied'}


# ---------------------------------------------------------------------------
# Malformed records, races and write errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('change', [
    lambda audit: audit.update(seq=True),
    lambda audit: audit.update(seq=0),
    lambda audit: audit.update(prev='X' * 64),
    lambda audit: audit.update(hmac=None),
    lambda audit: audit.update(recovered=[{'bytes': 1}]),
    lambda audit: audit.update(recovered='x'),
])
def test_malformed_audit_blocks(tmp_path, change):
    path = tmp_path / 'audit.log'
    write(path, 2)
    lines = path.read_bytes().split(b'\n')
    record = json.loads(lines[1])
    change(record['dihya']['audit'])
    lines[1] = canonical(record).encode()
    path.write_bytes(b'\n'.join(lines))
    assert verify(str(path), KEY).error['reason'].startswith('not an audit record')
    for document in ([], {'dihya': []}, {'dihya': {'audit': 'x'}}):
        assert _audit_record.record_of(json.dumps(document).encode()) is None


def test_json_constants_and_escaped_surrogates(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)
    lines = path.read_bytes().split(b'\n')
    with pytest.raises(ValueError, match='NaN is not valid JSON'):
        _audit_record.parse_line(b'{"x":NaN}')
    lines[1] = lines[1].replace(b'"details":{"n":1}', b'"details":{"n":"\\ud800"}')
    path.write_bytes(b'\n'.join(lines))
    assert verify(str(path), KEY).error == {'file': str(path), 'line': 2, 'reason': 'record is not in canonical form (altered)'}


def test_duplicate_hmac_member_takes_the_slow_path(tmp_path):
    path = tmp_path / 'audit.log'
    config = settings()
    log = AuditLog(str(path), config)
    mac = log.append([event(config)])[0]['dihya']['audit']['hmac']
    # A detail holding the same text as the member: verified by serialising the record again.
    log.append([event(config, details={'quote': {'audit': {'hmac': mac, 'prev': 'x'}}})])
    line = path.read_bytes().split(b'\n')[1]
    assert line.count(b'"audit":{"hmac":"') == 2
    report = verify(str(path), KEY)
    assert report.ok and report.records == 2


def test_rotation_between_open_and_lock_is_followed(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 2)

    class Rotated(AuditLog):
        calls = 0

        def _open_log(self):
            opened = super()._open_log()
            Rotated.calls += 1
            if Rotated.calls == 1:
                os.rename(self.path, self.path + '.1')
            return opened

    Rotated(str(path), settings()).append([event()])
    report = verify(str(path), KEY)
    assert report.ok and report.records == 4 and len(report.files) == 2

    class Replaced(AuditLog):
        def _open_log(self):
            opened = super()._open_log()
            os.unlink(self.path)
            return opened

    with pytest.raises(AuditError, match='keeps being replaced while it is opened'):
        Replaced(str(tmp_path / 'other.log'), settings()).append([event()])


def test_log_created_by_another_writer_meanwhile(tmp_path, monkeypatch):
    path = tmp_path / 'audit.log'
    real = _audit_record.open_regular

    def racing(name, flags, mode=0o600):
        if flags & os.O_EXCL:
            with open(name, 'ab'):
                pass
        return real(name, flags, mode)

    monkeypatch.setattr(_audit_log, 'open_regular', racing)
    write(path, 1)
    assert verify(str(path), KEY).ok


def test_vanished_rotated_files_are_skipped(tmp_path, monkeypatch):
    path = tmp_path / 'audit.log'
    write(path, 2)
    ghosts = [str(tmp_path / 'audit.log.9.gz'), str(tmp_path / 'audit.log.8')]
    real = _audit_record.rotated_files
    # The verifier and the writer both look for rotated files.
    for module in (_audit_verify, _audit_log):
        monkeypatch.setattr(module, 'rotated_files', lambda name: ghosts + real(name))
    report = verify(str(path), KEY)
    assert report.ok and report.records == 2
    os.rename(path, str(path) + '.1')
    write(path, 1)
    assert verify(str(path), KEY).ok


def test_corrupt_compressed_predecessor_stops_the_writer(tmp_path):
    path = tmp_path / 'audit.log'
    (tmp_path / 'audit.log.1.gz').write_bytes(b'\x1f\x8b\x08\x00garbage')
    with pytest.raises(AuditError, match=r'cannot read the rotated file .*audit\.log\.1\.gz'):
        write(path, 1)


def test_a_new_log_whose_directory_cannot_be_flushed_gets_no_record(tmp_path, monkeypatch):
    """A record in a file whose directory entry a crash may take away is not durable: the append fails, and writes nothing."""
    path = tmp_path / 'audit.log'

    def failing(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(_audit_log, 'fsync_directory', failing)
    with pytest.raises(AuditError, match=r'cannot flush the directory .* to disk: Input/output error; nothing was written'):
        write(path, 1)
    assert path.read_bytes() == b''
    # The next writer finds the file still empty: it flushes the directory before its first record, and only then.
    monkeypatch.undo()
    flushed = []
    real_flush = _audit_log.fsync_directory
    monkeypatch.setattr(_audit_log, 'fsync_directory', lambda fd: flushed.append(fd) or real_flush(fd))
    write(path, 3)
    assert len(flushed) == 1
    report = verify(str(path), KEY)
    assert report.ok and report.records == 3


@pytest.mark.parametrize('code', [errno.EINVAL, errno.EOPNOTSUPP])
def test_a_file_system_without_directory_flush_is_not_an_error(tmp_path, monkeypatch, code):
    def unsupported(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_audit_log, 'fsync_directory', unsupported)
    path = tmp_path / 'audit.log'
    write(path, 2)
    assert verify(str(path), KEY).records == 2


WRITE_LIMITED = """
import os, resource, signal, sys
from ansible_collections.dihya.ops.plugins.module_utils._audit import AuditError, AuditLog, AuditSettings, build_event
settings = AuditSettings(key=os.environb[b'AUDIT_TEST_KEY'])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1]) + 100, resource.RLIM_INFINITY))
try:
    AuditLog(sys.argv[1], settings).append([build_event(action='big', category='ops', outcome='success', settings=settings)])
except AuditError as exc:
    print(exc)
"""


def test_write_error_leaves_a_recoverable_tail(tmp_path):
    import subprocess
    import sys
    from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import COLLECTIONS
    path = tmp_path / 'audit.log'
    write(path, 2)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, AUDIT_TEST_KEY=KEY.decode())
    completed = subprocess.run([sys.executable, '-c', WRITE_LIMITED, str(path)], env=env, capture_output=True, timeout=60, check=True)
    assert completed.stdout.decode().startswith(f'cannot write to {path}: File too large')
    report = verify(str(path), KEY)
    assert report.ok and report.truncated_tail and report.records == 2
    write(path, 1)
    report = verify(str(path), KEY)
    assert report.ok and report.records == 3 and not report.truncated_tail


@pytest.mark.parametrize(('tail', 'bad_line'), [
    (b'{"@timestamp\n{"a\nnot a record', 5),          # two cut writes, then a line no writer leaves
    (b'{"@timestamp\ngarbage\n{"a', 4),                # something else between cut writes
    (b'{\n{"x\n\x00\x00\n[1, 2', 6),                  # valid-looking fragments, then a JSON array start
    (b'{"a\n\n{"b', 4),                                 # an empty line: no writer leaves one
])
def test_lines_after_the_last_record_must_all_be_cut_writes(tmp_path, tail, bad_line):
    path = tmp_path / 'audit.log'
    write(path, 2)
    with open(path, 'ab') as handle:
        handle.write(tail)
    report = verify(str(path), KEY)
    assert report.error == {'file': str(path), 'line': bad_line, 'reason': 'not a valid audit record (incomplete or altered line)'}
