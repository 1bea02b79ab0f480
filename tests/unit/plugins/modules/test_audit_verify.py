# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the audit_verify module on real audit logs."""

from __future__ import annotations

import contextlib
import io
import json
from unittest import mock

import pytest

from ansible.module_utils import _internal as module_internals
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args

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
    assert len(result['last_hash']) == 64 and result['notes'] == [] and 'warnings' not in result
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
    assert result['notes'] == [{'file': str(log), 'line': 20, 'reason': 'truncated record (crash): last line of the file is incomplete'}]
    assert result['warnings'] == [f'{log} line 20: truncated record (crash): last line of the file is incomplete']
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
    assert CANARY.encode() != KEY


# ---------------------------------------------------------------------------
# Crash fragments, through the real AnsibleModule (exit_json and fail_json not replaced)
# ---------------------------------------------------------------------------

CONFIG = settings(key=CANARY.encode())
CRASH = 'truncated record (crash)'


def run_real(path, **options):
    """Run the module as Ansible does, in-process: its JSON output and exit code, with nothing patched but the arguments."""
    options.setdefault('key', CANARY)
    # Warnings and deprecations are gathered process-wide: start from none, as a module process does.
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    output = io.StringIO()
    # A module process is never the controller, even when controller code was imported by other tests of this process.
    with patch_module_args(dict(path=str(path), **options)), contextlib.redirect_stdout(output), \
            mock.patch.object(module_internals, 'is_controller', False), pytest.raises(SystemExit) as exited:
        audit_verify.main()
    return json.loads(output.getvalue()), exited.value.code


def assert_crash_only(result, code, lines):
    """The log verifies, each incomplete line is a crash note (a dict in notes, a string in warnings), no deprecation."""
    assert code == 0 and not result.get('failed'), result
    assert result['ok'] is True and result['error'] is None
    assert [note['line'] for note in result['notes']] == lines
    assert all(note['reason'].startswith(CRASH) for note in result['notes'])
    assert [warning['event']['msg'] for warning in result.get('warnings', [])] == [
        f"{note['file']} line {note['line']}: {note['reason']}" for note in result['notes']]
    assert 'deprecations' not in result
    assert CANARY not in json.dumps(result)


def first_record(path):
    return path.read_bytes().split(b'\n')[0]


@pytest.mark.parametrize('size', [1, 2, 200, 'record-1'])
def test_fragment_of_the_log_appended_to_a_copy(log, size):
    """The reproduction: the first bytes of a valid log appended to a copy of it (what a crash mid-write leaves)."""
    record = first_record(log)
    count = len(record) - 1 if size == 'record-1' else size
    with open(log, 'ab') as handle:
        handle.write(log.read_bytes()[:count])
    for dummy in range(2):  # and every later verification too
        result, code = run_real(log)
        assert_crash_only(result, code, [21])
        assert result['truncated_tail'] is True and result['records'] == 20 and result['last_seq'] == 20
    # The next writer recovers it: the fragment is then attested in the middle of the file.
    write(log, 2, config=CONFIG)
    result, code = run_real(log)
    assert_crash_only(result, code, [21])
    assert result['truncated_tail'] is False and result['records'] == 22
    assert result['notes'][0]['reason'] == f'{CRASH}: recovered by the record at line 22'


@pytest.mark.parametrize('size', [1, 200, 'record-1'])
def test_fragment_mid_file_then_resumed_writes(log, size):
    """A crash, then the writers carry on: the fragment sits between valid records, attested by the next one."""
    record = first_record(log)
    with open(log, 'ab') as handle:
        handle.write(record[:len(record) - 1 if size == 'record-1' else size])
    for dummy in range(3):
        write(log, 5, config=CONFIG, batch=2)
    result, code = run_real(log)
    assert_crash_only(result, code, [21])
    assert result['records'] == 35 and result['truncated_tail'] is False


def test_fragment_in_a_rotated_file(log):
    record = first_record(log)
    with open(log, 'ab') as handle:
        handle.write(record[:200])
    log.rename(log.with_name('audit.log.1'))
    write(log, 3, config=CONFIG)
    result, code = run_real(log)
    assert_crash_only(result, code, [21])
    assert result['notes'][0]['file'] == str(log) + '.1'
    assert result['truncated_tail'] is False and result['records'] == 24
    assert result['files'] == [str(log) + '.1', str(log)]


@pytest.mark.parametrize('separated', [True, False], ids=['new-line', 'same-line'])
def test_fragment_followed_by_a_second_fragment(log, separated):
    """Two writes cut short in a row, before any got through: on two lines (the second writer starts a new line) or run together."""
    record = first_record(log)
    with open(log, 'ab') as handle:
        handle.write(record[:200] + (b'\n' if separated else b'') + record[:1])
    lines = [21, 22] if separated else [21]
    result, code = run_real(log)
    assert_crash_only(result, code, lines)
    assert result['truncated_tail'] is True
    written = write(log, 1, config=CONFIG)
    assert len(written[0]['dihya']['audit']['recovered']) == len(lines)
    result, code = run_real(log)
    assert_crash_only(result, code, lines)
    assert result['truncated_tail'] is False and result['records'] == 21


def test_tampering_still_fails_through_the_real_module(log):
    lines = log.read_bytes().split(b'\n')
    lines[3] = lines[3][:100]
    log.write_bytes(b'\n'.join(lines))
    result, code = run_real(log)
    assert code == 1 and result['failed'] is True and result['ok'] is False
    assert result['error'] == {'file': str(log), 'line': 4, 'reason': 'not a valid audit record (incomplete or altered line)'}
    assert result['notes'] == [] and 'deprecations' not in result
    result, code = run_real(log, fail_on_error=False)
    assert code == 0 and result['ok'] is False and result['error']['line'] == 4


@pytest.mark.parametrize(('path', 'message'), [
    ('audit.log', "path must be an absolute path (starting with /), not 'audit.log'"),
    ('./audit.log', "path must be an absolute path (starting with /), not './audit.log'"),
    ('~nobody-such-user/audit.log', "path must be an absolute path (starting with /), not '~nobody-such-user/audit.log'"),
    ('', 'path must be a non-empty absolute path'),
    ('/var/log/../log/audit.log', "path must not contain a .. component ('/var/log/../log/audit.log')"),
    ('/var/log/dihya/audit.log/..', "path must not contain a .. component"),
])
def test_paths_must_be_absolute(path, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / 'audit.log', 2, config=CONFIG)
    result, code = run_real(path)
    assert code == 1 and result['failed'] is True and message in result['msg'], result


def test_home_relative_path_is_expanded(tmp_path, monkeypatch):
    """C(~) is expanded by the path type, as for every Ansible path option: the result is absolute."""
    monkeypatch.setenv('HOME', str(tmp_path))
    write(tmp_path / 'audit.log', 2, config=CONFIG)
    result, code = run_real('~/audit.log')
    assert code == 0 and result['ok'] is True and result['files'] == [str(tmp_path / 'audit.log')]


def test_nul_in_path_is_refused(tmp_path):
    result, code = run_real(f'{tmp_path}/audit\x00.log')
    assert code == 1 and result['failed'] is True
    assert result['msg'] == 'path must not contain a NUL byte'
