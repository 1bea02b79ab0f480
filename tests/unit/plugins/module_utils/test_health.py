# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the health check engine against real loopback servers, files, processes and supervisord."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _health
from ansible_collections.dihya.ops.plugins.module_utils._health import (
    CheckConfigError,
    CheckResult,
    CheckSpec,
    Outcome,
    as_text,
    describe_error,
    duplicate_names,
    mask_dsn,
    pid_alive,
    run_checks,
    summarize,
    validate_name,
    validate_run_options,
    validate_spec,
)


def check(check_type: str, timeout: float = 5.0, latency_budget: float | None = None, **options) -> CheckResult:
    """Run one check through the engine and return its result."""
    [result] = run_checks([CheckSpec('probe', check_type, options, timeout=timeout, latency_budget=latency_budget)])
    return result


def assert_error(result: CheckResult, text: str) -> None:
    assert result.status == 'error', result
    assert not result.healthy
    assert result.attempts == 0
    assert text in result.message


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class TestHttp:
    def test_healthy_endpoint(self, http_server):
        result = check('http', url=http_server.url('/ok'))
        assert result.healthy and result.status == 'ok'
        assert result.message == 'HTTP 200'
        assert result.details['status_code'] == 200
        assert result.attempts == 1
        assert 0 < result.latency_seconds < 2

    def test_unexpected_status(self, http_server):
        result = check('http', url=http_server.url('/unavailable'))
        assert result.status == 'failed' and not result.healthy
        assert result.message == 'HTTP 503 not in [200]'
        assert result.details['status_code'] == 503

    def test_accepted_status_codes(self, http_server):
        assert check('http', url=http_server.url('/unavailable'), status_codes=[200, 503]).healthy

    def test_redirects_are_not_followed(self, http_server):
        assert check('http', url=http_server.url('/redirect')).message == 'HTTP 302 not in [200]'
        assert check('http', url=http_server.url('/redirect'), status_codes=[302]).healthy

    def test_unknown_path(self, http_server):
        assert check('http', url=http_server.url('/nope')).message == 'HTTP 404 not in [200]'

    def test_body_regex(self, http_server):
        assert check('http', url=http_server.url('/text'), body_regex=r'ready: (yes|maybe)').healthy
        result = check('http', url=http_server.url('/text'), body_regex=r'ready: no')
        assert not result.healthy
        assert result.message == "HTTP 200 but the body does not match 'ready: no'"

    def test_status_is_checked_before_the_body(self, http_server):
        result = check('http', url=http_server.url('/unavailable'), body_regex='never')
        assert result.message == 'HTTP 503 not in [200]'

    @pytest.mark.parametrize('field, value', [
        ('database.status', 'ok'),
        ('database.latency_ms', 3),
        ('database.latency_ms', '3'),
        ('replicas.0.state', 'up'),
        ('ready', True),
        ('ready', 'true'),
    ])
    def test_json_field_value(self, http_server, field, value):
        result = check('http', url=http_server.url('/ok'), json_field=field, json_value=value)
        assert result.healthy, result.message
        assert result.details['json_value'] == as_text(value)

    def test_json_field_presence(self, http_server):
        assert check('http', url=http_server.url('/ok'), json_field='database').healthy

    def test_json_value_mismatch(self, http_server):
        result = check('http', url=http_server.url('/unavailable'), status_codes=[503], json_field='status', json_value='ok')
        assert not result.healthy
        assert result.message == "JSON field 'status' is 'down', expected 'ok'"

    @pytest.mark.parametrize('field', ['database.missing', 'replicas.5.state', 'replicas.x', 'status.deeper'])
    def test_json_field_missing(self, http_server, field):
        result = check('http', url=http_server.url('/ok'), json_field=field)
        assert result.status == 'failed'
        assert result.message == f'JSON field {field!r} not found'

    def test_invalid_json(self, http_server):
        result = check('http', url=http_server.url('/badjson'), json_field='status')
        assert result.status == 'failed'
        assert result.message == 'HTTP 200 but the body is not valid JSON'

    def test_latency_budget(self, http_server):
        result = check('http', url=http_server.url('/slow'), latency_budget=0.1)
        assert result.status == 'failed'
        assert result.message.startswith('latency 0.') and result.message.endswith('s over budget 0.1s')
        assert result.details['status_code'] == 200
        assert check('http', url=http_server.url('/slow'), latency_budget=2).healthy

    def test_timeout(self, http_server):
        result = check('http', url=http_server.url('/slow'), timeout=0.1)
        assert result.status == 'failed'
        assert result.message == 'deadline exceeded while reading the status line and headers (timeout 0.1 s)'
        assert result.latency_seconds < 0.3

    def test_total_timeout_while_reading_the_body(self, http_server):
        # The server sends one byte every 0.1 s for 2 s: each read is fast, the whole body is not.
        started = time.monotonic()
        result = check('http', url=http_server.url('/drip'), timeout=0.35)
        assert result.message == 'deadline exceeded while reading the response body (timeout 0.35 s)'
        assert time.monotonic() - started < 1.5

    def test_connection_refused(self, closed_port):
        result = check('http', url=f'http://127.0.0.1:{closed_port}/')
        assert result.status == 'failed'
        assert result.message == 'connection refused'

    def test_connection_closed_without_response(self, http_server):
        assert check('http', url=http_server.url('/hangup')).message == 'connection closed without a response'

    def test_large_body_is_capped(self, http_server):
        result = check('http', url=http_server.url('/big'), body_regex='x$')
        assert result.healthy
        assert result.details['body_bytes'] == _health.MAX_BODY_BYTES

    def test_method_headers_and_body(self, http_server):
        result = check(
            'http', url=http_server.url('/echo?x=1'), method='post', body='{"ping": 1}',
            headers={'X-Token': 'abc', 'Content-Type': 'application/json'},
            body_regex=r'"method": "POST".*"path": "/echo\?x=1".*"x-token": "abc".*"body": "\{\\"ping\\": 1\}"',
        )
        assert result.healthy, result.message

    def test_default_user_agent_and_basic_auth(self, http_server):
        url = http_server.url('/echo')
        auth = {'url_username': 'user', 'url_password': 'p@ss'}
        result = check('http', url=url, json_field='headers.authorization', json_value='Basic dXNlcjpwQHNz', **auth)
        assert result.healthy, result.message
        assert check('http', url=url, json_field='headers.authorization', json_value='Basic dXNlcjo=', url_username='user').healthy
        assert check('http', url=url, json_field='headers.user-agent', json_value='dihya.ops.health_check', **auth).healthy
        assert check('http', url=url, headers={'User-Agent': 'probe/1'}, json_field='headers.user-agent', json_value='probe/1').healthy

    @pytest.mark.parametrize('options, message', [
        ({'url_password': 'x'}, 'url_password needs url_username'),
        ({'url_username': 'a:b'}, 'url_username must be a string without colons'),
        ({'url_username': 'a', 'url_password': 'x\ny'}, 'without colons or control characters'),
        ({'url_username': 'a', 'headers': {'authorization': 'Bearer t'}}, 'not both'),
    ])
    def test_basic_auth_options(self, http_server, options, message):
        assert_error(check('http', url=http_server.url('/echo'), **options), message)

    @pytest.mark.parametrize('url', [
        'http://user:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://user:Url%2DPa55word@127.0.0.1:{port}/echo',
        'https://user:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://:Url-Pa55word@127.0.0.1:{port}/echo',
        'http://Url-Pa55word@127.0.0.1:{port}/echo',
        'http://user:Url-Pa55word@[::1]:{port}/echo',
        'HTTP://user:Url-Pa55word@127.0.0.1:{port}/echo?x=@',
        'http://user:Url-Pa55word@127.0.0.1:{port}',
        'http://user:Url-Pa55word@127.0.0.1:notaport/',
    ])
    def test_credentials_in_the_url_are_refused_and_masked(self, http_server, url):
        url = url.format(port=http_server.port)
        result, other = run_checks([CheckSpec(f'api {url}', 'http', {'url': url}), CheckSpec('other', 'https', {'url': url})])
        assert_error(result, 'url must not hold a user name or password')
        assert_error(other, 'url must not hold a user name or password')
        assert 'url_username and url_password' in result.message
        text = json.dumps(result.to_dict())
        assert 'Url-Pa55word' not in text and 'Url%2DPa55word' not in text
        assert re.match(r'api (?i:https?)://\*{8}@', result.name), result.name
        assert result.message == _health.URL_CREDENTIALS_REFUSED

    def test_head_request(self, http_server):
        result = check('http', url=http_server.url('/ok'), method='HEAD')
        assert result.healthy and result.details['body_bytes'] == 0

    def test_proxy_environment_is_ignored(self, http_server, closed_port, monkeypatch):
        for name in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
            monkeypatch.setenv(name, f'http://127.0.0.1:{closed_port}')
        monkeypatch.delenv('no_proxy', raising=False)
        monkeypatch.delenv('NO_PROXY', raising=False)
        assert check('http', url=http_server.url('/ok')).healthy

    @pytest.mark.parametrize('url, message', [
        ('ftp://127.0.0.1/', "url must use the http or https scheme (got 'ftp')"),
        ('127.0.0.1:8080/health', 'url must use the http or https scheme'),
        ('not a url', "url must use the http or https scheme (got 'none')"),
        ('http://', 'url has no host'),
        ('http:///healthz', 'url has no host'),
        ('http://[::1/', 'malformed url'),
        ('http://127.0.0.1:99999/', 'malformed url'),
        ('http://127.0.0.1:port/', 'malformed url'),
        ('http://127.0.0.1:0/', 'url port must be between 1 and 65535'),
        ('http://127.0.0.1/a b', 'url must not contain whitespace'),
        ('http://127.0.0.1/\x07', 'url must not contain whitespace or control characters'),
    ])
    def test_malformed_url(self, url, message):
        assert_error(check('http', url=url), message)

    @pytest.mark.parametrize('options, message', [
        ({}, 'url is required for a http check'),
        ({'url': 42}, 'url must be a string'),
        ({'url': 'http://h/', 'method': 'BREW'}, 'method must be one of'),
        ({'url': 'http://h/', 'status_codes': []}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'status_codes': [200, 999]}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'status_codes': [True]}, 'status_codes must be a non-empty list'),
        ({'url': 'http://h/', 'body_regex': '(unclosed'}, 'body_regex is not a valid regular expression'),
        ({'url': 'http://h/', 'json_field': 'a..b'}, 'must be a dotted path'),
        ({'url': 'http://h/', 'json_value': 'ok'}, 'json_value needs json_field'),
        ({'url': 'http://h/', 'headers': ['X-A: b']}, 'headers must be a dictionary'),
        ({'url': 'http://h/', 'headers': {'Bad Name': 'x'}}, "invalid HTTP header name 'Bad Name'"),
        ({'url': 'http://h/', 'headers': {'X-A': 'a\r\nX-Injected: 1'}}, 'must not contain line breaks'),
        ({'url': 'http://h/', 'validate_certs': 'yes'}, 'validate_certs must be a boolean'),
        ({'url': 'http://h/', 'port': 80}, 'option(s) not valid for a http check: port'),
        ({'url': 'http://h/', 'dsn': 'x', 'path': '/'}, 'option(s) not valid for a http check: dsn, path'),
    ])
    def test_invalid_options(self, options, message):
        assert_error(check('http', **options), message)

    def test_none_options_are_ignored(self, http_server):
        assert check('http', url=http_server.url('/ok'), port=None, method=None).healthy


