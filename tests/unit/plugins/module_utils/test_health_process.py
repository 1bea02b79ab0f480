# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the process check: pidfiles, process names and supervisor programs (a real supervisord)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
import typing as t
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._health import CheckResult
from ansible_collections.dihya.ops.plugins.module_utils._probe_common import CheckConfigError
from ansible_collections.dihya.ops.plugins.module_utils._probe_process import validate_name
from ansible_collections.dihya.ops.plugins.module_utils._process import pid_alive
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
