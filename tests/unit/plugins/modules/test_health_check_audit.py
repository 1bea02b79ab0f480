# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The dihya.ops.health_check module auditing its own operation (``audit``) and creating its metrics folder (``metrics_dir_mode``)."""

from __future__ import annotations

import json
import pathlib
import stat
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.modules import health_check
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import run_module

if t.TYPE_CHECKING:
    from ansible_collections.dihya.ops.tests.unit.conftest import Server

KEY = 'health-audit-key-0123456789abcdef'
TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'


def audit(log: pathlib.Path) -> dict[str, t.Any]:
    return {'path': str(log), 'key': KEY, 'operation': 'check_health', 'user': 'alice', 'tenant': 'acme', 'trace_id': TRACE,
            'route': 'dihya.ops.check_health', 'host': 'web-1', 'labels': {'play': 'Check', 'environment': 'dev'}}


def records(log: pathlib.Path) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in log.read_text(encoding='utf-8').splitlines()]


def test_the_start_and_end_events_are_written_around_the_checks(tmp_path: pathlib.Path, http_server: Server) -> None:
    log = tmp_path / 'audit' / 'audit.log'
    result = run_module(health_check.main, {'checks': [{'name': 'web', 'type': 'http', 'url': http_server.url('/ok')}],
                                            'audit': audit(log)})
    assert not result.get('failed') and result['healthy'] and result['audit_finished'] is True
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    written = records(log)
    assert [(entry['event']['action'], entry['event']['outcome']) for entry in written] == [
        ('check_health.started', 'success'), ('check_health.finished', 'success')]
    assert [entry['dihya']['audit']['seq'] for entry in written] == [1, 2]
    for entry in written:
        assert entry['event']['category'] == 'ops' and entry['trace']['id'] == TRACE and entry['host']['name'] == 'web-1'
        assert entry['labels'] == {'play': 'Check', 'environment': 'dev'}
        assert 'alice' not in json.dumps(entry)
        assert 'details' not in entry.get('dihya', {}) or not entry['dihya'].get('details')


def test_an_unhealthy_host_records_its_failure_before_failing(tmp_path: pathlib.Path) -> None:
    log = tmp_path / 'audit.log'
    result = run_module(health_check.main, {'checks': [{'name': 'gone', 'type': 'disk', 'path': str(tmp_path / 'missing'),
                                                        'min_free_bytes': 1}],
                                            'fail_on_unhealthy': True, 'label': 'web-1', 'audit': audit(log)})
    assert result['failed'] and result['msg'].startswith('web-1 is unhealthy: 0/1 checks healthy')
    assert result['audit_finished'] is True
    started, finished = records(log)
    assert started['event']['action'] == 'check_health.started'
    assert (finished['event']['action'], finished['event']['outcome']) == ('check_health.finished', 'failure')
    assert result['msg'] in json.dumps(finished)


def test_bad_options_record_their_failure(tmp_path: pathlib.Path) -> None:
    log = tmp_path / 'audit.log'
    result = run_module(health_check.main, {'checks': [{'name': 'x', 'type': 'tcp', 'host': '127.0.0.1', 'port': 1}],
                                            'timeout': -1, 'audit': audit(log)})
    assert result['failed'] and result['audit_finished'] is True
    assert [entry['event']['outcome'] for entry in records(log)] == ['success', 'failure']


def test_check_mode_records_nothing_and_creates_no_folder(tmp_path: pathlib.Path, http_server: Server) -> None:
    log = tmp_path / 'audit' / 'audit.log'
    metrics = tmp_path / 'metrics' / 'health.prom'
    result = run_module(health_check.main, {'checks': [{'name': 'web', 'type': 'http', 'url': http_server.url('/ok')}],
                                            'audit': audit(log), 'metrics_path': str(metrics), 'metrics_dir_mode': '0755'},
                        check_mode=True)
    assert not result.get('failed') and result['metrics_dir_created'] is True and result['changed'] is True
    assert result['audit_finished'] is False
    assert not log.parent.exists() and not metrics.parent.exists()


def test_the_metrics_folder_is_created_once_with_its_mode(tmp_path: pathlib.Path, http_server: Server) -> None:
    metrics = tmp_path / 'metrics' / 'health.prom'
    args = {'checks': [{'name': 'web', 'type': 'http', 'url': http_server.url('/ok')}], 'metrics_path': str(metrics),
            'metrics_dir_mode': '0755'}
    first = run_module(health_check.main, args)
    assert first['metrics_dir_created'] is True and first['changed'] is True and first['metrics_written'] is True
    assert stat.S_IMODE(metrics.parent.stat().st_mode) == 0o755
    metrics.parent.chmod(0o750)
    again = run_module(health_check.main, args)
    assert again['metrics_dir_created'] is False and again['changed'] is False
    assert stat.S_IMODE(metrics.parent.stat().st_mode) == 0o750


@pytest.mark.parametrize('mode', ['rwx', '99999', '-1', '0o755x'])
def test_a_bad_folder_mode_is_refused(tmp_path: pathlib.Path, mode: str) -> None:
    metrics = tmp_path / 'metrics' / 'health.prom'
    result = run_module(health_check.main, {'checks': [{'name': 'd', 'type': 'disk', 'path': str(tmp_path), 'min_free_bytes': 1}],
                                            'metrics_path': str(metrics), 'metrics_dir_mode': mode})
    assert result['failed'] and 'metrics_dir_mode' in result['msg']
    assert not metrics.parent.exists()


def test_a_file_in_place_of_the_audit_folder_is_refused_and_nothing_runs(tmp_path: pathlib.Path) -> None:
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / 'audit').write_text('not a folder')
    metrics = tmp_path / 'metrics' / 'health.prom'
    result = run_module(health_check.main, {'checks': [{'name': 'd', 'type': 'disk', 'path': str(tmp_path), 'min_free_bytes': 1}],
                                            'audit': audit(tmp_path / 'audit' / 'audit.log'), 'metrics_path': str(metrics),
                                            'metrics_dir_mode': '0755'})
    assert result['failed'] and 'not a directory' in result['msg']
    assert not metrics.parent.exists() and not list((tmp_path / 'elsewhere').iterdir())