class TestHttps:
    def test_without_validation(self, https_server):
        result = check('https', url=https_server.url('/ok'), validate_certs=False)
        assert result.healthy, result.message

    def test_validation_against_the_system_store_fails(self, https_server):
        result = check('https', url=https_server.url('/ok'))
        assert result.status == 'failed'
        assert result.message.startswith('certificate verification failed: ')

    def test_validation_with_ca_path(self, https_server, tls_material):
        assert check('https', url=https_server.url('/ok'), ca_path=tls_material.ca_path).healthy
        assert check('https', url=https_server.url('/ok', host='localhost'), ca_path=tls_material.ca_path).healthy

    def test_http_check_accepts_https_urls(self, https_server, tls_material):
        assert check('http', url=https_server.url('/ok'), ca_path=tls_material.ca_path).healthy

    def test_https_check_needs_https_url(self, http_server):
        assert_error(check('https', url=http_server.url('/ok')), 'an https check needs an https:// url')

    def test_ca_directory(self, https_server, tls_material):
        # A directory is used as an OpenSSL hashed CA directory; this one has no hash links.
        result = check('https', url=https_server.url('/ok'), ca_path=tls_material.directory)
        assert result.message.startswith('certificate verification failed')

    def test_missing_ca_path(self, https_server, tmp_path):
        assert_error(check('https', url=https_server.url('/ok'), ca_path=str(tmp_path / 'nope.pem')), 'ca_path')

    def test_unusable_ca_file(self, https_server, tmp_path):
        bad = tmp_path / 'bad.pem'
        bad.write_text('not a certificate\n')
        assert_error(check('https', url=https_server.url('/ok'), ca_path=str(bad)), 'cannot load CA certificates from')

    def test_plain_http_server(self, http_server):
        result = check('https', url=f'https://127.0.0.1:{http_server.port}/ok', validate_certs=False)
        assert result.status == 'failed'
        assert result.message.startswith('TLS error: ')


# ---------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------

class TestTcp:
    def test_open_port(self, http_server):
        result = check('tcp', host='127.0.0.1', port=http_server.port)
        assert result.healthy
        assert result.message == f'connected to 127.0.0.1:{http_server.port}'
        assert result.details == {'host': '127.0.0.1', 'port': http_server.port, 'address': '127.0.0.1'}

    def test_closed_port(self, closed_port):
        result = check('tcp', host='127.0.0.1', port=closed_port)
        assert result.status == 'failed'
        assert result.message == 'connection refused'
        assert result.details == {'host': '127.0.0.1', 'port': closed_port}

    @pytest.mark.parametrize('options, message', [
        ({'port': 80}, 'host is required for a tcp check'),
        ({'host': '127.0.0.1'}, 'port is required for a tcp check'),
        ({'host': '127.0.0.1', 'port': 0}, 'port must be an integer between 1 and 65535 (got 0)'),
        ({'host': '127.0.0.1', 'port': 65536}, 'port must be an integer between 1 and 65535'),
        ({'host': '127.0.0.1', 'port': '80'}, 'port must be an integer'),
        ({'host': '127.0.0.1', 'port': True}, 'port must be an integer'),
        ({'host': '127.0.0.1', 'port': 80, 'url': 'http://x/'}, 'option(s) not valid for a tcp check: url'),
    ])
    def test_invalid_options(self, options, message):
        assert_error(check('tcp', **options), message)


# ---------------------------------------------------------------------------
# Process
# ---------------------------------------------------------------------------

class TestPidfile:
    def test_running(self, sleeper, tmp_path):
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(f'{sleeper.pid}\n')
        result = check('process', pidfile=str(pidfile))
        assert result.healthy
        assert result.message == f'process {sleeper.pid} is running'
        assert result.details == {'pidfile': str(pidfile), 'pid': sleeper.pid}

    def test_missing_pidfile(self, tmp_path):
        result = check('process', pidfile=str(tmp_path / 'none.pid'))
        assert result.status == 'failed'
        assert result.message == f"pidfile {tmp_path / 'none.pid'} not found"

    @pytest.mark.parametrize('content', ['', 'abc', '-5', '0', '12 34'])
    def test_garbage(self, tmp_path, content):
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(content)
        assert check('process', pidfile=str(pidfile)).message == f'pidfile {pidfile} does not contain a PID'

    def test_unreadable_pidfile_is_a_failure(self, tmp_path):
        result = check('process', pidfile=str(tmp_path))
        assert result.status == 'failed'
        assert result.message == f'is a directory: {tmp_path}'

    def test_dead_process(self, tmp_path):
        process = subprocess.Popen(['true'])
        process.wait()
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(str(process.pid))
        result = check('process', pidfile=str(pidfile))
        assert not result.healthy
        assert result.message == f'process {process.pid} from {pidfile} is not running'

    def test_zombie_is_not_running(self):
        process = subprocess.Popen(['true'])
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(f'/proc/{process.pid}/stat', encoding='utf-8') as handle:
                    if handle.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        break
                time.sleep(0.01)
            assert not pid_alive(process.pid)
        finally:
            process.wait()

    def test_own_process(self):
        assert pid_alive(os.getpid())

    def test_process_of_another_user(self, monkeypatch):
        def denied(pid, signal):
            raise PermissionError(1, 'Operation not permitted')
        monkeypatch.setattr(os, 'kill', denied)
        assert pid_alive(os.getpid())
        assert pid_alive(2 ** 22 + 12345)  # no /proc entry: trust kill()


