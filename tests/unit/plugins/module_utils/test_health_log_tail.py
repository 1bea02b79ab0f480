# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The end of a failed service's error log: read safely and bounded (_log_tail.read_tail), scrubbed (scrub), and the log_tail module."""

from __future__ import annotations

import os
import pathlib
import socket
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _log_tail
from ansible_collections.dihya.ops.plugins.module_utils._ids import pseudonym
from ansible_collections.dihya.ops.plugins.module_utils._log_tail import MASK, read_tail, scrub, split_tail
from ansible_collections.dihya.ops.plugins.modules import log_tail
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module

KEY = b'log-tail-pseudonym-key-0123456789'


def write(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def test_the_last_lines_oldest_first(tmp_path: pathlib.Path):
    path = write(tmp_path / 'err.log', ''.join(f'line {number}\n' for number in range(1, 51)))
    tail = read_tail(path, lines=3)
    assert tail.status == 'ok'
    assert tail.lines == ['line 48', 'line 49', 'line 50']
    assert tail.truncated
    assert tail.message == f'last 3 line(s) of {path} (earlier lines left out)'
    assert tail.text == 'line 48\nline 49\nline 50'


def test_a_short_log_whole(tmp_path: pathlib.Path):
    tail = read_tail(write(tmp_path / 'err.log', 'one\ntwo'), lines=20)
    assert (tail.lines, tail.truncated, tail.bytes_read) == (['one', 'two'], False, 7)


def test_never_more_than_max_bytes_from_the_end_of_a_big_log(tmp_path: pathlib.Path):
    path = tmp_path / 'big.log'
    with path.open('wb') as handle:
        handle.truncate(64 * 1024 * 1024)  # 64 MiB of a sparse file: reading it whole would show
        handle.seek(0, os.SEEK_END)
        handle.write(b'\nthe last words\n')
    tail = read_tail(str(path), lines=5, max_bytes=100)
    assert tail.bytes_read == 100
    assert tail.lines[-1] == 'the last words'
    assert tail.truncated


def test_a_first_line_cut_by_the_byte_limit_is_left_out(tmp_path: pathlib.Path):
    path = write(tmp_path / 'err.log', 'A' * 50 + '\nsecond\nthird\n')
    tail = read_tail(path, lines=10, max_bytes=len('AAAA\nsecond\nthird\n'))
    assert tail.lines == ['second', 'third']
    # One line longer than the limit: its end is what there is to show.
    assert split_tail(b'xyz', 5, True) == (['xyz'], True)


def test_an_empty_log_and_no_lines_asked(tmp_path: pathlib.Path):
    empty = read_tail(write(tmp_path / 'empty.log', ''))
    assert (empty.status, empty.lines, empty.message) == ('ok', [], f'{tmp_path}/empty.log is empty')
    none = read_tail(write(tmp_path / 'err.log', 'x\n'), lines=0)
    assert none.lines == [] and 'no line shown' in none.message


def test_control_characters_and_terminal_escapes_are_removed_and_long_lines_cut(tmp_path: pathlib.Path):
    path = tmp_path / 'err.log'
    path.write_bytes(b'\x1b[31mred\x1b[0m bell\x07 tab\tkept \xff\xfe\n' + b'y' * 5000 + b'\n')
    first, second = read_tail(str(path), max_bytes=8192).lines
    assert first == 'red bell? tab\tkept \ufffd\ufffd'
    assert len(second) == _log_tail.LINE_CHARS and second.endswith('...')


def test_a_missing_log_or_folder_is_said(tmp_path: pathlib.Path):
    assert read_tail(str(tmp_path / 'none.log')).message == f'{tmp_path}/none.log does not exist'
    tail = read_tail(str(tmp_path / 'gone' / 'err.log'))
    assert tail.status == 'missing' and 'its folder' in tail.message


def test_a_symbolic_link_at_the_log_is_never_followed(tmp_path: pathlib.Path):
    secret = write(tmp_path / 'secret.txt', 'top secret\n')
    (tmp_path / 'err.log').symlink_to(secret)
    tail = read_tail(str(tmp_path / 'err.log'))
    assert tail.status == 'refused'
    assert tail.message == f'{tmp_path}/err.log not read: it is a symbolic link, which is never followed'
    assert tail.lines == []


def test_a_symbolic_link_among_the_folders_is_never_followed(tmp_path: pathlib.Path):
    (tmp_path / 'real').mkdir()
    write(tmp_path / 'real' / 'err.log', 'behind a link\n')
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    tail = read_tail(str(tmp_path / 'link' / 'err.log'))
    assert tail.status == 'refused'
    assert tail.message == f'{tmp_path}/link/err.log not read: {tmp_path}/link is a symbolic link, which is never followed'


def test_a_fifo_a_socket_a_device_and_a_directory_are_refused_without_blocking(tmp_path: pathlib.Path):
    os.mkfifo(tmp_path / 'fifo')  # nobody writes: opening it for reading would wait forever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / 'sock'))
        found = {name: read_tail(str(tmp_path / name)) for name in ('fifo', 'sock')}
    found['dir'] = read_tail(str(tmp_path))
    found['null'] = read_tail('/dev/null')
    assert {name: tail.status for name, tail in found.items()} == dict.fromkeys(found, 'refused')
    assert 'a FIFO' in found['fifo'].message and 'a socket' in found['sock'].message
    assert 'a directory' in found['dir'].message and 'a device' in found['null'].message


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads any file')
def test_an_unreadable_log_is_said(tmp_path: pathlib.Path):
    path = tmp_path / 'err.log'
    write(path, 'x\n')
    path.chmod(0)
    assert read_tail(str(path)).status == 'unreadable'


@pytest.mark.parametrize(('path', 'lines', 'max_bytes', 'message'), [
    ('relative.log', 20, 4096, 'absolute path'),
    ('/var/log/../../etc/shadow', 20, 4096, '".." components'),
    ('/var/log/', 20, 4096, 'name a file'),
    ('/var/log/x\0y', 20, 4096, 'NUL'),
    ('/var/log/x', -1, 4096, 'lines must be between 0 and 1000'),
    ('/var/log/x', 1001, 4096, 'lines must be between'),
    ('/var/log/x', True, 4096, 'lines must be between'),
    ('/var/log/x', 20, 0, 'max_bytes must be between 1 and 1048576'),
    ('/var/log/x', 20, 2 * 1024 * 1024, 'max_bytes must be between'),
], ids=['relative', 'dotdot', 'folder', 'nul', 'negative', 'too-many', 'bool', 'no-bytes', 'too-many-bytes'])
def test_unusable_settings_are_refused(path: str, lines: t.Any, max_bytes: t.Any, message: str):
    with pytest.raises(ValueError, match=message):
        read_tail(path, lines, max_bytes)


# ---------------------------------------------------------------------------
# Scrubbing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(('line', 'expected'), [
    ('login failed password=hunter2 user=bob', f'login failed password={MASK} user=bob'),
    ('DB_PASSWORD: "quoted value here"', f'DB_PASSWORD: {MASK}'),
    ('{"password": "s3cr\\"et", "api_key": "abc", "user": "x"}', f'{{"password": {MASK}, "api_key": {MASK}, "user": "x"}}'),
    ("GET /reset?token=abcd1234&next=/ 200", f"GET /reset?token={MASK}&next=/ 200"),
    ('secret_key=abc;session_id=42', f'secret_key={MASK};session_id={MASK}'),
    ('Authorization: Bearer abc.def.ghi', f'Authorization: Bearer {MASK}'),
    ('authorization=Basic dXNlcjpwYXNz', f'authorization=Basic {MASK}'),
    ('"Authorization": "Token 0123456789"', f'"Authorization": "Token {MASK}"'),
    ('x-api-key: K3Y', f'x-api-key: {MASK}'),
    ('sent bearer 0123456789abcdef to the peer', f'sent bearer {MASK} to the peer'),
    ('jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcDEF rejected', f'jwt {MASK} rejected'),
    ('cannot connect to postgresql://ops:pa55word@db.example:5432/dihya', f'cannot connect to postgresql://{MASK}@db.example:5432/dihya'),
    ('RuntimeError: configuration broken on purpose', 'RuntimeError: configuration broken on purpose'),
    ('[2026-12-03 05:36:04 +0000] [1234] [INFO] Booting worker', '[2026-12-03 05:36:04 +0000] [1234] [INFO] Booting worker'),
], ids=['pair', 'quoted', 'json', 'query', 'semicolons', 'bearer-header', 'basic', 'json-header', 'api-key-header', 'bearer',
        'jwt', 'url-password', 'plain', 'timestamps'])
