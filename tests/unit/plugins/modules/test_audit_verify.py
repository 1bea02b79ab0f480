# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the audit_verify module on real audit logs."""

from __future__ import annotations

import json

import pytest

from ansible_collections.dihya.ops.plugins.modules import audit_verify
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.audit_utils import KEY, settings, write
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module

CANARY = 'canary-audit-key-7c1e55aa90'


@pytest.fixture(name='log')
def fixture_log(tmp_path):
    path = tmp_path / 'audit.log'
    write(path, 20, config=settings(key=CANARY.encode()), batch=5)
    return path


def run(path, check_mode=False, **options):
    options.setdefault('key', CANARY)
    return run_module(audit_verify.main, dict(path=str(path), **options), check_mode=check_mode)


@pytest.mark.parametrize('check_mode', [False, True])
def test_good_log(log, check_mode):
    before = log.read_bytes()
    result = run(log, check_mode=check_mode)
    assert not result.get('failed') and result['changed'] is False
    assert result['ok'] is True and result['records'] == 20 and result['first_seq'] == 1 and result['last_seq'] == 20
    assert result['files'] == [str(log)] and result['error'] is None and result['truncated_tail'] is False
    assert len(result['last_hash']) == 64 and result['warnings'] == []
    assert log.read_bytes() == before
    assert CANARY not in json.dumps(result)


def test_tampered_log_fails_with_file_and_line(log):
    lines = log.read_bytes().split(b'\n')
    lines[6] = lines[6].replace(b'"outcome":"success"', b'"outcome":"denied"')
    log.write_bytes(b'\n'.join(lines))
    result = run(log)
    assert result['failed'] is True and result['ok'] is False and result['records'] == 6
    assert result['msg'] == f'audit log verification failed: {log} line 7: HMAC mismatch: record altered, or written with another key'
    assert result['error'] == {'file': str(log), 'line': 7, 'reason': 'HMAC mismatch: record altered, or written with another key'}
    assert CANARY not in json.dumps(result)
    result = run(log, fail_on_error=False)
    assert not result.get('failed') and result['ok'] is False and result['error']['line'] == 7


def test_wrong_key_and_short_key(log):
    result = run(log, key='x' * 20)
    assert result['failed'] is True and result['error']['line'] == 1
    result = run(log, key='short')
    assert result['failed'] is True and result['msg'] == 'the audit key must be at least 16 bytes long'


def test_truncated_tail_and_min_last_seq(log):
    log.write_bytes(log.read_bytes()[:-40])
    result = run(log)
    assert not result.get('failed') and result['ok'] is True and result['truncated_tail'] is True and result['last_seq'] == 19
    assert result['warnings'] == [{'file': str(log), 'line': 20, 'reason': 'truncated record (crash): last line of the file is incomplete'}]
    result = run(log, min_last_seq=20)
    assert result['failed'] is True and result['error']['line'] == 20
    assert 'the log ends at seq 19, before the expected seq 20' in result['msg']


def test_rotated_files(log):
    log.rename(log.with_name('audit.log.1'))
    write(log, 3, config=settings(key=CANARY.encode()))
    result = run(log)
    assert result['ok'] is True and result['records'] == 24 and result['files'] == [str(log) + '.1', str(log)]
    result = run(log, include_rotated=False)
    assert result['ok'] is True and result['records'] == 4 and result['first_seq'] == 21


def test_unreadable_inputs_fail_whatever_fail_on_error(tmp_path, log):
    result = run(tmp_path / 'missing.log', fail_on_error=False)
    assert result['failed'] is True and result['msg'] == f'{tmp_path / "missing.log"} does not exist'
    link = tmp_path / 'link.log'
    link.symlink_to(log)
    result = run(link, fail_on_error=False)
    assert result['failed'] is True and result['msg'] == f'refusing to open {link}: it is a symbolic link'
    assert CANARY not in json.dumps(result)


def test_key_is_a_no_log_value(log, monkeypatch):
    modules = []

    class Recording(audit_verify.AnsibleModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modules.append(self)

    monkeypatch.setattr(audit_verify, 'AnsibleModule', Recording)
    run(log)
    assert CANARY in modules[0].no_log_values
    assert KEY != CANARY.encode()