class TestProcessName:
    def test_running(self, sleeper):
        result = check('process', process_name='sleep')
        assert result.healthy
        assert sleeper.pid in result.details['pids']
        assert result.details['count'] >= 1
        assert result.message.endswith('named sleep running')

    def test_not_running(self):
        name = f'no-such-proc-{uuid.uuid4().hex[:8]}'
        result = check('process', process_name=name)
        assert result.status == 'failed'
        assert result.message == f'no process named {name} is running'
        assert result.details == {'process_name': name, 'count': 0, 'pids': []}

    def test_own_process_is_not_counted(self):
        with open('/proc/self/comm', encoding='utf-8') as handle:
            own = handle.read().strip()
        result = check('process', process_name=own)
        assert os.getpid() not in result.details['pids']

    @pytest.mark.parametrize('name', ['web; rm -rf /', '', '-c', 'a/b', 'x' * 129, '$(id)', 'web\n'])
    def test_invalid_name(self, name):
        assert_error(check('process', process_name=name), 'invalid process name')


class TestProcessOptions:
    @pytest.mark.parametrize('options, message', [
        ({}, 'exactly one of pidfile, process_name, supervisor_program (got none)'),
        ({'pidfile': '/run/a.pid', 'process_name': 'a'}, '(got pidfile, process_name)'),
        ({'pidfile': '/run/a.pid', 'supervisorctl': '/usr/bin/supervisorctl'}, 'supervisorctl is only valid together with supervisor_program'),
        ({'process_name': 'a', 'supervisor_config': '/etc/s.conf'}, 'supervisor_config is only valid together with supervisor_program'),
        ({'process_name': 'a', 'host': 'h'}, 'option(s) not valid for a process check: host'),
    ])
    def test_invalid(self, options, message):
        assert_error(check('process', **options), message)


class TestSupervisor:
    def program(self, supervisor, program, **options):
        options.setdefault('supervisorctl', supervisor.supervisorctl)
        options.setdefault('supervisor_config', supervisor.config)
        return check('process', supervisor_program=program, **options)

    def test_running(self, supervisor):
        result = self.program(supervisor, 'web')
        assert result.healthy, result.message
        assert result.message.startswith('supervisor program web is RUNNING (pid ')
        assert result.details['supervisor_state'] == 'RUNNING'
        assert pid_alive(result.details['pid'])
        assert 'uptime' in result.details

    @pytest.mark.parametrize('program, state', [('idle', 'STOPPED'), ('crashy', 'FATAL')])
    def test_not_running(self, supervisor, program, state):
        result = self.program(supervisor, program)
        assert result.status == 'failed'
        assert result.details['supervisor_state'] == state
        assert result.message.startswith(f'supervisor program {program} is {state}')

    def test_unknown_program(self, supervisor):
        result = self.program(supervisor, 'ghost')
        assert result.status == 'failed'
        assert result.message == 'supervisord has no program named ghost'

    def test_hostile_name_is_never_run(self, supervisor, tmp_path):
        marker = tmp_path / f'pwned-{uuid.uuid4().hex}'
        result = self.program(supervisor, f'web; touch {marker}')
        assert_error(result, 'invalid supervisor program name')
        result = self.program(supervisor, f'$(touch {marker})')
        assert_error(result, 'invalid supervisor program name')
        assert not marker.exists()

    def test_supervisorctl_not_found(self, supervisor, tmp_path):
        assert_error(self.program(supervisor, 'web', supervisorctl=str(tmp_path / 'supervisorctl')), 'supervisorctl executable not found')
        result = check('process', supervisor_program='web', supervisorctl='no-such-supervisorctl-here')
        assert_error(result, 'supervisorctl executable not found: no-such-supervisorctl-here')

    def test_missing_config(self, supervisor, tmp_path):
        result = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=str(tmp_path / 'nope.conf'))
        assert_error(result, 'supervisor_config')

    def test_supervisord_not_running(self, supervisor, tmp_path):
        config = tmp_path / 'other.conf'
        config.write_text(f'[supervisorctl]\nserverurl=unix://{tmp_path}/absent.sock\n')
        result = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=str(config))
        assert result.status == 'failed'
        assert result.message.startswith('supervisord is not reachable: ')
        assert 'absent.sock' in result.message

    def test_timeout(self, tmp_path):
        slow = tmp_path / 'supervisorctl'
        slow.write_text('#!/bin/sh\nexec sleep 5\n')
        slow.chmod(0o755)
        started = time.monotonic()
        result = check('process', supervisor_program='web', supervisorctl=str(slow), timeout=0.3)
        assert result.message == 'supervisorctl timed out after 0.3s'
        assert time.monotonic() - started < 3

    def test_unexpected_output(self, tmp_path):
        odd = tmp_path / 'supervisorctl'
        odd.write_text('#!/bin/sh\nexit 3\n')
        odd.chmod(0o755)
        result = check('process', supervisor_program='web', supervisorctl=str(odd))
        assert result.message == 'cannot read the state of web: no output (exit code 3)'
        assert result.details == {'supervisor_program': 'web'}

    def test_argument_list(self, tmp_path):
        # The program name reaches supervisorctl as one argument, after "status".
        recorder = tmp_path / 'supervisorctl'
        args_file = tmp_path / 'args'
        recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args_file}\necho "group:web-1 RUNNING pid 42, uptime 1:02:03"\n')
        recorder.chmod(0o755)
        result = check('process', supervisor_program='group:web-1', supervisorctl=str(recorder))
        assert result.healthy
        assert result.details['pid'] == 42 and result.details['uptime'] == '1:02:03'
        assert args_file.read_text().splitlines() == ['status', 'group:web-1']


# ---------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------

class TestDisk:
    def test_enough_space(self, tmp_path):
        result = check('disk', path=str(tmp_path), min_free_bytes=1, min_free_percent=0.001)
        assert result.healthy, result.message
        stats = os.statvfs(tmp_path)
        assert result.details['total_bytes'] == stats.f_blocks * stats.f_frsize
        assert 0 < result.details['free_bytes'] <= result.details['total_bytes']
        assert 0 < result.details['free_percent'] <= 100
        assert result.message.endswith(f"free ({result.details['free_percent']:g} %)")

    def test_not_enough_bytes(self, tmp_path):
        result = check('disk', path=str(tmp_path), min_free_bytes=2 ** 60)
        assert result.status == 'failed'
        assert result.message.endswith(', below 1024.0 PiB') or ', below ' in result.message

    def test_not_enough_percent(self, tmp_path):
        free = check('disk', path=str(tmp_path), min_free_percent=0).details['free_percent']
        if free >= 100:  # pragma: no cover - an empty file system
            pytest.skip('the file system is completely free')
        result = check('disk', path=str(tmp_path), min_free_percent=100)
        assert result.status == 'failed'
        assert result.message.endswith(', below 100 %')

    def test_missing_path(self, tmp_path):
        result = check('disk', path=str(tmp_path / 'absent'), min_free_bytes=1)
        assert result.status == 'failed'
        assert result.message == f"path {tmp_path / 'absent'} does not exist"

    def test_empty_file_system(self):
        # /proc reports no blocks at all.
        result = check('disk', path='/proc', min_free_percent=1)
        assert result.details['free_percent'] == 0.0
        assert not result.healthy

    @pytest.mark.parametrize('options, message', [
        ({'min_free_bytes': 1}, 'path is required for a disk check'),
        ({'path': '/'}, 'needs min_free_bytes, min_free_percent or both'),
        ({'path': '/', 'min_free_bytes': -1}, 'min_free_bytes must be an integer of 0 or more'),
        ({'path': '/', 'min_free_bytes': 1.5}, 'min_free_bytes must be an integer'),
        ({'path': '/', 'min_free_percent': 101}, 'min_free_percent must be between 0 and 100'),
        ({'path': '/', 'min_free_percent': '5'}, 'min_free_percent must be between 0 and 100'),
    ])
    def test_invalid_options(self, options, message):
        assert_error(check('disk', **options), message)


@pytest.mark.parametrize('value, text', [(0, '0 B'), (1023, '1023 B'), (1536, '1.5 KiB'), (5 * 1024 ** 3, '5.0 GiB'), (3 * 1024 ** 5, '3072.0 TiB')])
def test_format_bytes(value, text):
    assert _health._format_bytes(value) == text