def test_secrets_are_masked(line: str, expected: str):
    assert scrub(line) == expected


def test_emails_and_addresses_are_masked_without_a_key():
    assert scrub('mail to alice.smith@example.org failed') == 'mail to a***@example.org failed'
    assert scrub('client 203.0.113.77:51234 refused') == 'client 203.0.113.0:51234 refused'
    assert scrub('client 2001:db8:5:6::1 refused') == 'client 2001:db8:5:: refused'
    # Not addresses: versions with more parts, times, numbers.
    assert scrub('gunicorn 23.0.0 at 05:36:04 port 8000, 1.2.3.4.5') == 'gunicorn 23.0.0 at 05:36:04 port 8000, 1.2.3.4.5'


def test_emails_and_addresses_are_pseudonymised_with_a_key_as_everywhere_else():
    line = scrub('alice@example.org from 203.0.113.77 and 2001:db8::1', KEY)
    assert line == ' '.join((pseudonym('alice@example.org', KEY), 'from', pseudonym('203.0.113.77', KEY), 'and', pseudonym('2001:db8::1', KEY)))


def test_a_masked_url_password_is_not_taken_for_an_email():
    assert scrub('redis://:s3cret@cache.example.org:6379/0') == f'redis://{MASK}@cache.example.org:6379/0'


