# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""dihya.ops.supervisor_program against a real supervisord (the ``supervisor`` fixture)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _supervisor
from ansible_collections.dihya.ops.plugins.modules import supervisor_program

from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module


def args(supervisor, name: str, state: str, **extra) -> dict:
    return dict(name=name, state=state, config=supervisor.config, supervisorctl=supervisor.supervisorctl, **extra)


def pid_of(supervisor, program: str) -> int | None:
    status = _supervisor.parse_status_line(supervisor.ctl('status', program))
    return status.pid if status else None


@pytest.fixture
def idle(supervisor):
    """The ``idle`` program, stopped again after the test."""
    yield 'idle'
    supervisor.ctl('stop', 'idle')
    supervisor.wait_for_state('idle', 'STOPPED')


def test_start_stop_are_idempotent(supervisor, idle):
    started = run_module(supervisor_program.main, args(supervisor, idle, 'started'))
    assert started['changed'] is True
    assert started['state_before'] == 'STOPPED' and started['pid_before'] is None
    assert started['state_after'] == 'RUNNING' and started['pid_after'] == pid_of(supervisor, idle)

    again = run_module(supervisor_program.main, args(supervisor, idle, 'started'))
    assert again['changed'] is False and again['pid_after'] == started['pid_after']

    stopped = run_module(supervisor_program.main, args(supervisor, idle, 'stopped'))
    assert stopped['changed'] is True and stopped['state_after'] == 'STOPPED' and stopped['pid_after'] is None
    assert run_module(supervisor_program.main, args(supervisor, idle, 'stopped'))['changed'] is False


def test_restart_replaces_the_process(supervisor):
    before = pid_of(supervisor, 'web')
    result = run_module(supervisor_program.main, args(supervisor, 'web', 'restarted'))
    assert result['changed'] is True
    assert result['pid_before'] == before
    assert result['pid_after'] not in (None, before)
    assert os.path.exists(f"/proc/{result['pid_after']}")


def test_check_mode_reports_and_restarts_nothing(supervisor, idle):
    before = pid_of(supervisor, 'web')
    result = run_module(supervisor_program.main, args(supervisor, 'web', 'restarted'), check_mode=True)
    assert result['changed'] is True and result['state_after'] == 'RUNNING' and result['pid_after'] is None
    assert pid_of(supervisor, 'web') == before
    would_start = run_module(supervisor_program.main, args(supervisor, idle, 'started'), check_mode=True)
    assert would_start['changed'] is True
    assert 'STOPPED' in supervisor.ctl('status', idle)


def test_program_that_cannot_start_fails_with_supervisor_message(supervisor):
    result = run_module(supervisor_program.main, args(supervisor, 'crashy', 'restarted'))
    assert result['failed'] is True
    assert 'supervisorctl restart crashy failed' in result['msg'] and 'ERROR' in result['msg']
    assert result['state_before'] == 'FATAL'


@pytest.mark.parametrize('name', ['web; rm -rf /', '../web', '-c', '$(id)', 'web\n', ''])
def test_hostile_names_are_refused_before_anything_runs(supervisor, tmp_path, name):
    canary = tmp_path / 'canary'
    result = run_module(supervisor_program.main, args(supervisor, name + f' && touch {canary}' if name else name, 'restarted'))
    assert result['failed'] is True
    assert 'invalid supervisor program name' in result['msg']
    assert not canary.exists()


def test_unknown_program_and_unreachable_supervisord(supervisor, tmp_path):
    unknown = run_module(supervisor_program.main, args(supervisor, 'ghost', 'started'))
    assert unknown['failed'] is True and unknown['msg'] == 'supervisord has no program named ghost'

    config = tmp_path / 'supervisord.conf'
    config.write_text(f'[supervisorctl]\nserverurl=unix://{tmp_path}/absent.sock\n')
    down = run_module(supervisor_program.main, dict(name='web', state='started', config=str(config), supervisorctl=supervisor.supervisorctl))
    assert down['failed'] is True and down['msg'].startswith('supervisord is not reachable')

    missing = run_module(supervisor_program.main, dict(name='web', state='started', config=str(tmp_path / 'nope.conf'),
                                                       supervisorctl=supervisor.supervisorctl))
    assert missing['failed'] is True and 'does not exist or is not readable' in missing['msg']


def test_supervisorctl_is_looked_up_on_path(supervisor, monkeypatch):
    monkeypatch.setenv('PATH', os.path.dirname(supervisor.supervisorctl) + os.pathsep + os.environ.get('PATH', ''))
    result = run_module(supervisor_program.main, dict(name='web', state='started', config=supervisor.config))
    assert result['changed'] is False and result['state_after'] == 'RUNNING'


def test_status_line_parsing():
    running = _supervisor.parse_status_line('dihya-web   RUNNING   pid 4242, uptime 0:01:02')
    assert running == _supervisor.ProgramStatus('dihya-web', 'RUNNING', 4242, '0:01:02', 'pid 4242, uptime 0:01:02')
    assert running.running
    stopped = _supervisor.parse_status_line('idle  STOPPED   Not started')
    assert stopped.pid is None and not stopped.running and stopped.description == 'Not started'
    assert _supervisor.parse_status_line('idle: ERROR (no such process)') is None
    assert _supervisor.parse_status_line('') is None


def test_client_refuses_unknown_actions_and_reports_runner_failures():
    ctl = _supervisor.Supervisorctl(lambda argv: (0, '', ''), 'supervisorctl')
    with pytest.raises(ValueError, match='unknown supervisorctl action'):
        ctl.act('reload', 'web')
    runner = _supervisor.subprocess_runner(timeout=0.2)
    with pytest.raises(_supervisor.SupervisorError, match='timed out'):
        runner(['sleep', '5'])
    with pytest.raises(_supervisor.SupervisorError, match='cannot run'):
        runner(['/nonexistent/supervisorctl'])