# ---------------------------------------------------------------------------
# TLS certificate
# ---------------------------------------------------------------------------

class TestTlsCert:
    def test_expires_soon(self, https_server):
        result = check('tls_cert', host='127.0.0.1', port=https_server.port)
        assert result.status == 'failed'
        assert result.message == 'expires in 5 days (< 14)'
        assert result.details['days_left'] == 5
        assert 'CN=localhost' in result.details['subject']
        assert 'CN=Dihya test CA' in result.details['issuer']
        assert result.details['not_after'] > result.details['not_before']

    def test_valid_long_enough(self, https_server):
        result = check('tls_cert', host='127.0.0.1', port=https_server.port, min_days_valid=5)
        assert result.healthy
        assert result.message == 'expires in 5 days'

    def test_validation_with_ca_and_server_name(self, https_server, tls_material):
        options = dict(host='127.0.0.1', port=https_server.port, min_days_valid=1, validate_certs=True)
        assert check('tls_cert', ca_path=tls_material.ca_path, server_name='localhost', **options).healthy
        result = check('tls_cert', ca_path=tls_material.ca_path, server_name='other.example', **options)
        assert result.message.startswith('certificate verification failed: ')
        assert check('tls_cert', **options).message.startswith('certificate verification failed: ')

    def test_expired(self, tls_server_factory):
        server = tls_server_factory('expired.pem')
        result = check('tls_cert', host='127.0.0.1', port=server.port)
        assert result.message == 'expired 2 day(s) ago'
        assert result.details['days_left'] == -3

    def test_not_yet_valid(self, tls_server_factory):
        server = tls_server_factory('future.pem')
        result = check('tls_cert', host='127.0.0.1', port=server.port)
        assert result.message.startswith('not valid before ')

    def test_connection_refused(self, closed_port):
        result = check('tls_cert', host='127.0.0.1', port=closed_port)
        assert result.message == 'connection refused'
        assert result.details == {'host': '127.0.0.1', 'port': closed_port}

    def test_handshake_timeout(self, silent_listener):
        result = check('tls_cert', host='127.0.0.1', port=silent_listener, timeout=0.3)
        assert result.message == 'deadline exceeded during the TLS handshake (timeout 0.3 s)'

    def test_cryptography_missing(self, monkeypatch):
        monkeypatch.setitem(sys.modules, 'cryptography.x509', None)
        assert_error(check('tls_cert', host='127.0.0.1'), 'tls_cert checks need the cryptography Python library')

    @pytest.mark.parametrize('options, message', [
        ({}, 'host is required for a tls_cert check'),
        ({'host': 'h', 'port': 0}, 'port must be an integer between 1 and 65535'),
        ({'host': 'h', 'min_days_valid': -1}, 'min_days_valid must be an integer of 0 or more'),
        ({'host': 'h', 'min_days_valid': 1.5}, 'min_days_valid must be an integer'),
        ({'host': 'h', 'url': 'https://h/'}, 'option(s) not valid for a tls_cert check: url'),
    ])
    def test_invalid_options(self, options, message):
        assert_error(check('tls_cert', **options), message)

    def test_expiry_less_than_a_day_ago(self, monkeypatch, https_server):
        real = _health.datetime.datetime

        class Later(real):
            @classmethod
            def now(cls, tz=None):
                return real.now(tz) + _health.datetime.timedelta(days=5, hours=1, minutes=30)

        monkeypatch.setattr(_health.datetime, 'datetime', Later)
        assert check('tls_cert', host='127.0.0.1', port=https_server.port).message == 'expired less than a day ago'


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------

@pytest.fixture
def sqlite_db(tmp_path):
    path = tmp_path / 'app.db'
    with sqlite3.connect(path) as connection:
        connection.execute('CREATE TABLE migrations (version TEXT, applied INTEGER)')
        connection.execute("INSERT INTO migrations VALUES ('0042', 1)")
    connection.close()
    return path


class TestSqlite:
    def test_select_one(self, sqlite_db):
        result = check('sql', dsn=f'sqlite://{sqlite_db}')
        assert result.healthy
        assert result.message == "query returned '1'"
        assert result.details == {'backend': 'sqlite', 'value': '1'}

    def test_four_slashes(self, sqlite_db):
        assert check('sql', dsn=f'sqlite:///{sqlite_db}').healthy

    def test_expect(self, sqlite_db):
        query = 'SELECT version FROM migrations ORDER BY version DESC LIMIT 1'
        assert check('sql', dsn=f'sqlite://{sqlite_db}', query=query, expect='0042').healthy
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query=query, expect='0043')
        assert result.status == 'failed'
        assert result.message == "query returned '0042', expected '0043'"

    def test_expect_compares_as_text(self, sqlite_db):
        assert check('sql', dsn=f'sqlite://{sqlite_db}', query='SELECT applied FROM migrations', expect=1).healthy
        assert check('sql', dsn=f'sqlite://{sqlite_db}', query='SELECT NULL', expect='null').healthy

    def test_no_rows(self, sqlite_db):
        query = "SELECT version FROM migrations WHERE version = 'x'"
        assert check('sql', dsn=f'sqlite://{sqlite_db}', query=query).message == 'query returned no rows'
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query=query, expect='0042')
        assert result.status == 'failed'
        assert result.message == "query returned no rows, expected '0042'"

    def test_missing_file_is_never_created(self, tmp_path):
        path = tmp_path / 'missing.db'
        result = check('sql', dsn=f'sqlite://{path}')
        assert result.status == 'failed'
        assert result.message == f'database file {path} not found'
        assert not path.exists()

    def test_read_only(self, sqlite_db):
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query="INSERT INTO migrations VALUES ('9999', 0)")
        assert_error(result, 'query must be a read-only SELECT or WITH statement (got INSERT)')
        with sqlite3.connect(sqlite_db) as connection:
            assert connection.execute('SELECT count(*) FROM migrations').fetchone() == (1,)
        connection.close()

    def test_bad_query(self, sqlite_db):
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query='SELECT * FROM nowhere')
        assert result.message == 'database error: no such table: nowhere'

    def test_not_a_database(self, tmp_path):
        path = tmp_path / 'notes.txt'
        path.write_text('plain text, long enough to not look like an empty database file ' * 10)
        result = check('sql', dsn=f'sqlite://{path}')
        assert result.status == 'failed'
        assert result.message.startswith('database error: ')

    def test_query_timeout(self, sqlite_db):
        query = 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT max(i) FROM n'
        started = time.monotonic()
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query=query, timeout=0.2)
        assert result.message == 'deadline exceeded while running the query (timeout 0.2 s)'
        assert time.monotonic() - started < 2

    def test_locked_database_waits_no_longer_than_the_timeout(self, sqlite_db):
        writer = sqlite3.connect(sqlite_db)
        try:
            writer.execute('PRAGMA journal_mode = DELETE')
            writer.execute('BEGIN EXCLUSIVE')
            started = time.monotonic()
            result = check('sql', dsn=f'sqlite://{sqlite_db}', timeout=0.5)
            assert time.monotonic() - started < 0.5 + 1.5
            assert result.status == 'failed' and 'locked' in result.message
        finally:
            writer.rollback()
            writer.close()

    @pytest.mark.parametrize('dsn, message', [
        ('sqlite://relative.db', 'a sqlite dsn looks like sqlite:///absolute/path/to/file.db'),
        ('sqlite:relative.db', 'a sqlite dsn looks like'),
        ('sqlite:///tmp/a.db?mode=rwc', 'a sqlite dsn looks like'),
        ('mysql://u:p@h/db', "unsupported dsn scheme 'mysql'"),
        ('/tmp/a.db', "unsupported dsn scheme 'none'"),
    ])
    def test_invalid_dsn(self, dsn, message):
        assert_error(check('sql', dsn=dsn), message)

    @pytest.mark.parametrize('options, message', [
        ({}, 'dsn is required for a sql check'),
        ({'dsn': 42}, 'dsn must be a string'),
        ({'dsn': 'sqlite:///tmp/a.db', 'query': '  '}, 'query must not be empty'),
        ({'dsn': 'sqlite:///tmp/a.db', 'path': '/'}, 'option(s) not valid for a sql check: path'),
    ])
    def test_invalid_options(self, options, message):
        assert_error(check('sql', **options), message)