def test_the_tail_read_is_scrubbed(tmp_path: pathlib.Path):
    path = write(tmp_path / 'err.log', 'boot\nconnect postgresql://ops:hunter2hunter2@10.1.2.3/db token=tok-123 for bob@example.org\n')
    tail = read_tail(path, key=KEY)
    assert 'hunter2' not in tail.text and 'tok-123' not in tail.text and 'bob@' not in tail.text and '10.1.2.3' not in tail.text
    assert pseudonym('bob@example.org', KEY) in tail.text


# ---------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------

def test_the_module_reads_in_check_mode_and_changes_nothing(tmp_path: pathlib.Path):
    path = write(tmp_path / 'err.log', 'first\npassword=hunter2\n')
    before = os.stat(path)
    result = run_module(log_tail.main, {'path': path, 'lines': 5, 'pseudonym_key': KEY.decode()}, check_mode=True)
    assert result['changed'] is False
    assert (result['status'], result['lines'], result['text']) == ('ok', ['first', f'password={MASK}'], f'first\npassword={MASK}')
    assert set(result) >= {'path', 'status', 'message', 'lines', 'text', 'bytes_read', 'truncated'}
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


def test_the_module_says_a_missing_log_and_does_not_fail(tmp_path: pathlib.Path):
    result = run_module(log_tail.main, {'path': str(tmp_path / 'none.log')})
    assert result.get('failed') is not True
    assert result['status'] == 'missing' and result['lines'] == []


def test_the_module_fails_on_unusable_options(tmp_path: pathlib.Path):
    result = run_module(log_tail.main, {'path': str(tmp_path / 'x.log'), 'lines': 5000, 'max_bytes': 0})
    assert result['failed'] is True
    assert 'lines must be between 0 and 1000' in result['msg'] and 'max_bytes must be between' in result['msg']
