# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the process check: pidfiles, process names and supervisor programs (a real supervisord)."""

from __future__ import annotations

import base64
import http.server
import os
import pathlib
import socket
import subprocess
import threading
import time
import typing as t
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import CheckConfigError
from ansible_collections.dihya.ops.plugins.module_utils._probe_process import validate_name
from ansible_collections.dihya.ops.plugins.module_utils._process import pid_alive
from ansible_collections.dihya.ops.plugins.module_utils._supervisor import SupervisorError
from ansible_collections.dihya.ops.plugins.module_utils._supervisor_rpc import ServerUrl, server_url, status as rpc_status
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Supervisor


# ---------------------------------------------------------------------------
# Process
# ---------------------------------------------------------------------------

class TestPidfile:
    def test_running(self, sleeper: subprocess.Popen[bytes], tmp_path: pathlib.Path) -> None:
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(f'{sleeper.pid}\n')
        result = check('process', pidfile=str(pidfile))
        assert result.healthy
        assert result.message == f'process {sleeper.pid} is running'
        assert result.details == {'pidfile': str(pidfile), 'pid': sleeper.pid}

    def test_missing_pidfile(self, tmp_path: pathlib.Path) -> None:
        result = check('process', pidfile=str(tmp_path / 'none.pid'))
        assert result.status == 'failed'
        assert result.message == f"pidfile {tmp_path / 'none.pid'} not found"

    @pytest.mark.parametrize('content', ['', 'abc', '-5', '0', '12 34'])
    def test_garbage(self, tmp_path: pathlib.Path, content: str) -> None:
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(content)
        assert check('process', pidfile=str(pidfile)).message == f'pidfile {pidfile} does not contain a PID'

    def test_unreadable_pidfile_is_a_failure(self, tmp_path: pathlib.Path) -> None:
        result = check('process', pidfile=str(tmp_path))
        assert result.status == 'failed'
        assert result.message == f'is a directory: {tmp_path}'

    def test_dead_process(self, tmp_path: pathlib.Path) -> None:
        process = subprocess.Popen(['true'])
        process.wait()
        pidfile = tmp_path / 'app.pid'
        pidfile.write_text(str(process.pid))
        result = check('process', pidfile=str(pidfile))
        assert not result.healthy
        assert result.message == f'process {process.pid} from {pidfile} is not running'

    def test_zombie_is_not_running(self) -> None:
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

    def test_own_process(self) -> None:
        assert pid_alive(os.getpid())

    def test_process_of_another_user(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def denied(pid: int, signal: int) -> t.NoReturn:
            raise PermissionError(1, 'Operation not permitted')
        monkeypatch.setattr(os, 'kill', denied)
        assert pid_alive(os.getpid())
        assert pid_alive(2 ** 22 + 12345)  # no /proc entry: trust kill()


class TestProcessName:
    def test_running(self, sleeper: subprocess.Popen[bytes]) -> None:
        result = check('process', process_name='sleep')
        assert result.healthy
        assert sleeper.pid in result.details['pids']
        assert result.details['count'] >= 1
        assert result.message.endswith('named sleep running')

    def test_not_running(self) -> None:
        name = f'no-such-proc-{uuid.uuid4().hex[:8]}'
        result = check('process', process_name=name)
        assert result.status == 'failed'
        assert result.message == f'no process named {name} is running'
        assert result.details == {'process_name': name, 'count': 0, 'pids': []}

    def test_own_process_is_not_counted(self) -> None:
        with open('/proc/self/comm', encoding='utf-8') as handle:
            own = handle.read().strip()
        result = check('process', process_name=own)
        assert os.getpid() not in result.details['pids']

    @pytest.mark.parametrize('name', ['web; rm -rf /', '', '-c', 'a/b', 'x' * 129, '$(id)', 'web\n'])
    def test_invalid_name(self, name: t.Any) -> None:
        assert_error(check('process', process_name=name), 'invalid process name')


class TestProcessOptions:
    @pytest.mark.parametrize('options, message', [
        ({}, 'exactly one of pidfile, process_name, supervisor_program (got none)'),
        ({'pidfile': '/run/a.pid', 'process_name': 'a'}, '(got pidfile, process_name)'),
        ({'pidfile': '/run/a.pid', 'supervisorctl': '/usr/bin/supervisorctl'}, 'supervisorctl is only valid together with supervisor_program'),
        ({'process_name': 'a', 'supervisor_config': '/etc/s.conf'}, 'supervisor_config is only valid together with supervisor_program'),
        ({'process_name': 'a', 'host': 'h'}, 'option(s) not valid for a process check: host'),
    ])
    def test_invalid(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('process', **options), message)


class TestSupervisor:
    def program(self, supervisor: Supervisor, program: str, **options: t.Any) -> CheckResult:
        options.setdefault('supervisorctl', supervisor.supervisorctl)
        options.setdefault('supervisor_config', supervisor.config)
        return check('process', supervisor_program=program, **options)

    def test_running(self, supervisor: Supervisor) -> None:
        result = self.program(supervisor, 'web')
        assert result.healthy, result.message
        assert result.message.startswith('supervisor program web is RUNNING (pid ')
        assert result.details['supervisor_state'] == 'RUNNING'
        assert pid_alive(result.details['pid'])
        assert 'uptime' in result.details

    @pytest.mark.parametrize('program, state', [('idle', 'STOPPED'), ('crashy', 'FATAL')])
    def test_not_running(self, supervisor: Supervisor, program: str, state: str) -> None:
        result = self.program(supervisor, program)
        assert result.status == 'failed'
        assert result.details['supervisor_state'] == state
        assert result.message.startswith(f'supervisor program {program} is {state}')

    def test_unknown_program(self, supervisor: Supervisor) -> None:
        result = self.program(supervisor, 'ghost')
        assert result.status == 'failed'
        assert result.message == 'supervisord has no program named ghost'

    def test_hostile_name_is_never_run(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        marker = tmp_path / f'pwned-{uuid.uuid4().hex}'
        result = self.program(supervisor, f'web; touch {marker}')
        assert_error(result, 'invalid supervisor program name')
        result = self.program(supervisor, f'$(touch {marker})')
        assert_error(result, 'invalid supervisor program name')
        assert not marker.exists()

    def test_supervisorctl_not_found(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        assert_error(self.program(supervisor, 'web', supervisorctl=str(tmp_path / 'supervisorctl')), 'supervisorctl executable not found')
        result = check('process', supervisor_program='web', supervisorctl='no-such-supervisorctl-here')
        assert_error(result, 'supervisorctl executable not found: no-such-supervisorctl-here')

    def test_missing_config(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        result = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=str(tmp_path / 'nope.conf'))
        assert_error(result, 'supervisor_config')

    def test_supervisord_not_running(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        config = tmp_path / 'other.conf'
        config.write_text(f'[supervisorctl]\nserverurl=unix://{tmp_path}/absent.sock\n')
        result = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=str(config))
        assert result.status == 'failed'
        assert result.message.startswith('supervisord is not reachable: ')
        assert 'absent.sock' in result.message

    def test_timeout(self, tmp_path: pathlib.Path) -> None:
        slow = tmp_path / 'supervisorctl'
        slow.write_text('#!/bin/sh\nexec sleep 5\n')
        slow.chmod(0o755)
        started = time.monotonic()
        result = check('process', supervisor_program='web', supervisorctl=str(slow), timeout=0.3)
        assert result.message == 'supervisorctl timed out after 0.3s'
        assert time.monotonic() - started < 3

    def test_unexpected_output(self, tmp_path: pathlib.Path) -> None:
        odd = tmp_path / 'supervisorctl'
        odd.write_text('#!/bin/sh\nexit 3\n')
        odd.chmod(0o755)
        result = check('process', supervisor_program='web', supervisorctl=str(odd))
        assert result.message == 'cannot read the state of web: no output (exit code 3)'
        assert result.details == {'supervisor_program': 'web'}

    def test_argument_list(self, tmp_path: pathlib.Path) -> None:
        # The program name reaches supervisorctl as one argument, after "status".
        recorder = tmp_path / 'supervisorctl'
        args_file = tmp_path / 'args'
        recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {args_file}\necho "group:web-1 RUNNING pid 42, uptime 1:02:03"\n')
        recorder.chmod(0o755)
        result = check('process', supervisor_program='group:web-1', supervisorctl=str(recorder))
        assert result.healthy
        assert result.details['pid'] == 42 and result.details['uptime'] == '1:02:03'
        assert args_file.read_text().splitlines() == ['status', 'group:web-1']


class TestNames:
    @pytest.mark.parametrize('name', ['web', 'group:web_1', 'app@2.service', 'a-b.c', 'x' * 128])
    def test_valid_names(self, name: t.Any) -> None:
        assert validate_name(name, 'name') == name

    @pytest.mark.parametrize('name', ['', '-rf', 'a b', 'a;b', 'a|b', 'a`b`', 'a\nb', 'x' * 129, None, 5])
    def test_invalid_names(self, name: t.Any) -> None:
        with pytest.raises(CheckConfigError, match='invalid program'):
            validate_name(name, 'program')


class TestSupervisorRpc:
    """The state read over supervisord's XML-RPC interface when the configuration names its server URL (no supervisorctl run)."""

    def test_the_state_is_read_without_running_supervisorctl(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        marker = tmp_path / 'supervisorctl-ran'
        recorder = tmp_path / 'supervisorctl'
        recorder.write_text(f'#!/bin/sh\ntouch {marker}\nexit 3\n')
        recorder.chmod(0o755)
        running = check('process', supervisor_program='web', supervisorctl=str(recorder), supervisor_config=supervisor.config)
        stopped = check('process', supervisor_program='idle', supervisorctl=str(recorder), supervisor_config=supervisor.config)
        ghost = check('process', supervisor_program='ghost', supervisorctl=str(recorder), supervisor_config=supervisor.config)
        assert running.healthy and running.message.startswith('supervisor program web is RUNNING (pid '), running.message
        assert pid_alive(running.details['pid'])
        assert stopped.details['supervisor_state'] == 'STOPPED'
        assert ghost.message == 'supervisord has no program named ghost'
        assert not marker.exists()

    def test_the_same_answer_as_supervisorctl(self, supervisor: Supervisor, tmp_path: pathlib.Path) -> None:
        # Without a configuration file supervisorctl is asked: both give the same state and PID.
        config = tmp_path / 'ctl.conf'
        config.write_text('[include]\nfiles = none.conf\n' + pathlib.Path(supervisor.config).read_text())
        assert server_url(str(config)) is None
        by_rpc = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=supervisor.config)
        by_ctl = check('process', supervisor_program='web', supervisorctl=supervisor.supervisorctl, supervisor_config=str(config))
        assert (by_rpc.details['supervisor_state'], by_rpc.details['pid']) == (by_ctl.details['supervisor_state'], by_ctl.details['pid'])


class TestServerUrl:
    @pytest.mark.parametrize(('text', 'expected'), [
        ('[supervisorctl]\nserverurl = unix:///run/s.sock\n', ServerUrl('unix:///run/s.sock')),
        ('[supervisorctl]\nserverurl = unix://%(here)s/s.sock ; the socket\n', ServerUrl('unix://{here}/s.sock')),
        ('[supervisorctl]\nserverurl = http://127.0.0.1:9001\nusername = ops\npassword = s3cret\n', ServerUrl('http://127.0.0.1:9001', 'ops', 's3cret')),
        ('[supervisorctl]\nserverurl = unix://%(ENV_DIHYA_TEST_RUN)s/s.sock\n', ServerUrl('unix:///srv/run/s.sock')),
    ])
    def test_resolved(self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: ServerUrl) -> None:
        monkeypatch.setenv('DIHYA_TEST_RUN', '/srv/run')
        config = tmp_path / 'supervisord.conf'
        config.write_text(text)
        assert server_url(str(config)) == ServerUrl(expected.url.format(here=tmp_path), expected.username, expected.password)

    @pytest.mark.parametrize('text', [
        '[unix_http_server]\nfile = /run/s.sock\n',  # no serverurl: supervisorctl's own default applies
        '[supervisorctl]\nserverurl = unix://%(program_name)s.sock\n',
        '[supervisorctl]\nserverurl = https://127.0.0.1:9001\n',
        '[supervisorctl]\nserverurl = unix:///run/s.sock\n[include]\nfiles = conf.d/*.conf\n',
        'not an ini file\n',
        '[supervisorctl]\nserverurl = unix:///a\n[supervisorctl]\nserverurl = unix:///b\n[[x\n',
    ])
    def test_left_to_supervisorctl(self, tmp_path: pathlib.Path, text: str) -> None:
        config = tmp_path / 'supervisord.conf'
        config.write_text(text)
        assert server_url(str(config)) is None
        assert server_url(str(tmp_path / 'missing.conf')) is None

    def test_password_is_not_in_the_repr(self) -> None:
        assert 's3cret' not in repr(ServerUrl('http://127.0.0.1:9001', 'ops', 's3cret'))


class TestRpcFailures:
    def test_a_silent_server_is_bounded_by_the_timeout(self, tmp_path: pathlib.Path) -> None:
        path = tmp_path / 's.sock'
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        try:
            started = time.monotonic()
            with pytest.raises(SupervisorError, match='supervisord is not reachable: unix://'):
                rpc_status(ServerUrl(f'unix://{path}'), 'web', 0.3)
            assert time.monotonic() - started < 3
        finally:
            listener.close()

    def test_credentials_are_sent_and_an_http_error_is_reported(self, tmp_path: pathlib.Path) -> None:
        seen: list[str] = []

        class Refuse(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append(self.headers.get('Authorization', ''))
                self.send_response(401)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args: t.Any) -> None:
                pass

        server = http.server.HTTPServer(('127.0.0.1', 0), Refuse)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f'http://127.0.0.1:{server.server_address[1]}'
            with pytest.raises(SupervisorError, match='answered HTTP 401') as raised:
                rpc_status(ServerUrl(url, 'ops', 's3cret'), 'web', 2)
            assert 's3cret' not in str(raised.value)
            assert seen == ['Basic ' + base64.b64encode(b'ops:s3cret').decode()]
        finally:
            server.shutdown()
            server.server_close()

    @pytest.mark.parametrize('name', ['web; touch x', '-rf', '$(id)'])
    def test_hostile_names_never_reach_supervisord(self, name: str) -> None:
        with pytest.raises(ValueError, match='invalid supervisor program name'):
            rpc_status(ServerUrl('unix:///nonexistent/s.sock'), name, 1)