class TestPostgresql:
    def test_connection_refused_hides_password(self, closed_port):
        result = check('sql', dsn=f'postgresql://app:Very-Secret-1@127.0.0.1:{closed_port}/app')
        assert result.status == 'failed'
        assert result.message == 'connection refused'
        assert 'Very-Secret-1' not in json.dumps(result.to_dict())

    def test_invalid_dsn(self):
        result = check('sql', dsn='postgresql://app:Very-Secret-1@127.0.0.1/app?no_such_option=1')
        assert_error(result, 'invalid postgresql dsn')
        assert 'Very-Secret-1' not in result.message

    def test_unusable_dsn_hides_password(self):
        result = check('sql', dsn='postgresql://app:Very-Secret-1@127.0.0.1:notaport/app')
        assert result.status == 'failed'
        assert result.message.startswith('database error: ')
        assert 'Very-Secret-1' not in result.message

    def test_psycopg_missing(self, monkeypatch):
        monkeypatch.setitem(sys.modules, 'psycopg', None)
        assert_error(check('sql', dsn='postgresql://h/db'), 'postgresql checks need the psycopg Python library')

    def test_query(self, postgres):
        result = check('sql', dsn=postgres.dsn(), query='SELECT 40 + 2', expect=42)
        assert result.healthy, result.message
        assert result.details == {'backend': 'postgresql', 'value': '42'}

    def test_session_is_read_only(self, postgres):
        assert_error(check('sql', dsn=postgres.dsn(), query='CREATE TABLE dihya_probe (id int)'), 'read-only SELECT or WITH statement (got CREATE)')

    def test_statement_without_rows_is_refused(self, postgres):
        assert_error(check('sql', dsn=postgres.dsn(), query='SET search_path TO public'), 'read-only SELECT or WITH statement (got SET)')

    def test_statement_timeout(self, postgres):
        started = time.monotonic()
        result = check('sql', dsn=postgres.dsn(), query='SELECT pg_sleep(10)', timeout=1)
        assert result.message == 'deadline exceeded while running the query (timeout 1 s)'
        assert time.monotonic() - started < 1 + 1.5

    def test_wrong_password(self, postgres):
        result = check('sql', dsn=postgres.dsn(password='wrong-Pa55word'))
        assert result.status == 'failed'
        assert 'password authentication failed' in result.message
        assert 'wrong-Pa55word' not in json.dumps(result.to_dict())


