# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.health_check module, run in-process through the module harness."""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest

from ansible_collections.dihya.ops.plugins.modules import health_check
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patch_module_exits,
    promtool_check,
    run_module,
    set_module_args,
)

RESULT_KEYS = {'changed', 'healthy', 'summary', 'failed_checks', 'checks', 'duration_seconds', 'metrics_path', 'metrics_written'}


def run(args, check_mode=False):
    return run_module(health_check.main, args, check_mode=check_mode)


def test_all_healthy(http_server, tmp_path):
    result = run({'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/ok'), 'json_field': 'database.status', 'json_value': 'ok'},
        {'name': 'port', 'type': 'tcp', 'host': '127.0.0.1', 'port': http_server.port},
        {'name': 'disk', 'type': 'disk', 'path': str(tmp_path), 'min_free_bytes': 1},
    ]})
    assert set(result) == RESULT_KEYS
    assert result['changed'] is False
    assert result['healthy'] is True
    assert result['failed_checks'] == []
    assert result['summary'] == '3/3 checks healthy'
    assert [check['name'] for check in result['checks']] == ['healthz', 'port', 'disk']
    assert result['checks'][0]['details']['status_code'] == 200
    assert set(result['checks'][0]) == {'name', 'type', 'healthy', 'status', 'message', 'latency_seconds', 'attempts', 'details'}
    assert result['metrics_path'] is None and result['metrics_written'] is False
    assert result['duration_seconds'] > 0