def _tree(folder) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its content."""
    found = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


SQLITE_WRITES = [
    "VACUUM INTO '{dir}/copy.db'",
    "VACUUM INTO 'copy.db'",
    "vacuum main into '{dir}/copy2.db'",
    "ATTACH '{dir}/new.db' AS x",
    "ATTACH DATABASE 'file:{dir}/uri.db?mode=rwc' AS x",
    "INSERT INTO migrations VALUES ('9999', 0)",
    "REPLACE INTO migrations VALUES ('0042', 9)",
    "UPDATE migrations SET applied = 0",
    "DELETE FROM migrations",
    "SELECT 1; DROP TABLE migrations",
    "SELECT 1 /* ; */; DELETE FROM migrations",
    "select 1;\nvacuum into '{dir}/copy3.db'",
    "WITH x AS (SELECT 1) DELETE FROM migrations",
    "WITH x AS (SELECT 1) INSERT INTO migrations SELECT '1', 1 FROM x",
    "CREATE TABLE t (a)",
    "CREATE TEMP TABLE t (a)",
    "DROP TABLE migrations",
    "ALTER TABLE migrations ADD COLUMN b",
    "PRAGMA user_version = 5",
    "PRAGMA journal_mode = WAL",
    "PRAGMA query_only = OFF",
    "/* comment */ PRAGMA writable_schema = ON",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "SELECT load_extension('{dir}/evil')",
    "SELECT 'unterminated",
    "SELECT 1 /* unterminated",
]


class TestSqlReadOnly:
    """A health query reads: statements that write, copy or attach are refused, and the connection cannot write anyway."""

    @pytest.mark.parametrize('query', SQLITE_WRITES)
    def test_sqlite_refuses_what_writes(self, sqlite_db, query, monkeypatch):
        folder = sqlite_db.parent
        monkeypatch.chdir(folder)  # A relative VACUUM INTO or ATTACH would land here.
        before = _tree(folder)
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query=query.format(dir=folder))
        assert not result.healthy and result.status in ('error', 'failed'), result
        assert result.attempts == 0 or 'refused' in result.message or 'not authorized' in result.message, result
        assert _tree(folder) == before

    # REINDEX of a database without indexes writes nothing, so the connection has nothing to refuse.
    @pytest.mark.parametrize('query', [query for query in SQLITE_WRITES if 'unterminated' not in query and query != 'REINDEX'])
    def test_sqlite_connection_cannot_write_even_past_the_statement_check(self, sqlite_db, query, monkeypatch):
        """Defence in depth: the statement check bypassed, the connection itself refuses (mode=ro, query_only, authorizer)."""
        folder = sqlite_db.parent
        monkeypatch.chdir(folder)
        before = _tree(folder)
        with pytest.raises(sqlite3.Error):
            _health._query_sqlite(str(sqlite_db), query.format(dir=folder), 2.0)
        assert _tree(folder) == before

    @pytest.mark.parametrize('query, value', [
        ('SELECT version FROM migrations', '0042'),
        ('  select count(*) from migrations;  ', '1'),
        ('-- leading comment\nSELECT 1', '1'),
        ('/* a; b */ SELECT 2', '2'),
        ("SELECT ';DROP TABLE migrations'", ';DROP TABLE migrations'),
        ('SELECT "version" FROM [migrations]', '0042'),
        ('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT max(i) FROM n', '3'),
        ("SELECT json_extract('{\"a\": 7}', '$.a')", '7'),
        ('VALUES (5)', '5'),
    ])
    def test_sqlite_reads_still_work(self, sqlite_db, query, value):
        result = check('sql', dsn=f'sqlite://{sqlite_db}', query=query)
        assert result.healthy, result
        assert result.details['value'] == value

    @pytest.mark.parametrize('query, message', [
        ('SELECT 1; SELECT 2', 'query must be a single statement (found 2)'),
        ('EXPLAIN SELECT 1', 'read-only SELECT or WITH statement (got EXPLAIN)'),
        ('-- only a comment', 'query must be a single statement (found 0)'),
        (';', 'query must be a single statement (found 0)'),
    ])
    def test_statement_check_messages(self, sqlite_db, query, message):
        assert_error(check('sql', dsn=f'sqlite://{sqlite_db}', query=query), message)

    @pytest.fixture
    def pg_table(self, postgres):
        import psycopg  # pylint: disable=import-outside-toplevel

        name = f'dihya_ro_{uuid.uuid4().hex[:8]}'
        with psycopg.connect(postgres.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE TABLE {name} (id int)')
            connection.execute(f'INSERT INTO {name} VALUES (1), (2)')
            connection.execute(f'CREATE SEQUENCE {name}_seq')
        yield name
        with psycopg.connect(postgres.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP TABLE IF EXISTS {name}')
            connection.execute(f'DROP TABLE IF EXISTS {name}_new')
            connection.execute(f'DROP SEQUENCE IF EXISTS {name}_seq')

    @staticmethod
    def _pg_state(postgres, name):
        import psycopg  # pylint: disable=import-outside-toplevel

        with psycopg.connect(postgres.dsn()) as connection:
            rows = connection.execute(f'SELECT id FROM {name} ORDER BY id').fetchall()
            tables = connection.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (f'{name}%',)).fetchone()
            sequence = connection.execute(f'SELECT last_value, is_called FROM {name}_seq').fetchone()
        return rows, tables, sequence

    PG_WRITES = [
        'WITH x AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM x',
        'WITH x AS (INSERT INTO {t} VALUES (3) RETURNING *) SELECT count(*) FROM x',
        'WITH x AS (UPDATE {t} SET id = id + 10 RETURNING *) SELECT count(*) FROM x',
        "SELECT nextval('{t}_seq')",
        "SELECT set_config('transaction_read_only', 'off', false)",
        'SELECT * INTO {t}_new FROM {t}',
        'SELECT * FROM {t} FOR UPDATE',
    ]
    PG_REFUSED_BEFORE_RUNNING = [
        'SELECT 1; DROP TABLE {t}',
        'SELECT 1; COMMIT; DELETE FROM {t}',
        'DELETE FROM {t}',
        'CREATE TABLE {t}_new (id int)',
        'SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE',
        'SELECT $q$;$q$; DELETE FROM {t}',
        "SELECT E'\\''; DELETE FROM {t}; SELECT '",
        'COPY {t} TO STDOUT',
    ]

    @pytest.mark.parametrize('query', PG_WRITES)
    def test_postgresql_session_is_read_only(self, postgres, pg_table, query):
        before = self._pg_state(postgres, pg_table)
        result = check('sql', dsn=postgres.dsn(), query=query.format(t=pg_table))
        assert result.status == 'failed', result
        assert re.search('read-only transaction|read-write mode', result.message), result
        assert self._pg_state(postgres, pg_table) == before

    @pytest.mark.parametrize('query', PG_REFUSED_BEFORE_RUNNING)
    def test_postgresql_refuses_what_is_not_one_read(self, postgres, pg_table, query):
        before = self._pg_state(postgres, pg_table)
        result = check('sql', dsn=postgres.dsn(), query=query.format(t=pg_table))
        assert result.status == 'error' and result.attempts == 0, result
        assert self._pg_state(postgres, pg_table) == before

    # A SET changes no data; COPY TO STDOUT only reads. The statement check alone refuses them.
    @pytest.mark.parametrize('query', [query for query in PG_REFUSED_BEFORE_RUNNING if not query.startswith(('COPY', 'SET'))])
    def test_postgresql_connection_refuses_past_the_statement_check(self, postgres, pg_table, query):
        """Defence in depth: one statement per call (extended protocol) in a read-only session."""
        import psycopg  # pylint: disable=import-outside-toplevel

        before = self._pg_state(postgres, pg_table)
        with pytest.raises(psycopg.Error):
            _health._query_postgresql(postgres.dsn(), query.format(t=pg_table), _health.Budget(5))
        assert self._pg_state(postgres, pg_table) == before

    def test_postgresql_reads_still_work(self, postgres, pg_table):
        result = check('sql', dsn=postgres.dsn(), query=f'WITH x AS (SELECT id FROM {pg_table}) SELECT sum(id) FROM x', expect=3)
        assert result.healthy, result
        assert check('sql', dsn=postgres.dsn(), query="SELECT '50%'", expect='50%').healthy
        assert check('sql', dsn=postgres.dsn(), query='(SELECT 6)', expect=6).healthy


@pytest.mark.parametrize('dsn, masked', [
    ('postgresql://app:s3cret@db:5432/app', 'postgresql://app:********@db:5432/app'),
    ('postgresql://app:p%40ss@db/app', 'postgresql://app:********@db/app'),
    ('postgresql://db/app?user=app&password=s3cret', 'postgresql://db/app?user=app&password=********'),
    ("host=db password='s3 cret' dbname=app", 'host=db password=******** dbname=app'),
    ('host=db password=s3cret dbname=app', 'host=db password=******** dbname=app'),
    ('sqlite:///var/lib/app.db', 'sqlite:///var/lib/app.db'),
    ('postgresql://[::1', 'postgresql://[::1'),
])
def test_mask_dsn(dsn, masked):
    assert mask_dsn(dsn) == masked


def test_psycopg_errors_are_scrubbed():
    secrets = _health._dsn_secrets('postgresql://app:s3cret@db/app')
    describe = _health._describe_psycopg_error
    assert describe(RuntimeError('FATAL: bad password s3cret\nDETAIL: more'), secrets) == 'database error: FATAL: bad password ********'
    assert describe(RuntimeError('could not connect: Connection refused'), secrets) == 'connection refused'
    assert describe(RuntimeError('connection failed: timeout expired'), secrets) == 'timed out'
    assert describe(RuntimeError(''), secrets) == 'database error: RuntimeError'


def test_unexpected_sql_errors_are_scrubbed(monkeypatch, sqlite_db):
    def boom(path, query, timeout):
        raise OSError(f'cannot open {path} with s3cret')
    monkeypatch.setattr(_health, '_query_sqlite', boom)
    spec = CheckSpec('db', 'sql', {'dsn': f'sqlite://{sqlite_db}', 'query': "SELECT 's3cret'"})
    config = validate_spec(spec)
    config = _health.dataclasses.replace(config, secrets=('s3cret',))
    outcome = _health.probe_sql(config, 1.0)
    assert outcome.message == f'OSError: cannot open {sqlite_db} with ********'


# ---------------------------------------------------------------------------
# Deadlines: the whole attempt, every phase, whatever the peer does
# ---------------------------------------------------------------------------

MARGIN = 1.5  # seconds; a bound, not a benchmark


class SlowPeer:
    """A loopback TCP server that runs ``script(connection, stopped)`` for every connection, in its own thread."""

    def __init__(self, script):
        self.script = script
        self.stopped = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                connection, _address = self.sock.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection):
        with connection:
            try:
                self.script(connection, self.stopped)
            except OSError:
                pass

    def stop(self):
        self.stopped.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


def _read_request(connection):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return
        data += chunk


def _trickle(connection, stopped, data, pause):
    for index in range(len(data)):
        if stopped.wait(pause):
            return
        connection.sendall(data[index:index + 1])


def trickled_status_line(connection, stopped):
    _read_request(connection)
    _trickle(connection, stopped, b'HTTP/1.1 200 ' + b'O' * 60000, 0.05)


def trickled_headers(connection, stopped):
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\n')
    for index in range(99):
        if stopped.wait(0.2):
            return
        connection.sendall(f'X-Pad-{index}: {index}\r\n'.encode())


def trickled_body(connection, stopped):
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
    _trickle(connection, stopped, b'x' * 100000, 0.05)


def trickled_chunks(connection, stopped):
    _read_request(connection)
    connection.sendall(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
    while not stopped.wait(0.1):
        connection.sendall(b'1\r\nx\r\n')


def never_respond(connection, stopped):
    stopped.wait(30)


@pytest.fixture
def slow_peer():
    peers = []

    def start(script):
        peers.append(SlowPeer(script))
        return peers[-1]

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def slow_tls_proxy(https_server):
    """A proxy in front of the HTTPS server that relays the server's bytes one every 20 ms (``peer.pause``): a handshake of many seconds."""
    def relay(client, stopped):
        with socket.create_connection(('127.0.0.1', https_server.port), timeout=5) as upstream:
            def forward():
                try:
                    while not stopped.is_set():
                        data = client.recv(4096)
                        if not data:
                            return
                        upstream.sendall(data)
                except OSError:
                    return
            threading.Thread(target=forward, daemon=True).start()
            upstream.settimeout(0.2)
            while not stopped.is_set():
                try:
                    data = upstream.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                _trickle(client, stopped, data, peer.pause)

    peer = SlowPeer(relay)
    peer.pause = 0.02
    yield peer
    peer.stop()