def test_unhealthy_without_failing(http_server):
    result = run({'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
        {'name': 'ready', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert 'failed' not in result
    assert result['changed'] is False
    assert result['healthy'] is False
    assert result['failed_checks'] == ['healthz']
    assert result['summary'] == '2/3 checks healthy; failed: healthz (HTTP 503 not in [200])'


def test_fail_on_unhealthy(http_server, closed_port):
    result = run({'fail_on_unhealthy': True, 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'db', 'type': 'tcp', 'host': '127.0.0.1', 'port': closed_port},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['failed'] is True
    assert result['msg'] == '1/3 checks healthy; failed: healthz (HTTP 503 not in [200]), db (connection refused)'
    assert result['msg'] == result['summary']
    assert result['failed_checks'] == ['healthz', 'db']
    assert len(result['checks']) == 3
    assert result['changed'] is False


def test_fail_on_unhealthy_when_healthy(http_server):
    result = run({'fail_on_unhealthy': True, 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert 'failed' not in result and result['healthy'] is True


def test_per_check_errors_do_not_stop_the_others(http_server):
    result = run({'checks': [
        {'name': 'bad', 'type': 'http', 'url': 'http://[::1/'},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    bad, good = result['checks']
    assert bad['status'] == 'error' and bad['message'].startswith('malformed url')
    assert good['healthy'] is True
    assert result['failed_checks'] == ['bad']


def test_check_timeout_overrides_the_default(http_server):
    result = run({'timeout': 0.1, 'checks': [
        {'name': 'slow', 'type': 'http', 'url': http_server.url('/slow')},
        {'name': 'patient', 'type': 'http', 'url': http_server.url('/slow'), 'timeout': 5},
    ]})
    assert [check['message'] for check in result['checks']] == [
        'deadline exceeded while reading the status line and headers (timeout 0.1 s)', 'HTTP 200']


def test_retries_rerun_failing_checks(http_server):
    url = http_server.url(f'/flaky/{uuid.uuid4().hex}')
    result = run({'retries': 2, 'delay': 0.05, 'checks': [
        {'name': 'flaky', 'type': 'http', 'url': url},
        {'name': 'steady', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['healthy'] is True
    assert [check['attempts'] for check in result['checks']] == [3, 1]


def test_deadline(http_server):
    result = run({'concurrency': 1, 'deadline': 0.45, 'checks': [
        {'name': f'slow-{index}', 'type': 'http', 'url': http_server.url('/slow')} for index in range(3)
    ]})
    assert result['duration_seconds'] < 1.2
    assert result['checks'][2]['message'] == 'deadline exceeded before the check could start'


def test_metrics_written(http_server, tmp_path):
    path = tmp_path / 'health.prom'
    result = run({'tenant': 'acme', 'metrics_path': str(path), 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
        {'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')},
    ]})
    assert result['metrics_written'] is True
    assert result['metrics_path'] == str(path)
    assert result['changed'] is False
    assert 'warnings' not in result
    promtool_check(str(path))
    text = path.read_text()
    assert 'dihya_health_check_up{check="healthz",tenant="acme",type="http"} 0.0' in text
    assert 'dihya_health_check_up{check="ok",tenant="acme",type="http"} 1.0' in text
    assert 'dihya_health_check_healthy{tenant="acme"} 0.0' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_metrics_written_before_failing(http_server, tmp_path):
    path = tmp_path / 'health.prom'
    result = run({'fail_on_unhealthy': True, 'metrics_path': str(path), 'checks': [
        {'name': 'healthz', 'type': 'http', 'url': http_server.url('/unavailable')},
    ]})
    assert result['failed'] is True
    assert result['metrics_written'] is True
    promtool_check(str(path))


def test_check_mode_runs_checks_but_writes_no_metrics(http_server, tmp_path):
    path = tmp_path / 'health.prom'
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}, check_mode=True)
    assert result['healthy'] is True
    assert result['checks'][0]['attempts'] == 1
    assert result['metrics_written'] is False
    assert result['changed'] is False
    assert not path.exists()


def test_metrics_directory_missing(http_server, tmp_path):
    path = tmp_path / 'absent' / 'health.prom'
    args = {'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}
    result = run(args)
    assert result['failed'] is True
    assert result['msg'] == f"the directory of metrics_path does not exist: {tmp_path / 'absent'}"
    assert 'checks' not in result, 'nothing runs when the metrics cannot be written'

    result = run(args, check_mode=True)
    assert 'failed' not in result
    assert result['healthy'] is True
    assert result['warnings'] == [f"the directory of metrics_path does not exist: {tmp_path / 'absent'} (it must exist when the task runs outside check mode)"]


def test_metrics_write_failure(http_server):
    result = run({'metrics_path': '/proc/dihya-health.prom', 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['failed'] is True
    assert result['msg'].startswith('cannot write /proc/dihya-health.prom')
    assert result['checks'][0]['healthy'] is True
    assert result['metrics_written'] is False


def test_metrics_path_without_prom_suffix(http_server, tmp_path):
    path = tmp_path / 'health.txt'
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['metrics_written'] is True
    assert result['warnings'] == [f'metrics_path {path} does not end in .prom; the node_exporter textfile collector ignores such files']


def test_unparsable_previous_metrics_warn(http_server, tmp_path):
    path = tmp_path / 'health.prom'
    path.write_text('garbage {\n')
    result = run({'metrics_path': str(path), 'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]})
    assert result['metrics_written'] is True
    assert len(result['warnings']) == 1 and 'cannot parse the existing metrics file' in result['warnings'][0]


def test_prometheus_client_missing(http_server, tmp_path, monkeypatch):
    monkeypatch.setattr(health_check, 'HAS_PROMETHEUS_CLIENT', False)
    args = {'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}
    assert run(args)['healthy'] is True, 'the library is only needed with metrics_path'
    result = run(dict(args, metrics_path=str(tmp_path / 'health.prom')))
    assert result['failed'] is True
    assert 'prometheus_client' in result['msg']
    assert 'Failed to import the required Python library' in result['msg']


def test_hostile_supervisor_program_is_never_run(supervisor, tmp_path):
    marker = f'/tmp/pwned-{uuid.uuid4().hex}'
    result = run({'checks': [
        {'name': 'evil', 'type': 'process', 'supervisor_program': f'x; touch {marker}',
         'supervisorctl': supervisor.supervisorctl, 'supervisor_config': supervisor.config},
        {'name': 'web', 'type': 'process', 'supervisor_program': 'web',
         'supervisorctl': supervisor.supervisorctl, 'supervisor_config': supervisor.config},
    ]})
    evil, web = result['checks']
    assert evil['status'] == 'error'
    assert evil['message'].startswith(f"invalid supervisor program name 'x; touch {marker}'")
    assert web['healthy'] is True and web['details']['supervisor_state'] == 'RUNNING'
    assert not os.path.exists(marker)


def test_hostile_process_name(tmp_path):
    marker = tmp_path / 'pwned'
    result = run({'checks': [{'name': 'evil', 'type': 'process', 'process_name': f'$(touch {marker})'}]})
    assert result['checks'][0]['status'] == 'error'
    assert not marker.exists()


def test_tls_cert_and_sql(https_server, tmp_path):
    import sqlite3  # pylint: disable=import-outside-toplevel

    database = tmp_path / 'app.db'
    sqlite3.connect(database).close()
    result = run({'checks': [
        {'name': 'cert', 'type': 'tls_cert', 'host': '127.0.0.1', 'port': https_server.port},
        {'name': 'db', 'type': 'sql', 'dsn': f'sqlite://{database}', 'expect': 1},
    ]})
    cert, db = result['checks']
    assert cert['message'] == 'expires in 5 days (< 14)' and cert['details']['days_left'] == 5
    assert db['healthy'] is True


@pytest.mark.parametrize('args, message', [
    ({'checks': [{'name': 'x', 'type': 'smtp'}]}, 'value of type must be one of: http, https, tcp, process, disk, tls_cert, sql, got: smtp'),
    ({'checks': [{'type': 'tcp', 'host': 'h', 'port': 1}]}, 'missing required arguments: name'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h', 'port': 1, 'colour': 'red'}]}, 'Unsupported parameters'),
    ({'checks': [{'name': 'x', 'type': 'http'}]}, 'type is http but all of the following are missing: url'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h'}]}, 'type is tcp but all of the following are missing: port'),
    ({'checks': [{'name': 'x', 'type': 'process'}]}, 'type is process but any of the following are missing: pidfile, process_name, supervisor_program'),
    ({'checks': [{'name': 'x', 'type': 'process', 'pidfile': '/run/x.pid', 'process_name': 'x'}]},
     'parameters are mutually exclusive: pidfile|process_name|supervisor_program'),
    ({'checks': [{'name': 'x', 'type': 'disk', 'path': '/'}]}, 'type is disk but any of the following are missing: min_free_bytes, min_free_percent'),
    ({'checks': [{'name': 'x', 'type': 'sql'}]}, 'type is sql but all of the following are missing: dsn'),
    ({'checks': [{'name': 'x', 'type': 'tls_cert'}]}, 'type is tls_cert but all of the following are missing: host'),
    ({'checks': [{'name': 'x', 'type': 'tcp', 'host': 'h', 'port': 'eighty'}]}, "cannot be converted to an int"),
    ({'checks': []}, None),
])
def test_argument_errors(args, message):
    result = run(args)
    if message is None:
        assert result['healthy'] is True and result['summary'] == '0/0 checks healthy'
        return
    assert result['failed'] is True
    assert message in result['msg']


TCP = {'name': 'x', 'type': 'tcp', 'host': '127.0.0.1', 'port': 1}


@pytest.mark.parametrize('args, message', [
    ({'timeout': -1}, 'timeout must be greater than 0 (got -1.0)'),
    ({'timeout': 0}, 'timeout must be greater than 0 (got 0.0)'),
    ({'concurrency': 0}, 'concurrency must be at least 1 (got 0)'),
    ({'retries': -1}, 'retries must be 0 or more (got -1)'),
    ({'delay': -0.5}, 'delay must be 0 or more (got -0.5)'),
    ({'deadline': 0}, 'deadline must be greater than 0 (got 0.0)'),
    ({'tenant': ''}, 'tenant must not be empty'),
    ({'checks': [TCP, dict(TCP, type='http', url='http://h/', port=None), dict(TCP, name='y')]}, 'check names must be unique; repeated: x'),
    ({'timeout': -1, 'concurrency': 0}, 'timeout must be greater than 0 (got -1.0); concurrency must be at least 1 (got 0)'),
])
def test_invalid_settings(args, message):
    result = run(dict({'checks': [TCP]}, **args))
    assert result['failed'] is True
    assert result['msg'] == message
    assert 'checks' not in result


def test_negative_check_timeout_is_a_check_error():
    result = run({'checks': [dict(TCP, timeout=-2)]})
    assert result['checks'][0]['status'] == 'error'
    assert result['checks'][0]['message'] == 'timeout must be greater than 0 (got -2.0)'


def test_secrets_are_hidden_from_the_output(http_server, tmp_path, capsys):
    """The real exit_json: the DSN and header values never reach the output."""
    database = tmp_path / 'app.db'
    args = {'checks': [
        {'name': 'db', 'type': 'sql', 'dsn': 'postgresql://app:Sup3r-S3cret@127.0.0.1:1/app'},
        {'name': 'api', 'type': 'http', 'url': http_server.url('/echo'), 'headers': {'X-Api-Token': 'T0ken-Value-42'}},
        {'name': 'file', 'type': 'sql', 'dsn': f'sqlite://{database}'},
    ]}
    with set_module_args(args):
        with pytest.raises(SystemExit):
            health_check.main()
    output = capsys.readouterr().out
    assert 'Sup3r-S3cret' not in output
    assert 'T0ken-Value-42' not in output
    result = json.loads(output)
    assert result['checks'][0]['message'] == 'connection refused'
    assert result['invocation']['module_args']['checks'][0]['dsn'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


def test_harness_exit_and_fail(http_server):
    with set_module_args({'checks': [{'name': 'ok', 'type': 'http', 'url': http_server.url('/ok')}]}), patch_module_exits() as warnings:
        with pytest.raises(AnsibleExitJson) as exit_info:
            health_check.main()
    assert exit_info.value.result['healthy'] is True
    assert warnings == []
    with set_module_args({'checks': 'nope'}), patch_module_exits():
        with pytest.raises(AnsibleFailJson) as fail_info:
            health_check.main()
    assert fail_info.value.result['failed'] is True


def test_build_specs():
    checks = [dict({key: None for key in health_check.CHECK_OPTIONS}, name='a', type='tcp', host='h', port=1)]
    [spec] = health_check.build_specs(checks, 7.5)
    assert spec.timeout == 7.5 and spec.latency_budget is None
    assert spec.options == {'host': 'h', 'port': 1}


def test_argument_spec_matches_the_engine():
    from ansible_collections.dihya.ops.plugins.module_utils._health import COMMON_OPTIONS, OPTIONS_BY_TYPE  # pylint: disable=import-outside-toplevel

    documented = set(health_check.CHECK_OPTIONS)
    assert documented == set(COMMON_OPTIONS).union(*OPTIONS_BY_TYPE.values())
    assert health_check.CHECK_OPTIONS['dsn']['no_log'] is True
    assert health_check.CHECK_OPTIONS['headers']['no_log'] is True