class TestDeadlines:
    @pytest.mark.parametrize('script, phase', [
        (trickled_status_line, 'while reading the status line and headers'),
        (trickled_headers, 'while reading the status line and headers'),
        (trickled_body, 'while reading the response body'),
        (trickled_chunks, 'while reading the response body'),
        (never_respond, 'while reading the status line and headers'),
    ])
    @pytest.mark.parametrize('timeout, deadline, retries', [(0.6, None, 0), (2, 0.8, 0), (0.4, 1.2, 3)])
    def test_http_attempt_and_run_are_bounded(self, slow_peer, script, phase, timeout, deadline, retries):
        peer = slow_peer(script)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('slow', 'http', {'url': f'http://127.0.0.1:{peer.port}/'}, timeout=timeout)],
                              retries=retries, delay=0.1, deadline=deadline)
        elapsed = time.monotonic() - started
        bound = deadline if deadline is not None else timeout * (retries + 1)
        assert elapsed < bound + MARGIN, f'{elapsed:.2f} s'
        assert result.status == 'failed'
        assert result.message.startswith(f'deadline exceeded {phase} ('), result.message
        if deadline is not None and deadline < timeout:
            assert result.message.endswith(f'(run deadline {deadline:g} s)')

    def test_the_case_of_the_report(self, slow_peer):
        """A header every 0.5 s, timeout 2, deadline 4: the check ends at the deadline, not after 50 s."""
        def every_half_second(connection, stopped):
            _read_request(connection)
            connection.sendall(b'HTTP/1.1 200 OK\r\n')
            for index in range(99):
                if stopped.wait(0.5):
                    return
                connection.sendall(f'X-Pad-{index}: {index}\r\n'.encode())

        peer = slow_peer(every_half_second)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('slow', 'http', {'url': f'http://127.0.0.1:{peer.port}/'}, timeout=2)], retries=5, delay=0, deadline=4)
        assert time.monotonic() - started < 4 + MARGIN
        assert result.message.startswith('deadline exceeded while reading the status line and headers')
        assert result.attempts == 2

    @pytest.mark.parametrize('check_type, options', [
        ('https', {'validate_certs': False}),
        ('tls_cert', {}),
    ])
    @pytest.mark.parametrize('peer_kind', ['silent', 'trickled handshake'])
    def test_tls_handshake_is_bounded(self, slow_peer, slow_tls_proxy, check_type, options, peer_kind):
        port = slow_peer(never_respond).port if peer_kind == 'silent' else slow_tls_proxy.port
        options = dict(options, url=f'https://127.0.0.1:{port}/') if check_type == 'https' else dict(options, host='127.0.0.1', port=port)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('tls', check_type, options, timeout=0.6)], retries=1, delay=0, deadline=1)
        assert time.monotonic() - started < 1 + MARGIN
        assert result.message.startswith('deadline exceeded during the TLS handshake ('), result.message

    def test_trickled_tls_proxy_does_work_given_time(self, slow_tls_proxy):
        """The proxy relays a real server: the time-outs above come from its slowness, nothing else."""
        slow_tls_proxy.pause = 0.001
        result = check('tls_cert', host='127.0.0.1', port=slow_tls_proxy.port, timeout=120)
        assert result.status == 'ok' or result.message.startswith('expires in'), result

    def test_connect_is_bounded(self):
        """A listener whose backlog is full: the kernel drops the SYN, connect() waits."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(('127.0.0.1', 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _index in range(4):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                fillers.append(filler)
                try:
                    filler.connect(('127.0.0.1', port))
                except BlockingIOError:
                    pass
            time.sleep(0.2)
            for check_type, options in (('tcp', {'host': '127.0.0.1', 'port': port}), ('http', {'url': f'http://127.0.0.1:{port}/'})):
                started = time.monotonic()
                [result] = run_checks([CheckSpec('c', check_type, options, timeout=1)])
                assert time.monotonic() - started < 1 + MARGIN
                if result.message.startswith('deadline exceeded while connecting'):
                    assert result.message == f'deadline exceeded while connecting to 127.0.0.1:{port} (timeout 1 s)'
                else:  # pragma: no cover - a kernel that completes the handshake anyway leaves the request unanswered
                    assert result.message.startswith('deadline exceeded'), result.message
        finally:
            for filler in fillers:
                filler.close()
            listener.close()

    def test_name_resolution_is_bounded(self, monkeypatch):
        """The system resolver takes no timeout; a hung one must not hold the check."""
        real = socket.getaddrinfo

        def hung_resolver(host, *args, **kwargs):
            if host == 'hung.example.test':
                if len(args) >= 5 and args[4] & socket.AI_NUMERICHOST:
                    raise socket.gaierror(socket.EAI_NONAME, 'not numeric')
                time.sleep(5)
            return real(host, *args, **kwargs)

        monkeypatch.setattr(_health.socket, 'getaddrinfo', hung_resolver)
        for check_type, options in (('tcp', {'host': 'hung.example.test', 'port': 1}), ('http', {'url': 'http://hung.example.test/'}),
                                    ('tls_cert', {'host': 'hung.example.test'})):
            started = time.monotonic()
            [result] = run_checks([CheckSpec('dns', check_type, options, timeout=0.5)])
            assert time.monotonic() - started < 0.5 + MARGIN
            assert result.message == 'deadline exceeded while resolving hung.example.test (timeout 0.5 s)'

    def test_postgresql_server_that_never_answers(self, slow_peer):
        peer = slow_peer(never_respond)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('db', 'sql', {'dsn': f'postgresql://app:S3cret-pw@127.0.0.1:{peer.port}/app'}, timeout=0.5)],
                              retries=1, delay=0, deadline=1)
        assert time.monotonic() - started < 1 + MARGIN
        assert result.message.startswith('deadline exceeded while connecting to the database ('), result.message
        assert 'S3cret-pw' not in json.dumps(result.to_dict())

    def test_supervisor_check_is_bounded(self, tmp_path):
        script = tmp_path / 'supervisorctl'
        script.write_text('#!/bin/sh\nsleep 10\n')
        script.chmod(0o755)
        started = time.monotonic()
        [result] = run_checks([CheckSpec('p', 'process', {'supervisor_program': 'web', 'supervisorctl': str(script)}, timeout=5)], deadline=1)
        assert time.monotonic() - started < 1 + MARGIN
        assert not result.healthy

    def test_budget(self):
        budget = _health.Budget(0.05, 'while waiting')
        assert 0 < budget.remaining() <= 0.05
        time.sleep(0.06)
        with pytest.raises(_health.DeadlineExceeded, match='^deadline exceeded while sleeping$'):
            budget.remaining('while sleeping')

    def test_bounded_call_discards_late_results(self):
        closed = threading.Event()
        budget = _health.Budget(0.1)
        with pytest.raises(_health.DeadlineExceeded, match='while waiting'):
            _health.bounded_call(lambda: time.sleep(0.3) or 'late', budget, 'while waiting', discard=lambda value: closed.set())
        assert closed.wait(2)
        assert _health.bounded_call(lambda: 'fast', _health.Budget(1), 'x') == 'fast'
        with pytest.raises(ZeroDivisionError):
            _health.bounded_call(lambda: 1 / 0, _health.Budget(1), 'x')


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

class TestRunner:
    def test_checks_run_concurrently(self, http_server):
        specs = [CheckSpec(f'slow-{index}', 'http', {'url': http_server.url('/slow')}) for index in range(10)]
        started = time.monotonic()
        results = run_checks(specs, concurrency=10)
        elapsed = time.monotonic() - started
        assert all(result.healthy for result in results)
        assert elapsed < 1.5, f'10 checks of 0.3 s took {elapsed:.2f} s'

    def test_concurrency_limit(self, http_server):
        specs = [CheckSpec(f'slow-{index}', 'http', {'url': http_server.url('/slow')}) for index in range(3)]
        started = time.monotonic()
        run_checks(specs, concurrency=1)
        assert time.monotonic() - started >= 0.9

    def test_results_keep_input_order(self, http_server, closed_port):
        specs = [
            CheckSpec('slow', 'http', {'url': http_server.url('/slow')}),
            CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port}),
            CheckSpec('bad', 'http', {'url': 'nope'}),
            CheckSpec('fast', 'http', {'url': http_server.url('/ok')}),
        ]
        results = run_checks(specs)
        assert [result.name for result in results] == ['slow', 'refused', 'bad', 'fast']
        assert [result.status for result in results] == ['ok', 'failed', 'error', 'ok']

    def test_no_checks(self):
        assert run_checks([]) == []

    def test_retries_rerun_failing_checks(self, http_server):
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        specs = [CheckSpec('flaky', 'http', {'url': url}), CheckSpec('steady', 'http', {'url': http_server.url('/ok')})]
        [flaky, steady] = run_checks(specs, retries=2, delay=0.05)
        assert flaky.healthy and flaky.attempts == 3
        assert steady.healthy and steady.attempts == 1

    def test_retries_exhausted(self, http_server):
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        [result] = run_checks([CheckSpec('flaky', 'http', {'url': url})], retries=1, delay=0.05)
        assert not result.healthy and result.attempts == 2
        assert result.message == 'HTTP 503 not in [200]'

    def test_no_retry_without_retries(self, http_server):
        url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
        assert run_checks([CheckSpec('flaky', 'http', {'url': url})])[0].attempts == 1

    def test_errors_are_not_retried(self):
        [result] = run_checks([CheckSpec('bad', 'http', {'url': 'nope'})], retries=3, delay=0.05)
        assert result.status == 'error' and result.attempts == 0

    def test_delay_between_retries(self, closed_port):
        started = time.monotonic()
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=2, delay=0.2)
        assert result.attempts == 3
        assert time.monotonic() - started >= 0.4

    def test_deadline_bounds_the_run(self, http_server):
        specs = [CheckSpec(f'slow-{index}', 'http', {'url': http_server.url('/slow')}) for index in range(3)]
        started = time.monotonic()
        results = run_checks(specs, concurrency=1, deadline=0.45)
        elapsed = time.monotonic() - started
        assert elapsed < 1.2
        assert results[0].healthy
        assert results[1].message.startswith('deadline exceeded while reading the status line and headers (run deadline 0.45 s)')
        assert results[2].message == 'deadline exceeded before the check could start'
        assert results[2].attempts == 0 and results[2].status == 'failed'

    def test_no_retry_starts_after_the_deadline(self, closed_port):
        started = time.monotonic()
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=10, delay=0.2, deadline=0.5)
        assert time.monotonic() - started < 1.0
        assert 2 <= result.attempts <= 3
        assert result.message == 'connection refused'

    def test_deadline_stops_before_waiting_past_it(self, closed_port):
        [result] = run_checks([CheckSpec('refused', 'tcp', {'host': '127.0.0.1', 'port': closed_port})], retries=10, delay=1, deadline=0.5)
        assert result.attempts == 1

    def test_latency_budget_failure_is_retried(self, http_server):
        [result] = run_checks([CheckSpec('slow', 'http', {'url': http_server.url('/slow')}, latency_budget=0.05)], retries=1, delay=0)
        assert result.attempts == 2 and result.status == 'failed'

    def test_probe_crash_is_a_failure(self, monkeypatch):
        def crash(config, timeout):
            raise RuntimeError('boom')
        monkeypatch.setitem(_health._CHECKS, 'tcp', (_health.parse_tcp, crash, frozenset(('host', 'port'))))
        [result] = run_checks([CheckSpec('tcp', 'tcp', {'host': 'h', 'port': 1})])
        assert result.status == 'failed'
        assert result.message == 'RuntimeError: boom'
        assert result.details == {'host': 'h', 'port': 1}

    def test_probe_config_error(self, monkeypatch):
        def refuse(config, timeout):
            raise CheckConfigError('not on this host')
        monkeypatch.setitem(_health._CHECKS, 'disk', (_health.parse_disk, refuse, frozenset(('path', 'min_free_bytes'))))
        [result] = run_checks([CheckSpec('disk', 'disk', {'path': '/', 'min_free_bytes': 1})], retries=2)
        assert (result.status, result.message, result.attempts) == ('error', 'not on this host', 1)

    @pytest.mark.parametrize('spec', [
        CheckSpec('x', 'http', {'url': 'http://h/', 'status_codes': 5}),
        CheckSpec('x', 'tcp', None),
    ])
    def test_options_of_the_wrong_shape(self, spec):
        [result] = run_checks([spec])
        assert result.status == 'error'
        assert result.message.startswith('invalid options: ')

    def test_invalid_run_options(self):
        with pytest.raises(ValueError, match='concurrency must be at least 1'):
            run_checks([], concurrency=0)

    def test_result_to_dict(self):
        result = CheckResult('a', 'tcp', True, 'ok', 'fine', 0.5, 1, {'port': 1})
        assert result.to_dict() == {
            'name': 'a', 'type': 'tcp', 'healthy': True, 'status': 'ok', 'message': 'fine', 'latency_seconds': 0.5, 'attempts': 1, 'details': {'port': 1},
        }


class TestValidation:
    def test_run_options(self):
        assert validate_run_options(timeout=5, concurrency=1, retries=0, delay=0, deadline=1) == []
        assert validate_run_options(timeout=0, concurrency=0, retries=-1, delay=-1, deadline=-2) == [
            'timeout must be greater than 0 (got 0)',
            'concurrency must be at least 1 (got 0)',
            'retries must be 0 or more (got -1)',
            'delay must be 0 or more (got -1)',
            'deadline must be greater than 0 (got -2)',
        ]
        assert validate_run_options(timeout=float('nan'), delay=float('inf'))[0].startswith('timeout must be greater than 0')
        assert len(validate_run_options(timeout=float('nan'), delay=float('inf'))) == 2

    def test_duplicate_names(self):
        specs = [CheckSpec(name, 'tcp') for name in ('a', 'b', 'a', 'c', 'b', 'a')]
        assert duplicate_names(specs) == ['a', 'b']
        assert duplicate_names(specs[:2]) == []

    @pytest.mark.parametrize('spec, message', [
        (CheckSpec('', 'tcp'), 'every check needs a non-empty name'),
        (CheckSpec('x', 'smtp'), "unknown check type 'smtp'"),
        (CheckSpec('x', 'tcp', timeout=0), 'timeout must be greater than 0 (got 0)'),
        (CheckSpec('x', 'tcp', timeout=-1), 'timeout must be greater than 0 (got -1)'),
        (CheckSpec('x', 'tcp', timeout=True), 'timeout must be greater than 0'),
        (CheckSpec('x', 'tcp', latency_budget=0), 'latency_budget must be greater than 0'),
    ])
    def test_spec(self, spec, message):
        with pytest.raises(CheckConfigError, match=re.escape(message)):
            validate_spec(spec)
        [result] = run_checks([spec])
        assert result.status == 'error' and message in result.message

    @pytest.mark.parametrize('name', ['web', 'group:web_1', 'app@2.service', 'a-b.c', 'x' * 128])
    def test_valid_names(self, name):
        assert validate_name(name, 'name') == name

    @pytest.mark.parametrize('name', ['', '-rf', 'a b', 'a;b', 'a|b', 'a`b`', 'a\nb', 'x' * 129, None, 5])
    def test_invalid_names(self, name):
        with pytest.raises(CheckConfigError, match='invalid program'):
            validate_name(name, 'program')


def test_summarize():
    results = [
        CheckResult('a', 'tcp', True, 'ok', 'connected'),
        CheckResult('healthz', 'http', False, 'failed', 'HTTP 503 not in [200]'),
        CheckResult('db', 'sql', False, 'error', 'dsn is required for a sql check'),
    ]
    assert summarize(results) == '1/3 checks healthy; failed: healthz (HTTP 503 not in [200]), db (dsn is required for a sql check)'
    assert summarize(results[:1]) == '1/1 checks healthy'
    assert summarize([]) == '0/0 checks healthy'


@pytest.mark.parametrize('value, text', [
    ('ok', 'ok'), (b'ok', 'ok'), (1, '1'), (1.5, '1.5'), (True, 'true'), (False, 'false'), (None, 'null'),
    ({'b': 1, 'a': [1]}, '{"a": [1], "b": 1}'), ([1, 'x'], '[1, "x"]'),
])
def test_as_text(value, text):
    assert as_text(value) == text


@pytest.mark.parametrize('exc, text', [
    (ConnectionRefusedError(111, 'Connection refused'), 'connection refused'),
    (ConnectionResetError(104, 'Connection reset by peer'), 'connection reset by peer'),
    (http.client.RemoteDisconnected('Remote end closed connection'), 'connection closed without a response'),
    (socket.timeout('timed out'), 'timed out'),
    (TimeoutError(), 'timed out'),
    (socket.gaierror(-2, 'Name or service not known'), 'cannot resolve host: Name or service not known'),
    (OSError(113, 'No route to host'), 'no route to host'),
    (FileNotFoundError(2, 'No such file or directory', '/x'), 'no such file or directory: /x'),
    (ssl.SSLError(1, 'boom'), 'TLS error: '),
    (http.client.BadStatusLine('garbage'), 'invalid HTTP response (BadStatusLine)'),
    (ValueError('odd'), 'ValueError: odd'),
    (KeyError(), 'KeyError'),
    (OSError('plain'), 'OSError: plain'),
])
def test_describe_error(exc, text):
    assert describe_error(exc).startswith(text)


def test_outcome_defaults():
    assert Outcome(True, 'fine').details == {}


@pytest.mark.parametrize('check_type, options, phase', [
    ('disk', {'path': '/', 'min_free_bytes': 1}, 'while reading the file system of /'),
    ('process', {'pidfile': '/run/hung.pid'}, 'while reading /run/hung.pid'),
])
def test_file_system_calls_that_hang_are_bounded(monkeypatch, check_type, options, phase):
    """statvfs or a read on a dead network file system blocks in the kernel; the check still ends at its timeout."""
    real_statvfs, real_read = _health.os.statvfs, _health._read_text
    monkeypatch.setattr(_health.os, 'statvfs', lambda path: time.sleep(3) or real_statvfs(path))
    monkeypatch.setattr(_health, '_read_text', lambda path, limit=4096: time.sleep(3) or real_read(path, limit))
    started = time.monotonic()
    [result] = run_checks([CheckSpec('hung', check_type, options, timeout=0.3)])
    assert time.monotonic() - started < 0.3 + MARGIN
    assert result.message == f'deadline exceeded {phase} (timeout 0.3 s)'
